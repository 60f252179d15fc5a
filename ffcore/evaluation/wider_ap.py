"""WIDER FACE average precision (easy / medium / hard), identical to the official MATLAB eval_tools.

The official protocol (``wider_eval.m`` with ``read_pred``, ``norm_score``, ``evaluation``,
``image_evaluation``, ``image_pr_info``, ``dataset_pr_info``, ``boxoverlap``, ``VOCap``):

1. each image's detections are sorted by score, descending; MATLAB's ``sort`` is stable, so tied
   detections keep their file order (we use ``kind="stable"``);
2. scores are normalised by the global min and max over all detections of all images, with the
   initial values ``realmin('single')`` / ``realmax('single')`` of ``norm_score`` (if every score
   is equal, MATLAB divides 0 by 0: every score is NaN and nothing passes a threshold);
3. the IoU follows ``boxoverlap``: ``x2 = x + w`` and widths ``x2 - x1 + 1`` (the +1-pixel
   convention), 0 where the intersection is empty; NaN overlaps (0/0 on degenerate boxes) are
   skipped by the max, like MATLAB's ``max``;
4. each detection takes its best-IoU face among *all* faces of the image (first one on ties); at
   IoU >= 0.5 to a face outside the subset's keep-list the detection is ignored (neither TP nor
   FP), to a kept face not yet recalled it is a TP, to a kept face already recalled it is an FP;
   below 0.5 it is an FP;
5. images without ground-truth boxes or without detections are skipped, but the kept faces of
   every image count in the recall denominator;
6. for 1000 thresholds ``1 - t/1000`` (t = 1..1000) precision = TP / (TP + FP) and recall = TP /
   (kept faces) are summed over images; AP is the VOC all-point interpolated area (``VOCap``).

**Sorting and the common Python port.** The widely copied Python port (``WiderFace-Evaluation``,
also shipped with most RetinaFace repositories) does not sort an image's detections: it matches
them in file order and, for each threshold, cuts the list at the *last* detection whose score
passes, so detections of lower score that appear earlier in the file are counted too. Its AP
therefore depends on the order of the lines in the prediction files and only agrees with the
official one when every file is sorted by descending score (RetinaFace's own writer happens to do
that). Here the detections are sorted first, so the AP depends only on the set of detections; the
stable sort additionally makes the per-detection TP/FP labels (``label_detections``) those of
MATLAB when scores tie.

Implementation: detections and faces of all images are concatenated, IoUs are computed for all
(detection, face of the same image) pairs in chunks, the best face per detection by segmented
reductions, the first detection recalling each face by ``np.unique``, and the per-threshold sums
by a histogram over thresholds. ``ffcore.evaluation.wider_ap_loop`` is the straightforward per-image,
per-detection, per-threshold loop that the tests and ``benchmarks/eval_speed.py`` compare with.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ffcore.atomic import write_json, write_text
from ffcore.data.wider_mat import SUBSETS, GroundTruth, read_ground_truth

THRESH_NUM = 1000
IOU_THRESHOLD = 0.5
PAIR_CHUNK = 1 << 21  # (detection, face) pairs per vectorised chunk: bounds memory to ~100 MB

# Per event, per image: float64 [n, 5] rows ``x y w h score`` in file order.
Predictions = list[list[np.ndarray]]


def thresholds() -> np.ndarray:
    """The 1000 score thresholds of the official code, descending: ``1 - t/1000``, t = 1..1000."""
    return 1.0 - np.arange(1, THRESH_NUM + 1, dtype=np.float64) / THRESH_NUM


@dataclass(frozen=True)
class WiderResult:
    """AP per subset (fractions in [0, 1]; NaN for a subset that keeps no face) and the PR
    curves behind them.

    ``pr[subset] = (precision, recall)``, each float64 [1000], one point per threshold of
    ``thresholds()`` (descending); precision is NaN where no detection passes the threshold.
    """

    ap: dict[str, float]
    pr: dict[str, tuple[np.ndarray, np.ndarray]]
    num_faces: dict[str, int]
    num_detections: int
    landmarks: Any = None  # a LandmarkResult where the evaluation set has landmarks (not AP)

    def as_dict(self) -> dict[str, float | None]:
        """``{"easy": .., "medium": .., "hard": ..}`` (what ``--json`` prints); None (JSON null)
        for a subset that keeps no face."""
        return {s: None if np.isnan(v) else float(v) for s, v in self.ap.items()}

    def table(self) -> str:
        """A small text table of AP (percent) and kept-face counts."""
        lines = [f"{'subset':<8} {'AP':>7} {'faces':>7}"]
        lines += [
            f"{s:<8} {'n/a' if np.isnan(v) else f'{100 * v:.2f}%':>7} {self.num_faces[s]:>7d}"
            for s, v in self.ap.items()
        ]
        lines.append(f"detections: {self.num_detections}")
        if self.landmarks is not None and self.landmarks.matched:
            lm = self.landmarks
            lines.append(
                f"landmark NME {lm.mean_nme:.4f} over {lm.matched}/{lm.faces} matched faces; "
                f"{100 * lm.fraction_below:.1f}% under 0.1"
            )
        return "\n".join(lines)


# -- prediction files ------------------------------------------------------------------------
def _parse_rows(lines: list[str], first_line: int, path: Path) -> np.ndarray:
    parts = [line.split() for line in lines]
    for k, p in enumerate(parts):
        if len(p) != 5:
            raise ValueError(
                f"{path}:{first_line + k}: expected 5 numbers 'x y w h score', got {lines[k]!r}"
            )
    try:
        rows = np.array(parts, dtype=np.float64).reshape(len(parts), 5)
    except ValueError:
        for k, p in enumerate(parts):  # find the offending line
            try:
                [float(v) for v in p]
            except ValueError:
                raise ValueError(f"{path}:{first_line + k}: not a number in {lines[k]!r}") from None
        raise
    bad = ~np.isfinite(rows).all(axis=1)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{path}:{first_line + k}: non-finite value in {lines[k]!r}")
    return rows


def read_prediction_file(path: str | Path) -> np.ndarray:
    """One prediction file -> float64 [n, 5] ``x y w h score`` in file order.

    Layout: image name line, detection count line, then ``count`` lines ``x y w h score``
    (trailing blank lines allowed). Raises ValueError naming the file and line.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path}: not a prediction file: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) < 2:
        raise ValueError(f"{path}: expected an image-name line and a detection-count line")
    try:
        count = int(lines[1].strip())
    except ValueError:
        raise ValueError(f"{path}:2: expected the detection count, got {lines[1]!r}") from None
    if count < 0:
        raise ValueError(f"{path}:2: negative detection count {count}")
    body = lines[2:]
    if len(body) != count:
        raise ValueError(
            f"{path}: the count line says {count} detections, the file has {len(body)}"
        )
    if count == 0:
        return np.zeros((0, 5), dtype=np.float64)
    return _parse_rows(body, 3, path)


