"""Rank 0's training logs: ``history.csv`` (one row per iteration), ``epochs.csv`` (one row per
epoch, with the probe losses) and TensorBoard scalars.

TensorBoard uses one continuous axis over the four phases: a phase's steps and epochs are offset
by those of the phases before it (``step_offset``/``epoch_offset``, carried by the checkpoints),
so phase 2a continues where phase 1 ended. The scalar ``train/phase`` (1, 2, 3, 4 for phases 1,
2a, 2b, 3) steps up at each boundary, and a text note marks where each phase starts."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from ffcore.atomic import replacing
from ffcore.detection.loss import LOSS_TERMS
from ffcore.schedule import PHASE_ORDER

HISTORY = "history.csv"
EPOCHS = "epochs.csv"
HISTORY_COLUMNS: tuple[str, ...] = (
    "phase",
    "epoch",  # 1-based epoch the iteration belongs to
    "iteration",  # 1-based within the epoch
    "step",  # 1-based over the phase
    "epoch_float",  # schedule position e + i / iters at which this step's lr was taken
    "lr",
    "grad_norm",
    "images_per_s",
    *LOSS_TERMS,
)
EPOCH_COLUMNS: tuple[str, ...] = (
    "phase",
    "epoch",  # epochs completed; 0 = before the phase's first step
    "train_total",  # mean training loss of the epoch (mixup-weighted in phase 3)
    *(f"probe_{t}" for t in LOSS_TERMS),
    "lr_last",
    "seconds",
)


def _complete_lines(path: Path) -> list[str]:
    """The lines of ``path`` up to its last newline: an append cut short (disk full) leaves an
    unfinished last line, which is not a row."""
    text = path.read_text(encoding="utf-8")
    return text[: text.rfind("\n") + 1].splitlines(keepends=True)


def _read_rows(path: Path, keep_epochs: int) -> list[dict[str, Any]]:
    if keep_epochs <= 0 or not path.is_file():
        return []
    return [r for r in csv.DictReader(_complete_lines(path)) if int(r["epoch"]) <= keep_epochs]


def remove_event_files(tb_dir: Path) -> list[Path]:
    """Delete the TensorBoard event files in ``tb_dir`` (those of an earlier or killed run)."""
    stale = sorted(tb_dir.glob("events.out.tfevents.*")) if tb_dir.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def has_epoch_row(epochs_csv: Path, epoch: int) -> bool:
    """Whether ``epochs.csv`` has the row of ``epoch`` (epochs completed)."""
    return any(int(r["epoch"]) == epoch for r in _read_rows(epochs_csv, epoch))


def last_epoch(epochs_csv: Path) -> int:
    """The last epoch ``epochs.csv`` records as completed (0: none, or no file)."""
    if not epochs_csv.is_file():
        return 0
    with open(epochs_csv, newline="") as f:
        return max((int(r["epoch"]) for r in csv.DictReader(f) if r.get("epoch")), default=0)


def read_epoch_rows(epochs_csv: Path) -> list[dict[str, Any]]:
    """The rows of ``epochs.csv`` (strings, as read)."""
    if not epochs_csv.is_file():
        return []
    with open(epochs_csv, newline="") as f:
        return list(csv.DictReader(f))


def _count_rows(path: Path) -> int:
    """Rows, counting an unfinished last line (so that a cut file is rewritten)."""
    with open(path, newline="") as f:
        return sum(1 for _ in csv.DictReader(f))


class _Table:
    """A CSV that keeps the rows of completed epochs and is appended to. A resumed run appends
    after them; only the rows of an interrupted epoch (which the run trains again) are dropped,
    by an atomic rewrite, so a kill never leaves the file cut short."""

    def __init__(self, path: Path, columns: tuple[str, ...], keep_epochs: int) -> None:
        self.path, self.columns = path, columns
        self.rows = _read_rows(path, keep_epochs)
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.rows and _header(path) == list(columns) and _count_rows(path) == len(self.rows):
            return  # nothing to drop: append
        with replacing(path) as tmp, open(tmp, "w", newline="") as f:  # atomic-ok: a temporary
            w = csv.DictWriter(f, columns)
            w.writeheader()
            w.writerows(self.rows)

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        # atomic-ok: one row per append; a row cut short is dropped on resume (_complete_lines)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.columns).writerow(row)


def _header(path: Path) -> list[str] | None:
    with open(path, newline="") as f:
        return next(csv.reader(f), None)


class History:
    """Rank 0's logs: ``history.csv`` (one row per iteration), ``epochs.csv`` (one row per epoch,
    with the probe losses) and TensorBoard scalars. A resumed phase keeps the rows of the epochs
    its checkpoint completed and drops the rest (an interrupted epoch's partial rows)."""

    def __init__(
        self,
        out_dir: Path,
        keep_epochs: int,
        enabled: bool,
        step_offset: int = 0,
        epoch_offset: int = 0,
        phase: str | None = None,
    ) -> None:
        self.enabled = enabled
        self._writer = None
        self.step_offset, self.epoch_offset = int(step_offset), int(epoch_offset)
        self._phase_index = PHASE_ORDER.index(phase) + 1 if phase in PHASE_ORDER else None
        if not enabled:
            return
        self.iterations = _Table(out_dir / HISTORY, HISTORY_COLUMNS, keep_epochs)
        self.epochs = _Table(out_dir / EPOCHS, EPOCH_COLUMNS, keep_epochs)
        from torch.utils.tensorboard import SummaryWriter  # slow import: only where used

        last = self.iterations.rows[-1]["step"] if self.iterations.rows else None
        tb_dir = out_dir / "tensorboard"
        if last is None:  # a fresh start rewrites the whole history: old event files go too
            remove_event_files(tb_dir)
        self._writer = SummaryWriter(
            log_dir=str(tb_dir),
            purge_step=None if last is None else self.step_offset + int(last) + 1,
        )
        if last is None and phase is not None:
            self._writer.add_text(
                "phase",
                f"phase {phase} starts at step {self.step_offset + 1}, epoch {self.epoch_offset}",
                self.step_offset + 1,
            )

    def add(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.iterations.add(row)
        step = self.step_offset + int(row["step"])
        if self._phase_index is not None:
            self._writer.add_scalar("train/phase", self._phase_index, step)
        for term in LOSS_TERMS:
            self._writer.add_scalar(f"loss/{term}", row[term], step)
        for key in ("lr", "grad_norm", "images_per_s"):
            self._writer.add_scalar(f"train/{key}", row[key], step)

    def add_epoch(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.epochs.add(row)
        for term in LOSS_TERMS:
            self._writer.add_scalar(
                f"probe/{term}", row[f"probe_{term}"], self.epoch_offset + int(row["epoch"])
            )

    def train_mean(self, epoch: int) -> float:
        if not self.enabled:
            return math.nan
        values = [float(r["total"]) for r in self.iterations.rows if int(r["epoch"]) == epoch]
        return float(np.mean(values)) if values else math.nan

    def has_epoch(self, epoch: int) -> bool:
        return self.enabled and any(int(r["epoch"]) == epoch for r in self.epochs.rows)

    def last_lr(self) -> float:
        """The learning rate of the last logged iteration (NaN when there is none)."""
        if not self.enabled or not self.iterations.rows:
            return math.nan
        return float(self.iterations.rows[-1]["lr"])

    def column(self, name: str, first_epoch: int = 0) -> tuple[float, ...]:
        if not self.enabled:
            return ()
        return tuple(float(r[name]) for r in self.epochs.rows if int(r["epoch"]) >= first_epoch)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
