"""Landmark accuracy: the normalised mean error (NME) of the five points.

For every ground-truth face with landmarks, the highest-scoring detection whose box overlaps it at
IoU >= 0.5 (each detection used once, faces taken in order of their best detection's score) is
its match; the face's NME is the mean Euclidean distance of the five predicted points to the true
ones divided by sqrt(w * h) of the ground-truth box. Reported: the mean NME over matched faces and
the fraction of matched faces with NME < 0.1. Faces without a match are counted, not scored.
This is a separate measure beside the AP, which stays the official protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torchvision.ops import box_iou

MATCH_IOU = 0.5
NME_THRESHOLD = 0.1


@dataclass(frozen=True)
class LandmarkResult:
    mean_nme: float  # NaN when no face was matched
    fraction_below: float  # faces with NME < NME_THRESHOLD among the matched ones
    matched: int
    faces: int  # ground-truth faces with landmarks

    def as_dict(self) -> dict[str, float | int | None]:
        def clean(v: float) -> float | None:
            return None if np.isnan(v) else float(v)

        return {
            "nme": clean(self.mean_nme),
            f"fraction_nme_below_{NME_THRESHOLD}": clean(self.fraction_below),
            "matched_faces": self.matched,
            "faces_with_landmarks": self.faces,
        }


def face_nme(pred: np.ndarray, true: np.ndarray, box_xyxy: np.ndarray) -> np.ndarray:
    """NME of each face: pred/true [N, 5, 2] points, box_xyxy [N, 4] ground-truth boxes."""
    wh = np.clip(box_xyxy[:, 2:] - box_xyxy[:, :2], 1e-6, None)
    dist = np.linalg.norm(pred - true, axis=-1).mean(axis=-1)
    return dist / np.sqrt(wh[:, 0] * wh[:, 1])


def match_faces(
    det_boxes: np.ndarray, det_scores: np.ndarray, gt_boxes: np.ndarray, iou: float = MATCH_IOU
) -> np.ndarray:
    """For each ground-truth box [M, 4] xyxy the index of its detection (-1 if none): greedy by
    descending detection score, each detection and face used once, IoU >= ``iou``."""
    match = np.full(len(gt_boxes), -1, dtype=np.int64)
    if len(det_boxes) == 0 or len(gt_boxes) == 0:
        return match
    import torch

    overlaps = box_iou(
        torch.as_tensor(det_boxes, dtype=torch.float64),
        torch.as_tensor(gt_boxes, dtype=torch.float64),
    ).numpy()
    order = np.argsort(-det_scores, kind="stable")
    # only detections that reach ``iou`` with some face can match (most of the 750 cannot)
    for d in order[overlaps[order].max(axis=1) >= iou]:
        candidates = np.where((match < 0) & (overlaps[d] >= iou))[0]
        if len(candidates):
            match[candidates[np.argmax(overlaps[d, candidates])]] = d
    return match


class LandmarkAccumulator:
    """Collects matched faces image by image; ``result()`` gives the NME summary."""

    def __init__(self) -> None:
        self._nme: list[np.ndarray] = []
        self._faces = 0

    def add(
        self,
        det_boxes: np.ndarray,
        det_scores: np.ndarray,
        det_landmarks: np.ndarray,
        gt_boxes: np.ndarray,
        gt_landmarks: np.ndarray,
        gt_valid: np.ndarray,
    ) -> None:
        """One image: detections (xyxy [N, 4], scores [N], points [N, 5, 2]) and ground truth
        (xyxy [M, 4], points [M, 10], valid [M] bool); only faces with landmarks count."""
        keep = np.asarray(gt_valid, dtype=bool)
        gt_boxes, gt_points = gt_boxes[keep], np.asarray(gt_landmarks)[keep].reshape(-1, 5, 2)
        self._faces += len(gt_boxes)
        match = match_faces(det_boxes, det_scores, gt_boxes)
        hit = match >= 0
        if hit.any():
            pred = np.asarray(det_landmarks)[match[hit]].reshape(-1, 5, 2)
            self._nme.append(face_nme(pred, gt_points[hit], gt_boxes[hit]))

    def result(self) -> LandmarkResult:
        nme = np.concatenate(self._nme) if self._nme else np.zeros(0)
        if len(nme) == 0:
            return LandmarkResult(float("nan"), float("nan"), 0, self._faces)
        return LandmarkResult(
            float(nme.mean()), float((nme < NME_THRESHOLD).mean()), len(nme), self._faces
        )
