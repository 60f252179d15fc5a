"""`python -m ffcore detect` on several images: one JSON line per image, images/s on stderr,
the batched result equal to the single-image one, and onnxruntime as the runtime."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ffcore.cli import main


def _grace_hopper() -> np.ndarray:
    from matplotlib import cbook

    return cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    photo = _grace_hopper()
    out = tmp_path / "images"
    out.mkdir()
    cv2.imwrite(str(out / "a_full.png"), photo)  # 600x512: the batch canvas (608x512)
    cv2.imwrite(str(out / "b_small.jpg"), cv2.resize(photo, (256, 300)))
    cv2.imwrite(str(out / "c_flipped.png"), cv2.flip(photo, 1))
    (out / "readme.txt").write_text("not an image")
    return out


@pytest.mark.slow
def test_folder_gives_one_json_line_per_image(folder: Path, capsys) -> None:
    pytest.importorskip("retinaface", reason="the pretrained extra is not installed")
    args = ["detect", "--pretrained", "retinaface", "--batch-size", "2", "--no-progress"]
    assert main([*args, str(folder)]) == 0
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [Path(r["image"]).name for r in lines] == ["a_full.png", "b_small.jpg", "c_flipped.png"]
    assert all(len(r["faces"]) == 1 for r in lines)  # Grace Hopper, in each copy
    assert "3 image(s)" in captured.err and "images/s" in captured.err
    # the full-size photo sets the canvas: the batched faces are the single-image ones
    assert main(["detect", "--pretrained", "retinaface", str(folder / "a_full.png"), "--json"]) == 0
    single = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(lines[0]["faces"][0]["box"], single[0]["box"], atol=0.02)
    assert abs(lines[0]["faces"][0]["score"] - single[0]["score"]) < 1e-4
    # a glob selects, --jsonl forces JSON lines for one image
    assert main([*args, str(folder / "*.png"), "--jsonl"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_bad_arguments_name_what_is_wrong(folder: Path, tmp_path: Path, capsys) -> None:
    ckpt = tmp_path / "none.pt"
    assert main(["detect", "--checkpoint", str(ckpt), str(folder), "--json"]) == 2
    assert "--json take one image" in capsys.readouterr().err
    assert main(["detect", "--checkpoint", str(ckpt), str(tmp_path / "zz*.jpg")]) == 2
    assert "zz*.jpg" in capsys.readouterr().err
    assert main(["detect", "--checkpoint", str(ckpt), str(folder), "--runtime", "onnx"]) == 2
    assert "--onnx" in capsys.readouterr().err


@pytest.mark.slow
def test_onnx_runtime_on_an_int8_export(folder: Path, tmp_path: Path, capsys) -> None:
    """export-onnx --precision int8 of the reference weights, then detect --runtime onnx with the
    fixed 320 px model: the same single face as eager PyTorch at 320 px."""
    pytest.importorskip("retinaface", reason="the pretrained extra is not installed")
    pytest.importorskip("onnxruntime")
    from ffcore.data.synthetic import generate_dataset

    data = generate_dataset(tmp_path / "data", n_train=1, n_val=4, image_size=128, seed=3)
    model = tmp_path / "ref_int8.onnx"
    argv = ["export-onnx", "--pretrained", "retinaface", "--out", str(model), "--precision"]
    argv += ["int8", "--image-size", "320", "--calib-data-root", str(data), "--calib-images", "4"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "int8" in out and "Conv x" in out
    assert main(["detect", "--onnx", str(model), str(folder), "--no-progress"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3
    assert main(["detect", "--pretrained", "retinaface", str(folder), "--image-size", "320"]) == 0
    eager = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for q, e in zip(lines, eager, strict=True):
        assert len(q["faces"]) == len(e["faces"]) == 1
        (x, y, w, h), (x2, y2, w2, h2) = q["faces"][0]["box"], e["faces"][0]["box"]
        inter = max(0, min(x + w, x2 + w2) - max(x, x2)) * max(0, min(y + h, y2 + h2) - max(y, y2))
        assert inter / (w * h + w2 * h2 - inter) > 0.8
