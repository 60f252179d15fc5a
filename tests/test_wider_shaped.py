"""WIDER-shaped input end to end (issue 20): a small set built like the real WIDER FACE (images
1024 px wide of varying height, up to 700 faces in one image, median face width 16 px, zero-size
boxes, landmarks only on larger faces) goes through check-data, one training step of every phase
at 640 px, evaluation at original scale, detect and the ONNX export; peak memory is printed."""

from __future__ import annotations

import json
import math
import resource
from pathlib import Path

import cv2
import numpy as np
import pytest

from ffcore.cli import main
from ffcore.data.wider_mat import GroundTruth, write_ground_truth

# (event, name, height, faces): width always 1024 px, as WIDER's images are
TRAIN = [
    ("0--Parade", "0_Parade_marchingband_1_5", 1366, 700),
    ("12--Group", "12_Group_Group_12_Group_Group_12_10", 683, 120),
    ("2--Demonstration", "2_Demonstration_Protesters_2_46", 768, 35),
    ("12--Group", "12_Group_Group_12_Group_Group_12_29", 1532, 8),
]
VAL = [TRAIN[0], ("2--Demonstration", "2_Demonstration_Political_Rally_2_71", 576, 60)]
ZERO_SIZE = 3  # boxes with w or h = 0 per image (WIDER has them; they are dropped, counted)


def _faces(rng: np.random.Generator, h: int, n: int) -> np.ndarray:
    """[n, 4] int x y w h; log-normal widths with median 16 px, height 1.25 x width."""
    w = np.clip(np.round(np.exp(rng.normal(math.log(16), 0.9, n))), 2, 400)
    hh = np.round(w * 1.25)
    x = np.floor(rng.uniform(0, 1, n) * (1024 - w))
    y = np.floor(rng.uniform(0, 1, n) * (h - hh))
    return np.stack([x, y, w, hh], axis=1).astype(int)


