"""The whole smoke reproduction: notebooks 01 -> 08 in sequence under papermill on the synthetic
dataset (what `make reproduce` runs), then checks on what each notebook left behind."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from jsonwalk import json_strings

from ffcore.paths import FIGURES_DIR
from ffcore.pipeline import PHASE_NOTEBOOKS
from ffcore.report.narrative import phase_change_sentence
from ffcore.report.site import build_site
from ffcore.reproduce import NOTEBOOKS, reproduce
from ffcore.schedule import PHASES
from ffcore.training.handover import phase_result as read_phase_result

pytestmark = [pytest.mark.notebook, pytest.mark.slow]


def test_smoke_reproduction(tmp_path) -> None:
    tiny = {"latency_reps": 1, "include_onnx": False, "num_examples": 2}
    result = reproduce("ci", tmp_path / "run", figures_dir=tmp_path / "figs", extra_parameters=tiny)
    run = tmp_path / "run"
    assert result.executed == list(NOTEBOOKS)
    for name in NOTEBOOKS:
        assert (run / f"{name}.ipynb").is_file()

    # 01: the thesis' parameter counts
    summary = json.loads((run / "01_model" / "model_summary.json").read_text())
    assert summary["parameters"] == {"cbam": 488_664, "eca_cbam": 476_357}

    # 02-05: each phase starts from the previous one, its loss falls, its lr follows one cosine
    previous = None
    for phase in PHASE_NOTEBOOKS:
        phase_result = read_phase_result(run, phase)
        assert phase_result["phase"] == phase and phase_result["epochs"] == 2
        assert phase_result["checkpoint"].endswith(f"weights/phase{phase}/phase{phase}_epoch_2.pth")
        assert phase_result["started_from"] == previous
        card = (run / phase_result["checkpoint"]).parent / "model_card.md"  # beside its checkpoint
        assert "- trained on synthetic data: yes" in card.read_text(), card
        assert phase_result["probe_losses"][-1] < phase_result["probe_losses"][0]
        history = pd.read_csv(phase_result["history_csv"])
        assert history.lr.iloc[0] == pytest.approx(PHASES[phase].lr)
        assert history.lr.iloc[-1] < 0.05 * PHASES[phase].lr
        previous = phase_result["checkpoint"]

    # 06 and 07: AP per phase, the metrics summary
    ap = json.loads((run / "06_evaluation" / "ap.json").read_text())
    assert set(ap) == {"easy", "medium", "hard", "landmarks", "protocol"}  # val has landmarks
    assert ap["landmarks"]["faces_with_landmarks"] > 0
    by_phase = pd.read_csv(run / "06_evaluation" / "ap_by_phase.csv", dtype={"phase": str})
    assert list(by_phase.phase) == list(PHASES)
    assert by_phase.set_index("phase").loc["3", "hard"] == pytest.approx(ap["hard"], nan_ok=True)
    metrics = json.loads((run / "metrics_summary.json").read_text())
    assert set(metrics["ap_by_phase"]) == set(PHASES)
    assert metrics["variants"]["eca_cbam"]["total"] == 476_357

    # 06 says in words how each phase moved AP, from its own table; 08 ran on the committed grid
    said = _markdown_outputs(run / "06_evaluation.ipynb")
    table = by_phase.set_index("phase")[["easy", "medium", "hard"]]
    for prev, cur in zip(PHASES, list(PHASES)[1:], strict=False):
        before, after = table.loc[prev].to_dict(), table.loc[cur].to_dict()
        assert phase_change_sentence(cur, before, after, before_label=f"phase {prev}") in said
    assert "ECA-CBAM phased - none on hard" in _markdown_outputs(run / "02_phase1.ipynb")
    # the run reads as HTML: one page per notebook, linked from the index
    site = build_site(run)
    assert sorted(site.pages) == sorted(NOTEBOOKS) and not site.missing

    # every notebook shows its figures (inline backend kept in the kernel); 06 and 07 several
    images = {name: _image_outputs(run / f"{name}.ipynb") for name in NOTEBOOKS}
    assert all(n >= 1 for n in images.values()), images
    assert images["06_evaluation"] >= 3 and images["07_ablation_figures"] >= 3, images
    # the run folder holds relative paths only
    for path in run.rglob("*.json"):
        absolute = [s for s in json_strings(json.loads(path.read_text())) if s.startswith("/")]
        assert not absolute, f"{path}: {absolute}"

    # figures/README.md lists exactly the files the notebooks make
    readme = (FIGURES_DIR / "README.md").read_text()
    rows = re.findall(r"^\| ([^|]+) \|", readme, re.M)
    stems = {s for row in rows for s in re.findall(r"`([^`]+)`", row)}
    assert "pr_curves" in stems and "training_phase2b" in stems  # the table parses
    made = {p.stem for p in (tmp_path / "figs").iterdir()}
    # rows whose "made by" column names a script or notebook outside 01-07
    elsewhere = {
        s
        for row in re.findall(r"^\| `([^`]+)` \|[^|]*\|([^|]*)\|", readme, re.M)
        for s in [row[0]]
        if "benchmarks" in row[1] or "08_" in row[1]
    }
    assert stems - made - elsewhere == set(), "listed in figures/README.md but not produced"
    # made elsewhere, so committed: a table (.tex), a figure (.pdf) or a CSV of that stem; the
    # files of notebook 08 once its grid is committed (figures/ablation_per_seed.csv, the source
    # of all of them, is there)
    grid = (FIGURES_DIR / "ablation_per_seed.csv").is_file()
    by_08 = {
        r[0] for r in re.findall(r"^\| `([^`]+)` \|[^|]*\|([^|]*)\|", readme, re.M) if "08_" in r[1]
    }
    # files notebook 08 writes only when the per-seed CSV holds their rows (phases, 2x)
    conditional = {
        r[0]
        for r in re.findall(r"^\| `([^`]+)` \|[^|]*\|([^|]*)\|", readme, re.M)
        if "only when the per-seed CSV holds them" in r[1]
    }
    committed = {s for s in elsewhere if (grid or s not in by_08) and s not in conditional}
    assert all(
        any((FIGURES_DIR / f"{s}.{ext}").is_file() for ext in ("tex", "pdf", "csv"))
        for s in committed
    ), committed
    generated = {"preamble", "all_figures", "numbers", "numbers_table", "provenance"}
    assert made - stems - generated == set(), "produced but not documented in figures/README.md"


def _markdown_outputs(path) -> str:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    return "\n".join(
        out["data"]["text/markdown"]
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if "text/markdown" in out.get("data", {})
    )


def _image_outputs(path) -> int:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    return sum(
        "image/png" in out.get("data", {})
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )
