"""Notebooks are committed clean and parameterised (their execution: tests/test_pipeline.py)."""

from __future__ import annotations

import nbformat
import pytest

from ffcore.paths import NOTEBOOKS_DIR
from ffcore.reproduce import NOTEBOOKS

COMMON_PARAMETERS = ("run_dir", "figures_dir")


def _parameters_cell(name: str):
    nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    return nb, tagged


@pytest.mark.parametrize("name", [n for n in NOTEBOOKS if (NOTEBOOKS_DIR / f"{n}.ipynb").is_file()])
def test_notebook_is_clean_and_parameterised(name: str) -> None:
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
