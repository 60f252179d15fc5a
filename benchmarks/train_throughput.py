"""Training throughput: is the data pipeline the bottleneck?

    python benchmarks/train_throughput.py                        # smoke profile, CPU, ~1 min
    python benchmarks/train_throughput.py --device cuda --image-size 640 --batch-size 32 \\
        --num-workers 8 --data-root /path/to/widerface          # the thesis setting on a GPU

Measures, with the same model, loss and optimiser as ``ffcore.training.engine`` (the phase's attention
switches, mixup in phase 3, AMP on CUDA):

* full step   -- next batch from the DataLoader (read JPEG, augment, collate, copy to the
                 device) + forward + loss + backward + optimiser step;
* compute     -- forward + loss + backward + optimiser step on one batch already on the device.

and prints images/s of each (median of alternating rounds) and their ratio (full / compute;
1.0 = data loading fully hidden behind compute; the aim is >= 0.9). The compute batch is one
fixed batch, so a ratio slightly above 1 only means that batch holds more faces (matching and
loss cost) than the average one. Numbers only: it asserts nothing. On a 2-core CPU machine the
loader workers compete with the model for the same cores, so the ratio there says little about a
GPU machine.
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import torch
from torch.utils.data import DataLoader

from ffcore.data.synthetic import ensure_dataset
from ffcore.data.widerface import WiderFaceDataset, collate
from ffcore.detection.loss import MultiBoxLoss
from ffcore.detection.priors import prior_boxes
from ffcore.models import build_model
from ffcore.paths import repo_path
from ffcore.profiles import get_profile
from ffcore.schedule import get_phase
from ffcore.training.engine import make_optimizer, resolve_device
from ffcore.training.mixup import mixup_batch


def _step(model, criterion, optimizer, scaler, priors, images, targets, phase, rng, amp):
    if phase.mixup_alpha is not None:
        images, targets = mixup_batch(images, targets, phase.mixup_alpha, rng)
    with torch.autocast(images.device.type, dtype=torch.float16, enabled=amp):
        predictions = model(images)
    loss = criterion(predictions, targets, priors)["total"]
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    if phase.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), phase.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return float(loss.detach())  # a host sync, as in training (the non-finite check)


def _to(targets, device):
    return [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--data-root", default=None, help="WIDER-layout root (default: synthetic)")
    parser.add_argument("--phase", default="2b", help="attention switches / mixup of this phase")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--iters", type=int, default=8, help="timed steps of each kind")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="alternate full/compute; median")
    parser.add_argument("--device", default=None)
    parser.add_argument("--no-amp", action="store_true")
    parser.add_argument(
        "--no-channels-last",
        action="store_true",
        help="NCHW model and input (the engine trains NHWC unless told otherwise; RESULTS.md)",
    )
    args = parser.parse_args()

    prof = get_profile(args.profile)
    size = args.image_size or prof.image_size
    batch = args.batch_size or prof.batch_size
    device = resolve_device(args.device)
    amp = device.type == "cuda" and not args.no_amp
    phase = get_phase(args.phase)
    root = repo_path(args.data_root) if args.data_root else ensure_dataset(profile=args.profile)
    data = WiderFaceDataset(root / "train" / "label.txt", size, augment=True, seed=0)

    torch.manual_seed(0)
    model = build_model("eca_cbam").to(device).train()
    model.apply_phase(phase)
    if not args.no_channels_last:  # as ffcore.training.engine does by default
        model.to(memory_format=torch.channels_last)
        model.channels_last = True  # FeatherFace.features makes its input NHWC
    optimizer = make_optimizer(model, phase)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    criterion = MultiBoxLoss.from_phase(phase)
    priors = prior_boxes((size, size)).to(device)
    rng = np.random.default_rng(0)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def run(kind: str, batches) -> float:
        for i, (images, targets) in enumerate(batches):
            if i == args.warmup:
                sync()
                start = time.perf_counter()
            images = images.to(device, non_blocking=True)
            _step(model, criterion, optimizer, scaler, priors, images, _to(targets, device),
                  phase, rng, amp)  # fmt: skip
        sync()
        return args.iters * batch / (time.perf_counter() - start)

    n = args.warmup + args.iters
    loader = DataLoader(
        data, batch_size=batch, shuffle=True, num_workers=args.num_workers, collate_fn=collate,
        pin_memory=device.type == "cuda", persistent_workers=args.num_workers > 0,
        drop_last=True,
    )  # fmt: skip
    fixed = collate([data[i % len(data)] for i in range(batch)])
    fixed = (fixed[0].to(device), _to(fixed[1], device))
    batches = itertools.cycle(loader)
    fulls, computes = [], []
    for _ in range(args.rounds):  # alternating, so machine noise hits both alike
        fulls.append(run("full", itertools.islice(batches, n)))
        computes.append(run("compute", itertools.repeat(fixed, n)))
    full, compute = float(np.median(fulls)), float(np.median(computes))

    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}),"
          f" torch threads {torch.get_num_threads()}, AMP {amp},"
          f" {'NCHW' if args.no_channels_last else 'channels-last'}")  # fmt: skip
    print(
        f"phase {phase.id} ({phase.attention_label}), image {size} px, batch {batch}, "
        f"{args.num_workers} loader workers, median of {args.rounds} rounds of {args.iters} steps"
    )
    print(f"full step (data + augmentation + fwd + bwd + step): {full:8.2f} images/s")
    print(f"compute only (fwd + bwd + step, pre-loaded batch):  {compute:8.2f} images/s")
    print(f"ratio full / compute: {full / compute:.3f}")


if __name__ == "__main__":
    main()
