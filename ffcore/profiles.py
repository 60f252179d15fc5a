"""Run profiles: the same code path with different sizes.

``ci``     seconds; tiny images and epochs; for the test suite only.
``smoke``  the README's ``make reproduce``: minutes on 2 CPU cores on the synthetic dataset, and
           it converges (the phase-3 model detects the synthetic val faces).
``study``  one cell of the ablation grid (``ffcore.study``) on the synthetic dataset.
``study_2x`` the same with every phase twice as long (epochs 24 / 6 / 8 / 6).
``full``   the thesis schedule on real WIDER FACE (epochs from ``ffcore.schedule.PHASES``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ffcore.schedule import PHASE_ORDER, get_phase


@dataclass(frozen=True)
class Profile:
    name: str
    image_size: int  # training crop size (square)
    batch_size: int
    # epochs per phase in PHASE_ORDER; None: every phase runs the epochs of the phase table
    phase_epochs: tuple[int, ...] | None
    synthetic_train: int  # images in the generated dataset (ignored with a real data_root)
    synthetic_val: int
    synthetic_image_size: int
    eval_image_size: int | None  # None: evaluate at original scale

    def __post_init__(self) -> None:
        if self.phase_epochs is not None and len(self.phase_epochs) != len(PHASE_ORDER):
            raise ValueError(f"{self.name}: phase_epochs needs one entry per phase {PHASE_ORDER}")

    def epochs(self, phase_id: str) -> int:
        if self.phase_epochs is None:
            return get_phase(phase_id).epochs
        return self.phase_epochs[PHASE_ORDER.index(get_phase(phase_id).id)]


PROFILES: dict[str, Profile] = {
    "ci": Profile(
        "ci",
        image_size=160,
        batch_size=4,  # 12 steps an epoch on 48 images: enough for every phase's loss to fall
        phase_epochs=(2, 2, 2, 2),
        synthetic_train=48,
        synthetic_val=16,
        synthetic_image_size=256,
        eval_image_size=None,
    ),
    "smoke": Profile(
        "smoke",
        image_size=160,
        batch_size=8,
        phase_epochs=(12, 3, 4, 3),  # phase 2b gets one more epoch to absorb SAM's switch-on
        synthetic_train=320,
        synthetic_val=64,
        synthetic_image_size=256,
        eval_image_size=None,
    ),
    "study": Profile(
        "study",
        image_size=160,
        batch_size=8,
        # the smoke schedule: phase 2b's fourth epoch lets SAM settle after its switch-on, which
        # only the phased configurations see there (with 3 the grid was tilted against them)
        phase_epochs=(12, 3, 4, 3),
        synthetic_train=240,
        # 2,100 val images hold >= 1,000 faces in every subset (easy 1,040 / medium 3,905 /
        # hard 7,597): with 96 images (47 easy faces) the val draw was as noisy as the seeds
        synthetic_val=2100,
        synthetic_image_size=256,
        eval_image_size=None,
    ),
    # the study with every phase twice as long: does a verdict of the 1x grid survive training?
    "study_2x": Profile(
        "study_2x",
        image_size=160,
        batch_size=8,
        phase_epochs=(24, 6, 8, 6),
        synthetic_train=240,
        synthetic_val=2100,
        synthetic_image_size=256,
        eval_image_size=None,
    ),
    "full": Profile(
        "full",
        image_size=640,
        batch_size=32,
        phase_epochs=None,
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
