"""Notebooks are committed clean and parameterised (their execution: tests/test_pipeline.py)."""

from __future__ import annotations

import nbformat
import pytest

from ffcore.paths import NOTEBOOKS_DIR
from ffcore.pipeline import NOTEBOOK_NAMES as NOTEBOOKS
from ffcore.pipeline import PHASE_NOTEBOOKS

COMMON_PARAMETERS = ("run_dir", "figures_dir")


def _parameters_cell(name: str):
    nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    return nb, tagged


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_clean_and_parameterised(name: str) -> None:
    assert (NOTEBOOKS_DIR / f"{name}.ipynb").is_file(), (
        f"{name} is in the notebook table but missing"
    )
    nb, tagged = _parameters_cell(name)
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert first_code is tagged[0], "the parameters cell is the first code cell"
    for p in COMMON_PARAMETERS:
        assert f"{p} = " in tagged[0].source, f"parameter {p} missing"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, (
                "commit notebooks without outputs"
            )
            assert "tqdm.auto" not in cell.source and "MPLBACKEND" not in cell.source


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_papermill_parses_every_parameter(name: str) -> None:
    """papermill skips a line of the parameters cell it cannot parse (a comment with '=' in
    it) and then refuses to pass that parameter: every assignment must be one it reads."""
    import re

    import papermill

    _, tagged = _parameters_cell(name)
    assigned = re.findall(r"^(\w+) = ", tagged[0].source, flags=re.MULTILINE)
    parsed = papermill.inspect_notebook(str(NOTEBOOKS_DIR / f"{name}.ipynb"))
    assert assigned and [a for a in assigned if a not in parsed] == []


def test_every_notebook_file_is_in_the_table() -> None:
    assert sorted(p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", PHASE_NOTEBOOKS.values())
def test_phase_notebooks_are_thin(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    code = [
        line
        for c in nb.cells
        if c.cell_type == "code"
        for line in c.source.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    # 30 lines of logic and set-up, plus the three that display sentences generated from the
    # run (ffcore.report.narrative: the probe loss, the study's verdict on phasing)
    assert len(code) <= 33, f"{name}: {len(code)} lines of code; the logic belongs in ffcore"
