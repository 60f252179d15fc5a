"""`make html`: the executed notebooks of a run as a static site (ffcore.report.site)."""

from __future__ import annotations

import base64
import re

import nbformat
import pytest

from ffcore.cli import main
from ffcore.pipeline import NOTEBOOK_NAMES
from ffcore.report.site import build_site, notebook_title

# a 1x1 PNG
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
        "0000000d49444154789c6360f8cfc0f01f0005000201a5c1e1a80000000049454e44ae426082"
    )
).decode()


def _executed(path, title: str) -> None:
    """A small executed notebook: a heading, a code cell with a stream line and a figure."""
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("fig", execution_count=1)
    code.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="phase 1: 2/2 step in 1 s\n"),
        nbformat.v4.new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"}),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\nText."), code]
    nbformat.write(nb, path)


@pytest.fixture()
def run_dir(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in NOTEBOOK_NAMES[:-1]:  # every notebook but 08 executed
        _executed(run / f"{name}.ipynb", f"{name[:2]} — title of {name}")
    return run


def test_index_links_every_executed_notebook_and_pages_embed_figures(run_dir, tmp_path) -> None:
    site = build_site(run_dir, tmp_path / "site")
    index = site.index.read_text()
    links = re.findall(r'<a href="([^"]+)">', index)
    assert '<a href="02_phase1.html">02 — title of 02_phase1</a>' in index
    assert links == [f"{n}.html" for n in NOTEBOOK_NAMES[:-1]]
    assert "<code>08_ablation_study.ipynb</code>: not executed in this run" in index
    assert site.missing == ["08_ablation_study"]
    assert "title of 02_phase1" in index
    for name in NOTEBOOK_NAMES[:-1]:
        page = (tmp_path / "site" / f"{name}.html").read_text()
        figures = re.findall(r'<img [^>]*src="data:image/png;base64,', page)
        assert len(figures) == 1, name  # the figure, embedded in the page
        assert "phase 1: 2/2 step in 1 s" in page


def test_cli_builds_the_site_and_an_empty_run_is_an_error(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    _executed(run / "08_ablation_study.ipynb", "08 — study")
    assert main(["html", "--run-dir", str(run)]) == 0  # default out: RUN_DIR/html
    index = (run / "html" / "index.html").read_text()
    assert re.findall(r'<a href="([^"]+)">', index) == ["08_ablation_study.html"]
    assert index.count("not executed in this run") == len(NOTEBOOK_NAMES) - 1
    assert "(1 notebook pages)" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert main(["html", "--run-dir", str(tmp_path / "empty")]) == 1
    assert "no executed notebook" in capsys.readouterr().err


def test_title_is_the_first_heading(tmp_path) -> None:
    _executed(tmp_path / "x.ipynb", "05 — Phase 3")
    assert notebook_title(tmp_path / "x.ipynb") == "05 — Phase 3"
