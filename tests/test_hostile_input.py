"""Issue 20, a hostile tester's files: one bad file never sinks a batch, every user-facing error
is one line naming the file (and label line), and the stored pixels are what boxes refer to."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from errorline import one_error_line

from ffcore.cli import main
from ffcore.data.widerface import (
    WiderFormatError,
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
    from ffcore.data.widerface import exif_orientation

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
    assert err.count("Corrupt JPEG data") == 1  # ours, naming the file; libjpeg's is taken in
    # training's start-up check is the same strict decode
    train = ["train", "--phase", "1", "--training_dataset", str(label), "--device", "cpu"]
    assert main([*train, "--save_folder", str(tmp_path / "w"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{label}:3: image data is corrupt" in err and "Traceback" not in err


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


# -- defect 7: detect on a folder goes on past bad files ------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ffcore.models import build_model
    from ffcore.training.checkpoint import save_checkpoint

    path = tmp_path_factory.mktemp("ck") / "phase3.pth"
    return save_checkpoint(path, model=build_model("eca_cbam"), phase="3", epoch=1, epochs=1)


def test_detect_folder_reports_bad_files_and_goes_on(checkpoint: Path, tmp_path: Path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(_jpeg(64, 64, 1))
    (folder / "b_text.jpg").write_text("not an image")
    os.symlink("loop.jpg", folder / "loop.jpg")  # a symlink loop
    (folder / "c.jpg").write_bytes(_with_orientation(_jpeg(96, 64, 2), 6))
    (folder / "d_zero.png").write_bytes(b"")
    args = ["detect", "--checkpoint", str(checkpoint), "--no-progress", "--batch-size", "2"]
    with pytest.warns(UserWarning, match="EXIF orientation 6"):
        assert main([*args, str(folder)]) == 1
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [Path(r["image"]).name for r in lines] == ["a.jpg", "c.jpg"]
    assert "exif_orientation" not in lines[0]
    assert lines[1]["exif_orientation"] == 6 and "stored" in lines[1]["coordinates"]
    errors = [e for e in captured.err.splitlines() if e.startswith("error: ")]
    assert len(errors) == 3, captured.err
    for name, reason in [
        ("b_text.jpg", "not a decodable image"),
        ("loop.jpg", "symbolic links"),
        ("d_zero.png", "not a decodable image"),
    ]:
        assert any(name in e and reason in e for e in errors), (name, errors)
    assert "Traceback" not in captured.err and "3 file(s) could not be read" in captured.err
    # a glob reaches the loop too; only good files: exit 0
    assert main([*args, str(folder / "[ac].jpg")]) == 0


def test_large_images_run_in_smaller_batches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from ffcore.evaluation import inference

    sizes: list[list[tuple[int, int]]] = []

    def fake(model, images, params, **kw):
        sizes.append([im.shape[:2] for im in images])
        empty = inference.Detections(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))
        return [empty] * len(images)

    monkeypatch.setattr(inference, "detect_batch", fake)
    names = []
    for k, (h, w) in enumerate([(64, 64), (64, 64), (320, 320), (64, 64), (64, 64)]):
        names.append(tmp_path / f"{k}.png")
        cv2.imwrite(str(names[-1]), np.zeros((h, w, 3), np.uint8))
    got = list(inference.detect_files(None, names, progress=False, max_batch_pixels=320 * 320))
    assert len(got) == 5
    assert sizes == [[(64, 64), (64, 64)], [(320, 320)], [(64, 64), (64, 64)]]
    # the default guard: eight 1024 x 1024 inputs at most; a 6000 x 6000 image runs alone
    assert inference.MAX_BATCH_PIXELS == 8 * 1024 * 1024
    assert inference.input_hw(6000, 6000, None) == (6016, 6016)
    with pytest.raises(ValueError, match=r"0\.png: a 64x64 image is too large .*image_size"):
        list(inference.detect_files(None, names[:1], progress=False, max_image_pixels=1000))


# -- defect 9: ONNX files that are not our detector -----------------------------------------------
def test_detect_onnx_refuses_truncated_and_foreign_models(tmp_path: Path, capsys) -> None:
    pytest.importorskip("onnxruntime")
    import onnx
    from onnx import TensorProto, helper

    image = tmp_path / "a.jpg"
    image.write_bytes(_jpeg(32, 32))
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "other",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 32, 32])],
    )
    foreign = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), foreign)
    truncated = tmp_path / "cut.onnx"
    truncated.write_bytes(foreign.read_bytes()[:40])
    for path, fragment in [(truncated, "not a readable ONNX model"), (foreign, "outputs y")]:
        assert main(["detect", "--onnx", str(path), str(image)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert err.startswith(f"error: {path}: ") and fragment in err, err


# -- defect 10: --calib-images ---------------------------------------------------------------------
def test_export_refuses_a_negative_calibration_count(checkpoint: Path, tmp_path: Path, capsys):
    out = tmp_path / "m.onnx"
    args = ["export-onnx", "--checkpoint", str(checkpoint), "--out", str(out)]
    assert main([*args, "--precision", "int8", "--calib-images", "-5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --calib-images must be >= 0, got -5") and not out.exists()


# -- defect 8: outputs that cannot be written ------------------------------------------------------
SMALL = ["--epochs", "1", "--batch-size", "4", "--image-size", "96", "--num-workers", "0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ffcore.data.synthetic import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("out") / "widerface", 4, 2, 96, seed=1)


def _one_error(capsys: pytest.CaptureFixture[str], *names: str) -> str:
    return one_error_line(capsys.readouterr().err, *names)


@pytest.mark.parametrize(
    "command", ["make-synthetic", "train", "evaluate", "export-onnx", "wider-eval"]
)
def test_an_unwritable_output_is_one_line_naming_it(
    command: str, data: Path, checkpoint: Path, tmp_path: Path, capsys
) -> None:
    # tests run as root, where a chmod 555 folder stays writable: a path under a regular file
    # fails the same way for everyone (ENOTDIR)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    out = str(blocker / "sub")
    ck = ["--checkpoint", str(checkpoint)]
    if command == "wider-eval":  # empty predictions for every val image
        from ffcore.data.widerface import iter_val_images
        from ffcore.evaluation.wider_ap import write_prediction_file

        for v in iter_val_images(data):
            write_prediction_file(
                tmp_path / "p" / v.event / f"{v.name}.txt", v.name, np.zeros((0, 5))
            )
    argv = {
        "make-synthetic": ["--out", out, "--train", "1", "--val", "1", "--image-size", "64"],
        "train": ["--phase", "1", "--training_dataset", str(data / "train" / "label.txt")]
        + ["--save_folder", out, "--device", "cpu", "--no-progress", *SMALL],
        "evaluate": [*ck, "--data-root", str(data), "--out", out, "--image-size", "96"],
        "export-onnx": [*ck, "--out", f"{out}.onnx", "--image-size", "64"],
        "wider-eval": [
            "--pred",
            str(tmp_path / "p"),
            "--gt",
            str(data / "ground_truth"),
            "--out",
            out,
        ],
    }[command]
    assert main([command, *argv]) == 2
    _one_error(capsys, str(blocker))


def test_a_full_disk_during_a_checkpoint_save_names_the_folder(
    data: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    def full(*args, **kwargs):
        raise RuntimeError(
            "[enforce fail at inline_container.cc:672] . unexpected pos 4194368 vs 4194256"
        )

    monkeypatch.setattr(torch, "save", full)
    save = tmp_path / "w"
    args = ["train", "--phase", "1", "--training_dataset", str(data / "train" / "label.txt")]
    assert (
        main([*args, "--save_folder", str(save), "--device", "cpu", "--no-progress", *SMALL]) == 2
    )
    line = _one_error(capsys, str(save), "could not be written completely (disk full?)")
    assert "inline_container" in line


def test_a_read_only_folder_is_one_line_naming_the_file(
    data: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(self, *args, **kwargs):  # what a chmod 555 folder gives a non-root user
        raise PermissionError(13, "Permission denied", str(self))

    import ffcore.atomic

    monkeypatch.setattr(Path, "write_text", read_only)
    monkeypatch.setattr(ffcore.atomic, "open", read_only, raising=False)  # every file's writer
    out = tmp_path / "ro"
    args = ["make-synthetic", "--out", str(out), "--train", "1", "--val", "1", "--image-size", "64"]
    assert main(args) == 2
    _one_error(capsys, "label.txt: Permission denied", f"(writing {out})")
    assert not out.exists()
