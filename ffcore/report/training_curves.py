"""The training curves of one phase: loss (every step and the probe set) and learning rate."""

from __future__ import annotations

import os

import pandas as pd

from ffcore.report import figures
from ffcore.schedule import PHASES


def plot_training(history_csv: str | os.PathLike[str], epochs_csv: str | os.PathLike[str]):
    """Two panels: the loss (every step, and the probe set after each epoch) and the learning
    rate, both against the epoch. Returns the matplotlib figure."""
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


def phase_table() -> pd.DataFrame:
    """The phase table of ``ffcore.schedule.PHASES`` (one column per phase), as the notebooks
    show it."""
    frame = pd.DataFrame([vars(p) for p in PHASES.values()]).set_index("id").T
    frame.columns.name = "phase"
    return frame


def epoch_table(epochs_csv: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per epoch of a phase (row 0: before its first step): mean training loss, the
    probe-set loss terms, the last learning rate and the seconds it took."""
    return pd.read_csv(epochs_csv, dtype={"phase": str}).set_index("epoch")
