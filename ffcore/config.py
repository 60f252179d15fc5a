"""Frozen configuration dataclasses. Each round-trips through a plain dict (checkpoints, JSON)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

Variant = Literal["cbam", "eca_cbam", "none", "retinaface_mnet025"]
VARIANTS: tuple[str, ...] = ("cbam", "eca_cbam", "none", "retinaface_mnet025")

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build a config dataclass from a dict, refusing unknown keys (a typo is an error)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
    return cls(**data)


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a detector; stored inside every checkpoint."""

    variant: Variant = "eca_cbam"
    neck_channels: int = 52  # BiFPN width (FeatherFace); the RetinaFace reference uses 64
    bifpn_repeats: int = 3
    num_anchors: int = 2
    cbam_reduction: int = 16
    eca_gamma: int = 2
    eca_beta: int = 1
    sam_kernel: int = 7
    head_dropout: float = 0.3  # used only while the dropout switch is on (phase 3)
    deformable: bool = True  # SSH 3x3 convs are modulated deformable convs

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.neck_channels % 4 != 0:
            raise ValueError(
                f"neck_channels must be divisible by 4 (SSH splits C/2, C/4, C/4), got {self.neck_channels}"
            )
        if not 0.0 <= self.head_dropout < 1.0:
            raise ValueError(f"head_dropout must be in [0, 1), got {self.head_dropout}")
        if self.bifpn_repeats < 1:
            raise ValueError(f"bifpn_repeats must be >= 1, got {self.bifpn_repeats}")
