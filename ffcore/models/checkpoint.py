"""Reading checkpoints (below training, so evaluation and export never import the trainer).

``ffcore.training.checkpoint`` writes them; the format is described there. Everything here
checks what it reads and raises ``CheckpointError`` naming the file.
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ffcore.config import ModelConfig, from_dict
from ffcore.schedule import AS_SPECIFIED, Phase, get_phase

FORMAT = "ffcore-checkpoint"
FORMAT_VERSION = 1
_REQUIRED = ("model", "epoch", "epochs", "phase", "model_config")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file."""


def final_checkpoint_name(phase: Phase, epochs: int) -> str:
    """``phase1_epoch_30.pth`` for the table's epochs; a shorter run is named after its epochs."""
    return dataclasses.replace(phase, epochs=epochs).checkpoint_name


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") else model


def _first_line(exc: BaseException) -> str:
    """``Type: first sentence`` of an exception, without advice about ``weights_only``."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    text = text.split(". ")[0] if len(text) > 160 else text
    if "weights" in text.lower():  # PyTorch's weights_only refusal: its advice is unsafe
        text = "not a torch.save file of tensors"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


TRAINING_USE = "start or resume a phase"
MODEL_USE = "be loaded as a FeatherFace model"


def _first_keys(keys: list[str], n: int = 3) -> str:
    more = f" (and {len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", use: str = TRAINING_USE
) -> dict[str, Any]:
    """Read and check a checkpoint (``weights_only=True``); any problem is a CheckpointError.
    ``use`` (what the caller wants it for: ``TRAINING_USE``, ``MODEL_USE``) words the refusal of
    a file that is not an ffcore checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated, corrupt, or pickled objects weights_only refuses
        if isinstance(exc, pickle.UnpicklingError) and "Unsupported global" in str(exc):
            # PyTorch's own message advises weights_only=False: an unsafe load, never passed on
            raise CheckpointError(
                f"{path}: not an ffcore checkpoint: it holds pickled Python objects (e.g. a "
                "whole nn.Module saved with torch.save(model)), which are never loaded "
                "(unsafe); an ffcore checkpoint holds only tensors and plain containers"
            ) from None
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated or corrupt?): {_first_line(exc)}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        if isinstance(state, dict):
            missing = [k for k in ("format", *_REQUIRED) if k not in state]
            found = f"missing keys {_first_keys(missing)}; its keys: {_first_keys(list(state))}"
        else:
            found = f"it holds a {type(state).__name__}"
        raise CheckpointError(
            f"{path}: cannot {use}: not an ffcore checkpoint ({found}); a bare state dict or "
            "another project's file is not one"
        )
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {state.get('format_version')} is not supported "
            f"(this code reads version {FORMAT_VERSION})"
        )
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    try:
        get_phase(state["phase"], phase3_variant_of(state))
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    state["path"] = str(path)
    return state


def model_config_of(state: dict[str, Any]) -> ModelConfig:
    try:
        return from_dict(ModelConfig, state["model_config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{state.get('path', '<checkpoint>')}: bad model_config: {exc}"
        ) from None


def load_weights(model: nn.Module, state: dict[str, Any]) -> None:
    """Load the checkpoint's weights strictly; a mismatch is one line naming the file and the
    first missing and unexpected keys (or the first shape that differs)."""
    where = state.get("path", "<checkpoint>")
    net = unwrap(model)
    variant = getattr(getattr(net, "config", None), "variant", type(net).__name__)
    expected, held = list(net.state_dict()), state["model"]
    missing = [k for k in expected if k not in held]
    unexpected = [k for k in held if k not in set(expected)]
    if missing or unexpected:
        parts = [f"missing keys {_first_keys(missing)}"] if missing else []
        parts += [f"unexpected keys {_first_keys(unexpected)}"] if unexpected else []
        raise CheckpointError(
            f"{where}: cannot {MODEL_USE}: its weights do not fit the model "
            f"({variant}): {'; '.join(parts)}"
        )
    try:
        net.load_state_dict(held, strict=True)
    except RuntimeError as exc:  # shapes: "size mismatch for k: copying a param with shape ..."
        detail = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
        raise CheckpointError(
            f"{where}: cannot {MODEL_USE}: its weights do not fit the model "
            f"({variant}): {_first_keys(detail, 2) if detail else exc}"
        ) from None


def load_model(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """Rebuild the detector from a checkpoint, with the attention (and head-dropout) switches of
    the checkpoint's phase; returned in eval mode. ``info``: phase, epoch, epochs, complete,
    model_config, train_config, path."""
    from ffcore.models import build_from_config
    from ffcore.models.device import resolve_device

    map_location = resolve_device(map_location)  # an unavailable device is not a bad file
    state = load_checkpoint(path, map_location, use=MODEL_USE)
    model = build_from_config(model_config_of(state))
    load_weights(model, state)
    train_config = state.get("train_config", {})
    schedule = train_config.get("attention_schedule", "phased")
    model.apply_phase(get_phase(state["phase"], phase3_variant_of(state)), schedule)
    model.to(map_location).eval()
    return model, checkpoint_info(state)


def phase3_variant_of(state: dict[str, Any]) -> str:
    """The phase-3 variant a checkpoint was trained as (``ffcore.schedule.PHASE3_VARIANTS``;
    older checkpoints, which lack it: the phase table's)."""
    return (state.get("train_config") or {}).get("phase3_variant", AS_SPECIFIED)


def checkpoint_info(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "path": state.get("path"),
        "phase": state["phase"],
        "phase3_variant": phase3_variant_of(state),
        "epoch": state["epoch"],
        "epochs": state["epochs"],
        "complete": state["epoch"] >= state["epochs"],
        "model_config": state["model_config"],
        "train_config": state.get("train_config", {}),
    }
