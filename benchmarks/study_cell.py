"""CPU cost of a study cell's evaluation: before and after the batched, switch-once path.

A study cell trains four phases and scores its phase-3 model on the 2,100-image study val set.
Training is unchanged by the cost work (bit-identical); the evaluation changed from one image
per forward pass with the model moved and switched to eval mode per image (the code before) to
a switch once and batches of same-size images (``predict_dataset(batch_size=16)``). Both run
alternately on the same images, one torch thread, timed in CPU seconds of this process
(``time.process_time``), so the ratios hold on a busy machine:

    .venv/bin/python benchmarks/study_cell.py [--images 128] [--reps 5] [--checkpoint PATH]

Without ``--checkpoint`` the model carries its initial weights (seed 0); a trained model keeps
fewer boxes after NMS, so the per-image post-processing weighs a little less.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from ffcore.data.synthetic import generate_dataset
from ffcore.data.widerface import iter_val_images, read_image
from ffcore.evaluation.inference import detect, predict_dataset
from ffcore.evaluation.wider_ap import write_prediction_file
from ffcore.models import build_model
from ffcore.models.checkpoint import load_model
from ffcore.profiles import get_profile
from ffcore.report.timing import compare_latency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128, help="val images (study-sized)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--checkpoint", default=None, help="a phase-3 checkpoint (.pth)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    prof = get_profile("study")
    with tempfile.TemporaryDirectory() as tmp:
        root = generate_dataset(Path(tmp) / "data", 1, args.images, prof.synthetic_image_size)
        if args.checkpoint:
            model, _ = load_model(args.checkpoint)
        else:
            model = build_model("eca_cbam", init_seed=0)
        items = list(iter_val_images(root))
        out = Path(tmp) / "pred"

        def per_image() -> None:  # the loop before: detect() moves and switches per image
            for item in items:
                dets = detect(model, read_image(item.path))
                path = out / "a" / item.event / f"{item.name}.txt"
                write_prediction_file(path, item.name, dets.to_wider())

        frame = compare_latency(
            {
                "before: per image, switched per image": per_image,
                "switched once, one image per pass": lambda: predict_dataset(
                    model, root, out / "b", progress=False
                ),
                "switched once, same-size batches of 16": lambda: predict_dataset(
                    model, root, out / "c", progress=False, batch_size=16
                ),
            },
            reps=args.reps,
            warmup=1,
            clock=time.process_time,
        )
    frame["cpu_ms_per_image"] = frame["median_ms"] / args.images
    print(f"{args.images} val images, {args.reps} alternating rounds, 1 thread, CPU time")
    cols = ["cpu_ms_per_image", "ratio", "ratio_p25", "ratio_p75"]
    print(frame[cols].round(3).to_string())


if __name__ == "__main__":
    main()
