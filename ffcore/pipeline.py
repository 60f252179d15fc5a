"""The numbered notebooks of the reproduction, in order: the one table of notebook names.

The phase notebooks are the phases of ``ffcore.schedule.PHASES`` in order, one each; every other
list of notebooks (``reproduce``, the hand-over files, the tests) is derived from ``NOTEBOOKS``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ffcore.schedule import PHASE_ORDER

# the study's per-seed results, repository-relative
COMMITTED_PER_SEED_CSV = "figures/ablation_per_seed.csv"


@dataclass(frozen=True)
class Notebook:
    name: str  # file stem in notebooks/ and the folder of its outputs in a run folder
    phase: str | None = None  # the phase it trains, for 02-05
    reproduce: bool = True  # part of `make reproduce`
    # parameters `make reproduce` sets whatever the run's profile: 08 reports the study (profile
    # "study", its own data) from the committed per-seed CSV and trains nothing (seconds), so the
    # reproduction leaves its executed copy beside 01-07; `make study` runs it on the grid
    fixed: tuple[tuple[str, str | None], ...] = ()


NOTEBOOKS: tuple[Notebook, ...] = (
    Notebook("01_model"),
    *(Notebook(f"{i:02d}_phase{pid}", pid) for i, pid in enumerate(PHASE_ORDER, start=2)),
    Notebook("06_evaluation"),
    Notebook("07_ablation_figures"),
    Notebook(
        "08_ablation_study",
        fixed=(("profile", "study"), ("data_root", None), ("per_seed_csv", COMMITTED_PER_SEED_CSV)),
    ),
)
NOTEBOOK_NAMES: tuple[str, ...] = tuple(nb.name for nb in NOTEBOOKS)
REPRODUCE_NOTEBOOKS: tuple[str, ...] = tuple(nb.name for nb in NOTEBOOKS if nb.reproduce)
FIXED_PARAMETERS: dict[str, dict[str, str | None]] = {nb.name: dict(nb.fixed) for nb in NOTEBOOKS}
PHASE_NOTEBOOKS: dict[str, str] = {nb.phase: nb.name for nb in NOTEBOOKS if nb.phase is not None}
