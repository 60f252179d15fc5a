"""Model zoo entry point: build every detector through ``build_model``."""

from __future__ import annotations

from typing import Any

from ffcore.config import VARIANT_SPECS, VARIANTS, ModelConfig
from ffcore.models.detector import MODULE_GROUPS, FeatherFace
from ffcore.models.modes import eval_mode


def model_config(variant: str, **overrides: Any) -> ModelConfig:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    return ModelConfig(variant=variant, **{**dict(VARIANT_SPECS[variant].defaults), **overrides})


def build_model(variant: str = "eca_cbam", **overrides: Any) -> FeatherFace:
    """Build a detector with every attention switch on (the final, phase-3 architecture).

    ``variant``: "eca_cbam" (the thesis), "cbam" (baseline), "none" (no attention) or
    "retinaface_mnet025" (the reference architecture). ``overrides`` set ModelConfig fields.
    Trained backbone weights are applied afterwards by ``ffcore.models.reference.init_backbone``
    (the training engine does so for phase 1); a checkpoint restores every weight itself.
    """
    return build_from_config(model_config(variant, **overrides))


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
    "eval_mode",
    "model_config",
]
