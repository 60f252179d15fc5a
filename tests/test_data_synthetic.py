"""The synthetic generator: layout, determinism, .mat round trip, subsets, faces that are drawn."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ffcore.cli import main
from ffcore.data import synthetic
from ffcore.data.wider_mat import read_ground_truth
from ffcore.data.widerface import parse_label_file

N_TRAIN, N_VAL, SIZE = 6, 8, 128


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic.generate_dataset(tmp_path_factory.mktemp("s") / "a", N_TRAIN, N_VAL, SIZE, 0)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix != ".mat"
    }


def test_layout(root: Path) -> None:
    for rel in (
        "train/label.txt",
        "val/label.txt",
        "wider_face_split/wider_face_val.mat",
        "wider_face_split/wider_face_val_bbx_gt.txt",
        "ground_truth/wider_face_val.mat",
        "ground_truth/wider_easy_val.mat",
        "ground_truth/wider_medium_val.mat",
        "ground_truth/wider_hard_val.mat",
        "manifest.json",
    ):
        assert (root / rel).is_file(), rel
    assert len(list((root / "train" / "images").glob("*/*.jpg"))) == N_TRAIN
    assert len(list((root / "val" / "images").glob("*/*.jpg"))) == N_VAL
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["n_train"] == N_TRAIN and manifest["image_size"] == SIZE
    assert not list(root.parent.glob(".a.tmp-*"))  # no temporary folder left behind


def test_same_seed_same_bytes_other_seed_differs(root: Path, tmp_path: Path) -> None:
    again = synthetic.generate_dataset(tmp_path / "b", N_TRAIN, N_VAL, SIZE, 0)
    assert _files(again) == _files(root)
    a, b = read_ground_truth(root / "ground_truth"), read_ground_truth(again / "ground_truth")
    for ex, ey in zip(a.boxes, b.boxes, strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(ex, ey, strict=True))
    other = synthetic.generate_dataset(tmp_path / "c", N_TRAIN, N_VAL, SIZE, 1)
    fa, fo = _files(root), _files(other)
    assert fa["train/label.txt"] != fo["train/label.txt"]
    assert sum(fa[k] != fo.get(k) for k in fa if k.endswith(".jpg")) == N_TRAIN + N_VAL


def test_mat_ground_truth_matches_val_labels(root: Path) -> None:
    gt = read_ground_truth(root / "ground_truth")
    records = {
        (r.path.parent.name, r.path.stem): r
        for r in parse_label_file(root / "val" / "label.txt").records
    }
    assert gt.num_images == N_VAL == len(records)
    for event, names, boxes in zip(gt.events, gt.images, gt.boxes, strict=True):
        for name, b in zip(names, boxes, strict=True):
            rec = records[(event, name)]
            xywh = np.c_[rec.boxes[:, :2], rec.boxes[:, 2:] - rec.boxes[:, :2]]
            np.testing.assert_array_equal(b, xywh)


def _expected_keep(faces) -> dict[str, set[int]]:
    """The documented rule, written out again: 1-based indices per subset."""
    return {
        "hard": {k + 1 for k, f in enumerate(faces) if f.box[3] >= 10},
        "medium": {
            k + 1
            for k, f in enumerate(faces)
            if f.box[3] >= 20 and f.occlusion <= 1 and f.blur <= 1
        },
        "easy": {
            k + 1
            for k, f in enumerate(faces)
            if f.box[3] >= 40 and f.occlusion == 0 and f.blur == 0
        },
    }


def test_subsets_follow_the_rule_and_nest(root: Path) -> None:
    gt = read_ground_truth(root / "ground_truth")
    truth = {im.name: im for im in synthetic.iter_images("val", N_VAL, SIZE, 0)}
    for e, names in enumerate(gt.images):
        for i, name in enumerate(names):
            expect = _expected_keep(truth[name].faces)
            for subset in ("easy", "medium", "hard"):
                assert set(gt.keep[subset][e][i].tolist()) == expect[subset]
            assert expect["easy"] <= expect["medium"] <= expect["hard"]


def test_ci_profile_subsets_are_all_populated() -> None:
    sizes = {"easy": 0, "medium": 0, "hard": 0}
    for im in synthetic.iter_images("val", 16, 256, synthetic.DEFAULT_SEED):
        for subset, keep in _expected_keep(im.faces).items():
            sizes[subset] += len(keep)
    assert 0 < sizes["easy"] < sizes["medium"] < sizes["hard"]


def test_faces_are_drawn_where_the_landmarks_say(root: Path) -> None:
    """Clear, unoccluded faces: the pupils at the eye landmarks are dark, the box centre is skin,
    and the left eye is on the image's left."""
    checked = 0
    for im in synthetic.iter_images("train", 16, 256, 0):
        for f in im.faces:
            lm = f.landmarks.reshape(5, 2)
            assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]
            assert lm[:2, 1].max() < lm[2, 1] < lm[3:, 1].min()
            x, y, w, h = f.box
            assert min(x, y) >= 0 and x + w <= im.image.shape[1] and y + h <= im.image.shape[0]
            assert (lm[:, 0] > x).all() and (lm[:, 0] < x + w).all()
            if f.blur or f.occlusion or f.height < 30:
                continue
            gray = cv2.cvtColor(im.image, cv2.COLOR_BGR2GRAY).astype(int)
            for k in (0, 1):
                px, py = int(lm[k, 0]), int(lm[k, 1])
                assert gray[py, px] < 70, (im.name, k, gray[py, px])
            checked += 1
    assert checked >= 10


