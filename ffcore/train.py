"""The ``train`` command: flags -> TrainConfig -> ``ffcore.engine.fit_phase``, one phase or all.

Keeps the flags of the RetinaFace-style scripts the thesis started from (``--training_dataset``,
``--resume_net``, ``--save_folder``); the dash spellings work too. Light at import time: torch
loads only when a command runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ffcore.config import VARIANTS, TrainConfig
from ffcore.schedule import PHASE_ORDER, get_phase

DEFAULT_DATASET = "./data/widerface/train/label.txt"


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--phase", choices=PHASE_ORDER, help="the phase to train")
    which.add_argument(
        "--all", action="store_true", help="phases 1 -> 2a -> 2b -> 3, each from the previous"
    )
    p.add_argument(
        "--training_dataset",
        "--training-dataset",
        default=DEFAULT_DATASET,
        help="train/label.txt in the WIDER layout (default: %(default)s)",
    )
    p.add_argument(
        "--resume_net",
        "--resume-net",
        default=None,
        help="the previous phase's final checkpoint, or a mid-phase checkpoint of this "
        "phase to resume (with --all: a phase-1 checkpoint to resume phase 1)",
    )
    p.add_argument("--epochs", type=int, default=None, help="default: the phase table's")
    p.add_argument(
        "--batch-size",
        type=int,
        default=TrainConfig.batch_size,
        help="per process (default: %(default)s)",
    )
    p.add_argument("--image-size", type=int, default=TrainConfig.image_size)
    p.add_argument(
        "--save_folder",
        "--save-folder",
        default=TrainConfig.save_folder,
        help="checkpoints land in <save_folder>/phase<id>/ (default: %(default)s)",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--num-workers", type=int, default=TrainConfig.num_workers)
    p.add_argument("--seed", type=int, default=TrainConfig.seed)
    p.add_argument(
        "--variant",
        choices=VARIANTS,
        default=TrainConfig.variant,
        help="model for phase 1 from scratch (later phases use the checkpoint's)",
    )
    p.add_argument(
        "--backbone-weights",
        default=None,
        help='phase 1 backbone init: "retinaface" (reference weights) or a file',
    )
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")


def config_from_args(args: argparse.Namespace, phase: str) -> TrainConfig:
    return TrainConfig(
        phase=phase,
        training_dataset=args.training_dataset,
        variant=args.variant,
        epochs=args.epochs,
        batch_size=args.batch_size,
        image_size=args.image_size,
        num_workers=args.num_workers,
        seed=args.seed,
        device=args.device,
        save_folder=args.save_folder,
        resume_net=args.resume_net,
        backbone_init=args.backbone_weights,
        amp=not args.no_amp,
        progress=not args.no_progress,
    )


def run_all(
    config: TrainConfig,
    phases: tuple[str, ...] = PHASE_ORDER,
    report: Callable[[Any], None] = print,
) -> list[Any]:
    """Train ``phases`` in order, each starting from the previous one's final checkpoint.
    ``config`` is the first phase's (its ``resume_net``/``backbone_init`` apply to it only)."""
    from ffcore.engine import fit_phase

    results = []
    for i, phase in enumerate(phases):
        if i > 0:
            config = dataclasses.replace(
                config, phase=phase, resume_net=str(results[-1].checkpoint), backbone_init=None
            )
        else:
            config = dataclasses.replace(config, phase=phase)
        result = fit_phase(config)
        report(result)
        results.append(result)
    return results


def _report(result: Any) -> None:
    phase = get_phase(result.phase)
    probe = result.probe_losses
    print(
        f"phase {result.phase} ({phase.attention_label}): {result.epochs_done}/{result.epochs} "
        f"epochs, final training loss {result.final_loss:.4f}"
        + (f", probe loss {probe[0]:.4f} -> {probe[-1]:.4f}" if len(probe) > 1 else "")
        + f"\n  checkpoint {result.checkpoint}\n  history {result.history_csv}"
    )


