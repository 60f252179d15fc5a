"""Hand-over files between notebooks: each phase notebook writes ``<run_dir>/<notebook>/result.json``
and the next phase, the evaluation and the ablation read it. Paths inside are relative to the
run folder, so a run folder can be moved or shared."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ffcore.atomic import copy_file, write_json
from ffcore.paths import repo_path
from ffcore.pipeline import PHASE_NOTEBOOKS
from ffcore.schedule import get_phase

RESULT_FILE = "result.json"
_PATH_KEYS = ("checkpoint", "history_csv", "epochs_csv", "started_from")


def result_path(run_dir: str | os.PathLike[str], phase_id: str) -> Path:
    """``<run_dir>/<phase notebook>/result.json`` (a relative run_dir is taken from the
    repository root, as everywhere in the notebooks)."""
    return repo_path(run_dir) / PHASE_NOTEBOOKS[get_phase(phase_id).id] / RESULT_FILE


def phase_result(run_dir: str | os.PathLike[str], phase_id: str) -> dict[str, Any]:
    """The ``result.json`` that the notebook of ``phase_id`` wrote under ``run_dir``, with its
    paths made absolute again (they are stored relative to ``run_dir``)."""
    path = result_path(run_dir, phase_id)
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
    root = repo_path(run_dir)
    for key in _PATH_KEYS:
        if data.get(key) is not None:
            data[key] = str(root / data[key])
    return data


def recorded_checkpoints(run_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Phase id -> final checkpoint, in phase order, of the phases whose notebook has written
    its ``result.json`` under ``run_dir`` (a phase not run yet is left out)."""
    from ffcore.schedule import PHASE_ORDER

    return {
        pid: phase_result(run_dir, pid)["checkpoint"]
        for pid in PHASE_ORDER
        if result_path(run_dir, pid).is_file()
    }


def previous_checkpoint(run_dir: str | os.PathLike[str], phase_id: str) -> str | None:
    """The final checkpoint written by the previous phase's notebook (None for phase 1)."""
    previous = get_phase(phase_id).starts_from
    if previous is None:
        return None
    return phase_result(run_dir, previous)["checkpoint"]


def relative_to_run(path: str | os.PathLike[str], run_dir: str | os.PathLike[str]) -> str:
    """``path`` relative to the run folder ``run_dir``: how every JSON file of a run folder
    stores paths, so the folder can be moved or shared (``phase_result`` makes them absolute)."""
    return os.path.relpath(Path(path).resolve(), repo_path(run_dir).resolve())


def _relative(path: str | os.PathLike[str] | None, root: Path) -> str | None:
    if path is None:
        return None
    return os.path.relpath(Path(path).resolve(), root.resolve())


def write_result(run_dir: str | os.PathLike[str], result: Any, **extra: Any) -> Path:
    """``<run_dir>/<phase notebook>/result.json`` and copies of the phase's CSVs beside it;
    returns the JSON path. ``result`` is the phase's ``FitResult``."""
    root = repo_path(run_dir)
    out = result_path(root, result.phase).parent
    out.mkdir(parents=True, exist_ok=True)
    history = copy_file(result.history_csv, out / "history.csv")
    epochs = copy_file(result.epochs_csv, out / "epochs.csv")
    data = {
        "phase": result.phase,
        "checkpoint": _relative(result.checkpoint, root),
        "history_csv": _relative(history, root),
        "epochs_csv": _relative(epochs, root),
        "epochs": result.epochs,
        "started_from": _relative(result.started_from, root),
        "final_loss": result.final_loss,
        "epoch_losses": list(result.epoch_losses),
        "probe_losses": list(result.probe_losses),
        # the kernel level the training process reported (ffcore.cpu_kernels.kernel_record)
        "cpu_capability": getattr(result, "cpu_capability", None),
        "onednn_isa": getattr(result, "onednn_isa", None),
        **extra,
    }
    return write_json(out / RESULT_FILE, data)