def test_face_counts_and_sizes_span_the_range() -> None:
    heights, counts = [], []
    for im in synthetic.iter_images("train", 40, 256, 5):
        counts.append(len(im.faces))
        heights += [f.height for f in im.faces]
    assert max(counts) >= 6 and min(heights) <= 12 and max(heights) >= 120
    assert max(counts) <= 8


def test_ensure_dataset_regenerates_only_when_parameters_change(tmp_path: Path) -> None:
    root = tmp_path / "data"
    first = synthetic.ensure_dataset(root, "ci")
    stamp = (first / "manifest.json").stat().st_mtime_ns
    assert synthetic.ensure_dataset(root, "ci") == first
    assert (first / "manifest.json").stat().st_mtime_ns == stamp
    manifest = json.loads((first / "manifest.json").read_text())
    assert (manifest["n_train"], manifest["n_val"], manifest["image_size"]) == (48, 16, 256)
    synthetic.ensure_dataset(root, "ci", seed=1)
    assert json.loads((root / "manifest.json").read_text())["seed"] == 1


def test_refuses_to_overwrite_a_foreign_folder(tmp_path: Path, capsys) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="not a generated synthetic dataset"):
        synthetic.generate_dataset(tmp_path / "mine", 2, 2, 64, 0)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"
    argv = ["make-synthetic", "--out", str(tmp_path / "mine"), "--train", "2", "--val", "2"]
    assert main(argv) == 2
    assert "not a generated synthetic dataset" in capsys.readouterr().err


def test_make_synthetic_cli(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    argv = ["make-synthetic", "--out", str(out), "--train", "3", "--val", "2"]
    assert main([*argv, "--image-size", "64", "--seed", "4"]) == 0
    assert "wrote 3 train" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["n_train"], manifest["n_val"], manifest["image_size"], manifest["seed"]) == (
        3,
        2,
        64,
        4,
    )
    assert main(["check-data", "--training_dataset", str(out / "train" / "label.txt")]) == 0
    # same parameters again: kept as they are; --force rewrites
    stamp = (out / "manifest.json").stat().st_mtime_ns
    assert main([*argv, "--image-size", "64", "--seed", "4"]) == 0
    assert (out / "manifest.json").stat().st_mtime_ns == stamp
    assert main([*argv, "--image-size", "64", "--seed", "4", "--force"]) == 0
    assert (out / "manifest.json").stat().st_mtime_ns != stamp