def run_train_command(args: argparse.Namespace) -> int:
    from ffcore.engine import NonFiniteLossError, dist_from_env

    quiet = not dist_from_env().main  # only rank 0 reports under torchrun
    report = (lambda _r: None) if quiet else _report
    try:
        if args.all:
            run_all(config_from_args(args, PHASE_ORDER[0]), report=report)
        else:
            run_all(config_from_args(args, args.phase), phases=(args.phase,), report=report)
    except NonFiniteLossError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    return 0


# -- notebooks 02-05: one per phase, each reading the previous one's result.json ------------------
PHASE_NOTEBOOKS: dict[str, str] = {
    "1": "02_phase1",
    "2a": "03_phase2a",
    "2b": "04_phase2b",
    "3": "05_phase3",
}
RESULT_FILE = "result.json"


def phase_result(run_dir: str | os.PathLike[str], phase_id: str) -> dict[str, Any]:
    """The ``result.json`` that the notebook of ``phase_id`` wrote under ``run_dir``."""
    path = Path(run_dir) / PHASE_NOTEBOOKS[phase_id] / RESULT_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: run {PHASE_NOTEBOOKS[phase_id]}.ipynb first (or `make reproduce`)"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a phase result file ({exc})") from None
    if not isinstance(data, dict) or "checkpoint" not in data:
        raise ValueError(f"{path}: not a phase result file (no 'checkpoint')")
    return data


def previous_checkpoint(run_dir: str | os.PathLike[str], phase_id: str) -> str | None:
    """The final checkpoint written by the previous phase's notebook (None for phase 1), read
    from ``<run_dir>/<previous notebook>/result.json``."""
    previous = get_phase(phase_id).starts_from
    if previous is None:
        return None
    return phase_result(run_dir, previous)["checkpoint"]


def write_result(out_dir: str | os.PathLike[str], result: Any, **extra: Any) -> Path:
    """``<out_dir>/result.json`` and copies of the phase's CSVs; returns the JSON path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    history = shutil.copyfile(result.history_csv, out / "history.csv")
    epochs = shutil.copyfile(result.epochs_csv, out / "epochs.csv")
    data = {
        "phase": result.phase,
        "checkpoint": str(result.checkpoint),
        "history_csv": str(history),
        "epochs_csv": str(epochs),
        "epochs": result.epochs,
        "started_from": result.started_from,
        "final_loss": result.final_loss,
        "epoch_losses": list(result.epoch_losses),
        "probe_losses": list(result.probe_losses),
        **extra,
    }
    path = out / RESULT_FILE
    path.write_text(json.dumps(data, indent=2))
    return path


def plot_training(history_csv: str | os.PathLike[str], epochs_csv: str | os.PathLike[str]):
    """Two panels: the loss (every step, and the probe set after each epoch) and the learning
    rate, both against the epoch. Returns the matplotlib figure."""
    import pandas as pd

    from ffcore import figures

    steps, per_epoch = pd.read_csv(history_csv), pd.read_csv(epochs_csv)
    phase = str(steps["phase"].iloc[0])
    color = figures.PHASE_COLORS.get(phase)
    fig, (ax_loss, ax_lr) = figures.new_figure("full", aspect=0.32, ncols=2)
    ax_loss.plot(steps.epoch_float, steps.total, color=color, alpha=0.45, lw=0.8, label="step")
    ax_loss.plot(per_epoch.epoch, per_epoch.probe_total, "o-", color=color, label="probe set")
    ax_loss.set(xlabel="epoch", ylabel="total loss", title=f"phase {phase}: loss")
    ax_loss.legend()
    ax_lr.plot(steps.epoch_float, steps.lr, color=color)
    ax_lr.set(xlabel="epoch", ylabel="learning rate", title=f"phase {phase}: learning rate")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    return fig
