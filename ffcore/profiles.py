"""Run profiles: the same code path with different sizes.

``smoke`` runs the whole pipeline on 2 CPU cores in minutes (tests, CI, a first look);
``full`` is the thesis schedule on real WIDER FACE (epochs from ``ffcore.schedule.PHASES``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ffcore.schedule import get_phase


@dataclass(frozen=True)
class Profile:
    name: str
    image_size: int  # training crop size (square)
    batch_size: int
    smoke_epochs: int | None  # None: every phase runs the epochs of the phase table
    synthetic_train: int  # images in the generated dataset (ignored with a real data_root)
    synthetic_val: int
    synthetic_image_size: int
    eval_image_size: int | None  # None: evaluate at original scale

    def epochs(self, phase_id: str) -> int:
        return self.smoke_epochs if self.smoke_epochs is not None else get_phase(phase_id).epochs


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        "smoke",
        image_size=160,
        batch_size=4,  # 12 steps an epoch on 48 images: enough for every phase to fit
        smoke_epochs=2,
        synthetic_train=48,
        synthetic_val=16,
        synthetic_image_size=256,
        eval_image_size=None,
    ),
    "full": Profile(
        "full",
        image_size=640,
        batch_size=32,
        smoke_epochs=None,
        synthetic_train=2000,
        synthetic_val=500,
        synthetic_image_size=640,
        eval_image_size=None,
    ),
}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}")
    return PROFILES[name]
