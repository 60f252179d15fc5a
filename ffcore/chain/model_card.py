"""``model_card.md`` beside a phase's final checkpoint: architecture and parameter count,
training data, profile and settings, metrics with their protocol (or "not evaluated"), intended
use and measured limitations.

Training writes the card (``run_phase``, ``run_phases``); evaluation writes it again with the AP
and with what the model finds on real photos (``write_model_card`` with ``metrics``: the
evaluation notebook for every phase, ``python -m ffcore evaluate`` for a checkpoint with a card): the detections at
score >= 0.5 on the sample photos (``ffcore.data.photos``, one face each) beside the RetinaFace
reference's, a measured limitation of a model trained on synthetic faces.

Whether a model was trained on synthetic data follows from its checkpoint: the dataset of its
``train_config["training_dataset"]`` carries the synthetic generator's manifest (the card says
so too, so ``detect`` can warn without the dataset at hand)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ffcore.atomic import write_text
from ffcore.data.photos import sample_photos
from ffcore.data.synthetic import read_manifest

CARD = "model_card.md"
SYNTHETIC_LINE = "- trained on synthetic data: yes"
PHOTO_SCORE = 0.5  # the operating point of the figures and detect's drawings


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


def photo_detections(model: nn.Module) -> dict[str, int]:
    """Detections at score >= ``PHOTO_SCORE`` on each sample photo, at original scale."""
    from ffcore.evaluation.inference import DetectParams, detect

    params = DetectParams(conf_threshold=PHOTO_SCORE)
    return {name: len(detect(model, image, params)) for name, image in sample_photos().items()}


@functools.cache
def reference_photo_detections() -> tuple[tuple[str, int], ...] | None:
    """``photo_detections`` of the RetinaFace reference (None without its weights); the same
    for every card, so measured once per process."""
    from ffcore.models.reference import load_reference_model, reference_available

    if not reference_available():
        return None
    return tuple(photo_detections(load_reference_model()).items())


def _photo_line(photos: Mapping[str, int] | None, reference: Mapping[str, int] | None) -> str:
    if photos is None:
        return (
            "- real photos: not measured yet (evaluation writes this card again with the "
            "detections on the sample photos)"
        )
    found = ", ".join(f"{n} on {name}" for name, n in photos.items())
    if reference is None:
        ref = "the RetinaFace reference not installed (pip install -e .[pretrained])"
    else:
        ref = "the RetinaFace reference " + ", ".join(
            f"{n} on {name}" for name, n in reference.items()
        )
    return f"- real photos (one face each), detections at score >= {PHOTO_SCORE}: {found}; {ref}"


def model_card(
    checkpoint: str | Path,
    info: dict[str, Any],
    parameters: int,
    metrics: Mapping[str, float] | None = None,
    protocol: str | None = None,
    *,
    profile: str | None = None,
    photos: Mapping[str, int] | None = None,
    reference_photos: Mapping[str, int] | None = None,
) -> str:
    """The card's text. ``info``: ``ffcore.models.checkpoint.checkpoint_info`` of the checkpoint;
    ``metrics``: AP per subset (fractions) with its ``protocol``, None: not evaluated;
    ``profile``: the run profile, None: not recorded (a command-line run); ``photos`` /
    ``reference_photos``: ``photo_detections`` of the model and the reference (None: not
    measured / not installed)."""
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
        f"- profile: {profile or 'not recorded (a command-line run)'}",
        f"- image size {tc.get('image_size')}, batch {tc.get('batch_size')}, seed {tc.get('seed')}, "
        f"device {tc.get('device')}",
        "",
        "## Metrics",
    ]
    if metrics:
        lines += [f"- {k}: {100 * v:.2f} % AP" for k, v in metrics.items()]
        lines.append(f"- protocol: official WIDER FACE evaluation, {protocol or 'original scale'}")
    else:
        lines.append(
            "- not evaluated when this card was written (`python -m ffcore evaluate "
            "--checkpoint ...` scores it with the official WIDER FACE protocol)"
        )
    photo_line = _photo_line(photos, reference_photos)
    lines += ["", "## Intended use"]
    if synthetic:
        lines += [
            "- checking that the code path trains and detects (smoke / study profiles); the "
            "ablation study on synthetic faces",
            "",
            "## Limitations",
            "- trained on synthetic faces only: its numbers are not thesis numbers, and it is no "
            "detector of real faces; do not use it on real photos",
            photo_line,
        ]
    else:
        lines += [
            "- research on face detection with attention (the thesis); not validated for any "
            "decision about people",
            "",
            "## Limitations",
            "- measured only with the WIDER FACE protocol above; biases of WIDER FACE carry over",
            photo_line,
        ]
    return "\n".join(lines) + "\n"


def write_model_card(
    checkpoint: str | Path,
    *,
    profile: str | None = None,
    metrics: Mapping[str, float] | None = None,
    protocol: str | None = None,
    model: nn.Module | None = None,
) -> Path:
    """Write ``model_card.md`` beside ``checkpoint`` (a final checkpoint of a phase). With
    ``metrics`` (an evaluation's AP per subset) the card also measures the model on the sample
    photos beside the reference; ``model``: the checkpoint's model when already loaded."""
    from ffcore.models.checkpoint import checkpoint_info, load_checkpoint, load_model

    if model is None:
        model, info = load_model(checkpoint, map_location="cpu")
    else:  # the model at hand: only the checkpoint's facts are read
        info = checkpoint_info(load_checkpoint(checkpoint))
    parameters = sum(p.numel() for p in model.parameters())
    photos = reference = None
    if metrics is not None:
        photos = photo_detections(model)
        held = reference_photo_detections()
        reference = None if held is None else dict(held)
    path = card_path(checkpoint)
    text = model_card(checkpoint, info, parameters, metrics, protocol, profile=profile,
                      photos=photos, reference_photos=reference)  # fmt: skip
    return write_text(path, text)


def card_profile(checkpoint: str | Path) -> str | None:
    """The profile an existing card names (None: no card, or none recorded)."""
    card = card_path(checkpoint)
    if not card.is_file():
        return None
    for line in card.read_text(errors="replace").splitlines():
        if line.startswith("- profile: ") and "not recorded" not in line:
            return line.removeprefix("- profile: ").strip()
    return None


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
