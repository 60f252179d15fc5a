"""Issue 20, a hostile tester's files: one bad file never sinks a batch, every user-facing error
is one line naming the file (and label line), and the stored pixels are what boxes refer to."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from ffcore.cli import main
from ffcore.data.widerface import (
    WiderFormatError,
    exif_orientation,
    parse_label_file,
    read_image,
    validate_dataset,
)


def _jpeg(h: int, w: int, seed: int = 0) -> bytes:
    image = (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return buf.tobytes()


def _with_orientation(jpeg: bytes, orientation: int) -> bytes:
    """A minimal EXIF APP1 segment (big-endian TIFF, IFD0 with one Orientation entry) after
    the start-of-image marker."""
    entry = (0x0112).to_bytes(2, "big") + (3).to_bytes(2, "big") + (1).to_bytes(4, "big")
    entry += orientation.to_bytes(2, "big") + b"\0\0"
    tiff = b"MM" + (42).to_bytes(2, "big") + (8).to_bytes(4, "big")
    tiff += (1).to_bytes(2, "big") + entry + (0).to_bytes(4, "big")
    payload = b"Exif\0\0" + tiff
    app1 = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    return jpeg[:2] + app1 + jpeg[2:]


def _zero_scan(jpeg: bytes) -> bytes:
    """The entropy-coded data zeroed, every marker (SOS header, EOI) kept."""
    data = bytearray(jpeg)
    sos = data.rfind(b"\xff\xda")
    start = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")
    end = data.rfind(b"\xff\xd9")
    data[start:end] = bytes(end - start)
    return bytes(data)


def _dataset(tmp_path: Path, label: str | bytes, images: dict[str, bytes]) -> Path:
    """``train/label.txt`` with ``images`` (relative path -> bytes) under ``train/images``."""
    train = tmp_path / "train"
    train.mkdir()
    for rel, data in images.items():
        (train / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        (train / "images" / rel).write_bytes(data)
    path = train / "label.txt"
    path.write_bytes(label.encode() if isinstance(label, str) else label)
    return path


# -- defect 4: EXIF orientation -------------------------------------------------------------------
def test_exif_rotation_is_ignored_with_one_warning_per_file(tmp_path: Path, capsys) -> None:
    rotated = _with_orientation(_jpeg(124, 100), 6)  # stored 100 wide, 124 high
    assert exif_orientation(rotated) == 6 and exif_orientation(_jpeg(8, 8)) is None
    # a box low in the stored image: below the rotated (124x100) view's bottom
    label = _dataset(tmp_path, "# e/rot.jpg\n10 100 20 20\n", {"e/rot.jpg": rotated})
    with pytest.warns(UserWarning, match=r"rot\.jpg: EXIF orientation 6 ignored.*100x124"):
        image = read_image(label.parent / "images" / "e" / "rot.jpg")
    assert image.shape == (124, 100, 3)
    with pytest.warns(UserWarning, match="EXIF orientation 6"):
        report = validate_dataset(label)
    assert report.ok and report.boxes_outside_image == 0, report
    with pytest.warns(UserWarning) as caught:
        assert main(["check-data", "--training_dataset", str(label)]) == 0
    assert "lies outside" not in capsys.readouterr().out
    assert [str(w.message).count("EXIF orientation 6 ignored") for w in caught] == [1]


# -- defect 5: corrupt scan data ------------------------------------------------------------------
def test_zeroed_scan_data_is_an_error_naming_file_and_line(tmp_path: Path, capsys) -> None:
    label = _dataset(
        tmp_path,
        "# e/good.jpg\n1 1 5 5\n# e/zero.jpg\n1 1 5 5\n",
        {"e/good.jpg": _jpeg(64, 48), "e/zero.jpg": _zero_scan(_jpeg(124, 100))},
    )
    report = validate_dataset(label)
    assert len(report.errors) == 1, report.errors
    assert report.errors[0].startswith(f"{label}:3: image data is corrupt (libjpeg: Corrupt JPEG")
    assert report.errors[0].endswith("zero.jpg")
    assert main(["check-data", "--training_dataset", str(label)]) == 1
    err = capsys.readouterr().err
    assert f"{label}:3: image data is corrupt" in err
    assert err.count("Corrupt JPEG data") == 1  # ours, naming the file; libjpeg's own is kept


# -- defect 10: small ones ------------------------------------------------------------------------
def test_bom_is_accepted(tmp_path: Path) -> None:
    label = _dataset(tmp_path, "\ufeff# e/a.jpg\n1 1 5 5\n".encode(), {"e/a.jpg": _jpeg(16, 16)})
    parsed = parse_label_file(label)
    assert [r.path.name for r in parsed.records] == ["a.jpg"] and parsed.faces == 1
    assert validate_dataset(label).ok


@pytest.mark.parametrize("rel", ["../../../../dev/zero", "e/../../x.jpg", "/dev/zero"])
def test_label_paths_stay_inside_the_image_folder(tmp_path: Path, rel: str) -> None:
    label = _dataset(tmp_path, f"# e/a.jpg\n1 1 5 5\n# {rel}\n1 1 5 5\n", {"e/a.jpg": _jpeg(8, 8)})
    with pytest.raises(WiderFormatError, match=rf"{label}:3: image path .* the image folder"):
        parse_label_file(label)
    report = validate_dataset(label)
    assert [e.split(": ")[0] for e in report.errors] == [f"{label}:3"], report.errors
    assert report.images == 1  # the good image is still checked


def test_a_symlink_to_a_device_is_not_read(tmp_path: Path) -> None:
    label = _dataset(tmp_path, "# e/z.jpg\n1 1 5 5\n", {})
    (label.parent / "images" / "e").mkdir(parents=True)
    os.symlink("/dev/zero", label.parent / "images" / "e" / "z.jpg")
    report = validate_dataset(label)
    assert report.errors == (
        f"{label}:1: image is not a regular file: {label.parent}/images/e/z.jpg",
    )


def test_image_names_keep_their_exact_spacing(tmp_path: Path) -> None:
    label = _dataset(tmp_path, "# e/a  b.jpg\n1 1 5 5\n", {"e/a  b.jpg": _jpeg(16, 16)})
    assert parse_label_file(label).records[0].path.name == "a  b.jpg"
    assert validate_dataset(label).ok
