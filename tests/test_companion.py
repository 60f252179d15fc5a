"""`python -m ffcore thesis`: the companion PDF of a copy of figures/ compiles with pdflatex, with
every figure file included in its section (the notebooks' order, each table beside its figure),
the Findings, the numbers table and the provenance table (LaTeX specials escaped); missing inputs
are framed and listed, and fail --strict."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ffcore.cli import main
from ffcore.paths import FIGURES_DIR
from ffcore.report.companion import (
    MissingInputs,
    build_companion,
    companion_tex,
    content_commits,
    provenance_table,
    short_caption,
)  # fmt: skip
from ffcore.report.layout import SECTIONS, placements, undeclared

IN_CI = os.environ.get("CI", "").lower() == "true"
needs_pdflatex = pytest.mark.skipif(
    shutil.which("pdflatex") is None and not IN_CI,
    reason="pdflatex not installed (apt-get install texlive-latex-recommended ...); in CI a "
    "missing pdflatex fails instead, since .ci/run installs it",
)

PROVENANCE = {
    "files": {
        "ap_phase3.tex": {
            "sha256": "ab" * 32,
            "notebook": "06_evaluation",
            "parameters": {"profile": "smoke"},
            "profile": "smoke",
            "data_fingerprint": "cd" * 32,
            "checkpoints": {"runs/smoke/weights/phase3/phase3_epoch_3.pth": "ef" * 32},
            "ffcore_hash": "12" * 32,
            "git_commit": "0123456789abcdef" * 2 + "01234567",
            "git_dirty": True,
            "versions": {"torch": "2.14.1"},
            "cpu_kernels": {"ATEN_CPU_CAPABILITY": "avx2"},
            "threads": 2,
            "time": "2026-12-04T13:35:00+00:00",
        },
        "odd_name_&_100%.csv": {"notebook": "07_ablation_figures", "checkpoints": {}},
    }
}


def _figures_copy(tmp_path: Path, with_inputs: bool) -> Path:
    figs = tmp_path / "figures"
    shutil.copytree(FIGURES_DIR, figs, ignore=shutil.ignore_patterns("companion.*"))
    for name in ("numbers_table.tex", "provenance.json"):
        (figs / name).unlink(missing_ok=True)
    if with_inputs:
        (figs / "provenance.json").write_text(json.dumps(PROVENANCE))
        (figs / "numbers_table.tex").write_text(
            "\\begin{tabular}{lr}\\toprule name & value \\\\\\midrule "
            "APHardSmoke & 0.6543 \\\\\\bottomrule\\end{tabular}\n"
        )
    return figs


def test_provenance_table_escapes_and_shortens() -> None:
    tex = provenance_table(PROVENANCE)
    # specials escaped; a line may break after an underscore
    assert r"odd\_\allowbreak{}name\_\allowbreak{}\&\_\allowbreak{}100\%.csv" in tex
    assert r"phase3\_\allowbreak{}epoch\_\allowbreak{}3.pth efefefef" in tex  # name, short hash
    assert "01234567+" in tex  # commit, dirty
    assert r"\begin{longtable}" in tex and "resizebox" not in tex and "scalebox" not in tex
    assert "provenance not recorded" in provenance_table(None)


def test_missing_inputs_say_so(tmp_path: Path) -> None:
    figs = _figures_copy(tmp_path, with_inputs=False)
    tex = companion_tex(figs, "smoke", "abc", False, "today")
    assert "numbers\\_table.tex} was found" in tex and "provenance not recorded" in tex
    tex = companion_tex(_figures_copy(tmp_path / "b", True), "smoke", "abc", False, "today")
    assert r"\input{figures/numbers_table}" in tex and "APHard" not in tex  # input, not inlined


@needs_pdflatex
def test_companion_compiles_with_every_figure(tmp_path: Path) -> None:
    figs = _figures_copy(tmp_path, with_inputs=True)
    result = build_companion(figs, "smoke", tmp_path / "out" / "companion.pdf", strict=True)
    stems = sorted(p.stem for p in figs.glob("*.pdf"))
    assert stems and sorted(result.figures) == stems  # every figure file read by pdflatex
    assert result.missing == ()
    # title + contents and lists + findings + one page per float at most + numbers + provenance
    assert 5 < result.pages <= 6 + len(stems) + len(list(figs.glob("*.tex")))
    data = result.pdf.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 10_000
    if shutil.which("pdftotext"):  # poppler: the numbers and provenance made it into the PDF
        proc = subprocess.run(["pdftotext", str(result.pdf), "-"], capture_output=True, text=True)
        text = proc.stdout
        assert text.count("\f") == result.pages  # one form feed per page
        assert "APHardSmoke" in text and "01234567+" in text
        assert re.search(r"06.evaluation", text)  # pdftotext shows _ as a space
        # the sections in the notebooks' order, the Findings first, each with its prose
        order = [
            "Findings",
            "The model",
            "Training in four phases",
            "Evaluation",
            "Ablation figures",
            "Ablation study",
            "Deployment and speed",
            "Provenance",
        ]
        body = text.split("List of Tables")[-1]
        found = [body.find(f"\n{title}\n") for title in order]
        assert -1 not in found and found == sorted(found), found
        assert "Missing input" not in text and "Of the 10 claims" in text
    assert not list(figs.glob("companion*"))  # built elsewhere; the folder is untouched


@needs_pdflatex
def test_thesis_command_lists_missing_inputs_and_strict_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 29 item 4: a deleted input is framed in the PDF, listed on its Missing inputs page
    and on stderr; --strict exits 1."""
    figs = _figures_copy(tmp_path, with_inputs=True)
    (figs / "param_table.tex").unlink()
    (figs / "attention_maps.png").unlink()
    assert main(["thesis", "--figures-dir", str(figs), "--strict"]) == 1
    captured = capsys.readouterr()
    assert (figs / "companion.pdf").is_file() and "pages" in captured.out
    for name in ("param_table.tex", "attention_maps.png"):
        assert f"missing input: {figs / name}" in captured.err
    assert "--strict" in captured.err
    if shutil.which("pdftotext"):
        proc = subprocess.run(
            ["pdftotext", str(figs / "companion.pdf"), "-"], capture_output=True, text=True
        )
        text = " ".join(proc.stdout.split())
        assert "Missing inputs" in text and "attention maps.png" in text.replace("_", " ")
        assert "Missing input: figures/param table.tex" in text.replace("_", " ")  # the frame
    (figs / "companion.pdf").unlink()
    with pytest.raises(MissingInputs, match="param_table.tex"):
        build_companion(figs, "smoke", tmp_path / "strict.pdf", strict=True)


