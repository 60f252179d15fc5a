"""One GPU check, under 8 minutes: does every training phase step on CUDA with AMP, how fast, and
what does evaluation-mode latency look like in fp32 and fp16 (and onnxruntime's CUDA provider)?

    python -m benchmarks.gpu_check                          # CUDA, 640 px, batch 32 (the thesis)
    python -m benchmarks.gpu_check --device cpu --image-size 96 --batch-size 2 --rounds 2
                                                            # the smoke run the tests use

Steps, each printed as it finishes:

1. training: for phases 1, 2a, 2b, 3 (the switches of ``ffcore.schedule.PHASES``), ``--steps``
   optimiser steps of ECA-CBAM on a synthetic batch with the phase's loss weights and learning
   rate, AMP (fp16 autocast + GradScaler) on CUDA; the loss must be finite; images/s = median
   over the steps after the first (warm-up).
2. evaluation-mode latency at batch 1 and ``--batch-size``: fp32 and fp16 (``model.half()``),
   alternating (``ffcore.report.timing.compare_latency``); ratios to fp32 with their
   interquartile range. On CPU fp32 only (torchvision's CPU DeformConv has no fp16 kernel).
3. onnxruntime's CUDA provider, if installed: an fp32 export run by it against the eager model.

Without CUDA and without ``--device cpu`` it prints why and exits with status 0 (nothing to
check); it never silently measures the CPU instead.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

EXIT_NO_CUDA = 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (smoke run)")
    p.add_argument("--image-size", type=int, default=640)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=5, help="training steps per phase (>= 2)")
    p.add_argument("--rounds", type=int, default=20, help="latency rounds")
    p.add_argument("--skip-onnx", action="store_true", help="no onnxruntime CUDA check")
    args = p.parse_args(argv)
    if args.image_size < 32 or args.image_size % 32:
        p.error(f"--image-size must be a multiple of 32 (>= 32), got {args.image_size}")
    if args.batch_size < 1 or args.steps < 2 or args.rounds < 1:
        p.error("--batch-size >= 1, --steps >= 2 and --rounds >= 1 are required")
    if not (args.device == "cpu" or args.device.startswith("cuda")):
        p.error(f"--device must be cpu or cuda[:N], got {args.device!r}")
    return args


def _batch(image_size: int, batch_size: int, device: torch.device):
    """A synthetic batch in the training layout: images [B, 3, S, S] and normalised targets."""
    from ffcore.data.synthetic import generate_dataset
    from ffcore.data.widerface import WiderFaceDataset, collate

    with tempfile.TemporaryDirectory() as tmp:
        root = generate_dataset(Path(tmp), batch_size, 1, max(image_size, 96), seed=0)
        data = WiderFaceDataset(root / "train" / "label.txt", image_size, augment=False)
        images, targets = collate([data[i] for i in range(len(data))])
    return images.to(device), [{k: v.to(device) for k, v in t.items()} for t in targets]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_steps(args: argparse.Namespace, device: torch.device) -> list[dict]:
    from ffcore.detection.loss import MultiBoxLoss
    from ffcore.detection.priors import prior_boxes
    from ffcore.models import build_model
    from ffcore.schedule import PHASE_ORDER, PHASES

    images, targets = _batch(args.image_size, args.batch_size, device)
    priors = prior_boxes((args.image_size, args.image_size)).to(device)
    amp = device.type == "cuda"
    rows = []
    for pid in PHASE_ORDER:
        phase = PHASES[pid]
        torch.manual_seed(0)
        model = build_model("eca_cbam").to(device)
        model.apply_phase(phase)
        model.train()
        criterion = MultiBoxLoss.from_phase(phase)
        optimizer = torch.optim.Adam(model.parameters(), lr=phase.lr, weight_decay=1e-4)
        scaler = torch.amp.GradScaler(device.type, enabled=amp)
        losses, rates = [], []
        for step in range(args.steps):
            _sync(device)
            t0 = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                predictions = model(images)
            loss = criterion(predictions, targets, priors)["total"]
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            _sync(device)
            if step > 0:
                rates.append(images.shape[0] / (time.perf_counter() - t0))
            losses.append(float(loss.detach()))
        finite = all(math.isfinite(v) for v in losses)
        rows.append(
            {
                "phase": pid,
                "amp": amp,
                "loss_first": losses[0],
                "loss_last": losses[-1],
                "finite": finite,
                "images_per_s": float(np.median(rates)),
            }
        )
        print(
            f"train phase {pid:>2}: loss {losses[0]:.3f} -> {losses[-1]:.3f} "
            f"({'finite' if finite else 'NOT FINITE'}), {rows[-1]['images_per_s']:.1f} images/s "
            f"at {args.image_size} px, batch {args.batch_size}, AMP {'on' if amp else 'off'}",
            flush=True,
        )
    return rows


def eval_latency(args: argparse.Namespace, device: torch.device) -> list[dict]:
    from ffcore.models import build_model
    from ffcore.report.timing import compare_latency

    torch.manual_seed(0)
    fp32 = build_model("eca_cbam").to(device).eval()
    cuda = device.type == "cuda"
    candidates_low = {}
    if cuda:
        low = build_model("eca_cbam").to(device).eval()
        low.load_state_dict(fp32.state_dict())
        candidates_low["fp16"] = low.half()
    else:  # torchvision's CPU deform_conv2d has no fp16/bf16 kernel: fp32 only
        print("eval: fp16 is measured on CUDA only (no reduced-precision DeformConv on CPU)")
    rows = []
    for batch in sorted({1, args.batch_size}):
        x = torch.randn(batch, 3, args.image_size, args.image_size, device=device)

        def run(model, inp):
            def fn():
                with torch.inference_mode():
                    model(inp)
                _sync(device)

            return fn

        candidates = {"fp32": run(fp32, x)}
        candidates |= {name: run(m, x.half()) for name, m in candidates_low.items()}
        table = compare_latency(candidates, reps=args.rounds)
        for name, r in table.iterrows():
            rows.append({"batch": batch, "precision": name, **r.to_dict()})
            print(
                f"eval batch {batch:>2} {name:<5} median {r['median_ms']:.2f} ms "
                f"(p25-p75 {r['p25_ms']:.2f}-{r['p75_ms']:.2f}); per-round ratio to fp32 "
                f"{r['ratio']:.2f} (IQR {r['ratio_p25']:.2f}-{r['ratio_p75']:.2f})",
                flush=True,
            )
    return rows


def onnx_cuda(args: argparse.Namespace, device: torch.device) -> str:
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime not installed: skipped"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return f"onnxruntime {ort.__version__} has no CUDAExecutionProvider: skipped"
    from ffcore.export import INPUT_NAME, export_onnx
    from ffcore.models import build_model
    from ffcore.report.timing import compare_latency

    model = build_model("eca_cbam").eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "m.onnx", image_size=args.image_size).path
        session = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider"])
        x = np.random.default_rng(0).standard_normal((1, 3, args.image_size, args.image_size))
        x = x.astype(np.float32)
        model.to(device)
        xt = torch.from_numpy(x).to(device)

        def eager():
            with torch.inference_mode():
                model(xt)
            _sync(device)

        table = compare_latency(
            {"eager": eager, "onnxruntime CUDA": lambda: session.run(None, {INPUT_NAME: x})},
            reps=args.rounds,
        )
    r = table.loc["onnxruntime CUDA"]
    return (
        f"onnxruntime CUDA vs eager fp32, batch 1: ratio {r['ratio']:.2f} "
        f"(IQR {r['ratio_p25']:.2f}-{r['ratio_p75']:.2f}); providers {session.get_providers()}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "gpu_check: CUDA is not available on this machine (torch.cuda.is_available() is "
            "False); nothing measured. Run it on a GPU machine, or pass --device cpu for the "
            "smoke run.",
            file=sys.stderr,
        )
        return EXIT_NO_CUDA
    device = torch.device(args.device)
    start = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (smoke run)"
    print(f"gpu_check on {name}, torch {torch.__version__}", flush=True)
    train = train_steps(args, device)
    eval_latency(args, device)
    if not args.skip_onnx:
        print(onnx_cuda(args, device), flush=True)
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0 if all(r["finite"] for r in train) else 1


if __name__ == "__main__":
    raise SystemExit(main())
