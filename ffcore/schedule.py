"""The four-phase training schedule of the thesis: the single source of these numbers.

CLI, engine, notebooks, tests and docs all read ``PHASES``; nothing else restates them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Phase:
    id: str
    epochs: int
    channel_attention: bool  # ECA (or CBAM's channel MLP in the baseline)
    spatial_attention: bool  # SAM
    lr: float
    t0: int  # CosineAnnealingWarmRestarts T_0, in epochs
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 1e-4
    mixup_alpha: float | None = None
    head_dropout: bool = False
    grad_clip: float | None = None
    starts_from: str | None = None  # id of the phase whose checkpoint this one starts from
    loc_weight: float = 2.0
    cls_weight: float = 1.0
    landmark_weight: float = 0.5
    variant: str = "as_specified"  # a phase-3 variant (PHASE3_VARIANTS); the table's: as_specified

    @property
    def checkpoint_name(self) -> str:
        return f"phase{self.id}_epoch_{self.epochs}.pth"

    @property
    def folder(self) -> str:
        return (
            f"phase{self.id}" if self.variant == AS_SPECIFIED else f"phase{self.id}_{self.variant}"
        )

    @property
    def attention_label(self) -> str:
        if self.channel_attention and self.spatial_attention:
            return "ECA -> SAM"
        if self.channel_attention:
            return "ECA"
        return "SAM" if self.spatial_attention else "none"


# fmt: off
PHASES: dict[str, Phase] = {
    p.id: p
    for p in (
        Phase("1", epochs=30, channel_attention=False, spatial_attention=False, lr=1e-3, t0=30),
        Phase("2a", epochs=25, channel_attention=True, spatial_attention=False, lr=5e-4, t0=25,
              starts_from="1"),
        Phase("2b", epochs=25, channel_attention=True, spatial_attention=True, lr=5e-4, t0=25,
              starts_from="2a"),
        Phase("3", epochs=30, channel_attention=True, spatial_attention=True, lr=1e-4, t0=30,
              mixup_alpha=0.2, head_dropout=True, grad_clip=5.0, starts_from="2b"),
    )
}
# fmt: on
PHASE_ORDER: tuple[str, ...] = tuple(PHASES)


FINAL_PHASE = PHASE_ORDER[-1]
AS_SPECIFIED = "as_specified"


def _phase3_variant(name: str, **changes: object) -> Phase:
    return replace(PHASES[FINAL_PHASE], variant=name, **changes)  # type: ignore[arg-type]


# Phase 3 taken apart: the same lr, epochs and T_0 from the same phase-2b checkpoint, with one
# regulariser (or all three) switched off; each trains into its own folder (``Phase.folder``).
PHASE3_VARIANTS: dict[str, Phase] = {
    AS_SPECIFIED: PHASES[FINAL_PHASE],
    "no_mixup": _phase3_variant("no_mixup", mixup_alpha=None),
    "no_dropout": _phase3_variant("no_dropout", head_dropout=False),
    "no_regularisers": _phase3_variant(
        "no_regularisers", mixup_alpha=None, head_dropout=False, grad_clip=None
    ),
}


def get_phase(phase_id: str | int, phase3_variant: str = AS_SPECIFIED) -> Phase:
    """The phase of the table; ``phase3_variant`` (phase 3 only) one of ``PHASE3_VARIANTS``."""
    key = str(phase_id)
    if key not in PHASES:
        raise ValueError(f"unknown phase {phase_id!r}; phases are {', '.join(PHASE_ORDER)}")
    if phase3_variant == AS_SPECIFIED:
        return PHASES[key]
    if phase3_variant not in PHASE3_VARIANTS:
        raise ValueError(
            f"unknown phase-3 variant {phase3_variant!r}; choose from {', '.join(PHASE3_VARIANTS)}"
        )
    if key != FINAL_PHASE:
        raise ValueError(f"phase-3 variant {phase3_variant!r} asked for phase {key}")
    return PHASE3_VARIANTS[phase3_variant]
