"""The ablation study's cells: phased vs joint switches, skip and resume, per-phase scores,
phase-3 variants, the same training as a direct fit_phase chain, the launchers."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from ffcore.data.synthetic import generate_dataset
from ffcore.models.checkpoint import load_model
from ffcore.report.study_frame import PER_SEED_COLUMNS, load_results
from ffcore.report.study_frame import final_rows as phase3_rows
from ffcore.study import StudySpec, make_cells, read_cell_result, run_study

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    # 6 val images: five in half_a, one in half_b (by the hash of their names)
    return generate_dataset(tmp_path_factory.mktemp("study") / "data", 8, 6, 128, seed=2)


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
    assert [r.cell for r in results] == ["eca_cbam_phased_seed0", "eca_cbam_joint_seed0"]
    for r in results:
        assert set(r.ap) >= {"easy", "medium", "hard", "landmarks"}
        assert r.final.attention_state == (True, True) and r.final.checkpoint.endswith(".pth")
        assert [p.key for p in r.phases] == [(p, "as_specified") for p in ("1", "2a", "2b", "3")]
    # phase 1: attention off when phased, both parts on when joint (loaded as trained)
    p1 = "weights/phase1/phase1_epoch_2.pth"
    phased, _ = load_model(out / "eca_cbam_phased_seed0" / p1)
    joint, _ = load_model(out / "eca_cbam_joint_seed0" / p1)
    assert phased.attention_state() == (False, False)
    assert joint.attention_state() == (True, True)
    # same seed, same variant: phased and joint start from the same weights and the same data
    first = {
        c: json.loads((out / f"eca_cbam_{c}_seed0/result.json").read_text())["phases"][0]
        for c in ("phased", "joint")
    }
    assert first["phased"]["probe_losses"][0] != first["joint"]["probe_losses"][0]  # switches
    # a complete study is skipped
    stamp = (out / "eca_cbam_joint_seed0" / "result.json").stat().st_mtime_ns
    lines.clear()
    run_study(cells, _spec(data, out), report=lines.append)
    assert lines == ["study: 2 cells, 2 complete, 0 to run"]
    assert (out / "eca_cbam_joint_seed0" / "result.json").stat().st_mtime_ns == stamp
    # a cell killed in phase 3 resumes there: phases 1-2b are neither trained nor scored again
    cell_dir = out / "eca_cbam_joint_seed0"
    before_joint = read_cell_result(out, cells[1])
    (cell_dir / "result.json").write_text(json.dumps(_without_phase3(before_joint)))
    shutil.rmtree(cell_dir / "weights" / "phase3")
    p2b = cell_dir / "weights" / "phase2b" / "phase2b_epoch_2.pth"
    stamp_2b = p2b.stat().st_mtime_ns
    again = run_study(cells[1:], _spec(data, out), report=lines.append)[0]
    assert p2b.stat().st_mtime_ns == stamp_2b
    assert again.phases[:3] == before_joint.phases[:3]  # the same scores, seconds included
    assert read_cell_result(out, cells[1]) == again
    # the parts of the val set: two disjoint halves and (synthetic) the first 96 images
    final = again.final
    assert set(final.ap_splits) == {"half_a", "half_b", "first96"}
    assert final.ap_splits["first96"] == {s: final.ap[s] for s in ("easy", "medium", "hard")}
    # a cell killed during evaluation: its cost and losses survive, the temporary folder goes
    cell_dir = out / "eca_cbam_phased_seed0"
    before = read_cell_result(out, cells[0])
    (cell_dir / "result.json").write_text(json.dumps(_without_phase3(before)))
    (cell_dir / ".predictions.999999.tmp" / "0--x").mkdir(parents=True)
    resumed = run_study(cells[:1], _spec(data, out), report=lines.append)[0]
    assert resumed.train_seconds("3") == before.train_seconds("3")
    assert resumed.train_seconds("3")[0] > 1.0 and resumed.train_seconds("3")[1] > 1.0
    assert resumed.final.final_loss == before.final.final_loss
    assert resumed.final.probe_losses == before.final.probe_losses
    assert resumed.ap == before.ap
    assert not list(cell_dir.glob(".predictions.*"))


def _without_phase3(result) -> dict:
    """A cell's result.json as a kill before phase 3 was scored leaves it."""
    data = result.to_dict()
    data["phases"] = [p for p in data["phases"] if p["phase"] != "3"]
    return data


