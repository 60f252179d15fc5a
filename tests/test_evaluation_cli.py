"""`python -m ffcore wider-eval` and `python -m ffcore evaluate`: JSON on stdout, ap.json, errors."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from ffcore.cli import main
from ffcore.data.wider_mat import GroundTruth, write_ground_truth
from ffcore.evaluation.wider_ap import evaluate, write_predictions


def _case(tmp_path: Path) -> tuple[Path, Path, dict[str, float]]:
    face_a, face_b = [10.0, 10, 20, 20], [50.0, 50, 30, 30]
    gt = GroundTruth(
        events=["0--E"],
        images=[["a", "b"]],
        boxes=[[np.array([face_a, face_b]), np.array([face_a])]],
        keep={
            "easy": [[np.array([1]), np.array([1])]],
            "medium": [[np.array([1, 2]), np.array([1])]],
            "hard": [[np.array([1, 2]), np.array([1])]],
        },
    )
    # FP on top (score .9), then face_a of image a; face_b and image b missed
    preds = [[np.array([[200, 200, 9, 9, 0.9], [*face_a, 0.5]]), np.array([[0, 0, 3, 3, 0.1]])]]
    write_ground_truth(tmp_path / "gt", gt)
    write_predictions(tmp_path / "pred", gt, preds)
    return tmp_path / "pred", tmp_path / "gt", evaluate(preds, gt).as_dict()


def test_wider_eval_json_and_ap_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred, gt, expected = _case(tmp_path)
    # by hand: easy has 2 faces, one found after one FP -> (r, p) = (0, 0), (.5, .5): AP .25
    assert expected["easy"] == pytest.approx(0.25)
    assert main(["wider-eval", "--pred", str(pred), "--gt", str(gt), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == expected
    assert json.loads((pred / "ap.json").read_text()) == expected
    assert (
        main(["wider-eval", "--pred", str(pred), "--gt", str(gt), "--out", str(tmp_path / "o")])
        == 0
    )
    out = capsys.readouterr().out
    assert "easy" in out and "25.00%" in out and (tmp_path / "o" / "ap.json").is_file()


def test_wider_eval_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred, gt, _ = _case(tmp_path)
    assert main(["wider-eval", "--pred", str(pred), "--gt", str(tmp_path)]) == 2
    assert "wider_face_val.mat" in capsys.readouterr().err
    (pred / "0--E" / "b.txt").unlink()
    assert main(["wider-eval", "--pred", str(pred), "--gt", str(gt)]) == 2
    assert "0--E/b.txt" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_command_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ffcore.data.synthetic import generate_dataset
    from ffcore.models import build_model
    from ffcore.training.checkpoint import save_checkpoint

    root = generate_dataset(tmp_path / "data", n_train=1, n_val=2, image_size=96, seed=2)
    torch.manual_seed(0)
    model = build_model("eca_cbam")
    ckpt = save_checkpoint(
        tmp_path / "phase3.pt",
        model=model,
        phase="3",
        epoch=1,
        epochs=1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # tiny set: a subset may keep no face
        code = main(["evaluate", "--checkpoint", str(ckpt), "--data-root", str(root), "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"easy", "medium", "hard", "protocol", "landmarks"}
    assert printed["protocol"] == "original scale"
    pred_dir = tmp_path / "phase3_widerface_val"
    assert json.loads((pred_dir / "ap.json").read_text()) == printed
    assert len(list(pred_dir.glob("*/*.txt"))) == 2
