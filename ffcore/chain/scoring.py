"""A phase's final checkpoint scored on the val set (the official WIDER FACE protocol): on the
whole set (``score_checkpoint``) and on its parts (``val_splits``), or on one part alone, where
only that part's images are predicted (``score_part``: the study scores phases 1-2b so).

The parts: two disjoint halves (by a hash of the image name, so any WIDER layout splits the
same way) and, for the synthetic set, its first 96 images (the study's val set before it grew
to 2,100 images); scored on each part, one model tells evaluation noise from training noise."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SMALL_VAL_IMAGES = 96
# val images of one size per forward pass: 25 % less CPU than one at a time on the 2,100
# images, outputs equal to rounding (predict_dataset); AP agreed to 1e-10 on a study model
EVAL_BATCH = 16
HALVES: tuple[str, ...] = ("half_a", "half_b")


def val_half(name: str) -> str:
    """``"half_a"`` or ``"half_b"``: the half of the val set an image (by name) belongs to."""
    return "half_a" if hashlib.sha256(name.encode()).digest()[0] % 2 == 0 else "half_b"


def _part_rules(names: list[str]) -> dict[str, Callable[[str, str], bool]]:
    from ffcore.data.synthetic import image_index

    rules: dict[str, Callable[[str, str], bool]] = {
        half: (lambda _e, name, half=half: val_half(name) == half) for half in HALVES
    }
    if all(image_index(n) is not None for n in names):
        rules["first96"] = lambda _e, name: image_index(name) < SMALL_VAL_IMAGES
    return rules


def _score_part(gt: Any, pred_dir: Path, keep: Callable[[str, str], bool]) -> dict[str, Any]:
    """AP per subset (fractions) of the predictions in ``pred_dir`` on the images ``keep``
    selects (only those need a prediction file); None per subset when it selects none."""
    from ffcore.data.wider_mat import SUBSETS
    from ffcore.evaluation.wider_ap import evaluate, read_predictions, select_images

    if not any(keep(e, n) for e, names in zip(gt.events, gt.images, strict=True) for n in names):
        return dict.fromkeys(SUBSETS)  # a tiny val set may leave a part empty
    placeholder = [[None] * len(names) for names in gt.images]
    part_gt, _ = select_images(gt, placeholder, keep)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a subset without faces: NaN
        result = evaluate(read_predictions(pred_dir, part_gt), part_gt)
    return result.as_dict()


def val_splits(pred_dir: str | os.PathLike[str], data_root: str | os.PathLike[str]) -> dict:
    """AP (fractions) of the predictions in ``pred_dir`` on each part of the val set:
    ``{"half_a": {...}, "half_b": {...}, "first96": {...}}`` (first96 only for synthetic data)."""
    from ffcore.data.wider_mat import read_ground_truth
    from ffcore.evaluation.inference import ground_truth_dir

    gt = read_ground_truth(ground_truth_dir(data_root))
    names = [n for per_event in gt.images for n in per_event]
    return {
        part: _score_part(gt, Path(pred_dir), keep) for part, keep in _part_rules(names).items()
    }


@dataclass(frozen=True)
class Score:
    """A checkpoint's scores: ``ap`` (``ap_record`` on the whole val set; None when only a part
    was predicted), ``ap_splits`` (part -> AP per subset), the faces per subset (whole set
    only), the wall and CPU seconds of predicting and scoring, and the model's switches."""

    ap: dict[str, Any] | None
    ap_splits: dict[str, dict[str, float | None]]
    num_faces: dict[str, int] | None
    seconds: float
    cpu_seconds: float
    attention_state: tuple[bool, ...]
    dropout_on: bool


def _switches(model: Any) -> tuple[tuple[bool, ...], bool]:
    return tuple(model.attention_state() or ()), bool(getattr(model, "dropout_on", False))


def score_checkpoint(
    checkpoint: str | os.PathLike[str],
    data_root: str | os.PathLike[str],
    pred_dir: str | os.PathLike[str],
    *,
    image_size: int | None = None,
    device: str = "cpu",
) -> Score:
    """Predict every val image of ``data_root`` with ``checkpoint`` into ``pred_dir`` and score
    the whole set and its parts (``val_splits``)."""
    from ffcore.evaluation.inference import evaluate_model
    from ffcore.evaluation.wider_ap import ap_record
    from ffcore.models.checkpoint import load_model

    pred_dir = Path(pred_dir)
    for stale in pred_dir.parent.glob(f".{pred_dir.name}.*.tmp"):  # left by a kill
        shutil.rmtree(stale, ignore_errors=True)
    wall, cpu = time.perf_counter(), time.process_time()
    model, _ = load_model(checkpoint, device)
    evaluation = evaluate_model(model, data_root, pred_dir, image_size=image_size, device=device,
                                progress=False, batch_size=EVAL_BATCH)  # fmt: skip
    splits = val_splits(pred_dir, data_root)
    attention, dropout = _switches(model)
    return Score(
        ap=ap_record(evaluation),
        ap_splits=splits,
        num_faces=dict(evaluation.num_faces),
        seconds=time.perf_counter() - wall,
        cpu_seconds=time.process_time() - cpu,
        attention_state=attention,
        dropout_on=dropout,
    )


def score_part(
    checkpoint: str | os.PathLike[str],
    data_root: str | os.PathLike[str],
    part: str = "half_a",
    *,
    image_size: int | None = None,
    device: str = "cpu",
    work_dir: str | os.PathLike[str] | None = None,
) -> Score:
    """Predict only the val images of ``part`` (``"half_a"``, ``"half_b"`` or, synthetic,
    ``"first96"``) with ``checkpoint`` and score them; the predictions go to a temporary folder
    (under ``work_dir``, default the checkpoint's) that is removed afterwards."""
    from ffcore.data.wider_mat import read_ground_truth
    from ffcore.evaluation.inference import ground_truth_dir, predict_dataset
    from ffcore.models.checkpoint import load_model

    gt = read_ground_truth(ground_truth_dir(data_root))
    rules = _part_rules([n for per_event in gt.images for n in per_event])
    if part not in rules:
        raise ValueError(f"unknown val part {part!r} for {data_root}; parts: {', '.join(rules)}")
    keep = rules[part]
    folder = Path(work_dir) if work_dir is not None else Path(checkpoint).parent
    tmp = folder / f".predictions_{part}.{os.getpid()}.tmp"
    wall, cpu = time.perf_counter(), time.process_time()
    model, _ = load_model(checkpoint, device)
    try:
        predict_dataset(model, data_root, tmp, image_size=image_size, device=device,
                        progress=False, batch_size=EVAL_BATCH, keep=keep)  # fmt: skip
        ap = _score_part(gt, tmp, keep)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    attention, dropout = _switches(model)
    return Score(
        ap=None,
        ap_splits={part: ap},
        num_faces=None,
        seconds=time.perf_counter() - wall,
        cpu_seconds=time.process_time() - cpu,
        attention_state=attention,
        dropout_on=dropout,
    )
