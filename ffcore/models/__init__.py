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


def build_model(
    variant: str = "eca_cbam", *, init_seed: int | None = None, **overrides: Any
) -> FeatherFace:
    """Build a detector with every attention switch on (the final, phase-3 architecture).

    ``variant``: "eca_cbam" (the thesis), "cbam" (baseline), "none" (no attention) or
    "retinaface_mnet025" (the reference architecture). ``overrides`` set ModelConfig fields.
    ``init_seed``: every module group and attention part draws its initial weights from its own
    stream of this seed, so for one seed every tensor two variants share (same state-dict key
    and shape) is bit-identical, and the global RNG is left as it was; None (default) draws
    from the global generator in construction order.
    Trained backbone weights are applied afterwards by ``ffcore.models.reference.init_backbone``
    (the training engine does so for phase 1); a checkpoint restores every weight itself.
    """
    return build_from_config(model_config(variant, **overrides), init_seed=init_seed)


def build_from_config(config: ModelConfig, init_seed: int | None = None) -> FeatherFace:
    model = FeatherFace(config, init_seed=init_seed)
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
