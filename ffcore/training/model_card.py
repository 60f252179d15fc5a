"""``model_card.md`` beside a phase's final checkpoint: architecture and parameter count,
training data and settings, metrics (or "not evaluated"), intended use and limitations.

Whether a model was trained on synthetic data follows from its checkpoint: the dataset of its
``train_config["training_dataset"]`` carries the synthetic generator's manifest (the card says
so too, so ``detect`` can warn without the dataset at hand)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ffcore.data.synthetic import read_manifest

CARD = "model_card.md"
SYNTHETIC_LINE = "- trained on synthetic data: yes"


def dataset_root(training_dataset: str | None) -> Path | None:
    """``<root>/train/label.txt`` -> ``<root>``."""
    if not training_dataset:
        return None
    label = Path(training_dataset)
    return label.parent.parent if label.parent.name == "train" else label.parent


def is_synthetic(train_config: dict[str, Any]) -> bool:
    root = dataset_root(train_config.get("training_dataset"))
    return root is not None and read_manifest(root) is not None


def card_path(checkpoint: str | Path) -> Path:
    return Path(checkpoint).parent / CARD


def model_card(
    checkpoint: str | Path,
    info: dict[str, Any],
    parameters: int,
    metrics: dict[str, float] | None = None,
    protocol: str | None = None,
) -> str:
    """The card's text. ``info``: ``ffcore.models.checkpoint.checkpoint_info`` of the checkpoint;
    ``metrics``: AP per subset (fractions) with its ``protocol``, None: not evaluated."""
    tc, mc = info.get("train_config", {}), info.get("model_config", {})
    synthetic = is_synthetic(tc)
    fp = tc.get("dataset_fingerprint") or {}
    lines = [
        f"# Model card: {Path(checkpoint).name}",
        "",
        "## Model",
        f"- architecture: FeatherFace, variant {mc.get('variant', tc.get('variant', '?'))}, "
        f"attention schedule {tc.get('attention_schedule', 'phased')}",
        f"- parameters: {parameters:,}",
        f"- phase {info['phase']}, epoch {info['epoch']} of {info['epochs']}",
        "",
        "## Training data",
        f"- dataset: {tc.get('training_dataset')}",
        f"- fingerprint: label sha256 {fp.get('label_sha256', '?')}, {fp.get('images', '?')} images",
        SYNTHETIC_LINE if synthetic else "- trained on synthetic data: no",
        f"- image size {tc.get('image_size')}, batch {tc.get('batch_size')}, seed {tc.get('seed')}, "
        f"device {tc.get('device')}",
        "",
        "## Metrics",
    ]
    if metrics:
        lines += [f"- {k}: {100 * v:.2f} % AP" for k, v in metrics.items()]
        lines.append(f"- protocol: {protocol or 'official WIDER FACE protocol'}")
    else:
        lines.append(
            "- not evaluated when this card was written (`python -m ffcore evaluate "
            "--checkpoint ...` scores it with the official WIDER FACE protocol)"
        )
    lines += ["", "## Intended use"]
    if synthetic:
        lines += [
            "- checking that the code path trains and detects (smoke / study profiles); the "
            "ablation study on synthetic faces",
            "",
            "## Limitations",
            "- trained on synthetic faces only: its numbers are not thesis numbers; on real "
            "photos it is unreliable (the smoke phase-3 model: 7 detections at score > 0.5 on "
            "each of the two one-face sample photos, where the RetinaFace reference makes 1; "
            "README, 'Model cards'); do not use it to detect real faces",
        ]
    else:
        lines += [
            "- research on face detection with attention (the thesis); not validated for any "
            "decision about people",
            "",
            "## Limitations",
            "- measured only with the WIDER FACE protocol above; biases of WIDER FACE carry over",
        ]
    return "\n".join(lines) + "\n"


def write_model_card(checkpoint: str | Path) -> Path:
    """Write ``model_card.md`` beside ``checkpoint`` (a final checkpoint of a phase)."""
    from ffcore.models.checkpoint import load_model

    model, info = load_model(checkpoint, map_location="cpu")
    parameters = sum(p.numel() for p in model.parameters())
    path = card_path(checkpoint)
    path.write_text(model_card(checkpoint, info, parameters))
    return path


def synthetic_warning(checkpoint: str | Path, info: dict[str, Any]) -> str | None:
    """One line for stderr when the model was trained on synthetic data (card or config)."""
    card = card_path(checkpoint)
    said = card.is_file() and SYNTHETIC_LINE in card.read_text(errors="replace")
    if said or is_synthetic(info.get("train_config", {})):
        return (
            f"warning: {Path(checkpoint).name} was trained on synthetic faces; not a "
            "detector of real faces (see its model_card.md)"
        )
    return None
