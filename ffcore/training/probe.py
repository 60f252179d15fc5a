"""The probe set: a fixed set of training crops whose loss is measured before a phase and after
every epoch, a low-noise view of whether training fits."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.data import Dataset

from ffcore.data.widerface import collate
from ffcore.detection.loss import LOSS_TERMS, MultiBoxLoss, Target


def to_device(targets: list[Target], device: torch.device) -> list[Target]:
    return [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]


Probe = tuple[torch.Tensor, list[Target]]


def make_probe(dataset: Dataset, count: int) -> Probe | None:
    """The first ``count`` training images as augmented in epoch 0: a fixed set whose loss is
    measured before the phase and after every epoch -- a low-noise view of whether training
    fits, where the per-iteration loss jumps with each batch's crops."""
    n = min(count, len(dataset))
    if n <= 0:
        return None
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(0)
    return collate([dataset[i] for i in range(n)])


@torch.no_grad()
def probe_losses(
    model: nn.Module,
    criterion: MultiBoxLoss,
    probe: Probe | None,
    priors: torch.Tensor,
    device: torch.device,
    chunk: int = 8,
) -> dict[str, float]:
    """Loss terms of ``probe`` as training sees them: BatchNorm on batch statistics (chunks of
    ``chunk`` images, like a training batch), no dropout. Touches nothing: the BatchNorm running
    statistics are put back, so probing never changes training or checkpoints."""
    if probe is None:
        return dict.fromkeys(LOSS_TERMS, math.nan)
    images, targets = probe
    saved = {k: v.clone() for k, v in model.named_buffers()}
    was_training, dropout_on = model.training, getattr(model, "dropout_on", False)
    model.train()
    if hasattr(model, "set_head_dropout"):
        model.set_head_dropout(False)
    sums = dict.fromkeys(LOSS_TERMS, 0.0)
    try:
        for i in range(0, len(targets), chunk):
            x = images[i : i + chunk].to(device)
            out = criterion(model(x), to_device(targets[i : i + chunk], device), priors)
            for k in LOSS_TERMS:
                sums[k] += float(out[k]) * x.shape[0]
    finally:
        for k, v in model.named_buffers():
            v.copy_(saved[k])
        model.train(was_training)
        if hasattr(model, "set_head_dropout"):
            model.set_head_dropout(dropout_on)
    return {k: v / len(targets) for k, v in sums.items()}