def test_submitit_local_launcher_runs_the_same_cells(data, tmp_path) -> None:
    pytest.importorskip("submitit", reason="the cluster extra (submitit) is not installed")
    out = tmp_path / "study"
    cells = make_cells(("none",), 1)
    results = run_study(cells, _spec(data, out), launcher="submitit-local")
    assert results[0].cell == "none_seed0" and results[0].final.attention_state == ()
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
    assert (out / "ci" / "eca_cbam_joint_seed0" / "result.json").is_file()  # run_dir/profile
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
    # the thesis claims made again with these comparisons (the joint pair: no ECA-CBAM - CBAM
    # phased comparison here, so that claim is not measured; the phasing claim is)
    claims = pd.read_csv(figs / "thesis_claims_vs_measured.csv", index_col="claim")
    entries = json.loads((figs / "provenance.json").read_text())["files"]
    assert entries["thesis_claims_vs_measured.csv"]["notebook"] == "08_ablation_study"
    assert claims.loc["ECA-CBAM is as accurate as CBAM", "verdict"] == "not measured"
    phasing = "progressive activation of attention prevents training instability"
    assert "phased − joint" in claims.loc[phasing, "measured"]
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


def _same_ap(a: dict, b: dict) -> bool:
    """AP per subset equal to float rounding (None / NaN where a subset has no faces)."""
    for s in ("easy", "medium", "hard"):
        x, y = a.get(s), b.get(s)
        if x is None or y is None or math.isnan(x) or math.isnan(y):
            if not ((x is None or math.isnan(x)) and (y is None or math.isnan(y))):
                return False
        elif abs(x - y) > 1e-9:
            return False
    return True


def test_a_cell_trains_what_a_direct_fit_phase_chain_trains(data, tmp_path) -> None:
    """The cell's chain (``run_phases``) against the loop the study ran before it: fit_phase
    per phase with the same settings, each from the previous final checkpoint. Every tensor of
    the phase-3 checkpoints is identical, and so is the AP."""
    from ffcore.chain.scoring import score_checkpoint
    from ffcore.config import TrainConfig
    from ffcore.models.checkpoint import load_checkpoint
    from ffcore.profiles import get_profile
    from ffcore.schedule import PHASE_ORDER
    from ffcore.study import run_cell
    from ffcore.training.engine import fit_phase

    out = tmp_path / "study"
    cell = make_cells(("cbam_phased",), (1,))[0]
    result = run_cell(cell, _spec(data, out))
    prof, previous = get_profile("ci"), None
    for pid in PHASE_ORDER:  # the old run_cell's settings, verbatim
        config = TrainConfig(
            phase=pid, training_dataset=str(data / "train" / "label.txt"), variant="cbam",
            epochs=prof.epochs(pid), batch_size=prof.batch_size, image_size=prof.image_size,
            num_workers=0, seed=1, device="cpu", save_folder=str(tmp_path / "direct"),
            resume_net=previous, backbone_init=None, progress=False,
            attention_schedule="phased", init_seed=1,
        )  # fmt: skip
        previous = str(fit_phase(config).checkpoint)
    chained = load_checkpoint(out / cell.name / result.final.checkpoint)["model"]
    direct = load_checkpoint(previous)["model"]
    assert chained.keys() == direct.keys()
    assert all(torch.equal(chained[k], direct[k]) for k in direct)
    scored = score_checkpoint(previous, data, tmp_path / "predictions")
    assert scored.ap == result.ap and scored.ap_splits == result.final.ap_splits


