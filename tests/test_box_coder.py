import math

import torch

from ffcore.detection.box_coder import (
    FORCE_MATCH_MIN_IOU,
    decode_boxes,
    decode_landmarks,
    encode_boxes,
    encode_landmarks,
    match,
)
from ffcore.detection.priors import prior_boxes


def test_encode_by_hand():
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    box = torch.tensor([[0.42, 0.35, 0.62, 0.75]])  # centre (0.52, 0.55), size (0.2, 0.4)
    t = encode_boxes(box, priors)
    expected = torch.tensor([[0.02 / (0.1 * 0.2), 0.05 / (0.1 * 0.4), 0.0, 0.0]])
    torch.testing.assert_close(t, expected)
    box2 = torch.tensor([[0.3, 0.2, 0.7, 0.6]])  # centre (0.5,0.4), size (0.4,0.4)
    t2 = encode_boxes(box2, priors)
    expected2 = torch.tensor([[0.0, -0.1 / (0.1 * 0.4), math.log(2.0) / 0.2, math.log(1.0) / 0.2]])
    torch.testing.assert_close(t2, expected2)


def test_decode_by_hand():
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    loc = torch.tensor([[1.0, -1.0, 0.0, 5 * math.log(0.5)]])
    # centre (0.5 + 0.1*0.2, 0.5 - 0.1*0.4) = (0.52, 0.46); size (0.2, 0.2)
    torch.testing.assert_close(decode_boxes(loc, priors), torch.tensor([[0.42, 0.36, 0.62, 0.56]]))


def test_landmarks_by_hand():
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    pts = torch.tensor([[0.5, 0.5, 0.52, 0.54, 0.48, 0.46, 0.6, 0.5, 0.5, 0.3]])
    t = encode_landmarks(pts, priors)
    expected = torch.tensor([[0.0, 0.0, 1.0, 1.0, -1.0, -1.0, 5.0, 0.0, 0.0, -5.0]])
    torch.testing.assert_close(t, expected)
    torch.testing.assert_close(decode_landmarks(t, priors), pts)


def test_roundtrip_batched():
    g = torch.Generator().manual_seed(0)
    priors = torch.cat([torch.rand(50, 2, generator=g), 0.05 + torch.rand(50, 2, generator=g)], 1)
    xy = torch.rand(3, 50, 2, generator=g)
    boxes = torch.cat([xy, xy + 0.01 + torch.rand(3, 50, 2, generator=g)], -1)
    torch.testing.assert_close(decode_boxes(encode_boxes(boxes, priors), priors), boxes)
    lm = torch.rand(3, 50, 10, generator=g)
    torch.testing.assert_close(decode_landmarks(encode_landmarks(lm, priors), priors), lm)


def _priors():
    # four priors (cx, cy, w, h); corners in comments
    return torch.tensor(
        [
            [0.25, 0.25, 0.5, 0.5],  # 0: [0, 0, .5, .5]
            [0.75, 0.25, 0.5, 0.5],  # 1: [.5, 0, 1, .5]
            [0.25, 0.75, 0.5, 0.5],  # 2: [0, .5, .5, 1]
            [0.9, 0.9, 0.1, 0.1],  # 3: [.85, .85, .95, .95]
        ]
    )


def test_match_threshold_and_forced_best_prior():
    priors = _priors()
    gt = torch.tensor(
        [
            [0.0, 0.0, 0.5, 0.6],  # IoU .25/.30 = .833 with prior 0
            [0.85, 0.85, 0.9, 0.91],  # inside prior 3: IoU .003/.01 = .3, in [.2, .35)
        ]
    )
    lm = torch.rand(2, 10)
    valid = torch.tensor([True, False])
    m = match(gt, lm, valid, priors, iou_threshold=0.35)
    # the small face is kept on its best prior (3) although its IoU is below the threshold
    assert m.labels.tolist() == [1, 0, 0, 1]
    assert m.gt_index.tolist() == [0, -1, -1, 1]
    assert m.landmark_valid.tolist() == [True, False, False, False]
    torch.testing.assert_close(m.iou[3], torch.tensor(0.3), rtol=1e-3, atol=0)


def test_match_does_not_force_a_face_below_force_min_iou():
    priors = _priors()
    gt = torch.tensor(
        [
            [0.0, 0.0, 0.5, 0.6],  # IoU .833 with prior 0
            [0.8, 0.8, 0.86, 0.86],  # tiny: IoU with prior 3 = 1e-4/.0135 = .0074 < .2
        ]
    )
    m = match(gt, torch.rand(2, 10), torch.tensor([True, True]), priors, iou_threshold=0.35)
    assert m.labels.tolist() == [1, 0, 0, 0]
    assert m.gt_index.tolist() == [0, -1, -1, -1]
    # force_min_iou=0 restores "every face keeps its best prior"
    m0 = match(gt, torch.rand(2, 10), torch.tensor([True, True]), priors, force_min_iou=0.0)
    assert m0.labels.tolist() == [1, 0, 0, 1]


