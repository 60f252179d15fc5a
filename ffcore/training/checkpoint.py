"""Checkpoints: one file holds everything to resume a phase exactly or to rebuild the model.

Contents (tensors and primitive containers only, so ``torch.load(weights_only=True)`` reads it):
``model`` state dict, ``optimizer``, ``scheduler`` and (CUDA) ``scaler`` states, ``rng`` states
(python, numpy, torch, cuda), ``epoch`` (epochs completed), ``epochs`` (epochs the run plans),
``phase``, ``model_config`` and ``train_config`` dicts, and the position on the training's one
continuous axis (TensorBoard): ``step_offset`` / ``epoch_offset`` (steps and epochs of the phases
before this one) and ``global_step`` (``step_offset`` plus this phase's steps so far). Saving is atomic (write a temporary file
in the same folder, then ``os.replace``), so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import random
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ffcore.atomic import replacing
from ffcore.config import to_dict
from ffcore.models.checkpoint import FORMAT, FORMAT_VERSION, CheckpointError, unwrap
from ffcore.schedule import Phase


# -- RNG states -------------------------------------------------------------------------------
def rng_states() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    n = states["numpy"]
    np.random.set_state(
        (
            n["name"],
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    torch.set_rng_state(states["torch"].cpu())
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in states["cuda"]])


# -- save / load ------------------------------------------------------------------------------
def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    phase: str,
    epoch: int,
    epochs: int,
    train_config: dict[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: Any = None,
    step_offset: int = 0,
    epoch_offset: int = 0,
    global_step: int = 0,
    cpu_kernels: dict[str, str | None] | None = None,
) -> Path:
    """Write a checkpoint atomically and return its path. ``epoch`` = epochs completed; the
    model config is the model's own (``model.config``), so a checkpoint always rebuilds its model.
    ``cpu_kernels``: the kernel levels the training process ran with
    (``ffcore.cpu_kernels.kernel_record``), kept under ``"cpu_kernels"``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "phase": str(phase),
        "epoch": int(epoch),
        "epochs": int(epochs),
        "model_config": to_dict(unwrap(model).config),
        "train_config": dict(train_config or {}),
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "rng": rng_states(),
        "step_offset": int(step_offset),
        "epoch_offset": int(epoch_offset),
        "global_step": int(global_step),
        "cpu_kernels": dict(cpu_kernels or {}),
    }
    with replacing(path) as tmp:
        torch.save(state, tmp)  # atomic-ok: a temporary
    return path


# -- phase start rules ------------------------------------------------------------------------
class Start(StrEnum):
    """How a phase uses its starting checkpoint (``start_mode``)."""

    FRESH = "fresh"  # none: phase 1 from scratch
    FROM_PREVIOUS = "start"  # the previous phase's final checkpoint: weights only
    RESUME = "resume"  # a mid-phase checkpoint of this phase: everything
    FINISH = "finish"  # a complete checkpoint of this phase: write what a kill left undone

    @property
    def continues(self) -> bool:
        """Whether the phase continues its own checkpoint (optimizer, RNG, logs, offsets)."""
        return self in (Start.RESUME, Start.FINISH)


def start_mode(phase: Phase, state: dict[str, Any] | None) -> Start:
    """How ``phase`` uses a starting checkpoint: FRESH (none; phase 1 only), FROM_PREVIOUS (the
    previous phase's final checkpoint: weights only), RESUME (a mid-phase checkpoint of this
    phase: everything) or FINISH (a complete checkpoint of this phase: write the final
    checkpoint and last log row that a kill prevented). Anything else is a CheckpointError
    saying what the phase needs."""
    needs = (
        f"phase {phase.id} starts from the final checkpoint of phase {phase.starts_from} "
        f"(e.g. weights/phase{phase.starts_from}/phase{phase.starts_from}_epoch_N.pth)"
        if phase.starts_from
        else f"phase {phase.id} starts from scratch (no starting checkpoint) or resumes a phase "
        f"{phase.id} checkpoint"
    )
    if state is None:
        if phase.starts_from is not None:
            raise CheckpointError(f"{needs}; give it as the starting checkpoint (resume_net)")
        return Start.FRESH
    where = state.get("path", "<checkpoint>")
    found = f"{where} is from phase {state['phase']} after epoch {state['epoch']}/{state['epochs']}"
    complete = state["epoch"] >= state["epochs"]
    if state["phase"] == phase.id:
        # complete: a kill may have come between latest.pth and the final checkpoint; the phase
        # then only writes what is missing (resolve_start refuses when nothing is)
        return Start.FINISH if complete else Start.RESUME
    if state["phase"] == phase.starts_from:
        if not complete:
            raise CheckpointError(f"{found}: that phase did not finish; resume it first. {needs}")
        return Start.FROM_PREVIOUS
    raise CheckpointError(f"{found}; {needs}")