def read_predictions(pred_dir: str | Path, gt: GroundTruth) -> Predictions:
    """Read ``<pred_dir>/<event>/<image>.txt`` for every image of ``gt`` (extra files ignored).

    Raises FileNotFoundError listing the missing files when the folder misses images.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"{pred_dir}: prediction folder not found")
    paths = [
        [pred_dir / event / f"{name}.txt" for name in names]
        for event, names in zip(gt.events, gt.images, strict=True)
    ]
    missing = [
        f"{p.parent.name}/{p.name}" for per_event in paths for p in per_event if not p.is_file()
    ]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise FileNotFoundError(
            f"{pred_dir}: {len(missing)} of {gt.num_images} prediction files missing ({shown})"
        )
    return [[read_prediction_file(p) for p in per_event] for per_event in paths]


_ROW = "{:.3f} {:.3f} {:.3f} {:.3f} {:.8g}\n"  # x y w h score (a prediction file's row)


def write_prediction_file(path: str | Path, image_name: str, dets: np.ndarray) -> None:
    """Write ``dets`` (float [n, 5] ``x y w h score``) in the official layout."""
    dets = np.asarray(dets, dtype=np.float64).reshape(-1, 5)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "".join(map(_ROW.format, *dets.T.tolist())) if len(dets) else ""
    write_text(path, f"{image_name}\n{len(dets)}\n{rows}")


def write_predictions(pred_dir: str | Path, gt: GroundTruth, preds: Predictions) -> None:
    """Write every image of ``preds`` (same event/image structure as ``gt``) under ``pred_dir``."""
    _check_structure(preds, gt)
    for event, names, per_event in zip(gt.events, gt.images, preds, strict=True):
        for name, dets in zip(names, per_event, strict=True):
            write_prediction_file(Path(pred_dir) / event / f"{name}.txt", name, dets)


# -- the evaluation --------------------------------------------------------------------------
def _check_structure(preds: Predictions, gt: GroundTruth) -> None:
    if len(preds) != len(gt.events):
        raise ValueError(f"predictions have {len(preds)} events, the ground truth {len(gt.events)}")
    for event, names, per_event in zip(gt.events, gt.images, preds, strict=True):
        if len(per_event) != len(names):
            raise ValueError(
                f"event {event!r}: predictions for {len(per_event)} images, ground truth has "
                f"{len(names)}"
            )


def _xyxy(xywh: np.ndarray) -> np.ndarray:
    """``x y w h`` -> ``x1 y1 x2 y2`` with x2 = x + w (the official convention)."""
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:4]], axis=1)


def iou_plus_one(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise IoU of x1y1x2y2 rows ``a`` (faces) and ``b`` (detections), as ``boxoverlap``.

    Widths are ``x2 - x1 + 1``; 0 where the intersection is empty; may be NaN/inf on degenerate
    boxes exactly where MATLAB's is.
    """
    w = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + 1
    h = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + 1
    inter = w * h
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        o = inter / (area_a + area_b - inter)
    o[(w <= 0) | (h <= 0)] = 0.0
    return o


def _best_faces(
    det_xyxy: np.ndarray,
    det_img: np.ndarray,
    gt_xyxy: np.ndarray,
    gt_start: np.ndarray,
    gt_count: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """For every detection: (max IoU over the faces of its image, global index of the first face
    reaching it); (-inf, -1) for images without faces."""
    n = len(det_img)
    best_iou = np.full(n, -np.inf)
    best_gt = np.full(n, -1, dtype=np.int64)
    npairs = gt_count[det_img]
    dets = np.flatnonzero(npairs > 0)
    cum = np.cumsum(npairs[dets])
    lo = 0
    while lo < len(dets):
        done = cum[lo - 1] if lo else 0
        hi = max(int(np.searchsorted(cum, done + PAIR_CHUNK, side="right")), lo + 1)
        d = dets[lo:hi]
        reps = npairs[d]
        seg = np.cumsum(reps) - reps  # first pair of each detection
        owner = np.repeat(np.arange(len(d)), reps)
        local = np.arange(int(reps.sum())) - seg[owner]
        face = gt_start[det_img[d]][owner] + local
        iou = iou_plus_one(gt_xyxy[face], det_xyxy[d][owner])
        iou[np.isnan(iou)] = -np.inf  # MATLAB's max skips NaN
        top = np.maximum.reduceat(iou, seg)
        first = np.minimum.reduceat(np.where(iou == top[owner], local, np.iinfo(np.int64).max), seg)
        best_iou[d] = top
        best_gt[d] = gt_start[det_img[d]] + first
        lo = hi
    return best_iou, best_gt


def normalise_scores(scores: np.ndarray) -> np.ndarray:
    """``norm_score``: (s - min) / (max - min) over all detections, with MATLAB's initial values
    ``realmin('single')`` for the max and ``realmax('single')`` for the min."""
    if scores.size == 0:
        return scores.astype(np.float64)
    hi = max(float(np.finfo(np.float32).tiny), float(scores.max()))
    lo = min(float(np.finfo(np.float32).max), float(scores.min()))
    if hi == lo:
        warnings.warn(
            "all detection scores are equal: the official normalisation divides 0 by 0, so no "
            "detection passes any threshold and AP is 0",
            RuntimeWarning,
            stacklevel=2,
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        return (scores - lo) / (hi - lo)


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC all-point interpolated AP (``VOCap``); NaN precision is skipped like MATLAB's max."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.fmax.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    terms = (mrec[i] - mrec[i - 1]) * mpre[i]
    return float(np.cumsum(terms)[-1]) if terms.size else 0.0  # sequential sum, like a loop


@dataclass(frozen=True)
class _Flat:
    """All images concatenated (image k = k-th image in event order)."""

    det_img: np.ndarray  # [N] image of each detection, detections sorted within each image
    det_score: np.ndarray  # [N] normalised score
    best_iou: np.ndarray  # [N]
    best_gt: np.ndarray  # [N] global face index or -1
    gt_start: np.ndarray  # [n_images]
    gt_count: np.ndarray  # [n_images]


def _flatten(preds: Predictions, gt: GroundTruth) -> _Flat:
    _check_structure(preds, gt)
    flat_preds = [np.asarray(p, dtype=np.float64).reshape(-1, 5) for ev in preds for p in ev]
    flat_boxes = [b for ev in gt.boxes for b in ev]
    det_count = np.array([len(p) for p in flat_preds], dtype=np.int64)
    gt_count = np.array([len(b) for b in flat_boxes], dtype=np.int64)
    gt_start = np.cumsum(gt_count) - gt_count
    dets = np.concatenate(flat_preds) if flat_preds else np.zeros((0, 5))
    if not np.isfinite(dets).all():
        raise ValueError("predictions contain NaN or infinite values")
    det_img = np.repeat(np.arange(len(flat_preds)), det_count)
    order = np.argsort(-dets[:, 4], kind="stable")  # descending score, ties in file order
    order = order[np.argsort(det_img[order], kind="stable")]  # then grouped by image
    dets, det_img = dets[order], det_img[order]
    gt_xywh = np.concatenate(flat_boxes) if flat_boxes else np.zeros((0, 4))
    best_iou, best_gt = _best_faces(_xyxy(dets), det_img, _xyxy(gt_xywh), gt_start, gt_count)
    return _Flat(det_img, normalise_scores(dets[:, 4]), best_iou, best_gt, gt_start, gt_count)


def _keep_mask(gt: GroundTruth, subset: str, gt_start: np.ndarray, total: int) -> np.ndarray:
    mask = np.zeros(total, dtype=bool)
    flat_keep = [k for ev in gt.keep[subset] for k in ev]
    idx = [
        start + np.asarray(k, dtype=np.int64) - 1
        for start, k in zip(gt_start, flat_keep, strict=True)
    ]
    if idx:
        mask[np.concatenate(idx)] = True
    return mask


def _labels(flat: _Flat, kept: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per detection (in sorted order): TP, proposal (TP or FP) and ignored flags."""
    valid = flat.gt_count[flat.det_img] > 0
    matched = valid & (flat.best_iou >= IOU_THRESHOLD)
    on_kept = np.zeros(len(valid), dtype=bool)
    on_kept[matched] = kept[flat.best_gt[matched]]
    ignored = matched & ~on_kept
    tp = np.zeros(len(valid), dtype=bool)
    cand = np.flatnonzero(on_kept)
    _, first = np.unique(flat.best_gt[cand], return_index=True)  # first detection per face
    tp[cand[first]] = True
    return tp, valid & ~ignored, ignored


def _per_threshold(flag: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Number of flagged detections with score >= each threshold (thresholds() order)."""
    asc = thresholds()[::-1]
    passed = np.searchsorted(asc, score, side="right")  # thresholds <= score
    passed[np.isnan(score)] = 0
    first = THRESH_NUM - passed  # index of the highest threshold passed (THRESH_NUM: none)
    hist = np.bincount(first[flag], minlength=THRESH_NUM + 1)[:THRESH_NUM]
    return np.cumsum(hist).astype(np.float64)


def evaluate(
    preds: Predictions, gt: GroundTruth, subsets: tuple[str, ...] = SUBSETS
) -> WiderResult:
    """WIDER FACE AP and PR curves of ``preds`` (per event, per image [n, 5] x y w h score)."""
    flat = _flatten(preds, gt)
    total_faces = int(flat.gt_count.sum())
    ap: dict[str, float] = {}
    pr: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    num_faces: dict[str, int] = {}
    for subset in subsets:
        if subset not in gt.keep:
            raise ValueError(f"unknown subset {subset!r}; the ground truth has {sorted(gt.keep)}")
        kept = _keep_mask(gt, subset, flat.gt_start, total_faces)
        count = int(sum(len(k) for ev in gt.keep[subset] for k in ev))
        if count == 0:
            warnings.warn(
                f"subset {subset!r} keeps no face: its AP is undefined (NaN)",
                RuntimeWarning,
                stacklevel=2,
            )
        tp, proposal, _ = _labels(flat, kept)
        tp_t = _per_threshold(tp, flat.det_score)
        prop_t = _per_threshold(proposal, flat.det_score)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = tp_t / prop_t
            recall = tp_t / count if count else np.full(THRESH_NUM, np.nan)
        ap[subset] = voc_ap(recall, precision) if count else float("nan")
        pr[subset] = (precision, recall)
        num_faces[subset] = count
    return WiderResult(ap=ap, pr=pr, num_faces=num_faces, num_detections=len(flat.det_img))


def select_images(
    gt: GroundTruth, preds: Predictions, keep: Callable[[str, str], bool]
) -> tuple[GroundTruth, Predictions]:
    """The ground truth and predictions of the images for which ``keep(event, name)`` holds
    (events left empty are dropped): a smaller val set scored by the same protocol, e.g. two
    disjoint halves to measure how much AP depends on which images were drawn."""
    _check_structure(preds, gt)
    events, images, boxes, kept_preds = [], [], [], []
    keep_sets: dict[str, list[list[np.ndarray]]] = {s: [] for s in gt.keep}
    for e, event in enumerate(gt.events):
        idx = [i for i, name in enumerate(gt.images[e]) if keep(event, name)]
        if not idx:
            continue
        events.append(event)
        images.append([gt.images[e][i] for i in idx])
        boxes.append([gt.boxes[e][i] for i in idx])
        kept_preds.append([preds[e][i] for i in idx])
        for s in gt.keep:
            keep_sets[s].append([gt.keep[s][e][i] for i in idx])
    if not events:
        raise ValueError("select_images: no image of the ground truth was selected")
    return GroundTruth(events, images, boxes, keep_sets), kept_preds


def evaluate_folder(pred_dir: str | Path, gt_dir: str | Path) -> WiderResult:
    """Score a folder of predictions in the official layout against the ``.mat`` files of
    ``gt_dir``."""
    gt = read_ground_truth(gt_dir)
    return evaluate(read_predictions(pred_dir, gt), gt)


def ap_record(result: WiderResult, protocol: str | None = None) -> dict[str, Any]:
    """``{"easy": .., "medium": .., "hard": ..}`` (AP fractions), plus ``"protocol"`` (how the
    predictions were made, e.g. ``"original scale"``; ``DetectParams.protocol``) when given and
    ``"landmarks"`` (NME summary) where the evaluation set has landmarks: what ap.json holds and
    --json prints."""
    record: dict[str, Any] = dict(result.as_dict())
    if protocol is not None:
        record["protocol"] = protocol
    if result.landmarks is not None:
        record["landmarks"] = result.landmarks.as_dict()
    return record


def save_ap_json(result: WiderResult, path: str | Path, protocol: str | None = None) -> Path:
    """Write ``ap_record(result, protocol)`` to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json(path, ap_record(result, protocol))


# -- per-image outcomes (failure galleries) ----------------------------------------------------
@dataclass(frozen=True)
class ImageOutcome:
    """Official labels of one image's detections (in the given order) and faces.

    ``tp``/``fp``/``ignored``: bool [n_dets]; ``missed``: bool [n_faces], kept faces that no
    detection recalls; ``kept``: bool [n_faces].
    """

    tp: np.ndarray
    fp: np.ndarray
    ignored: np.ndarray
    missed: np.ndarray
    kept: np.ndarray


def label_detections(dets: np.ndarray, boxes: np.ndarray, keep: np.ndarray) -> ImageOutcome:
    """Label one image's detections (float [n, 5] x y w h score, any order) as the official code
    does, against faces ``boxes`` [m, 4] x y w h with the 1-based subset ``keep`` indices.
    Use it on the detections above an operating threshold to draw a failure gallery. As in the
    official code, detections of an image without faces are neither TP nor FP."""
    dets = np.asarray(dets, dtype=np.float64).reshape(-1, 5)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    kept = np.zeros(len(boxes), dtype=bool)
    kept[np.asarray(keep, dtype=np.int64) - 1] = True
    order = np.argsort(-dets[:, 4], kind="stable")
    img = np.zeros(len(dets), dtype=np.int64)
    zero = np.zeros(1, dtype=np.int64)
    best_iou, best_gt = _best_faces(
        _xyxy(dets[order]), img, _xyxy(boxes), zero, np.array([len(boxes)])
    )
    flat = _Flat(img, dets[order, 4], best_iou, best_gt, zero, np.array([len(boxes)]))
    tp_s, prop_s, ign_s = _labels(flat, kept)
    tp, fp, ignored = (np.zeros(len(dets), dtype=bool) for _ in range(3))
    tp[order], fp[order], ignored[order] = tp_s, prop_s & ~tp_s, ign_s
    recalled = np.zeros(len(boxes), dtype=bool)
    recalled[best_gt[tp_s]] = True  # best_gt is in score order, like tp_s
    return ImageOutcome(tp=tp, fp=fp, ignored=ignored, missed=kept & ~recalled, kept=kept)