def test_every_file_of_the_committed_folder_is_placed_exactly_once() -> None:
    """The declared layout (ffcore.report.layout) places each file of figures/ once: in a
    section's float, in the numbers or provenance section, or deliberately not shown."""
    names = [p.name for p in FIGURES_DIR.iterdir() if p.is_file()]
    where = placements(names)
    assert {n: w for n, w in where.items() if len(w) != 1} == {}
    assert undeclared(names) == []
    # a table listed as "the numbers of" a figure is declared in the same item as that figure
    for section in SECTIONS:
        for item in section.items:
            assert item.figure or item.table


@needs_pdflatex
def test_committed_companion_prints_every_table_at_90_percent_within_the_margins(
    tmp_path: Path,
) -> None:
    """The companion of the committed figures/ (its own numbers and provenance tables): every
    table prints at 90 % or more (turned tables fitted in both directions) and no line of text
    runs past its column or the margin by more than a point (pdflatex's overfull boxes)."""
    figs = tmp_path / "figures"
    shutil.copytree(FIGURES_DIR, figs, ignore=shutil.ignore_patterns("companion.*"))
    result = build_companion(figs, "smoke", tmp_path / "companion.pdf", strict=True)
    tables = {
        item.table
        for section in SECTIONS
        for item in section.items
        if item.table and (figs / f"{item.table}.tex").is_file()
    }
    assert set(result.table_scales) == tables
    small = {name: scale for name, scale in result.table_scales.items() if scale < 0.9}
    assert not small, f"tables printed below 90 %: {small}"
    assert max(result.overfull_pt, default=0.0) <= 1.0, result.overfull_pt


def test_log_readers_by_hand() -> None:
    from ffcore.report.companion import overfull_widths, table_scales

    log = (
        "fftable a: natural 400.0pt room 455.0pt\nfftable a: height 100.0pt hroom 600.0pt\n"
        "fftable b: natural 500.0pt room 455.0pt\nfftable b: height 100.0pt hroom 600.0pt\n"
        "fftable c: natural 500.0pt room 613.0pt\nfftable c: height 500.0pt hroom 455.0pt\n"
        "Overfull \\hbox (2.5pt too wide) in paragraph\nOverfull \\hbox (0.25pt too wide)\n"
    )
    assert table_scales(log) == {"a": 1.0, "b": 455 / 500, "c": 455 / 500}
    assert overfull_widths(log) == (2.5, 0.25)


