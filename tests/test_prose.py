"""Typed prose states no result; generated prose says what the data say (issue 27).

The lint (``tests/prose_lint.py``) reads the notebooks' markdown cells, the README outside its
number markers and ``figures/README.md``; the sentence generators (``ffcore.report.narrative``)
are checked on planted data whose direction is known."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from prose_lint import check_sentence, lint_markdown, lint_notebook, lint_text
from scipy import stats

from ffcore.paths import FIGURES_DIR, NOTEBOOKS_DIR, REPO_ROOT
from ffcore.pipeline import NOTEBOOK_NAMES
from ffcore.report import narrative
from ffcore.report.study_frame import PER_SEED_COLUMNS, PER_SEED_FILE

# Every README section is linted: the study section quotes its results through markers too
# (report/study.py registers them).
README_SECTIONS_LEFT_OUT: tuple[str, ...] = ()


# -- (a) the lint over the committed prose ---------------------------------------------------
@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_notebook_markdown_states_no_typed_result(name: str) -> None:
    found = lint_notebook(NOTEBOOKS_DIR / f"{name}.ipynb")
    assert not found, "\n".join(map(str, found))


def test_readmes_state_no_typed_result() -> None:
    found = lint_markdown(REPO_ROOT / "README.md", README_SECTIONS_LEFT_OUT)
    found += lint_markdown(FIGURES_DIR / "README.md")
    assert not found, "\n".join(map(str, found))


@pytest.mark.parametrize(
    "sentence",
    [
        "Phase 3 improves AP to 99.9.",
        "The probe loss fell over the phase.",
        "ECA-CBAM is faster than CBAM: its latency is lower.",
        "In onnxruntime the DeformConv nodes take about 40 % of the time.",
        "The smoke run gave 98.8 / 96.7 / 74.3.",
        "Attention lowers AP on every subset.",
    ],
)
def test_lint_flags_typed_results(sentence: str) -> None:
    assert check_sentence(sentence) is not None


@pytest.mark.parametrize(
    "sentence",
    [
        "The step loss is lower *by construction*: the mixup weighting.",  # allow-listed method
        "Each comparison has its 95 % t interval and the difference detectable with 80 % power.",
        "The probe set (the same crops every epoch) is the loss that compares across phases.",
        "Boxes scoring at least the threshold are drawn with their five landmarks.",
    ],
)
def test_lint_passes_method_sentences(sentence: str) -> None:
    assert check_sentence(sentence) is None


def test_numbers_inside_markers_are_not_typed() -> None:
    bound = "AP <!-- ff:ApPhaseThreeEasy -->97.7<!-- /ff --> after phase 3, <!-- ff:X -->40<!-- /ff --> %."
    assert lint_text(bound, "x") == []
    assert len(lint_text(bound.replace("<!-- ff:ApPhaseThreeEasy -->", ""), "x")) == 1


# -- (c) a planted contradiction in a real notebook ------------------------------------------
def test_a_typed_claim_planted_in_a_notebook_fails_the_lint(tmp_path) -> None:
    source = NOTEBOOKS_DIR / "05_phase3.ipynb"
    planted = tmp_path / source.name
    shutil.copy(source, planted)
    assert lint_notebook(planted) == []
    nb = json.loads(planted.read_text())
    cell = next(i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "markdown")
    nb["cells"][cell]["source"].append("\n\nOn this run phase 3 improves AP to 99.9.")
    planted.write_text(json.dumps(nb))
    found = lint_notebook(planted)
    assert [f.where for f in found] == [f"05_phase3.ipynb cell {cell}"]
    assert "99.9" in found[0].sentence


# -- (b) the generators on planted data ------------------------------------------------------
BEFORE = {"easy": 0.994, "medium": 0.973, "hard": 0.745}  # the smoke run after phase 2b
AFTER = {"easy": 0.977, "medium": 0.933, "hard": 0.693}  # ... and after phase 3


def test_a_phase_that_lowers_ap_is_said_to_lower_it() -> None:
    text = narrative.phase_change_sentence("3", BEFORE, AFTER)
    assert text.startswith("Phase 3 lowered AP on every subset")
    for word in ("raised", "improv", "better", "higher", "unchanged"):
        assert word not in text
    # the numbers by hand: 99.4 -> 97.7 is -1.7 points, 97.3 -> 93.3 -4.0, 74.5 -> 69.3 -5.2
    assert "easy 99.4 → 97.7 (-1.7 points)" in text
    assert "medium 97.3 → 93.3 (-4.0 points)" in text
    assert "hard 74.5 → 69.3 (-5.2 points)" in text
    raised = narrative.phase_change_sentence("3", AFTER, BEFORE)
    assert raised.startswith("Phase 3 raised AP on every subset") and "lowered" not in raised


def test_mixed_and_unchanged_directions() -> None:
    after = {"easy": 0.994, "medium": 0.980, "hard": 0.700}  # easy within 0.05 points
    text = narrative.phase_change_sentence("2a", BEFORE, after, before_label="phase 1")
    assert text.startswith(
        "Phase 2a raised AP on medium; lowered it on hard; left it unchanged on easy (against phase 1)"
    )
    assert narrative.direction(1.0, 1.0 + 1e-9, 0.05) == "left unchanged"
    assert narrative.direction(float("nan"), 1.0, 0.05) == "not measured"


def test_ap_by_phase_markdown_follows_the_table() -> None:
    ap = pd.DataFrame(
        [[0.996, 0.973, 0.718], [0.999, 0.969, 0.724], list(BEFORE.values()), list(AFTER.values())],
        index=pd.Index(["1", "2a", "2b", "3"], name="phase"),
        columns=["easy", "medium", "hard"],
    )
    text = narrative.ap_by_phase_markdown(ap, {"1": 12, "2a": 3, "2b": 4, "3": 3})
    lines = text.splitlines()
    assert lines[2] == (
        "- Phase 3 lowered AP on every subset (against phase 2b): easy 99.4 → 97.7 (-1.7 points), "
        "medium 97.3 → 93.3 (-4.0 points), hard 74.5 → 69.3 (-5.2 points)."
    )
    # phases 2a-3 against phase 1: -1.9 / -4.0 / -2.5 points
    assert lines[3].startswith(
        "- Phases 2a–3 together lowered AP on every subset (against phase 1)"
    )
    assert "(12 / 3 / 4 / 3 for phases 1 / 2a / 2b / 3 in this run)" in text
    assert "one run has no interval" in text
    assert text._repr_markdown_() == str(text)  # displayed as Markdown by a notebook


def _epochs_csv(path, probe: list[float]) -> None:
    pd.DataFrame(
        {"phase": "3", "epoch": range(len(probe)), "train_total": np.nan, "probe_total": probe}
    ).to_csv(path, index=False)


def test_probe_sentence_follows_the_numbers(tmp_path) -> None:
    _epochs_csv(tmp_path / "rise.csv", [2.97, 3.10, 3.27])  # the smoke run's phase 3
    text = narrative.probe_change_sentence(tmp_path / "rise.csv")
    assert text.startswith(
        "Over phase 3 the probe-set loss rose: 2.970 before the first step → 3.270 after epoch 2 "
        "(+10.1 %)"
    )  # (3.27 - 2.97) / 2.97 = 10.10 %
    _epochs_csv(tmp_path / "fall.csv", [5.0, 4.0, 2.5])
    assert "loss fell: 5.000 before the first step → 2.500 after epoch 2 (-50.0 %)" in (
        narrative.probe_change_sentence(tmp_path / "fall.csv")
    )
    quiet = narrative.probe_change_sentence(tmp_path / "fall.csv", one_run_note=False)
    assert quiet.endswith("(-50.0 %).") and "interval" not in quiet
    _epochs_csv(tmp_path / "flat.csv", [2.0, 2.001])
    assert "stayed the same" in narrative.probe_change_sentence(tmp_path / "flat.csv")


def _per_seed(path, diffs: dict[str, np.ndarray]) -> None:
    """A per-seed CSV where configuration c scores 0.9 + diffs[c] (AP fraction) on every subset."""
    rows = [
        {
            "configuration": c,
            "seed": s,
            "subset": sub,
            "ap": 0.9 + d[s],
            "profile": "study",
            "phase": "3",
            "phase3_variant": "as_specified",
        }  # fmt: skip
        for c, d in diffs.items()
        for s in range(len(d))
        for sub in ("easy", "medium", "hard")
    ]
    pd.DataFrame(rows).reindex(columns=list(PER_SEED_COLUMNS)).to_csv(path, index=False)


def test_study_verdict_comes_from_the_per_seed_csv(tmp_path) -> None:
    rng = np.random.default_rng(0)
    none = rng.normal(0, 0.002, 8)
    phased = none - 0.02 + rng.normal(0, 0.002, 8)  # 2 points below no attention on every seed
    joint = phased + rng.normal(0, 0.002, 8)
    _per_seed(
        tmp_path / PER_SEED_FILE,
        {"none": none, "eca_cbam_phased": phased, "eca_cbam_joint": joint},
    )
    text = narrative.study_verdict_markdown(tmp_path)
    line = next(x for x in text.splitlines() if x.startswith("- ECA-CBAM phased - none on hard"))
    d = phased - none
    assert f"{100 * d.mean():+.1f} points" in line
    assert stats.ttest_rel(phased, none).pvalue < 0.001 and "significantly lower" in line
    assert "8 seeds" in text
    missing = narrative.study_verdict_markdown(tmp_path / "nowhere", fallback=None)
    assert missing.startswith("No study results") and "notebook 08" in missing
    committed = narrative.study_verdict_markdown(tmp_path / "nowhere")  # the committed grid
    assert f"`{PER_SEED_FILE}`" in committed and "ECA-CBAM phased - none on hard" in committed


def test_parameter_claims_follow_the_counts() -> None:
    from ffcore.report.model_report import parameter_claims_markdown

    params = pd.DataFrame(
        {"cbam": [10000, 3000, 500, 13500], "eca_cbam": [10000, 100, 100, 10200]},
        index=["backbone", "backbone_attention", "neck_attention", "total"],
    )
    sweep = pd.DataFrame({"cbam": [0, 0], "eca_cbam": [9000, 10200]}, index=[40, 52])
    text = parameter_claims_markdown(params, sweep, {"cbam_params": 13000, "eca_cbam_params": 9500})
    # 13,500 is not 13.0K; 3,000 + 500 -> 100 + 100 saves 3,300; 10,200 is not 9.5K
    assert "**13,500** parameters, which does not match the thesis' 13K" in text
    assert "(3,000 + 500 → 100 + 100, 3,300 fewer)" in text
    assert "which does not match the thesis' ~9.5K (that would take 4,000 fewer" in text
    assert "a neck between 40 and 52 channels (40 give 9K, 52 give 10.2K)" in text
    text = parameter_claims_markdown(
        params, sweep, {"cbam_params": 13520, "eca_cbam_params": 10180}
    )
    assert text.count("which matches") == 2  # equal at the thesis' 0.1K rounding
