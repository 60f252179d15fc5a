"""The numbered notebooks of the reproduction, in order: the one table of notebook names.

The phase notebooks are the phases of ``ffcore.schedule.PHASES`` in order, one each; every other
list of notebooks (``reproduce``, the hand-over files, the tests) is derived from ``NOTEBOOKS``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ffcore.schedule import PHASE_ORDER


@dataclass(frozen=True)
class Notebook:
    name: str  # file stem in notebooks/ and the folder of its outputs in a run folder
    phase: str | None = None  # the phase it trains, for 02-05
    reproduce: bool = True  # part of `make reproduce` (the study has its own `make study`)


NOTEBOOKS: tuple[Notebook, ...] = (
    Notebook("01_model"),
    *(Notebook(f"{i:02d}_phase{pid}", pid) for i, pid in enumerate(PHASE_ORDER, start=2)),
    Notebook("06_evaluation"),
    Notebook("07_ablation_figures"),
    Notebook("08_ablation_study", reproduce=False),
)
NOTEBOOK_NAMES: tuple[str, ...] = tuple(nb.name for nb in NOTEBOOKS)
REPRODUCE_NOTEBOOKS: tuple[str, ...] = tuple(nb.name for nb in NOTEBOOKS if nb.reproduce)
PHASE_NOTEBOOKS: dict[str, str] = {nb.phase: nb.name for nb in NOTEBOOKS if nb.phase is not None}
