"""label.txt parsing (round trip and every bad-input message), validation, Dataset, collate, CLI."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ffcore.cli import main
from ffcore.data import synthetic
from ffcore.data.widerface import (
    WiderFaceDataset,
    WiderFormatError,
    collate,
    iter_val_images,
    parse_label_file,
    validate_dataset,
)

N_TRAIN, N_VAL, SIZE, SEED = 8, 4, 128, 3


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic.generate_dataset(
        tmp_path_factory.mktemp("wider") / "syn", N_TRAIN, N_VAL, SIZE, SEED
    )


def _write(tmp_path: Path, text: str | bytes, name: str = "label.txt") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


# -- parsing ----------------------------------------------------------------------------------
def test_round_trip_against_generator(root: Path) -> None:
    parsed = parse_label_file(root / "train" / "label.txt")
    truth = list(synthetic.iter_images("train", N_TRAIN, SIZE, SEED))
    assert len(parsed.records) == N_TRAIN
    assert parsed.faces == sum(len(im.faces) for im in truth) > N_TRAIN
    n_valid = n_missing = 0
    for rec, im in zip(parsed.records, truth, strict=True):
        assert rec.path == root / "train" / "images" / im.event / f"{im.name}.jpg"
        assert rec.path.is_absolute() and rec.path.is_file()
        expect = np.array([(x, y, x + w, y + h) for x, y, w, h in (f.box for f in im.faces)])
        np.testing.assert_array_equal(rec.boxes, expect.reshape(-1, 4))
        for face, lm, ok in zip(im.faces, rec.landmarks, rec.landmark_valid, strict=True):
            if ok:
                np.testing.assert_allclose(lm, face.landmarks, atol=6e-4)
                n_valid += 1
            else:
                assert (lm == -1).all()
                n_missing += 1
            if face.height < synthetic.LANDMARK_MIN_HEIGHT:
                assert not ok
    assert n_valid > 0 and n_missing > 0


def test_val_label_carries_every_landmark(root: Path) -> None:
    """The synthetic val set keeps all landmarks: they are the reference of the landmark NME."""
    parsed = parse_label_file(root / "val" / "label.txt")
    assert len(parsed.records) == N_VAL
    assert all(r.landmark_valid.all() for r in parsed.records)
    assert sum(len(r.boxes) for r in parsed.records) > 0


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("# a.jpg\n1 2 3 4 5\n", 2, "has 5 numbers; expected 20"),
        ("# a.jpg\n1 2 3 4\n1 2 x 4\n", 3, "non-numeric field 'x' (number 3"),
        ("# a.jpg\n1 2 nan 4\n", 2, "non-finite"),
        ("\n1 2 3 4\n# a.jpg\n", 2, "face line before any '# relative/path.jpg' line"),
        ('{"images": []}\n', 1, "not a WIDER label file"),
        ("0--Parade/a.jpg\n1\n1 2 3 4 0 0 0 0 0 0\n", 1, "wider_face_*_bbx_gt.txt"),
        ("#\n1 2 3 4\n", 1, "without an image path"),
    ],
)
def test_bad_input_names_file_and_line(tmp_path: Path, text: str, line: int, fragment) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(WiderFormatError) as info:
        parse_label_file(path)
    assert str(info.value).startswith(f"{path.absolute()}:{line}: ")
    assert fragment in str(info.value)
    assert info.value.line == line


def test_faces_required(tmp_path: Path) -> None:
    path = _write(tmp_path, "# a.jpg\n# b.jpg\n1 2 3 4\n# c.jpg\n")
    assert len(parse_label_file(path).records) == 3  # empty images are allowed by default
    with pytest.raises(WiderFormatError, match=r"label.txt:1: image 'a.jpg' has no face lines"):
        parse_label_file(path, require_faces=True)
    report = validate_dataset(path, require_faces=True)
    assert any(
        e.endswith("label.txt:4: image 'c.jpg' has no face lines (faces are required)")
        for e in report.errors
    )


def test_not_text_and_empty(tmp_path: Path) -> None:
    with pytest.raises(WiderFormatError, match="not UTF-8 text"):
        parse_label_file(_write(tmp_path, b"\xff\xd8\xff\xe0 jpeg bytes"))
    with pytest.raises(WiderFormatError, match="no '# relative/path.jpg' lines"):
        parse_label_file(_write(tmp_path, "\n\n", name="empty.txt"))
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        parse_label_file(tmp_path / "nope.txt")


def test_degenerate_boxes_dropped_with_one_counted_warning(tmp_path: Path) -> None:
    path = _write(tmp_path, "# a.jpg\n1 2 0 4\n1 2 3 4\n5 5 3 -1\n# b.jpg\n0 0 0 0\n2 2 6 6\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parsed = parse_label_file(path)
    assert len(caught) == 1
    assert "dropped 3 degenerate box(es)" in str(caught[0].message)
    assert parsed.dropped_degenerate == 3 and parsed.faces == 2
    np.testing.assert_array_equal(parsed.records[0].boxes, [[1, 2, 4, 6]])
    np.testing.assert_array_equal(parsed.records[1].boxes, [[2, 2, 8, 8]])


def test_landmarks_parsed_and_missing_marked(tmp_path: Path) -> None:
    lms = " ".join(f"{10 + k} {20 + k} 0.0" for k in range(5))
    path = _write(tmp_path, f"# e/a.jpg 640 480\n1 2 30 40 {lms} 0.9\n5 6 7 8 {'-1 ' * 16}\n")
    rec = parse_label_file(path).records[0]
    assert rec.path == tmp_path.absolute() / "images" / "e" / "a.jpg"
    np.testing.assert_array_equal(rec.boxes, [[1, 2, 31, 42], [5, 6, 12, 14]])
    np.testing.assert_array_equal(rec.landmarks[0], [10, 20, 11, 21, 12, 22, 13, 23, 14, 24])
    np.testing.assert_array_equal(rec.landmarks[1], [-1] * 10)
    np.testing.assert_array_equal(rec.landmark_valid, [True, False])


# -- validation -------------------------------------------------------------------------------
def test_validate_synthetic_counts(root: Path) -> None:
    report = validate_dataset(root / "train" / "label.txt", val_root=root / "val")
    assert report.ok, report.errors
    lines = (root / "train" / "label.txt").read_text().splitlines()
    faces = [ln.split() for ln in lines if not ln.startswith("#")]
    heights = np.array([float(f[3]) for f in faces])
    assert report.images == sum(ln.startswith("#") for ln in lines) == N_TRAIN
    assert report.faces == len(faces)
    assert report.faces_with_landmarks == sum(f[4] != "-1" for f in faces)
    counts, _ = np.histogram(heights, bins=[0, 16, 32, 64, 128, 256, np.inf])
    assert list(report.size_histogram.values()) == counts.tolist()
    assert report.val_images == N_VAL
    text = str(report)
    assert f"faces                {report.faces:>8,}" in text and "no errors" in text
    report.raise_if_errors()


def test_validate_reports_missing_and_unreadable_images(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "ok.jpg"), np.zeros((20, 20, 3), np.uint8))
    (tmp_path / "images" / "bad.jpg").write_bytes(b"not a jpeg")
    path = _write(tmp_path, "# ok.jpg\n1 1 5 5\n# missing.jpg\n1 1 5 5\n# bad.jpg\n1 2 x 4\n")
    report = validate_dataset(path)
    errs = sorted(report.errors)
    assert len(errs) == 3
    assert f"{path}:3: image not found: {tmp_path / 'images' / 'missing.jpg'}" in errs
    assert any(e.startswith(f"{path}:5: image cannot be read") for e in errs)
    assert any(e.startswith(f"{path}:6: non-numeric field 'x'") for e in errs)
    with pytest.raises(ValueError, match="missing.jpg"):
        report.raise_if_errors()
    ds = WiderFaceDataset(_write(tmp_path, "# missing.jpg\n1 1 5 5\n", "l2.txt"), 32)
    with pytest.raises(FileNotFoundError, match=r"l2.txt:1: image not found"):
        ds[0]


# -- dataset ----------------------------------------------------------------------------------
def test_dataset_targets_and_collate(root: Path) -> None:
    ds = WiderFaceDataset(root / "train" / "label.txt", 96, augment=False)
    batch = [ds[i] for i in range(3)]
    images, targets = collate(batch)
    assert images.shape == (3, 3, 96, 96) and images.dtype == torch.float32
    assert len(targets) == 3
    for i, t in enumerate(targets):
        rec = ds.records[i]
        img = cv2.imread(str(rec.path))
        h, w = img.shape[:2]
        n = len(rec.boxes)
        assert t["boxes"].shape == (n, 4) and t["landmarks"].shape == (n, 10)
        assert t["landmark_valid"].dtype == torch.bool
        # plain resize: normalised coordinates are the original ones divided by the image size
        expect = rec.boxes / np.array([w, h, w, h], np.float32)
        np.testing.assert_allclose(t["boxes"].numpy(), expect, rtol=1e-5, atol=1e-6)
        v = rec.landmark_valid
        scale = np.tile(np.array([w, h], np.float32), 5)
        np.testing.assert_allclose(t["landmarks"][v].numpy(), rec.landmarks[v] / scale, atol=1e-6)
        assert (t["landmarks"][~v] == -1).all()


def test_augmented_batches_line_up_and_are_reproducible(root: Path) -> None:
    ds = WiderFaceDataset(root / "train" / "label.txt", 96, augment=True, seed=7)
    ds.set_epoch(2)
    seq = list(DataLoader(ds, batch_size=4, collate_fn=collate, num_workers=0))
    par = list(DataLoader(ds, batch_size=4, collate_fn=collate, num_workers=2))
    for (ia, ta), (ib, tb) in zip(seq, par, strict=True):
        assert torch.equal(ia, ib)
        for a, b in zip(ta, tb, strict=True):
            assert all(torch.equal(a[k], b[k]) for k in a)
    ds.set_epoch(3)
    assert not torch.equal(collate([ds[0]])[0], seq[0][0][:1])
    faces = 0
    for images, targets in seq:
        assert images.shape[1:] == (3, 96, 96)
        for t in targets:
            b = t["boxes"]
            assert ((b >= 0) & (b <= 1)).all() and (b[:, 2:] > b[:, :2]).all()
            lm = t["landmarks"][t["landmark_valid"]].reshape(-1, 5, 2)
            bx = b[t["landmark_valid"]]
            # left eye left of right eye, left mouth corner left of right (mirror swaps them)
            assert (lm[:, 0, 0] < lm[:, 1, 0]).all() and (lm[:, 3, 0] < lm[:, 4, 0]).all()
            # eyes above the mouth; landmarks of faces not cut by the crop lie in their box
            assert (lm[:, :2, 1].max(1).values < lm[:, 3:, 1].min(1).values).all()
            whole = ((bx > 0.001) & (bx < 0.999)).all(1)
            inside = (lm[..., 0] >= bx[:, None, 0]) & (lm[..., 0] <= bx[:, None, 2])
            inside &= (lm[..., 1] >= bx[:, None, 1]) & (lm[..., 1] <= bx[:, None, 3])
            assert inside[whole].all()
            faces += len(b)
    assert faces > N_TRAIN


# -- validation images and CLI ------------------------------------------------------------------
def test_iter_val_images_order(root: Path, tmp_path: Path) -> None:
    from ffcore.data.wider_mat import read_ground_truth

    gt = read_ground_truth(root / "ground_truth")
    got = [(v.event, v.name) for v in iter_val_images(root)]
    assert got == [(e, n) for e, names in zip(gt.events, gt.images, strict=True) for n in names]
    assert all(v.path.is_file() for v in iter_val_images(root))
    # without ground truth: sorted by event then name
    bare = tmp_path / "bare"
    for v in iter_val_images(root):
        (bare / "val" / "images" / v.event).mkdir(parents=True, exist_ok=True)
        (bare / "val" / "images" / v.event / f"{v.name}.jpg").write_bytes(v.path.read_bytes())
    names = [(v.event, v.name) for v in iter_val_images(bare)]
    assert names == sorted(got)


def test_check_data_cli(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    label = root / "train" / "label.txt"
    assert main(["check-data", "--training_dataset", str(label), "--val-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^  images +{N_TRAIN} ", out, re.M) and "no errors" in out
    # a label file whose image is missing: exit 1 and the error names label file and line
    bad = _write(tmp_path, f"{label.read_text().splitlines()[0]}\n1 1 5 5\n")
    assert main(["check-data", "--training_dataset", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:1: image not found" in err
    assert main(["check-data", "--training_dataset", str(tmp_path / "none.txt")]) == 1
    assert "label file not found" in capsys.readouterr().err
