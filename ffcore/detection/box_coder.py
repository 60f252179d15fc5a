"""Encode / decode of boxes and landmarks against priors, and ground-truth matching.

Boxes are normalised x1y1x2y2, priors normalised (cx, cy, w, h) (``ffcore.detection.priors``). The
encoding is RetinaFace's (SSD's) with variances (0.1, 0.2):

    t_xy = (c_gt - c_prior) / (v0 * wh_prior)      t_wh = log(wh_gt / wh_prior) / v1
    t_landmark = (p_gt - c_prior) / (v0 * wh_prior)   for each of the five points
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torchvision.ops import box_convert, box_iou

VARIANCES: tuple[float, float] = (0.1, 0.2)
IOU_THRESHOLD = 0.35
# A ground truth is forced onto its best prior only if that prior overlaps it at least this much
# (RetinaFace's layers/box_utils.py ``match``: ``valid_gt_idx = best_prior_overlap >= 0.2``).
# A face too small (or too oddly shaped) for every prior is left to the IoU rule, which in
# practice leaves it unmatched: the net is not taught to fire on a prior that barely covers it.
FORCE_MATCH_MIN_IOU = 0.2
_MIN_WH = 1e-6  # keeps log() finite for a degenerate (zero-width) box


def prior_corners(priors: torch.Tensor) -> torch.Tensor:
    """[P, 4] (cx, cy, w, h) -> [P, 4] x1y1x2y2."""
    return box_convert(priors, "cxcywh", "xyxy")


def encode_boxes(
    matched: torch.Tensor, priors: torch.Tensor, variances: tuple[float, float] = VARIANCES
) -> torch.Tensor:
    """matched [..., P, 4] x1y1x2y2 -> regression targets [..., P, 4]."""
    centre = (matched[..., :2] + matched[..., 2:]) / 2
    wh = (matched[..., 2:] - matched[..., :2]).clamp(min=_MIN_WH)
    t_xy = (centre - priors[:, :2]) / (variances[0] * priors[:, 2:])
    t_wh = torch.log(wh / priors[:, 2:]) / variances[1]
    return torch.cat([t_xy, t_wh], dim=-1)


def decode_boxes(
    loc: torch.Tensor, priors: torch.Tensor, variances: tuple[float, float] = VARIANCES
) -> torch.Tensor:
    """Regression outputs [..., P, 4] -> boxes [..., P, 4] normalised x1y1x2y2."""
    centre = priors[:, :2] + loc[..., :2] * variances[0] * priors[:, 2:]
    wh = priors[:, 2:] * torch.exp(loc[..., 2:] * variances[1])
    return torch.cat([centre - wh / 2, centre + wh / 2], dim=-1)


def encode_landmarks(
    matched: torch.Tensor, priors: torch.Tensor, variances: tuple[float, float] = VARIANCES
) -> torch.Tensor:
    """matched [..., P, 10] (x0, y0, ..., x4, y4) normalised -> targets [..., P, 10]."""
    pts = matched.reshape(*matched.shape[:-1], 5, 2)
    t = (pts - priors[:, None, :2]) / (variances[0] * priors[:, None, 2:])
    return t.reshape(matched.shape)


def decode_landmarks(
    pre: torch.Tensor, priors: torch.Tensor, variances: tuple[float, float] = VARIANCES
) -> torch.Tensor:
    """Landmark outputs [..., P, 10] -> points [..., P, 10] normalised (x0, y0, ..., x4, y4)."""
    t = pre.reshape(*pre.shape[:-1], 5, 2)
    pts = priors[:, None, :2] + t * variances[0] * priors[:, None, 2:]
    return pts.reshape(pre.shape)


class Match(NamedTuple):
    """Per-prior training targets of one image (P priors)."""

    loc: torch.Tensor  # [P, 4] encoded box targets (meaningful where labels == 1)
    landmarks: torch.Tensor  # [P, 10] encoded landmark targets (meaningful where landmark_valid)
    labels: torch.Tensor  # [P] int64: 1 face, 0 background
    landmark_valid: torch.Tensor  # [P] bool: positive and its face has landmarks
    gt_index: torch.Tensor  # [P] int64: index of the matched ground truth (-1 if background)
    iou: torch.Tensor  # [P] IoU with the matched ground truth


def match(
    gt_boxes: torch.Tensor,
    gt_landmarks: torch.Tensor,
    landmark_valid: torch.Tensor,
    priors: torch.Tensor,
    iou_threshold: float = IOU_THRESHOLD,
    variances: tuple[float, float] = VARIANCES,
    force_min_iou: float = FORCE_MATCH_MIN_IOU,
) -> Match:
    """Assign each prior to the ground truth it overlaps most; IoU >= threshold is a face.

    Every ground truth whose best prior overlaps it with IoU >= ``force_min_iou`` additionally
    keeps that prior (as a positive) whatever the threshold; a ground truth below it (a face
    far smaller than every prior) is not forced, as in RetinaFace. gt_boxes [G, 4] normalised
    x1y1x2y2, gt_landmarks [G, 10], landmark_valid [G] bool, priors [P, 4] (cx, cy, w, h).
    """
    num_priors = priors.shape[0]
    device = priors.device
    if gt_boxes.numel() == 0:
        return Match(
            loc=torch.zeros(num_priors, 4, device=device),
            landmarks=torch.zeros(num_priors, 10, device=device),
            labels=torch.zeros(num_priors, dtype=torch.int64, device=device),
            landmark_valid=torch.zeros(num_priors, dtype=torch.bool, device=device),
            gt_index=torch.full((num_priors,), -1, dtype=torch.int64, device=device),
            iou=torch.zeros(num_priors, device=device),
        )
    overlaps = box_iou(gt_boxes, prior_corners(priors))  # [G, P]
    best_prior_iou, best_prior = overlaps.max(dim=1)  # [G]
    best_iou, best_gt = overlaps.max(dim=0)  # [P]
    # Force each ground truth that overlaps its best prior enough onto that prior (the later one
    # wins a shared prior, as in RetinaFace), and make it count as positive whatever its IoU.
    # scatter_reduce("amax") makes the "later one wins" rule deterministic on every device; a
    # ground truth below force_min_iou scatters -1, which never wins.
    gt_ids = torch.arange(gt_boxes.shape[0], device=device)
    gt_ids = torch.where(best_prior_iou >= force_min_iou, gt_ids, torch.full_like(gt_ids, -1))
    owner = torch.full((num_priors,), -1, dtype=torch.int64, device=device)
    owner.scatter_reduce_(0, best_prior, gt_ids, "amax")
    forced = owner >= 0
    best_gt = torch.where(forced, owner, best_gt)
    iou = overlaps.gather(0, best_gt[None]).squeeze(0)
    positive = forced | (best_iou >= iou_threshold)
    matched_boxes = gt_boxes[best_gt]
    return Match(
        loc=encode_boxes(matched_boxes, priors, variances),
        landmarks=encode_landmarks(gt_landmarks[best_gt], priors, variances),
        labels=positive.to(torch.int64),
        landmark_valid=positive & landmark_valid.to(torch.bool)[best_gt],
        gt_index=torch.where(positive, best_gt, torch.full_like(best_gt, -1)),
        iou=iou,
    )