def test_title_page_names_the_commits_of_the_files_shown() -> None:
    prov = {"files": {
        "a.pdf": {"notebook": "01_model", "git_commit": "aaaaaaa1", "git_dirty": False, "time": "1"},
        "b.pdf": {"notebook": "02_phase1", "git_commit": "aaaaaaa1", "git_dirty": False, "time": "2"},
        "c.pdf": {"notebook": "03_phase2a", "git_commit": "aaaaaaa1", "git_dirty": True, "time": "2"},
        "e.pdf": {"notebook": "06_evaluation", "git_commit": "aaaaaaa1", "git_dirty": False, "time": "2"},
        "d.csv": {"notebook": "08_ablation_study", "git_commit": "bbbbbbb2", "git_dirty": False, "time": "3"},
        "x.csv": {"notebook": "benchmarks/breakdown.py", "git_commit": "ccccccc3", "time": "0"},
    }}  # fmt: skip
    shown = ["a.pdf", "b.pdf", "c.pdf", "e.pdf", "d.csv"]  # x.csv is not shown
    assert content_commits(prov, shown) == [
        "aaaaaaa+ (notebooks 01\u201303, 06)",
        "bbbbbbb (notebook 08)",
    ]


def test_short_captions_stop_at_the_first_clause() -> None:
    cap = "Total parameters of both variants (lines); the claim dashed"
    assert short_caption(cap) == "{Total parameters of both variants}"
    assert (
        short_caption("AP (easy/medium/hard) of the model")
        == "{AP (easy/medium/hard) of the model}"
    )
    long = "word " * 40
    assert short_caption(long).endswith(r"\ldots}") and len(short_caption(long)) < 100


def test_an_undeclared_file_is_shown_apart_and_a_missing_one_framed(tmp_path: Path) -> None:
    """A figure or table no section declares is not dropped: it gets its own section; a declared
    one that is missing gets a frame where it would be and a line on the Missing inputs page."""
    assert placements(["new_plot.pdf", "param_table.tex"]) == {
        "new_plot.pdf": [], "param_table.tex": ["The model: table"]
    }  # fmt: skip
    assert undeclared(["new_plot.pdf", "new_plot.png", "param_table.tex"]) == ["new_plot"]
    figs = _figures_copy(tmp_path, with_inputs=True)
    shutil.copyfile(figs / "pr_curves.pdf", figs / "new_plot.pdf")
    (figs / "param_table.tex").unlink()
    tex = companion_tex(figs, "smoke", "abc", False, "today", ["param_table.tex"])
    assert (
        r"\section{Other figures and tables}" in tex
        and r"\includegraphics{figures/new_plot}" in tex
    )
    assert r"\section*{Missing inputs}" in tex and r"\item \texttt{param\_table.tex}" in tex
    assert r"\textbf{Missing input:} \texttt{figures/param\_table.tex}" in tex
    assert r"\input{figures/param_table}" not in tex


def test_an_optional_item_is_shown_when_present_and_never_missing(tmp_path: Path) -> None:
    """The study's later files (ablation_phases, the 2x grid) are declared optional."""
    figs = _figures_copy(tmp_path, with_inputs=True)
    (figs / "ablation_schedules.tex").unlink(missing_ok=True)  # the grid before its 2x
    tex = companion_tex(figs, "smoke", "abc", False, "today")
    assert "ablation_schedules" not in tex and "Missing input" not in tex
    shutil.copyfile(figs / "ablation_costs.tex", figs / "ablation_schedules.tex")
    tex = companion_tex(figs, "smoke", "abc", False, "today")
    assert r"\fftable{ablation_schedules}{\input{figures/ablation_schedules}}" in tex


def test_result_sentences_break_into_paragraphs_where_a_section_says() -> None:
    from ffcore.report.companion import _paragraph
    from ffcore.report.layout import PARAGRAPH

    assert _paragraph([]) == ""
    assert _paragraph(["A 5 %.", "B."]) == r"A 5 \%. B."
    assert _paragraph(["A.", PARAGRAPH, "B - C.", PARAGRAPH, PARAGRAPH, "D."]) == (
        "A.\n\nB $-$ C.\n\nD."
    )
    assert _paragraph([PARAGRAPH, "A."]) == "A."  # no empty paragraph first
