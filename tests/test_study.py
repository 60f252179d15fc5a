"""The ablation study's cells: phased vs joint switches, skip and resume, the launchers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from ffcore.data.synthetic import generate_dataset
from ffcore.models.checkpoint import load_model
from ffcore.study import StudySpec, make_cells, read_cell_result, run_study

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("study") / "data", 8, 4, 128, seed=2)


def _spec(data: Path, out: Path) -> StudySpec:
    return StudySpec("ci", str(out), str(data), backbone_init="random", threads=1)


def test_make_cells_is_seed_major_and_checks_names() -> None:
    cells = make_cells(("none", "eca_cbam_joint"), 2)
    assert [c.name for c in cells] == [
        "none_seed0", "eca_cbam_joint_seed0", "none_seed1", "eca_cbam_joint_seed1",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="unknown configuration"):
        make_cells(("eca",), 1)
    with pytest.raises(ValueError, match="at least one seed"):
        make_cells(("none",), 0)


def test_phased_and_joint_cells_switch_as_configured_skip_and_resume(data, tmp_path) -> None:
    out = tmp_path / "study"
    cells = make_cells(("eca_cbam_phased", "eca_cbam_joint"), 1)
    lines: list[str] = []
    results = run_study(cells, _spec(data, out), report=lines.append)
    assert [r["cell"] for r in results] == ["eca_cbam_phased_seed0", "eca_cbam_joint_seed0"]
    for r in results:
        assert set(r["ap"]) >= {"easy", "medium", "hard", "landmarks"}
        assert r["attention_state"] == [True, True] and r["checkpoint_phase"] == "3"
    # phase 1: attention off when phased, both parts on when joint (loaded as trained)
    p1 = "weights/phase1/phase1_epoch_2.pth"
    phased, _ = load_model(out / "eca_cbam_phased_seed0" / p1)
    joint, _ = load_model(out / "eca_cbam_joint_seed0" / p1)
    assert phased.attention_state() == (False, False)
    assert joint.attention_state() == (True, True)
    # same seed, same variant: phased and joint start from the same weights and the same data
    first = {
        c: json.loads((out / f"eca_cbam_{c}_seed0/result.json").read_text())["losses"]["1"]
        for c in ("phased", "joint")
    }
    assert first["phased"]["probe_losses"][0] != first["joint"]["probe_losses"][0]  # switches
    # a complete study is skipped
    stamp = (out / "eca_cbam_joint_seed0" / "result.json").stat().st_mtime_ns
    lines.clear()
    run_study(cells, _spec(data, out), report=lines.append)
    assert lines == ["study: 2 cells, 2 complete, 0 to run"]
    assert (out / "eca_cbam_joint_seed0" / "result.json").stat().st_mtime_ns == stamp
    # a cell killed in phase 3 resumes there: phases 1-2b are not trained again
    cell_dir = out / "eca_cbam_joint_seed0"
    (cell_dir / "result.json").unlink()
    shutil.rmtree(cell_dir / "weights" / "phase3")
    before = json.loads((out / "eca_cbam_phased_seed0" / "result.json").read_text())
    again = run_study(cells[1:], _spec(data, out), report=lines.append)[0]
    assert sorted(again["losses"]) == ["1", "2a", "2b", "3"]  # read back from each epochs.csv
    assert read_cell_result(out, cells[1]) == again
    # the parts of the val set: two disjoint halves and (synthetic) the first 96 images
    assert set(again["ap_splits"]) == {"half_a", "half_b", "first96"}
    assert again["ap_splits"]["first96"] == {s: again["ap"][s] for s in ("easy", "medium", "hard")}
    # a cell killed during evaluation: its cost and losses survive, the temporary folder goes
    cell_dir = out / "eca_cbam_phased_seed0"
    (cell_dir / "result.json").unlink()
    (cell_dir / ".predictions.999999.tmp" / "0--x").mkdir(parents=True)
    resumed = run_study(cells[:1], _spec(data, out), report=lines.append)[0]
    assert resumed["seconds"]["train"] == before["seconds"]["train"] > 1.0
    assert resumed["cpu_seconds"]["train"] == before["cpu_seconds"]["train"] > 1.0
    assert resumed["losses"] == before["losses"] and resumed["ap"] == before["ap"]
    assert not list(cell_dir.glob(".predictions.*"))


def test_submitit_local_launcher_runs_the_same_cells(data, tmp_path) -> None:
    pytest.importorskip("submitit", reason="the cluster extra (submitit) is not installed")
    out = tmp_path / "study"
    cells = make_cells(("none",), 1)
    results = run_study(cells, _spec(data, out), launcher="submitit-local")
    assert results[0]["cell"] == "none_seed0" and results[0]["attention_state"] == []
    assert any((out / "submitit").rglob("*_log.out"))


@pytest.mark.notebook
def test_study_notebook_reports_a_finished_study(data, tmp_path) -> None:
    """08 under papermill: it runs what is missing (here: everything, two tiny cells with one
    seed each) and exports the figure and the three tables."""
    import subprocess
    import sys

    from ffcore.paths import NOTEBOOKS_DIR

    out, figs = tmp_path / "study", tmp_path / "figs"
    cmd = [sys.executable, "-m", "papermill", "-k", "python3", "--no-progress-bar"]
    cmd += [str(NOTEBOOKS_DIR / "08_ablation_study.ipynb"), str(tmp_path / "08.ipynb")]
    cmd += ["-p", "profile", "ci", "-p", "run_dir", str(out), "-p", "data_root", str(data)]
    cmd += ["-p", "figures_dir", str(figs), "-p", "seeds", "1", "-p", "train", "True"]
    cmd += ["-y", "configurations: [eca_cbam_phased, eca_cbam_joint]"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=900)
    summary = pd.read_csv(figs / "ablation_study.csv")
    assert list(summary.columns) == [
        "profile",
        "configuration",
        "subset",
        "n_seeds",
        "mean",
        "ci_low",
        "ci_high",
    ]
    assert len(summary) == 2 * 3 and (summary["n_seeds"] == 1).all()
    assert summary["mean"].between(0, 1).all()  # fractions in the CSV
    for name in ("ablation_study.pdf", "ablation_study.png", "ablation_study.tex",
                 "ablation_comparisons.tex", "ablation_costs.tex", "ablation_per_seed.csv"):  # fmt: skip
        assert (figs / name).is_file(), name
    comparisons = pd.read_csv(figs / "ablation_comparisons.csv")
    assert set(comparisons["comparison"]) == {"phased - joint (ECA-CBAM)"}
    assert set(comparisons["profile"]) == {"ci"} and (comparisons["n"] == 1).all()
    # the generated findings, shown as Markdown, say what the run lacks
    text = "".join(
        "".join(o.get("data", {}).get("text/markdown", ""))
        for c in json.loads((tmp_path / "08.ipynb").read_text())["cells"]
        for o in c.get("outputs", [])
    )
    assert "not yet in the per-seed CSV" in text and "synthetic val set" in text


def test_unknown_launcher(data, tmp_path) -> None:
    with pytest.raises(ValueError, match="launcher"):
        run_study(make_cells(("none",), 1), _spec(data, tmp_path), launcher="k8s")
