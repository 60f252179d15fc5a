"""ffcore.training.model_card: the card's facts, and the synthetic-data warning of detect."""

from __future__ import annotations

import json
from pathlib import Path

from ffcore.training.model_card import card_path, model_card, synthetic_warning


def _info(label: Path) -> dict:
    return {
        "phase": "3",
        "epoch": 3,
        "epochs": 3,
        "model_config": {"variant": "eca_cbam"},
        "train_config": {
            "training_dataset": str(label),
            "image_size": 160,
            "batch_size": 8,
            "seed": 0,
            "device": "cpu",
            "dataset_fingerprint": {"label_sha256": "ab" * 32, "images": 320},
        },
    }


def _dataset(root: Path, synthetic: bool) -> Path:
    (root / "train").mkdir(parents=True)
    (root / "train" / "label.txt").write_text("# a.jpg\n")
    if synthetic:
        (root / "manifest.json").write_text(json.dumps({"seed": 0}))
    return root / "train" / "label.txt"


def test_card_of_a_synthetic_model(tmp_path: Path) -> None:
    info = _info(_dataset(tmp_path / "syn", synthetic=True))
    card = model_card(tmp_path / "w" / "phase3_epoch_3.pth", info, 476_357)
    assert "- parameters: 476,357" in card and "variant eca_cbam" in card
    assert "- trained on synthetic data: yes" in card and "320 images" in card
    assert "not evaluated" in card and "do not use it to detect real faces" in card
    scored = model_card("m.pth", info, 1, {"easy": 0.9512, "hard": 0.5}, "val, original scale")
    assert "- easy: 95.12 % AP" in scored and "- protocol: val, original scale" in scored
    assert "not evaluated" not in scored


def test_warning_from_config_or_card(tmp_path: Path) -> None:
    real = _info(_dataset(tmp_path / "real", synthetic=False))
    ckpt = tmp_path / "w" / "phase3_epoch_3.pth"
    ckpt.parent.mkdir()
    assert synthetic_warning(ckpt, real) is None
    assert "- trained on synthetic data: no" in model_card(ckpt, real, 1)
    syn = _info(_dataset(tmp_path / "syn", synthetic=True))
    assert "synthetic" in synthetic_warning(ckpt, syn)
    # the dataset gone, the card still says so
    moved = _info(tmp_path / "gone" / "train" / "label.txt")
    assert synthetic_warning(ckpt, moved) is None
    card_path(ckpt).write_text(model_card(ckpt, syn, 1))
    assert synthetic_warning(ckpt, moved).startswith("warning: phase3_epoch_3.pth")