def _image(rng: np.random.Generator, h: int, boxes: np.ndarray) -> np.ndarray:
    small = rng.integers(0, 255, (h // 16 + 1, 64, 3), dtype=np.uint8)
    img = cv2.resize(small, (1024, h), interpolation=cv2.INTER_LINEAR)
    for x, y, w, bh in boxes:
        tone = tuple(int(v) for v in rng.integers(60, 230, 3))
        cv2.ellipse(
            img, (int(x + w / 2), int(y + bh / 2)), (int(w / 2), int(bh / 2)), 0, 0, 360, tone, -1
        )
    return img


def _face_line(box: np.ndarray, landmarks: bool) -> str:
    x, y, w, h = (int(v) for v in box)
    if not landmarks:
        return f"{x} {y} {w} {h} " + " ".join(["-1.0"] * 15) + " -1.0"
    pts = [(0.3, 0.4), (0.7, 0.4), (0.5, 0.6), (0.35, 0.8), (0.65, 0.8)]
    triples = " ".join(f"{x + u * w:.3f} {y + v * h:.3f} 0.0" for u, v in pts)
    return f"{x} {y} {w} {h} {triples} 0.9"


def _write_split(root: Path, split: str, items: list, seed: int) -> dict:
    lines, boxes_of = [], {}
    for k, (event, name, h, n) in enumerate(items):
        rng = np.random.default_rng([seed, k, n])
        boxes = _faces(rng, h, n)
        path = root / split / "images" / event / f"{name}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), _image(rng, h, boxes), [cv2.IMWRITE_JPEG_QUALITY, 90])
        zero = np.array([[10 + 5 * j, 10, j % 2 * 4, (j + 1) % 2 * 4] for j in range(ZERO_SIZE)])
        all_boxes = np.concatenate([boxes, zero])
        lines.append(f"# {event}/{name}.jpg")
        for box in all_boxes:
            lines.append(
                _face_line(box, box[2] >= 40) if split == "train" else " ".join(map(str, box))
            )
        boxes_of[(event, name)] = all_boxes
    (root / split / "label.txt").write_text("\n".join(lines) + "\n")
    return boxes_of


def _write_ground_truth(root: Path, boxes_of: dict) -> None:
    events = sorted({e for e, _ in boxes_of})
    names = [[n for e2, n in boxes_of if e2 == e] for e in events]
    boxes = [
        [boxes_of[(e, n)].astype(np.float64) for n in ns]
        for e, ns in zip(events, names, strict=True)
    ]

    def keep(min_w: float) -> list[list[np.ndarray]]:
        return [[np.flatnonzero(b[:, 2] >= min_w).astype(np.int64) + 1 for b in bs] for bs in boxes]

    gt = GroundTruth(events, names, boxes, {"easy": keep(32), "medium": keep(16), "hard": keep(1)})
    write_ground_truth(root / "ground_truth", gt)


@pytest.fixture(scope="module")
def wider(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wider_shaped") / "widerface"
    _write_split(root, "train", TRAIN, 0)
    _write_ground_truth(root, _write_split(root, "val", VAL, 1))
    return root


def test_the_set_is_wider_shaped(wider: Path) -> None:
    from ffcore.data.widerface import parse_label_file

    with pytest.warns(UserWarning, match=f"dropped {ZERO_SIZE * len(TRAIN)} degenerate"):
        parsed = parse_label_file(wider / "train" / "label.txt")
    widths = np.concatenate([r.boxes[:, 2] - r.boxes[:, 0] for r in parsed.records])
    assert max(len(r.boxes) for r in parsed.records) == 700
    assert 14 <= np.median(widths) <= 18
    heights = {cv2.imread(str(r.path)).shape for r in parsed.records}
    assert {s[1] for s in heights} == {1024} and len({s[0] for s in heights}) == len(TRAIN)


@pytest.mark.slow
def test_wider_shaped_input_end_to_end(wider: Path, tmp_path: Path, capsys) -> None:
    label = wider / "train" / "label.txt"
    # check-data: every image opened, zero-size boxes counted as dropped, no errors
    assert main(["check-data", "--training_dataset", str(label), "--val-root", str(wider)]) == 0
    out = capsys.readouterr().out
    assert "no errors" in out and f"dropped degenerate   {ZERO_SIZE * len(TRAIN):>8,}" in out
    # one step of every phase at 640 px on the 700-face image (each step costs a forward and a
    # backward pass plus two probe passes, slow on 2 cores: the other images add no new shape)
    one = label.with_name("label_700.txt")
    one.write_text("# " + label.read_text().split("# ")[1])
    save = tmp_path / "weights"
    train = ["train", "--all", "--training_dataset", str(one), "--save_folder", str(save)]
    small = ["--epochs", "1", "--batch-size", "1", "--image-size", "640", "--num-workers", "0"]
    assert main([*train, *small, "--device", "cpu", "--no-progress"]) == 0
    reported = capsys.readouterr().out
    checkpoints = [line.split()[-1] for line in reported.splitlines() if "checkpoint " in line]
    assert len(checkpoints) == 4, reported
    final = checkpoints[-1]
    # evaluation at original scale (1024 px wide images, up to 700 faces + zero-size boxes)
    pred = tmp_path / "pred"
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                final,
                "--data-root",
                str(wider),
                "--out",
                str(pred),
                "--json",
            ]
        )
        == 0
    )
    ap = json.loads(capsys.readouterr().out)
    assert ap["protocol"] == "original scale" and all(
        0.0 <= ap[s] <= 1.0 for s in ("easy", "medium", "hard")
    )
    # detect on the val folders (batched, original scale)
    images = sorted(str(p) for p in (wider / "val" / "images").glob("*/*.jpg"))
    assert main(["detect", "--checkpoint", final, "--no-progress", *images]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(VAL)
    # ONNX export at 640 and detection with it
    onnx_path = tmp_path / "m.onnx"
    assert (
        main(["export-onnx", "--checkpoint", final, "--out", str(onnx_path), "--image-size", "640"])
        == 0
    )
    pytest.importorskip("onnxruntime")
    capsys.readouterr()
    assert main(["detect", "--onnx", str(onnx_path), "--no-progress", "--jsonl", images[0]]) == 0
    assert json.loads(capsys.readouterr().out)["image"] == images[0]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    with capsys.disabled():
        print(f"\nWIDER-shaped end to end: peak resident memory {peak:,.0f} MiB")
    assert peak < 8 * 1024
