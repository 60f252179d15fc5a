"""The executed notebooks of a run as a small static site, readable without running anything.

``build_site(run_dir, out_dir)`` converts every executed notebook of ``ffcore.pipeline``
(``<run_dir>/<name>.ipynb``, 01-08) to one HTML page with nbconvert (figures are embedded in the
page as base64 PNG, so a page is one self-contained file) and writes ``index.html`` linking them
in order, each with its title (the notebook's first heading); a notebook that was not executed is
listed as such. ``make html`` (``python -m ffcore html``) calls it.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ffcore.atomic import write_text
from ffcore.pipeline import NOTEBOOK_NAMES

INDEX = "index.html"


@dataclass
class Site:
    out_dir: Path
    index: Path
    pages: dict[str, Path] = field(default_factory=dict)  # notebook name -> its page
    missing: list[str] = field(default_factory=list)  # notebooks with no executed copy


def notebook_title(path: str | os.PathLike[str]) -> str:
    """The first Markdown heading of a notebook, without its hashes (else its file stem)."""
    for cell in json.loads(Path(path).read_text())["cells"]:
        if cell["cell_type"] == "markdown":
            source = "".join(cell["source"])
            if m := re.search(r"^#+\s+(.+)$", source, re.M):
                return m.group(1).strip()
    return Path(path).stem


def notebook_page(path: str | os.PathLike[str]) -> str:
    """One executed notebook as a standalone HTML page (nbconvert's lab template; images as
    base64 data URIs, no input prompts)."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    exporter.log.setLevel(logging.ERROR)  # not a warning per figure without alternative text
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nbformat.read(str(path), as_version=4))
    return body


def _index(run_dir: Path, titles: dict[str, str | None]) -> str:
    rows = []
    for name, title in titles.items():
        if title is None:
            rows.append(f"<li><code>{name}.ipynb</code>: not executed in this run</li>")
        else:
            rows.append(
                f'<li><a href="{name}.html">{html.escape(title)}</a> <small>(<code>{name}'
                f".ipynb</code>)</small></li>"
            )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>FeatherFace ECA-CBAM: executed notebooks of {html.escape(run_dir.name)}</title>
<style>body {{ font-family: sans-serif; max-width: 50em; margin: 2em auto; line-height: 1.5; }}
li {{ margin: 0.4em 0; }}</style></head>
<body>
<h1>FeatherFace ECA-CBAM: the executed notebooks</h1>
<p>Run folder <code>{html.escape(str(run_dir))}</code>: each page is the executed copy of a
notebook, with its outputs and figures, as <code>make reproduce</code> left it. The sentences
that report results are generated from the run's files.</p>
<ol>
{chr(10).join(rows)}
</ol>
</body></html>
"""


def build_site(
    run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None
) -> Site:
    """Write ``<out_dir>/<name>.html`` for each executed notebook of ``run_dir`` and
    ``<out_dir>/index.html`` (``out_dir`` default: ``<run_dir>/html``). A run folder without any
    executed notebook is an error naming it."""
    run = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run / "html"
    executed = {name: run / f"{name}.ipynb" for name in NOTEBOOK_NAMES}
    if not any(p.is_file() for p in executed.values()):
        raise FileNotFoundError(
            f"{run}: no executed notebook ({NOTEBOOK_NAMES[0]}.ipynb ... "
            f"{NOTEBOOK_NAMES[-1]}.ipynb); run the reproduction into it first"
        )
    out.mkdir(parents=True, exist_ok=True)
    site = Site(out, out / INDEX)
    titles: dict[str, str | None] = {}
    for name, path in executed.items():
        if not path.is_file():
            site.missing.append(name)
            titles[name] = None
            continue
        page = out / f"{name}.html"
        write_text(page, notebook_page(path))
        site.pages[name] = page
        titles[name] = notebook_title(path)
    write_text(site.index, _index(run, titles))
    return site
