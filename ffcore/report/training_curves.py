"""The training curves of one phase: loss (every step and the probe set) and learning rate."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from ffcore.report import figures
from ffcore.schedule import PHASES

MIXUP_NOTE = "step (mixup-weighted: lower by construction, not by learning)"


def break_at_restarts(x: pd.Series, lr: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(x, lr)`` with a NaN inserted before every point where the learning rate goes up (a
    warm restart or a new phase), so a line plot draws each restart as a jump, not a slope."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(lr, dtype=float)
    ups = np.flatnonzero(np.diff(ys) > 0) + 1
    return np.insert(xs, ups, np.nan), np.insert(ys, ups, np.nan)


def plot_training(
    history_csv: str | os.PathLike[str],
    epochs_csv: str | os.PathLike[str],
    source: str | None = None,
):
    """Two panels: the loss (every step, and the probe set after each epoch) and the learning
    rate, both against the epoch; ``source`` names the run (e.g. "smoke run, synthetic data").
    A phase trained with mixup says on the figure that its step loss is mixup-weighted (only the
    probe loss compares with other phases). Returns the matplotlib figure."""
    steps, per_epoch = pd.read_csv(history_csv), pd.read_csv(epochs_csv)
    phase = str(steps["phase"].iloc[0])
    color = figures.PHASE_COLORS.get(phase)
    mixup = PHASES[phase].mixup_alpha is not None if phase in PHASES else False
    fig, (ax_loss, ax_lr) = figures.new_figure("full", aspect=0.34, ncols=2)
    step_label = MIXUP_NOTE if mixup else "step"
    ax_loss.plot(steps.epoch_float, steps.total, color=color, alpha=0.45, lw=0.8, label=step_label)
    ax_loss.plot(
        per_epoch.epoch, per_epoch.probe_total, "o-", color="black", ms=3, lw=1,
        label="probe set (clean crops)",
    )  # fmt: skip
    ax_loss.set(xlabel="epoch", ylabel="total loss", title=f"phase {phase}: loss")
    handles, labels = ax_loss.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=2, frameon=False)
    ax_lr.plot(*break_at_restarts(steps.epoch_float, steps.lr), color=color)
    ax_lr.set(xlabel="epoch", ylabel="learning rate", title=f"phase {phase}: learning rate")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    figures.add_source(fig, source)
    return fig


def _show(value: object) -> object:
    """Small floats as ``1e-08`` rather than the ``0.0`` of pandas' display rounding."""
    if isinstance(value, float) and value != 0 and abs(value) < 1e-3:
        return f"{value:.0e}"
    return value


def phase_table() -> pd.DataFrame:
    """The phase table of ``ffcore.schedule.PHASES`` (one column per phase), as the notebooks
    show it; tiny values (Adam's eps) written as ``1e-08``."""
    frame = pd.DataFrame([vars(p) for p in PHASES.values()]).set_index("id").T
    frame.columns.name = "phase"
    return frame.map(_show)


def epoch_table(epochs_csv: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per epoch of a phase (row 0: before its first step): mean training loss, the
    probe-set loss terms, the last learning rate and the seconds it took."""
    return pd.read_csv(epochs_csv, dtype={"phase": str}).set_index("epoch")
