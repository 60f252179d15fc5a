import math

import pytest
import torch

from ffcore.detection.loss import MultiBoxLoss, hard_negatives
from ffcore.schedule import get_phase

# ten disjoint square priors along a row: prior k covers [0.1k, 0.45, 0.1k + 0.1, 0.55]
PRIORS = torch.tensor([[0.05 + 0.1 * k, 0.5, 0.1, 0.1] for k in range(10)])
Z = [1.0, 0.5, 3.0, -1.0, 2.0, 0.0, -2.0, 0.25, -0.5, 1.5]  # face logit, background logit = 0


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def _target(valid=True, weight=None):
    # the face is exactly prior 0, so only prior 0 is positive and its box target is zero
    points = [0.05 + 0.005, 0.5 - 0.02] * 5  # offsets (0.005, -0.02) -> targets (0.5, -2)
    t = {
        "boxes": torch.tensor([[0.0, 0.45, 0.1, 0.55]]),
        "landmarks": torch.tensor([points]),
        "landmark_valid": torch.tensor([valid]),
    }
    if weight is not None:
        t["weights"] = torch.tensor([weight])
    return t


def _predictions(batch=1):
    box = torch.zeros(batch, 10, 4)
    box[:, 0] = torch.tensor([0.5, -2.0, 0.0, 0.0])  # smooth-L1: 0.125 + 1.5 = 1.625
    logits = torch.zeros(batch, 10, 2)
    logits[:, :, 1] = torch.tensor(Z)
    return box, logits, torch.zeros(batch, 10, 10)


def test_single_image_by_hand():
    loss = MultiBoxLoss(neg_pos_ratio=2)
    out = loss(_predictions(), [_target()], PRIORS)
    box = 1.625
    # positive: CE(label 1) = softplus(-z0); hardest 2 negatives are z=3.0 and z=2.0
    cls = softplus(-1.0) + softplus(3.0) + softplus(2.0)
    landmark = 5 * 1.625
    assert out["box"].item() == pytest.approx(box)
    assert out["class"].item() == pytest.approx(cls, rel=1e-6)
    assert out["landmark"].item() == pytest.approx(landmark)
    assert out["total"].item() == pytest.approx(2.0 * box + cls + 0.5 * landmark, rel=1e-6)


def test_default_ratio_seven_and_phase_weights():
    loss = MultiBoxLoss.from_phase(get_phase("3"))
    out = loss(_predictions(), [_target()], PRIORS)
    negatives = sorted(Z[1:], reverse=True)[:7]
    cls = softplus(-1.0) + sum(softplus(z) for z in negatives)
    assert out["class"].item() == pytest.approx(cls, rel=1e-6)


def test_normalisation_missing_landmarks_and_empty_image():
    loss = MultiBoxLoss(neg_pos_ratio=2)
    empty = {
        "boxes": torch.zeros(0, 4),
        "landmarks": torch.zeros(0, 10),
        "landmark_valid": torch.zeros(0, dtype=torch.bool),
    }
    out = loss(_predictions(3), [_target(), _target(valid=False), empty], PRIORS)
    # two positives (images 0, 1); the empty image mines no negatives
    assert out["box"].item() == pytest.approx(2 * 1.625 / 2)
    cls = 2 * (softplus(-1.0) + softplus(3.0) + softplus(2.0)) / 2
    assert out["class"].item() == pytest.approx(cls, rel=1e-6)
    # only image 0 has landmarks: divided by one landmark positive
    assert out["landmark"].item() == pytest.approx(5 * 1.625)


def test_no_faces_gives_finite_zero():
    empty = {
        "boxes": torch.zeros(0, 4),
        "landmarks": torch.zeros(0, 10),
        "landmark_valid": torch.zeros(0, dtype=torch.bool),
    }
    out = MultiBoxLoss()(_predictions(), [empty], PRIORS)
    assert all(v.item() == 0.0 for v in out.values())


def test_face_and_image_weights():
    loss = MultiBoxLoss(neg_pos_ratio=2)
    out = loss(_predictions(2), [_target(weight=1.0), _target(weight=0.25)], PRIORS)
    assert out["box"].item() == pytest.approx((1.625 + 0.25 * 1.625) / 2)
    # negatives keep weight 1; only the positives are scaled by their face's weight
    cls = (1.25 * softplus(-1.0) + 2 * (softplus(3.0) + softplus(2.0))) / 2
    assert out["class"].item() == pytest.approx(cls, rel=1e-6)
    out = loss(_predictions(2), [_target(), _target()], PRIORS, torch.tensor([1.0, 0.5]))
    cls = 1.5 * (softplus(-1.0) + softplus(3.0) + softplus(2.0)) / 2
    assert out["class"].item() == pytest.approx(cls, rel=1e-6)


def test_mixup_of_two_images_without_faces():
    """mixup_batch gives an image and its partner, both without faces, an empty weight vector:
    the loss is that of a faceless image (no positives, finite zeros), not an IndexError."""
    empty = {
        "boxes": torch.zeros(0, 4),
        "landmarks": torch.zeros(0, 10),
        "landmark_valid": torch.zeros(0, dtype=torch.bool),
        "weights": torch.zeros(0),
    }
    loss = MultiBoxLoss(neg_pos_ratio=2)
    out = loss(_predictions(2), [empty, _target(weight=0.5)], PRIORS)
    ref = loss(_predictions(2), [{k: v for k, v in empty.items() if k != "weights"},
                                 _target(weight=0.5)], PRIORS)  # fmt: skip
    for term in ("box", "class", "landmark", "total"):
        assert math.isfinite(out[term].item())
        assert out[term].item() == pytest.approx(ref[term].item())


def test_hard_negatives_cap_and_ties():
    ce = torch.tensor([[5.0, 1.0, 1.0, 1.0]])
    labels = torch.tensor([[1, 0, 0, 0]])
    # 7 * 1 positive capped at P - 1 = 3 -> every negative
    assert hard_negatives(ce, labels, 7).tolist() == [[False, True, True, True]]
    # ties resolved by position (stable), so the result is deterministic
    assert hard_negatives(ce, labels, 1).tolist() == [[False, True, False, False]]


def test_rejects_prior_mismatch():
    with pytest.raises(ValueError, match="priors"):
        MultiBoxLoss()(_predictions(), [_target()], PRIORS[:5])
