"""The whole smoke reproduction: notebooks 01 -> 07 in sequence under papermill on the synthetic
dataset (what `make reproduce` runs), then checks on what each notebook left behind."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from ffcore.paths import FIGURES_DIR
from ffcore.reproduce import NOTEBOOKS, reproduce
from ffcore.schedule import PHASES
from ffcore.train import PHASE_NOTEBOOKS

pytestmark = [pytest.mark.notebook, pytest.mark.slow, pytest.mark.xdist_group("pipeline")]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("pipeline")
    tiny = {"latency_reps": 1, "include_onnx": False, "num_examples": 2}
    result = reproduce("smoke", base / "run", figures_dir=base / "figs", extra_parameters=tiny)
    return base, result


def test_all_notebooks_executed_in_order(run) -> None:
    base, result = run
    assert result.executed == list(NOTEBOOKS)
    for name in NOTEBOOKS:
        assert (base / "run" / f"{name}.ipynb").is_file()


def test_model_notebook_numbers(run) -> None:
    base, _ = run
    summary = json.loads((base / "run" / "01_model" / "model_summary.json").read_text())
    assert summary["parameters"] == {"cbam": 488_664, "eca_cbam": 476_357}


def test_each_phase_starts_from_the_previous_one(run) -> None:
    base, _ = run
    previous = None
    for phase, stem in PHASE_NOTEBOOKS.items():
        result = json.loads((base / "run" / stem / "result.json").read_text())
        assert result["phase"] == phase and result["epochs"] == 2
        assert result["checkpoint"].endswith(f"weights/phase{phase}/phase{phase}_epoch_2.pth")
        assert result["started_from"] == previous
        assert result["probe_losses"][-1] < result["probe_losses"][0]  # the loss fell
        history = pd.read_csv(result["history_csv"])
        assert history.lr.iloc[0] == pytest.approx(
            PHASES[phase].lr
        )  # cosine starts at the table's lr
        assert history.lr.iloc[-1] < 0.05 * PHASES[phase].lr  # ... and ends near zero
        previous = result["checkpoint"]


def test_evaluation_and_ablation_outputs(run) -> None:
    base, _ = run
    ap = json.loads((base / "run" / "06_evaluation" / "ap.json").read_text())
    assert set(ap) == {"easy", "medium", "hard"}
    by_phase = pd.read_csv(base / "run" / "06_evaluation" / "ap_by_phase.csv", dtype={"phase": str})
    assert list(by_phase.phase) == list(PHASES)
    assert by_phase.set_index("phase").loc["3", "hard"] == pytest.approx(ap["hard"])
    summary = json.loads((base / "run" / "metrics_summary.json").read_text())
    assert set(summary["ap_by_phase"]) == set(PHASES)
    assert summary["variants"]["total"]["eca_cbam"] == 476_357


def test_every_figure_listed_in_figures_readme_is_made(run) -> None:
    base, _ = run
    readme = (FIGURES_DIR / "README.md").read_text()
    stems = {
        s
        for row in re.findall(r"^\| ([^|]+) \|", readme, re.M)
        for s in re.findall(r"`([^`]+)`", row)
    }
    assert "pr_curves" in stems and "training_phase2b" in stems  # the table parses
    made = {p.stem for p in (base / "figs").iterdir()}
    assert stems - made == set(), "listed in figures/README.md but not produced"
    assert made - stems == set(), "produced but not documented in figures/README.md"
