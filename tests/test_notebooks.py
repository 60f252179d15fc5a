"""Notebooks: committed clean, parameterised, and executable under papermill."""

from __future__ import annotations

import json

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


@pytest.mark.notebook
@pytest.mark.slow
def test_01_model_runs_with_defaults(tmp_path) -> None:
    import papermill as pm

    run_dir, figs = tmp_path / "run", tmp_path / "figs"
    pm.execute_notebook(
        str(NOTEBOOKS_DIR / "01_model.ipynb"), str(tmp_path / "01.ipynb"), kernel_name="python3",
        parameters={"run_dir": str(run_dir), "figures_dir": str(figs), "latency_reps": 1},
        cwd=str(NOTEBOOKS_DIR), progress_bar=False,
    )  # fmt: skip
    summary = json.loads((run_dir / "01_model" / "model_summary.json").read_text())
    assert summary["parameters"] == {"cbam": 488_664, "eca_cbam": 476_357}
    for stem in ("param_table", "param_width_sweep"):
        assert (figs / f"{stem}.csv").is_file() and (figs / f"{stem}.tex").is_file()
    assert (figs / "param_width_sweep.pdf").is_file() and (figs / "param_width_sweep.png").is_file()