def test_per_phase_scores_and_phase3_variants(data, tmp_path) -> None:
    """Phases 1-2b are scored on half_a, predicting only its images (the same AP as scoring
    half_a of a prediction of every image); a later run asked for a phase-3 variant trains it
    from the cell's own phase-2b checkpoint with the cell's seed, into its own folder, and
    neither trains nor scores the main chain again; a resume refuses another variant."""
    from ffcore.chain.scoring import val_splits
    from ffcore.config import TrainConfig
    from ffcore.evaluation.inference import predict_dataset
    from ffcore.models.checkpoint import load_checkpoint
    from ffcore.study import Cell
    from ffcore.training.engine import fit_phase
    from ffcore.training.start import ConfigMismatch

    out, cell = tmp_path / "study", Cell("none", 0)
    plain = run_study([cell], _spec(data, out), report=lambda _: None)[0]
    cell_dir = out / cell.name
    for pid in ("1", "2a", "2b"):
        scored = plain.phase(pid)
        assert scored.ap is None and set(scored.ap_splits) == {"half_a"}
        model, _ = load_model(cell_dir / scored.checkpoint)
        predict_dataset(model, data, tmp_path / f"all_{pid}", progress=False)  # all 6 images
        assert _same_ap(
            val_splits(tmp_path / f"all_{pid}", data)["half_a"], scored.ap_splits["half_a"]
        )
    assert plain.has() and not plain.has(("no_mixup",)) and plain.cpu_capability
    stamps = {
        p: (cell_dir / plain.phase(p).checkpoint).stat().st_mtime_ns for p in ["1", "2a", "2b", "3"]
    }

    spec = dataclasses.replace(_spec(data, out), phase3_variants=("no_mixup",),
                               phase3_configurations=("none",))  # fmt: skip
    lines: list[str] = []
    both = run_study([cell], spec, report=lines.append)[0]
    assert lines[0] == "study: 1 cells, 0 complete, 1 to run"
    assert both.phases[:4] == plain.phases  # neither trained nor scored again
    assert {p: (cell_dir / plain.phase(p).checkpoint).stat().st_mtime_ns for p in stamps} == stamps
    variant = both.phase("3", "no_mixup")
    assert variant.checkpoint == "weights/phase3_no_mixup/phase3_epoch_2.pth"
    assert set(variant.ap_splits) == {"half_a", "half_b", "first96"} and "easy" in variant.ap
    held = load_checkpoint(cell_dir / variant.checkpoint)
    main = load_checkpoint(cell_dir / plain.final.checkpoint)
    assert held["phase"] == "3" and held["train_config"]["phase3_variant"] == "no_mixup"
    assert main["train_config"]["phase3_variant"] == "as_specified"
    assert held["train_config"]["resume_net"] == main["train_config"]["resume_net"]
    assert held["train_config"]["seed"] == main["train_config"]["seed"] == 0
    assert not all(torch.equal(held["model"][k], main["model"][k]) for k in main["model"])
    v_model, info = load_model(cell_dir / variant.checkpoint)
    assert info["phase3_variant"] == "no_mixup" and v_model.dropout_on  # dropout kept
    # per-phase rows of the per-seed frame: the contract's columns, phase 1-2b on half_a alone
    frame = load_results(out)
    assert list(frame.columns) == list(PER_SEED_COLUMNS)
    assert len(frame) == 5 * 3
    early = frame[frame.phase == "1"]
    assert early.ap.isna().all() and early.ap_half_a.notna().any()
    assert set(frame.phase3_variant) == {"as_specified", "no_mixup"}
    assert len(phase3_rows(frame)) == 3
    # skipped once complete; a resume of the variant with another variant is refused
    lines.clear()
    run_study([cell], spec, report=lines.append)
    assert lines == ["study: 1 cells, 1 complete, 0 to run"]
    other = TrainConfig(
        phase="3", phase3_variant="no_dropout", training_dataset=str(data / "train" / "label.txt"),
        variant="none", epochs=2, batch_size=4, image_size=160, num_workers=0, seed=0,
        save_folder=str(cell_dir / "weights"), progress=False, init_seed=0,
        resume_net=str(cell_dir / "weights" / "phase3_no_mixup" / "latest.pth"),
    )  # fmt: skip
    with pytest.raises(ConfigMismatch, match="phase3_variant"):
        fit_phase(other)
