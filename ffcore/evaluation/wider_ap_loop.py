"""A straightforward loop implementation of the official WIDER FACE evaluation.

It follows the MATLAB eval_tools line by line (per image, per detection, per threshold) and
shares no code with the vectorised ``ffcore.evaluation.wider_ap``; the tests check that both give the same
AP and PR curves, and ``benchmarks/eval_speed.py`` times one against the other. It lives in the
package (not in tests/) so that the test and the benchmark import the same reference.

``sort_detections=False`` reproduces the one behaviour of the common Python port that changes
the AP: detections are matched in file order and each threshold cuts the list at the last
detection that passes it.
"""

from __future__ import annotations

import numpy as np

from ffcore.data.wider_mat import SUBSETS, GroundTruth


def _boxoverlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of the x1y1x2y2 rows of ``a`` with the single box ``b``, +1-pixel widths."""
    x1 = np.maximum(a[:, 0], b[0])
    y1 = np.maximum(a[:, 1], b[1])
    x2 = np.minimum(a[:, 2], b[2])
    y2 = np.minimum(a[:, 3], b[3])
    w = x2 - x1 + 1
    h = y2 - y1 + 1
    inter = w * h
    aarea = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    barea = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        o = inter / (aarea + barea - inter)
    o[w <= 0] = 0
    o[h <= 0] = 0
    return o


def _matlab_max(values: np.ndarray) -> tuple[float, int]:
    """MATLAB's ``[m, i] = max(v)``: NaN skipped, first index on ties, (NaN, 0) if all NaN."""
    if np.isnan(values).all():
        return float("nan"), 0
    idx = int(np.nanargmax(values))
    return float(values[idx]), idx


def _image_evaluation(
    pred: np.ndarray, gt: np.ndarray, kept: np.ndarray, iou_thresh: float
) -> tuple[np.ndarray, np.ndarray]:
    pred_recall = np.zeros(len(pred))
    recall_list = np.zeros(len(gt))
    proposal_list = np.ones(len(pred))
    p = pred.copy()
    p[:, 2] = p[:, 0] + p[:, 2]
    p[:, 3] = p[:, 1] + p[:, 3]
    g = gt.copy()
    g[:, 2] = g[:, 0] + g[:, 2]
    g[:, 3] = g[:, 1] + g[:, 3]
    for h in range(len(p)):
        max_overlap, idx = _matlab_max(_boxoverlap(g, p[h, :4]))
        if max_overlap >= iou_thresh:
            if not kept[idx]:
                recall_list[idx] = -1
                proposal_list[h] = -1
            elif recall_list[idx] == 0:
                recall_list[idx] = 1
        pred_recall[h] = np.sum(recall_list == 1)
    return pred_recall, proposal_list


def _image_pr_info(
    thresh_num: int, pred: np.ndarray, proposal_list: np.ndarray, pred_recall: np.ndarray
) -> np.ndarray:
    info = np.zeros((thresh_num, 2))
    for t in range(1, thresh_num + 1):
        thresh = 1 - t / thresh_num
        passing = np.flatnonzero(pred[:, 4] >= thresh)
        if len(passing) == 0:
            continue
        r_index = passing[-1]
        info[t - 1, 0] = np.sum(proposal_list[: r_index + 1] == 1)
        info[t - 1, 1] = pred_recall[r_index]
    return info


def _vocap(rec: np.ndarray, prec: np.ndarray) -> float:
    mrec = [0.0, *rec.tolist(), 1.0]
    mpre = [0.0, *prec.tolist(), 0.0]
    for i in range(len(mpre) - 2, -1, -1):
        if np.isnan(mpre[i]) or mpre[i + 1] > mpre[i]:  # MATLAB max(a, b) skips NaN
            mpre[i] = mpre[i + 1]
    ap = 0.0
    for i in range(1, len(mrec)):
        if mrec[i] != mrec[i - 1]:
            ap += (mrec[i] - mrec[i - 1]) * mpre[i]
    return ap


def reference_evaluate(
    preds: list[list[np.ndarray]],
    gt: GroundTruth,
    subsets: tuple[str, ...] = SUBSETS,
    *,
    sort_detections: bool = True,
    iou_thresh: float = 0.5,
    thresh_num: int = 1000,
) -> dict[str, tuple[float, np.ndarray, np.ndarray]]:
    """subset -> (AP, precision [thresh_num], recall [thresh_num]), by plain loops."""
    # read_pred: stable descending sort of each image's detections
    sorted_preds = []
    for per_event in preds:
        out = []
        for p in per_event:
            p = np.array(p, dtype=np.float64).reshape(-1, 5)  # a copy: normalised in place below
            if sort_detections:
                p = p[np.argsort(-p[:, 4], kind="stable")]
            out.append(p)
        sorted_preds.append(out)
    # norm_score
    max_score = float(np.finfo(np.float32).tiny)
    min_score = float(np.finfo(np.float32).max)
    for per_event in sorted_preds:
        for p in per_event:
            if len(p):
                max_score = max(max_score, float(p[:, 4].max()))
                min_score = min(min_score, float(p[:, 4].min()))
    for per_event in sorted_preds:
        for p in per_event:
            with np.errstate(divide="ignore", invalid="ignore"):
                p[:, 4] = (p[:, 4] - min_score) / (max_score - min_score)
    # evaluation, per subset
    results = {}
    for subset in subsets:
        org_pr = np.zeros((thresh_num, 2))
        count_face = 0
        for e in range(len(gt.events)):
            for j in range(len(gt.images[e])):
                gt_bbx = gt.boxes[e][j]
                pred_info = sorted_preds[e][j]
                keep_index = gt.keep[subset][e][j]
                count_face += len(keep_index)
                if len(gt_bbx) == 0 or len(pred_info) == 0:
                    continue
                kept = np.zeros(len(gt_bbx), dtype=bool)
                kept[np.asarray(keep_index, dtype=np.int64) - 1] = True
                pred_recall, proposal_list = _image_evaluation(pred_info, gt_bbx, kept, iou_thresh)
                org_pr += _image_pr_info(thresh_num, pred_info, proposal_list, pred_recall)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = org_pr[:, 1] / org_pr[:, 0]
        recall = org_pr[:, 1] / count_face
        results[subset] = (_vocap(recall, precision), precision, recall)
    return results
