"""WIDER FACE AP: hand-made cases with known answers, agreement with the loop reference, txt I/O."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ffcore.evaluation.wider_ap as ev
from ffcore.data.wider_mat import GroundTruth, write_ground_truth
from ffcore.evaluation.wider_ap_loop import reference_evaluate


def _gt(
    boxes: list[list[list[float]]], keep: dict[str, list[list[int]]] | None = None
) -> GroundTruth:
    """One event; ``boxes[i]`` the faces of image i; by default every face kept everywhere."""
    arrs = [np.asarray(b, dtype=float).reshape(-1, 4) for b in boxes]
    if keep is None:
        keep = {s: [list(range(1, len(b) + 1)) for b in arrs] for s in ("easy", "medium", "hard")}
    return GroundTruth(
        events=["0--Event"],
        images=[[f"img_{i}" for i in range(len(arrs))]],
        boxes=[arrs],
        keep={s: [[np.asarray(k, dtype=np.int64) for k in v]] for s, v in keep.items()},
    )


def _pred(rows: list[list[list[float]]]) -> ev.Predictions:
    return [[np.asarray(r, dtype=float).reshape(-1, 5) for r in rows]]


FACE_A = [10, 10, 20, 20]
FACE_B = [50, 50, 30, 30]
FAR = [200, 200, 10, 10]


def test_thresholds_and_iou_plus_one_by_hand() -> None:
    t = ev.thresholds()
    assert t.shape == (1000,) and t[0] == 0.999 and t[499] == 0.5 and t[-1] == 0.0
    a = np.array([[0.0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 2, 2]])  # x1y1x2y2: 3x3 px with +1
    b = np.array([[1.0, 0, 3, 2], [3, 0, 5, 2], [0, 0, 2, 2]])
    np.testing.assert_allclose(ev.iou_plus_one(a, b), [6 / 12, 0.0, 1.0])


def test_perfect_detections_give_one() -> None:
    gt = _gt([[FACE_A, FACE_B], [[5, 5, 40, 40]]])
    preds = _pred([[[*FACE_A, 0.9], [*FACE_B, 0.8]], [[5, 5, 40, 40, 0.7]]])
    res = ev.evaluate(preds, gt)
    assert res.ap == {"easy": 1.0, "medium": 1.0, "hard": 1.0}
    assert res.num_faces["hard"] == 3 and res.num_detections == 3


def test_false_positive_at_the_top_score() -> None:
    # FP (norm score 1), TP (0.5), TP (0): (r, p) = (.5, .5) then (1, 2/3) -> AP = 2/3
    gt = _gt([[FACE_A, FACE_B]])
    res = ev.evaluate(_pred([[[*FAR, 1.0], [*FACE_A, 0.5], [*FACE_B, 0.0]]]), gt)
    assert res.ap["hard"] == pytest.approx(2 / 3, abs=1e-12)
    precision, recall = res.pr["hard"]
    assert np.isnan(precision).sum() == 0 and precision[0] == 0.0 and recall[0] == 0.0
    assert (precision[-1], recall[-1]) == (pytest.approx(2 / 3), 1.0)


def test_duplicate_on_a_recalled_face_is_a_false_positive() -> None:
    # A on face 1 (TP), B on face 1 (FP), C on face 2 (TP): AP = .5 * 1 + .5 * 2/3
    gt = _gt([[FACE_A, FACE_B]])
    dup = [11, 10, 20, 20]
    res = ev.evaluate(_pred([[[*FACE_A, 1.0], [*dup, 0.5], [*FACE_B, 0.0]]]), gt)
    assert res.ap["easy"] == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-12)


def test_detection_on_an_ignored_face_is_neither_tp_nor_fp() -> None:
    # face 2 is outside the easy keep-list: its detection (top score) is ignored in easy,
    # a TP in hard. Counted as an FP it would give AP 0.5 in easy.
    keep = {"easy": [[1]], "medium": [[1]], "hard": [[1, 2]]}
    gt = _gt([[FACE_A, FACE_B]], keep)
    res = ev.evaluate(_pred([[[*FACE_B, 1.0], [*FACE_A, 0.0]]]), gt)
    assert res.ap == {"easy": 1.0, "medium": 1.0, "hard": 1.0}
    assert res.num_faces == {"easy": 1, "medium": 1, "hard": 2}


def test_best_iou_over_all_faces_including_ignored() -> None:
    # kept K = (0,0)-(99,99), ignored I = (20,0)-(119,99); the detection equals I:
    # IoU(K) = 8000/12000 >= .5 but IoU(I) = 1 is the best -> ignored, K stays missed.
    gt = _gt([[[0, 0, 99, 99], [20, 0, 99, 99]]], {s: [[1]] for s in ("easy", "medium", "hard")})
    res = ev.evaluate(_pred([[[20, 0, 99, 99, 0.9], [500, 500, 5, 5, 0.1]]]), gt)
    assert res.ap["easy"] == 0.0


def test_plus_one_pixel_convention_decides_a_match() -> None:
    # gt (0,0,w2,h2), det (1,0,w2,h2): IoU 6/12 = .5 with +1-pixel widths, 2/6 without
    gt = _gt([[[0, 0, 2, 2]]])
    assert ev.evaluate(_pred([[[1, 0, 2, 2, 0.9], [100, 100, 2, 2, 0.1]]]), gt).ap["easy"] == 1.0


def test_empty_predictions_and_images_without_detections() -> None:
    gt = _gt([[FACE_A], [FACE_B]])
    assert ev.evaluate(_pred([[], []]), gt).ap == {"easy": 0.0, "medium": 0.0, "hard": 0.0}
    # image 2 has no detections but its face counts in the recall: AP 0.5
    res = ev.evaluate(_pred([[[*FACE_A, 0.9], [*FAR, 0.1]], []]), gt)
    assert res.ap["hard"] == pytest.approx(0.5, abs=1e-12)


def test_detections_on_images_without_faces_are_skipped() -> None:
    gt = _gt([[FACE_A], []])
    res = ev.evaluate(_pred([[[*FACE_A, 0.5], [*FAR, 0.2]], [[*FAR, 1.0]]]), gt)
    assert res.ap["easy"] == 1.0


def test_sorting_makes_ap_independent_of_file_order_unlike_the_python_port() -> None:
    # file order: FP (score 0) before TP (score 1). Official: AP 1. The unsorted port counts the
    # FP at every threshold (cut at the last passing detection): AP 0.5.
    gt = _gt([[FACE_A]])
    preds = _pred([[[*FAR, 0.0], [*FACE_A, 1.0]]])
    assert ev.evaluate(preds, gt).ap["easy"] == 1.0
    assert reference_evaluate(preds, gt)["easy"][0] == 1.0
    assert reference_evaluate(preds, gt, sort_detections=False)["easy"][0] == pytest.approx(0.5)


def test_equal_scores_follow_the_official_zero_division() -> None:
    gt = _gt([[FACE_A]])
    with pytest.warns(RuntimeWarning, match="all detection scores are equal"):
        assert ev.evaluate(_pred([[[*FACE_A, 0.7]]]), gt).ap["easy"] == 0.0


def test_subset_without_faces_has_undefined_ap() -> None:
    gt = _gt([[FACE_A]], {"easy": [[]], "medium": [[1]], "hard": [[1]]})
    with pytest.warns(RuntimeWarning, match="'easy' keeps no face"):
        res = ev.evaluate(_pred([[[*FACE_A, 0.7], [*FAR, 0.1]]]), gt)
    assert np.isnan(res.ap["easy"]) and res.ap["hard"] == 1.0
    assert res.as_dict() == {"easy": None, "medium": 1.0, "hard": 1.0}
    assert "n/a" in res.table() and "100.00%" in res.table()


def _random_case(
    rng: np.random.Generator, n_images: int = 24
) -> tuple[GroundTruth, ev.Predictions]:
    events, images, boxes, preds = [], [], [], []
    keep: dict[str, list[list[np.ndarray]]] = {"easy": [], "medium": [], "hard": []}
    for e in range(3):
        events.append(f"{e}--E")
        names, bx, pr = [], [], []
        kp: dict[str, list[np.ndarray]] = {s: [] for s in keep}
        for i in range(n_images // 3):
            m = int(rng.integers(0, 8))
            xy = rng.uniform(0, 200, (m, 2)).round()
            wh = rng.uniform(2, 60, (m, 2)).round()
            if m > 2:
                wh[0, 0], wh[1, 1] = 0, -3  # degenerate widths of the real file
            faces = np.hstack([xy, wh])
            perm = rng.permutation(m) + 1
            hard = np.sort(perm[: int(rng.integers(0, m + 1))])
            medium = np.sort(rng.choice(hard, int(rng.integers(0, len(hard) + 1)), replace=False))
            easy = np.sort(rng.choice(medium, int(rng.integers(0, len(medium) + 1)), replace=False))
            n_hit = int(rng.integers(0, 2 * m + 1))
            src = faces[rng.integers(0, max(m, 1), n_hit)] if m else np.zeros((0, 4))
            jitter = rng.normal(0, 0.1, src.shape) * np.abs(src[:, 2:4]).repeat(2, axis=1)
            hits = src + jitter.round(1)
            noise = rng.uniform(0, 250, (int(rng.integers(0, 5)), 4))
            det = np.vstack([hits, noise])
            # hits score higher than noise on average; a 20-level grid gives many ties
            hi, lo = rng.integers(6, 20, len(hits)), rng.integers(0, 12, len(noise))
            dets = np.hstack([det, np.concatenate([hi, lo])[:, None] / 19])
            dets = dets[rng.permutation(len(det))]
            names.append(f"{e}_img_{i}")
            bx.append(faces)
            pr.append(dets)
            for s, k in (("easy", easy), ("medium", medium), ("hard", hard)):
                kp[s].append(k.astype(np.int64))
        images.append(names)
        boxes.append(bx)
        preds.append(pr)
        for s in keep:
            keep[s].append(kp[s])
    return GroundTruth(events, images, boxes, keep), preds


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_the_loop_reference_on_random_predictions(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    gt, preds = _random_case(np.random.default_rng(seed))
    monkeypatch.setattr(ev, "PAIR_CHUNK", 13)  # exercise the chunked pair computation
    res = ev.evaluate(preds, gt)
    ref = reference_evaluate(preds, gt)
    for s in ("easy", "medium", "hard"):
        ap, precision, recall = ref[s]
        assert res.ap[s] == ap  # identical, not approximately equal
        np.testing.assert_array_equal(res.pr[s][0], precision)
        np.testing.assert_array_equal(res.pr[s][1], recall)
    assert all(0.0 < a < 1.0 for a in res.ap.values())  # a non-trivial case


def test_prediction_txt_round_trip_and_evaluate_folder(tmp_path: Path) -> None:
    gt, preds = _random_case(np.random.default_rng(3), n_images=9)
    preds = [[np.round(p * 8) / 8 for p in per_event] for per_event in preds]  # exact at .3f
    write_ground_truth(tmp_path / "gt", gt)
    ev.write_predictions(tmp_path / "pred", gt, preds)
    back = ev.read_predictions(tmp_path / "pred", gt)
    for a, b in zip(sum(preds, []), sum(back, []), strict=True):
        np.testing.assert_array_equal(a.reshape(-1, 5), b)
    text = (tmp_path / "pred" / gt.events[0] / f"{gt.images[0][0]}.txt").read_text().splitlines()
    assert text[0] == gt.images[0][0] and int(text[1]) == len(preds[0][0])
    assert ev.evaluate_folder(tmp_path / "pred", tmp_path / "gt").ap == ev.evaluate(preds, gt).ap


def test_prediction_errors_name_the_file_and_line(tmp_path: Path) -> None:
    gt = _gt([[FACE_A], [FACE_B]])
    d = tmp_path / "pred" / "0--Event"
    d.mkdir(parents=True)
    (d / "img_0.txt").write_text("img_0\n2\n1 2 3 4 0.5\n1 2 3 0.5\n")
    with pytest.raises(
        FileNotFoundError, match=r"1 of 2 prediction files missing \(0--Event/img_1.txt"
    ):
        ev.read_predictions(tmp_path / "pred", gt)
    (d / "img_1.txt").write_text("img_1\n0\n")
    with pytest.raises(ValueError, match=r"img_0.txt:4: expected 5 numbers"):
        ev.read_predictions(tmp_path / "pred", gt)
    (d / "img_0.txt").write_text("img_0\n2\n1 2 3 4 0.5\n1 2 3 x 0.5\n")
    with pytest.raises(ValueError, match=r"img_0.txt:4: not a number"):
        ev.read_predictions(tmp_path / "pred", gt)
    (d / "img_0.txt").write_text("img_0\n3\n1 2 3 4 0.5\n")
    with pytest.raises(ValueError, match="says 3 detections, the file has 1"):
        ev.read_predictions(tmp_path / "pred", gt)
    (d / "img_0.txt").write_text("img_0\nthree\n")
    with pytest.raises(ValueError, match=r"img_0.txt:2: expected the detection count"):
        ev.read_predictions(tmp_path / "pred", gt)
    with pytest.raises(FileNotFoundError, match="wider_face_val.mat"):
        ev.evaluate_folder(tmp_path / "pred", tmp_path)


def test_label_detections_for_failure_galleries() -> None:
    dets = np.array([[*FAR, 0.3], [*FACE_A, 0.5], [*FACE_A, 0.9], [*FACE_B, 0.8]])
    out = ev.label_detections(dets, np.array([FACE_A, FACE_B, [0, 0, 5, 5]]), np.array([1, 3]))
    assert out.tp.tolist() == [False, False, True, False]
    assert out.fp.tolist() == [True, True, False, False]
    assert out.ignored.tolist() == [False, False, False, True]
    assert out.missed.tolist() == [False, False, True]


def test_label_detections_on_an_image_without_faces() -> None:
    out = ev.label_detections(np.array([[*FAR, 0.3]]), np.zeros((0, 4)), np.zeros(0, int))
    assert out.tp.tolist() == out.fp.tolist() == out.ignored.tolist() == [False]
    assert out.missed.shape == (0,)


def test_select_images_scores_like_a_ground_truth_built_from_those_images_alone() -> None:
    gt, preds = _random_case(np.random.default_rng(5))
    pos = {"0--E": [1, 2, 5], "1--E": [0, 3, 4, 6, 7], "2--E": [2, 3, 6]}
    keep = {(e, f"{e[0]}_img_{i}") for e, idx in pos.items() for i in idx}
    part_gt, part_preds = ev.select_images(gt, preds, lambda e, n: (e, n) in keep)
    # independently: the same images picked by position
    events = [e for e in gt.events if e in pos]
    ix = [gt.events.index(e) for e in events]
    hand = GroundTruth(
        events,
        [[gt.images[e][i] for i in pos[gt.events[e]]] for e in ix],
        [[gt.boxes[e][i] for i in pos[gt.events[e]]] for e in ix],
        {s: [[gt.keep[s][e][i] for i in pos[gt.events[e]]] for e in ix] for s in gt.keep},
    )
    hand_preds = [[preds[e][i] for i in pos[gt.events[e]]] for e in ix]
    assert part_gt.images == hand.images
    got, want = ev.evaluate(part_preds, part_gt), reference_evaluate(hand_preds, hand)
    for s in ("easy", "medium", "hard"):
        assert 0.0 < got.ap[s] < 1.0 and got.ap[s] == want[s][0]
    with pytest.raises(ValueError, match="no image"):
        ev.select_images(gt, preds, lambda e, n: False)
