"""The four training notebooks run in sequence under papermill, each from the previous one."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ffcore.paths import NOTEBOOKS_DIR
from ffcore.schedule import PHASES
from ffcore.train import PHASE_NOTEBOOKS, previous_checkpoint


def test_previous_checkpoint_reads_result_json(tmp_path):
    assert previous_checkpoint(tmp_path, "1") is None
    with pytest.raises(FileNotFoundError, match="run 03_phase2a.ipynb first"):
        previous_checkpoint(tmp_path, "2b")
    (tmp_path / "03_phase2a").mkdir()
    (tmp_path / "03_phase2a" / "result.json").write_text(json.dumps({"checkpoint": "x.pth"}))
    assert previous_checkpoint(tmp_path, "2b") == "x.pth"
    (tmp_path / "03_phase2a" / "result.json").write_text("{}")
    with pytest.raises(ValueError, match="not a phase result file"):
        previous_checkpoint(tmp_path, "2b")


@pytest.mark.notebook
@pytest.mark.slow
def test_phase_notebooks_run_in_sequence(tmp_path) -> None:
    import papermill as pm

    run_dir, figs = tmp_path / "run", tmp_path / "figs"
    for stem in PHASE_NOTEBOOKS.values():
        pm.execute_notebook(
            str(NOTEBOOKS_DIR / f"{stem}.ipynb"), str(tmp_path / f"{stem}.ipynb"),
            kernel_name="python3", parameters={"run_dir": str(run_dir), "figures_dir": str(figs)},
            cwd=str(NOTEBOOKS_DIR), progress_bar=False,
        )  # fmt: skip
    previous = None
    for phase, stem in PHASE_NOTEBOOKS.items():
        result = json.loads((run_dir / stem / "result.json").read_text())
        assert result["phase"] == phase and result["epochs"] == 2
        assert result["checkpoint"].endswith(f"weights/phase{phase}/phase{phase}_epoch_2.pth")
        assert result["started_from"] == previous  # each phase starts from the one before
        # the notebook asserts the probe loss fell; check the file says so too
        assert result["probe_losses"][-1] < result["probe_losses"][0]
        history = pd.read_csv(result["history_csv"])
        assert history.lr.iloc[0] == pytest.approx(PHASES[phase].lr)
        assert (figs / f"training_phase{phase}.pdf").is_file()
        previous = result["checkpoint"]
