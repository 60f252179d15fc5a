"""MultiBox loss of RetinaFace: box and landmark regression on matched priors, classification
with hard-negative mining.

    box       smooth-L1 on the encoded boxes of positive priors
    class     cross-entropy on positives plus the hardest negatives (``neg_pos_ratio`` per positive)
    landmark  smooth-L1 on the encoded landmarks of positives whose face has landmarks
    total     loc_weight * box + cls_weight * class + landmark_weight * landmark

``box`` and ``class`` are divided by the number of positives in the batch, ``landmark`` by the
number of positives with landmarks (RetinaFace's normalisation); both at least 1, so a batch
without faces gives finite zeros.

Weights (mixup): a target may carry ``"weights"`` [N], one per face; each positive prior's three
terms are multiplied by the weight of the face it matched. ``image_weights`` [B] multiply every
term of an image (its negatives included).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ffcore.detection.box_coder import IOU_THRESHOLD, VARIANCES, match
from ffcore.schedule import Phase

Target = dict[str, torch.Tensor]
Predictions = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
LOSS_TERMS: tuple[str, ...] = ("box", "class", "landmark", "total")


class BatchMatch(NamedTuple):
    loc: torch.Tensor  # [B, P, 4]
    landmarks: torch.Tensor  # [B, P, 10]
    labels: torch.Tensor  # [B, P] int64
    landmark_valid: torch.Tensor  # [B, P] bool
    weights: torch.Tensor  # [B, P] weight of the matched face (1 for background)


def match_batch(
    targets: list[Target],
    priors: torch.Tensor,
    iou_threshold: float = IOU_THRESHOLD,
    variances: tuple[float, float] = VARIANCES,
) -> BatchMatch:
    """Match every image's faces to the priors and stack the per-prior targets."""
    parts = []
    for t in targets:
        boxes = t["boxes"].to(priors.device, torch.float32)
        m = match(
            boxes,
            t["landmarks"].to(priors.device, torch.float32),
            t["landmark_valid"].to(priors.device),
            priors,
            iou_threshold,
            variances,
        )
        face_w = t.get("weights")
        if face_w is None or face_w.numel() == 0:  # no face (mixup of two faceless images too)
            w = torch.ones(priors.shape[0], device=priors.device)
        else:
            face_w = face_w.to(priors.device, torch.float32)
            w = torch.where(m.gt_index >= 0, face_w[m.gt_index.clamp(min=0)], 1.0)
        parts.append((m.loc, m.landmarks, m.labels, m.landmark_valid, w))
    return BatchMatch(*(torch.stack(x) for x in zip(*parts, strict=True)))


def hard_negatives(per_prior_ce: torch.Tensor, labels: torch.Tensor, ratio: int) -> torch.Tensor:
    """[B, P] mask of the ``ratio * positives`` background priors with the largest loss per
    image (at most P - 1; none in an image without positives)."""
    ce = per_prior_ce.detach().masked_fill(labels > 0, float("-inf"))
    order = ce.argsort(dim=1, descending=True, stable=True)
    rank = order.argsort(dim=1, stable=True)
    num_neg = (ratio * (labels > 0).sum(dim=1, keepdim=True)).clamp(max=labels.shape[1] - 1)
    return (rank < num_neg) & (labels == 0)


class MultiBoxLoss(nn.Module):
    def __init__(
        self,
        loc_weight: float = 2.0,
        cls_weight: float = 1.0,
        landmark_weight: float = 0.5,
        neg_pos_ratio: int = 7,
        iou_threshold: float = IOU_THRESHOLD,
        variances: tuple[float, float] = VARIANCES,
    ) -> None:
        super().__init__()
        self.loc_weight = loc_weight
        self.cls_weight = cls_weight
        self.landmark_weight = landmark_weight
        self.neg_pos_ratio = neg_pos_ratio
        self.iou_threshold = iou_threshold
        self.variances = variances

    @classmethod
    def from_phase(cls, phase: Phase, **kwargs) -> MultiBoxLoss:
        return cls(phase.loc_weight, phase.cls_weight, phase.landmark_weight, **kwargs)

    def forward(
        self,
        predictions: Predictions,
        targets: list[Target],
        priors: torch.Tensor,
        image_weights: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """predictions (box [B,P,4], class logits [B,P,2], landmarks [B,P,10]) -> named terms."""
        box, logits, ldm = (p.float() for p in predictions)  # the loss runs in fp32 under AMP
        if len(targets) != box.shape[0]:
            raise ValueError(f"{box.shape[0]} predictions but {len(targets)} targets")
        if box.shape[1] != priors.shape[0]:
            raise ValueError(
                f"model gives {box.shape[1]} priors but prior_boxes gives {priors.shape[0]}: "
                "image size and priors disagree"
            )
        t = match_batch(targets, priors, self.iou_threshold, self.variances)
        weights = t.weights
        if image_weights is not None:
            weights = weights * image_weights.to(weights)[:, None]
        pos = t.labels > 0  # [B, P]
        num_pos = pos.sum().clamp(min=1)
        num_ldm = t.landmark_valid.sum().clamp(min=1)

        box_l = F.smooth_l1_loss(box, t.loc, reduction="none").sum(-1)  # [B, P]
        box_term = (box_l * weights)[pos].sum() / num_pos

        ldm_l = F.smooth_l1_loss(ldm, t.landmarks, reduction="none").sum(-1)
        ldm_term = (ldm_l * weights)[t.landmark_valid].sum() / num_ldm

        ce = F.cross_entropy(logits.transpose(1, 2), t.labels, reduction="none")  # [B, P]
        used = pos | hard_negatives(ce, t.labels, self.neg_pos_ratio)
        cls_term = (ce * weights)[used].sum() / num_pos

        total = (
            self.loc_weight * box_term
            + self.cls_weight * cls_term
            + self.landmark_weight * ldm_term
        )
        return {"box": box_term, "class": cls_term, "landmark": ldm_term, "total": total}
