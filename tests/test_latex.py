"""figures/: the tables are booktabs LaTeX as figures/README.md promises, all_figures.tex lists
every table and figure of the folder, and the document of the README compiles with pdflatex."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from ffcore.paths import FIGURES_DIR, REPO_ROOT
from ffcore.report import figures
from ffcore.report.companion import COMPANION

DOCUMENT = (
    "\\documentclass{article}\\input{figures/preamble}\\begin{document}"
    "\\input{figures/all_figures}\\end{document}\n"
)


def test_latex_table_formats_numbers_as_a_thesis_table() -> None:
    frame = pd.DataFrame(
        {"eca_cbam": [213_072, 1.23456, np.nan, "text"], "cbam": [213_072, 2.5, 3.0, "more"]},
        index=pd.Index(["backbone_attention", "MB", "missing", "note"], name="module"),
        dtype=object,
    )
    tex = figures.latex_table(frame, decimals={"MB": 2})
    lines = tex.splitlines()
    assert lines[0] == r"\begin{tabular}{lrr}"  # numbers right-aligned
    assert lines[2] == r"module & ECA-CBAM & CBAM \\"  # one header row, human names
    assert lines[3] == r"\midrule" and lines.count(r"\toprule") == 1
    assert r"backbone attention & 213,072 & 213,072 \\" in lines  # thousands separators
    assert r"MB & 1.23 & 2.50 \\" in lines  # fixed decimals
    assert r"missing & -- & 3.000 \\" in lines  # missing value: en dash
    assert "cline" not in tex and "multirow" not in tex and "NaN" not in tex


def test_latex_table_multi_index_is_one_header_row_without_multirow() -> None:
    frame = pd.DataFrame(
        {"phase": ["2a", "2a", "3"], "block": ["P3", "P4", "P3"], "ECA mean": [0.5, 0.25, np.nan]}
    ).set_index(["phase", "block"])
    lines = figures.latex_table(frame).splitlines()
    assert lines[0] == r"\begin{tabular}{llr}" and lines[2] == r"phase & block & ECA mean \\"
    assert lines[4:7] == [r"2a & P3 & 0.500 \\", r" & P4 & 0.250 \\", r"3 & P3 & -- \\"]


def test_all_figures_is_generated_from_the_folder(tmp_path) -> None:
    fig, ax = figures.new_figure()
    ax.plot([0, 1], [0, 1])
    figures.save_figure(fig, "one_figure", tmp_path)
    figures.save_table(pd.DataFrame({"a": [1]}), "one_table", tmp_path, source="smoke run")
    index = (tmp_path / "all_figures.tex").read_text()
    assert r"\includegraphics{figures/one_figure}" in index  # natural size: never scaled
    assert r"\input{figures/one_table}" in index and "source: smoke run" in index
    assert (tmp_path / "preamble.tex").read_text().count("usepackage") == len(
        figures.PREAMBLE_PACKAGES
    )


def test_a_multi_line_source_stays_one_comment_line(tmp_path) -> None:
    """A source of two lines (as the latency breakdown's) is one ``%`` line in the .tex: a
    second line would be read as LaTeX ("Missing $ inserted" at its underscore)."""
    figures.save_table(pd.DataFrame({"a": [1]}), "t", tmp_path, source="1 thread\nonnx_ms: ort")
    lines = (tmp_path / "t.tex").read_text().splitlines()
    assert lines[0] == "% source: 1 thread onnx_ms: ort"
    assert lines[1].startswith(r"\begin{tabular}")
    assert "(source: 1 thread onnx\\_ms: ort)" in (tmp_path / "all_figures.tex").read_text()


def test_committed_all_figures_lists_every_figure_and_table() -> None:
    """A figure or table added to figures/ without regenerating all_figures.tex fails here."""
    assert (FIGURES_DIR / "all_figures.tex").read_text() == figures.latex_index(FIGURES_DIR)
    assert (FIGURES_DIR / "preamble.tex").read_text() == figures.latex_preamble()
    index = (FIGURES_DIR / "all_figures.tex").read_text()
    assert "\\InputIfFileExists{figures/numbers_table}" in index
    assert "\\InputIfFileExists{figures/numbers}" in figures.latex_preamble()
    for path in FIGURES_DIR.iterdir():
        if path.stem == COMPANION:  # `make thesis`'s build product (not committed), not a figure
            continue
        if path.suffix == ".pdf":
            assert f"{{figures/{path.stem}}}" in index, path.name
        if path.stem in ("numbers", "numbers_table"):  # macros (preamble) and their longtable
            continue
        if path.suffix == ".tex" and path.stem not in ("preamble", "all_figures"):
            assert f"\\input{{figures/{path.stem}}}" in index, path.name
            assert "cline" not in path.read_text() and "multirow" not in path.read_text()


IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.mark.skipif(
    shutil.which("pdflatex") is None and not IN_CI,
    reason="pdflatex not installed (apt-get install texlive-latex-recommended ...); in CI a "
    "missing pdflatex fails instead, since .ci/run installs it",
)
def test_all_figures_compiles_with_pdflatex(tmp_path) -> None:
    pdflatex = shutil.which("pdflatex")
    assert pdflatex is not None, "pdflatex missing in CI: .ci/run installs texlive when absent"
    (tmp_path / "doc.tex").write_text(DOCUMENT)
    proc = subprocess.run(
        [pdflatex, "-interaction=nonstopmode", "-halt-on-error",
         f"-output-directory={tmp_path}", str(tmp_path / "doc.tex")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    log = (
        (tmp_path / "doc.log").read_text(errors="replace")
        if (tmp_path / "doc.log").exists()
        else ""
    )
    errors = [line for line in log.splitlines() if line.startswith("!")]
    assert proc.returncode == 0 and not errors, "\n".join(errors) or proc.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 0
