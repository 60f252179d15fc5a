"""Frozen configuration dataclasses. Each round-trips through a plain dict (checkpoints, JSON)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

# strides of the backbone's three output stages: the prior levels (``ffcore.detection.priors``)
# and the backbone (``ffcore.models.backbone``) both read them here
STAGE_STRIDES: tuple[int, int, int] = (8, 16, 32)


@dataclass(frozen=True)
class VariantSpec:
    """What a model variant is made of. ``attention`` names a block of
    ``ffcore.models.attention.create_attention``; ``defaults`` are ModelConfig fields that differ
    from the FeatherFace defaults."""

    attention: str  # "none", "cbam" or "eca_cbam"
    neck: str = "bifpn"  # "bifpn" (FeatherFace) or "fpn" (RetinaFace)
    shuffle: bool = True  # channel shuffle after the SSH context modules
    defaults: tuple[tuple[str, Any], ...] = ()


# The one definition of the model variants (in the order figures and tables list them).
VARIANT_SPECS: dict[str, VariantSpec] = {
    "none": VariantSpec(attention="none"),  # FeatherFace without attention
    "cbam": VariantSpec(attention="cbam"),  # the CBAM baseline
    "eca_cbam": VariantSpec(attention="eca_cbam"),  # the thesis
    "retinaface_mnet025": VariantSpec(  # the RetinaFace-MobileNet0.25 reference architecture
        attention="none",
        neck="fpn",
        shuffle=False,
        defaults=(("neck_channels", 64), ("deformable", False)),
    ),
}
VARIANTS: tuple[str, ...] = tuple(VARIANT_SPECS)
ATTENTION_SCHEDULES: tuple[str, ...] = ("phased", "joint")
Variant = str  # one of VARIANTS (checked by the dataclasses below)
DEFAULT_VARIANT: Variant = "eca_cbam"  # the thesis model


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

    @property
    def spec(self) -> VariantSpec:
        return VARIANT_SPECS[self.variant]


@dataclass(frozen=True)
class TrainConfig:
    """One phase of training (``ffcore.training.engine.fit_phase``); stored inside every checkpoint.

    The optimiser, schedule, attention and loss weights come from the phase table
    (``ffcore.schedule.PHASES``), not from here.
    """

    phase: str = "1"
    training_dataset: str | None = None  # path of train/label.txt (WIDER layout)
    # None: the starting checkpoint's variant, or DEFAULT_VARIANT from scratch; an explicit
    # variant that disagrees with the starting checkpoint is refused
    variant: Variant | None = None
    epochs: int | None = None  # None: the phase table's epochs (or the resumed run's plan)
    batch_size: int = 32
    image_size: int = 640
    num_workers: int = 4
    seed: int = 0
    device: str | None = None  # None: CUDA when available, else CPU
    save_folder: str = "weights"
    resume_net: str | None = None  # previous phase's final checkpoint, or a mid-phase one
    backbone_init: str | None = None  # None, "retinaface" or a backbone weights file (phase 1)
    amp: bool = True  # mixed precision; only ever used on CUDA
    # NHWC memory for the model and its inputs: the same arithmetic in another summation order
    # (gradients agree to float64 rounding), about 15 % less time per CPU training step
    channels_last: bool = True
    progress: bool = True  # tqdm bar per epoch
    probe_images: int = 16  # first training images (epoch-0 crops) whose loss is logged per epoch
    # "phased": the attention switches of the phase table; "joint": channel and spatial attention
    # on from the first step of phase 1 (the ablation's control), everything else identical
    attention_schedule: str = "phased"
    # phase 1 from scratch: None draws the initial weights from the global generator (seeded by
    # ``seed``); an int draws every module from its own stream of it (``build_model``), so
    # variants share every common initial tensor exactly (the ablation study)
    init_seed: int | None = None
    # phase 3 only: one of ``ffcore.schedule.PHASE3_VARIANTS`` (regularisers switched off),
    # trained into its own folder; "as_specified" is the phase table's phase 3
    phase3_variant: str = "as_specified"

    def __post_init__(self) -> None:
        from ffcore.schedule import get_phase

        get_phase(self.phase, self.phase3_variant)  # an unknown phase or variant: ValueError
        if self.variant is not None and self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.image_size < 32 or self.image_size % 32:
            raise ValueError(f"image_size must be a positive multiple of 32, got {self.image_size}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.init_seed is not None and self.init_seed < 0:
            raise ValueError(f"init_seed must be >= 0, got {self.init_seed}")
        if self.probe_images < 0:
            raise ValueError(f"probe_images must be >= 0, got {self.probe_images}")
        if self.attention_schedule not in ATTENTION_SCHEDULES:
            raise ValueError(
                f"attention_schedule must be one of {ATTENTION_SCHEDULES}, "
                f"got {self.attention_schedule!r}"
            )
