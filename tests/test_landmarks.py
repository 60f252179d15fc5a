"""Landmark NME against numbers computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from ffcore.evaluation.landmarks import LandmarkAccumulator, face_nme, match_faces


def _points(x0: float, y0: float) -> np.ndarray:
    return np.array([[x0 + k, y0 + 2 * k] for k in range(5)], dtype=np.float64)


def test_face_nme_by_hand() -> None:
    true = _points(2, 3)[None]
    pred = true + np.array([3.0, 4.0])  # every point 5 px away
    box = np.array([[0.0, 0.0, 10.0, 40.0]])  # sqrt(10 * 40) = 20
    assert face_nme(pred, true, box) == pytest.approx([0.25])


def test_match_faces_greedy_by_score_each_used_once() -> None:
    gt = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], dtype=float)
    dets = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], dtype=float)
    scores = np.array([0.5, 0.9, 0.99])
    # IoU(det1, gt0) = 90/110 >= 0.5 and det1 scores higher than det0: det1 takes face 0; the
    # far detection matches nothing; face 1 has no detection.
    assert match_faces(dets, scores, gt).tolist() == [1, -1]


def test_accumulator_mean_fraction_and_counts() -> None:
    acc = LandmarkAccumulator()
    gt_boxes = np.array([[0, 0, 10, 40], [100, 100, 120, 120], [200, 200, 210, 210]], dtype=float)
    gt_points = np.stack([_points(2, 3), _points(105, 105), _points(0, 0)]).reshape(3, 10)
    valid = np.array([True, True, False])  # the third face has no landmarks: not counted
    det_boxes = gt_boxes[:2].copy()
    det_points = np.stack([_points(2, 3) + [3.0, 4.0], _points(105, 105)])
    acc.add(det_boxes, np.array([0.9, 0.8]), det_points, gt_boxes, gt_points, valid)
    acc.add(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)), gt_boxes[:1], gt_points[:1], [True])
    r = acc.result()
    assert (r.matched, r.faces) == (2, 3)
    assert r.mean_nme == pytest.approx((0.25 + 0.0) / 2)
    assert r.fraction_below == pytest.approx(0.5)
    assert r.as_dict()["nme"] == pytest.approx(0.125)


def test_no_match_gives_nan_not_zero() -> None:
    acc = LandmarkAccumulator()
    acc.add(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)), np.array([[0, 0, 9, 9.0]]),
            _points(0, 0).reshape(1, 10), [True])  # fmt: skip
    r = acc.result()
    assert r.matched == 0 and r.faces == 1 and np.isnan(r.mean_nme)
    assert r.as_dict()["nme"] is None