def _square(cx: float, cy: float, side: float, size: int = 160) -> torch.Tensor:
    """One pixel box centred at (cx, cy), normalised for a size x size image: [1, 4]."""
    half = side / 2
    return torch.tensor([[cx - half, cy - half, cx + half, cy + half]]) / size


def test_match_on_real_priors_tiny_face_is_ignored_small_face_is_forced():
    priors = prior_boxes((160, 160))  # smallest anchors 16 px on a stride-8 grid
    ones = torch.tensor([True])
    # 2 x 2 px face on a 16 px anchor centre (84, 84): best IoU 4/256 = .016 < .2 -> no positive
    tiny = _square(84.0, 84.0, 2.0)
    m = match(tiny, torch.zeros(1, 10), ones, priors)
    assert m.labels.sum().item() == 0
    assert (m.gt_index == -1).all() and not m.landmark_valid.any()
    # 9 x 9 px face on the same centre: best IoU 81/256 = .316, in [.2, .35) -> forced
    small = _square(84.0, 84.0, 9.0)
    m = match(small, torch.zeros(1, 10), ones, priors)
    assert FORCE_MATCH_MIN_IOU <= 81 / 256 < 0.35
    assert m.labels.sum().item() == 1
    (idx,) = torch.nonzero(m.labels).flatten().tolist()
    torch.testing.assert_close(priors[idx], torch.tensor([84.0, 84.0, 16.0, 16.0]) / 160)
    torch.testing.assert_close(m.iou[idx], torch.tensor(81 / 256))
    assert m.gt_index[idx].item() == 0


def test_match_shared_best_prior_goes_to_later_face():
    priors = _priors()
    gt = torch.tensor([[0.0, 0.0, 0.5, 0.6], [0.0, 0.0, 0.5, 0.55]])  # both best on prior 0
    m = match(gt, torch.zeros(2, 10), torch.tensor([True, True]), priors)
    assert m.labels.tolist() == [1, 0, 0, 0]
    assert m.gt_index.tolist() == [1, -1, -1, -1]


def test_match_assigns_by_iou():
    priors = _priors()
    gt = torch.tensor(
        [
            [0.0, 0.0, 0.5, 0.6],  # prior 0: .833 ; prior 2: .111
            [0.5, 0.0, 1.0, 0.4],  # prior 1: .2/.25 = .8
            [0.86, 0.86, 0.96, 0.96],  # prior 3: .0081/.0119 = .6807
        ]
    )
    lm = torch.arange(30, dtype=torch.float32).view(3, 10) / 30
    valid = torch.tensor([True, False, True])
    m = match(gt, lm, valid, priors, iou_threshold=0.35)
    assert m.labels.tolist() == [1, 1, 0, 1]
    assert m.gt_index.tolist() == [0, 1, -1, 2]
    assert m.landmark_valid.tolist() == [True, False, False, True]
    torch.testing.assert_close(m.iou[[0, 1, 3]], torch.tensor([0.25 / 0.30, 0.8, 0.0081 / 0.0119]))
    torch.testing.assert_close(m.loc[3], encode_boxes(gt[2:3], priors[3:4])[0])
    torch.testing.assert_close(m.landmarks[0], encode_landmarks(lm[0:1], priors[0:1])[0])
    # a higher threshold keeps only the forced best priors, which are the same three here
    m2 = match(gt, lm, valid, priors, iou_threshold=0.9)
    assert m2.labels.tolist() == [1, 1, 0, 1]


def test_match_iou_threshold_adds_second_prior():
    priors = torch.tensor([[0.25, 0.5, 0.5, 1.0], [0.5, 0.5, 0.5, 1.0], [0.9, 0.5, 0.1, 1.0]])
    gt = torch.tensor([[0.1, 0.0, 0.6, 1.0]])
    # p0 = [0, 0, .5, 1]: inter .4, union .6 -> .667 ; p1 = [.25, 0, .75, 1]: inter .35,
    # union .65 -> .538 ; p2 = [.85, 0, .95, 1]: 0
    m = match(gt, torch.zeros(1, 10), torch.tensor([True]), priors, iou_threshold=0.5)
    assert m.labels.tolist() == [1, 1, 0]
    m = match(gt, torch.zeros(1, 10), torch.tensor([True]), priors, iou_threshold=0.6)
    assert m.labels.tolist() == [1, 0, 0]


def test_match_no_faces():
    m = match(torch.zeros(0, 4), torch.zeros(0, 10), torch.zeros(0, dtype=torch.bool), _priors())
    assert m.labels.tolist() == [0, 0, 0, 0]
    assert m.loc.shape == (4, 4) and m.landmarks.shape == (4, 10)
