"""ffcore.chain.model_card: the card's facts, and the synthetic-data warning of detect."""

from __future__ import annotations

import json
from pathlib import Path

from ffcore.chain.model_card import card_path, model_card, synthetic_warning


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
    assert "not evaluated" in card and "do not use it on real photos" in card
    assert "- profile: not recorded" in card and "real photos: not measured yet" in card
    scored = model_card("m.pth", info, 1, {"easy": 0.9512, "hard": 0.5}, "original scale",
                        profile="smoke", photos={"grace_hopper": 4, "astronaut": 9},
                        reference_photos={"grace_hopper": 1, "astronaut": 1})  # fmt: skip
    assert "- easy: 95.12 % AP" in scored and "- profile: smoke" in scored
    assert "- protocol: official WIDER FACE evaluation, original scale" in scored
    assert "not evaluated" not in scored
    assert (
        "detections at score >= 0.5: 4 on grace_hopper, 9 on astronaut; the RetinaFace "
        "reference 1 on grace_hopper, 1 on astronaut" in scored
    )
    alone = model_card("m.pth", info, 1, {"easy": 0.9}, photos={"grace_hopper": 2})
    assert "the RetinaFace reference not installed" in alone


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


def test_evaluation_writes_the_card_with_metrics_and_measured_photos(tmp_path: Path) -> None:
    """write_model_card with metrics runs the model on the sample photos: the counts on the
    card are detect's at score >= 0.5, and the reference finds the one face of each photo."""
    import torch

    from ffcore.chain.model_card import (
        card_profile,
        reference_photo_detections,
        write_model_card,
    )
    from ffcore.data.photos import sample_photos
    from ffcore.evaluation.inference import DetectParams, detect
    from ffcore.models import build_model
    from ffcore.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = build_model("eca_cbam")
    ckpt = save_checkpoint(tmp_path / "phase3_epoch_1.pth", model=model, phase="3", epoch=1,
                           epochs=1)  # fmt: skip
    write_model_card(ckpt, profile="ci")
    assert card_profile(ckpt) == "ci" and "not measured yet" in card_path(ckpt).read_text()
    write_model_card(ckpt, profile="ci", metrics={"easy": 0.5}, protocol="original scale")
    text = card_path(ckpt).read_text()
    counts = {n: len(detect(model, im, DetectParams(conf_threshold=0.5)))
              for n, im in sample_photos().items()}  # fmt: skip
    found = ", ".join(f"{n} on {name}" for name, n in counts.items())
    assert f"detections at score >= 0.5: {found};" in text and "- easy: 50.00 % AP" in text
    reference = reference_photo_detections()
    if reference is not None:  # the pretrained extra: one face found on each photo
        assert dict(reference) == {name: 1 for name in counts}
