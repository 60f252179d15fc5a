"""Augmentation: hand-computed mirror and crop, and a drawing test that pixels follow coordinates."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ffcore.data import augment
from ffcore.data.preprocess import MEAN_BGR


def _blank(h: int, w: int, value: int = 128) -> np.ndarray:
    return np.full((h, w, 3), value, dtype=np.uint8)


def test_mirror_hand_computed() -> None:
    img = _blank(50, 100)
    img[10, 15] = (1, 2, 3)
    boxes = np.array([[10, 5, 30, 25], [50, 10, 60, 40]], dtype=np.float32)
    lms = np.array(
        [[15, 10, 25, 10, 20, 15, 16, 20, 24, 20], [-1] * 10],
        dtype=np.float32,
    )
    s = augment.make_sample(img, boxes, lms, np.array([True, False]))
    m = augment.mirror_sample(s)
    np.testing.assert_array_equal(m.boxes, [[70, 5, 90, 25], [40, 10, 50, 40]])
    # x -> 100 - x, then left/right swapped: left eye is the old right eye (25 -> 75), etc.
    np.testing.assert_array_equal(m.landmarks[0], [75, 10, 85, 10, 80, 15, 76, 20, 84, 20])
    np.testing.assert_array_equal(m.landmarks[1], [-1] * 10)
    np.testing.assert_array_equal(m.landmark_valid, [True, False])
    # pixel (x=15, y=10) moves to x = 100 - 1 - 15
    assert tuple(m.image[10, 84]) == (1, 2, 3)
    # mirroring twice is the identity
    mm = augment.mirror_sample(m)
    np.testing.assert_array_equal(mm.image, img)
    np.testing.assert_array_equal(mm.landmarks, s.landmarks)


def test_crop_keeps_exactly_faces_with_centre_inside() -> None:
    boxes = np.array(
        [[10, 10, 30, 30], [40, 40, 60, 60], [55, 0, 95, 20], [0, 70, 20, 90]], dtype=np.float32
    )
    lms = np.tile(np.array([[12, 12]], dtype=np.float32), (4, 5))
    s = augment.make_sample(_blank(100, 100), boxes, lms, np.ones(4, bool))
    # window x in [15, 65), y in [5, 55): centres (20,20) and (50,50) in; (75,10), (10,80) out
    c = augment.crop_sample(s, left=15, top=5, side=50)
    assert c.image.shape == (50, 50, 3)
    np.testing.assert_array_equal(c.boxes, [[0, 5, 15, 25], [25, 35, 45, 50]])
    # landmarks are shifted, not clipped
    np.testing.assert_array_equal(c.landmarks[:, :2], [[-3, 7], [-3, 7]])


def test_random_crop_rule_over_many_seeds() -> None:
    rng0 = np.random.default_rng(123)
    for seed in range(40):
        n = 6
        xy = rng0.uniform(0, 150, (n, 2))
        wh = rng0.uniform(8, 40, (n, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
        # landmark y0 carries the face id (far outside the image, only shifted by the crop)
        lms = np.zeros((n, 10), np.float32)
        lms[:, 1] = 1000 + np.arange(n)
        s = augment.make_sample(_blank(200, 160), boxes, lms, np.ones(n, bool))
        out, window = augment.random_crop(s, np.random.default_rng(seed), out_size=100)
        assert window is not None
        left, top, side = window
        assert side in {int(f * 160) for f in augment.CROP_SCALES}
        ids = np.rint(out.landmarks[:, 1] + top - 1000).astype(int)
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        inside = (cx >= left) & (cx < left + side) & (cy >= top) & (cy < top + side)
        assert sorted(ids) == list(np.flatnonzero(inside))
        # at least one kept face lies entirely inside the window
        full = (
            (boxes[ids, 0] >= left)
            & (boxes[ids, 1] >= top)
            & (boxes[ids, 2] <= left + side)
            & (boxes[ids, 3] <= top + side)
        )
        assert full.any()
        np.testing.assert_allclose(
            out.boxes, np.clip(boxes[ids] - [left, top, left, top], 0, side), atol=1e-4
        )


def test_random_crop_falls_back_to_full_image() -> None:
    # the only face covers the whole 100x60 image: no square crop (side <= 60) contains it
    s = augment.make_sample(
        _blank(60, 100), np.array([[0, 0, 100, 60]]), np.full((1, 10), -1), [False]
    )
    out, window = augment.random_crop(s, np.random.default_rng(0), out_size=64, max_tries=20)
    assert window is None
    assert out.image.shape == (60, 100, 3)
    padded = augment.pad_to_square(out)
    assert padded.image.shape == (100, 100, 3)
    assert (padded.image[60:] == np.array(MEAN_BGR, np.uint8)).all()
    np.testing.assert_array_equal(padded.image[:60], s.image)


def test_resize_scales_coordinates() -> None:
    s = augment.make_sample(
        _blank(50, 100), np.array([[10, 5, 30, 25]]), np.arange(10).reshape(1, 10), [True]
    )
    r = augment.resize_sample(s, 200)
    assert r.image.shape == (200, 200, 3)
    np.testing.assert_allclose(r.boxes, [[20, 20, 60, 100]])
    np.testing.assert_allclose(r.landmarks, [[0, 4, 4, 12, 8, 20, 12, 28, 16, 36]])


def test_photometric_distort_is_seeded() -> None:
    img = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    a = augment.photometric_distort(img, np.random.default_rng(5))
    b = augment.photometric_distort(img, np.random.default_rng(5))
    assert a.shape == img.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    outs = [augment.photometric_distort(img, np.random.default_rng(s)) for s in range(8)]
    assert len({o.tobytes() for o in outs}) > 4


# -- drawing test --------------------------------------------------------------------------
EXACT = ((0, 0, 255), (255, 0, 0), (0, 255, 0), (0, 255, 255), (255, 0, 255))  # BGR per slot
DOMINANT = ((0, 0, 255), (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 0, 0))  # red/blue/green
OUTLINE = (255, 255, 255)


def _drawn_sample(colors) -> augment.Sample:
    """Grey 90x120 image, two faces: 3 px white outline inside the box, 5 coloured dots."""
    img = _blank(90, 120, 100)
    boxes = np.array([[8, 10, 56, 60], [66, 30, 110, 80]], dtype=np.float32)
    lms = np.zeros((3, 10), np.float32)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        cv2.rectangle(img, (int(x1), int(y1)), (int(x2) - 1, int(y2) - 1), OUTLINE, 3)
        w, h = x2 - x1, y2 - y1
        rel = [(0.3, 0.35), (0.7, 0.35), (0.5, 0.55), (0.32, 0.75), (0.68, 0.75)]
        for k, (u, v) in enumerate(rel):
            px, py = int(x1 + u * w), int(y1 + v * h)
            cv2.circle(img, (px, py), 4, colors[k], -1)
            lms[i, 2 * k : 2 * k + 2] = (px + 0.5, py + 0.5)  # centre of pixel (px, py)
    # a third face without landmarks: outline only
    cv2.rectangle(img, (20, 66), (39, 85), OUTLINE, 3)
    boxes = np.concatenate([boxes, [[20, 66, 40, 86]]]).astype(np.float32)
    return augment.make_sample(img, boxes, lms, np.array([True, True, False]))


def _check(out: augment.Sample, size: int, colors, dominant: bool) -> bool:
    """Check pixels at the transformed coordinates; return whether the sample was mirrored."""
    flips = set()
    assert (out.landmarks[~out.landmark_valid] == -1).all()
    for box, lm, ok in zip(out.boxes, out.landmarks, out.landmark_valid, strict=True):
        x1, y1, x2, y2 = box
        for x, y, at_border in (
            (x1 + 1, (y1 + y2) / 2, x1 <= 0.5),
            (x2 - 1.5, (y1 + y2) / 2, x2 >= size - 0.5),
            ((x1 + x2) / 2, y1 + 1, y1 <= 0.5),
            ((x1 + x2) / 2, y2 - 1.5, y2 >= size - 0.5),
        ):
            if not at_border:  # an edge clipped by the crop has no outline
                px = out.image[int(y), int(x)].astype(int)
                assert px.min() > 150 if not dominant else px.mean() > 110, (box, x, y, px)
        if not ok:
            continue
        pts = lm.reshape(5, 2)
        assert pts[0, 0] < pts[1, 0] and pts[3, 0] < pts[4, 0]  # left stays left
        seen = []
        for x, y in pts:
            if 0 <= x < size and 0 <= y < size:
                seen.append(out.image[int(y), int(x)].astype(int))
            else:
                seen.append(None)
        for perm, flipped in (((0, 1, 2, 3, 4), False), (augment.MIRROR_PERMUTATION, True)):
            expect = [colors[p] for p in perm]
            good = all(
                px is None
                or (
                    int(np.argmax(px)) == int(np.argmax(e)) and np.ptp(px) > 40
                    if dominant
                    else np.abs(px - np.array(e)).max() <= 40
                )
                for px, e in zip(seen, expect, strict=True)
            )
            if good:
                flips.add(flipped)
                break
        else:
            pytest.fail(f"landmark colours {seen} match neither order")
    assert len(flips) <= 1
    return flips == {True}


@pytest.mark.parametrize("distort", [False, True])
def test_pixels_follow_coordinates(distort: bool) -> None:
    colors = DOMINANT if distort else EXACT
    sample = _drawn_sample(colors)
    mirrored = 0
    for seed in range(30):
        out = augment.train_augment(sample, 160, np.random.default_rng(seed), distort=distort)
        assert out.image.shape == (160, 160, 3)
        assert len(out.boxes) >= 1
        mirrored += _check(out, 160, colors, dominant=distort)
    assert 5 <= mirrored <= 25  # both branches of the p=0.5 mirror were exercised


def test_same_generator_same_sample() -> None:
    sample = _drawn_sample(EXACT)
    a = augment.train_augment(sample, 96, np.random.default_rng([0, 3, 7]))
    b = augment.train_augment(sample, 96, np.random.default_rng([0, 3, 7]))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.landmarks, b.landmarks)


def test_image_without_faces_goes_through() -> None:
    s = augment.make_sample(_blank(50, 80), np.zeros((0, 4)), np.zeros((0, 10)), np.zeros(0))
    out = augment.train_augment(s, 32, np.random.default_rng(0))
    assert out.image.shape == (32, 32, 3)
    assert out.boxes.shape == (0, 4) and out.landmarks.shape == (0, 10)
    assert out.landmark_valid.shape == (0,)
