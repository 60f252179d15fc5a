"""The companion PDF (``make thesis``): a title page (commit, date, profile), every table and
figure of ``figures/`` with its caption (``ffcore.report.figures.latex_index``), the table of
numbers (``figures/numbers_table.tex``) and the provenance table (``figures/provenance.json``),
compiled twice with pdflatex into ``figures/companion.pdf``.

The document is built in a temporary folder holding a ``figures/`` of links to the real files
(without the companion itself, so ``all_figures`` never lists the companion); its ``.tex``, aux
files and log stay there. ``figures/companion.pdf`` is a build product, not committed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ffcore.atomic import copy_file
from ffcore.paths import FIGURES_DIR, REPO_ROOT, repo_path
from ffcore.report.figures import INDEX, LATEX_DIR, latex_escape, latex_index

COMPANION = "companion"
NUMBERS_TABLE = "numbers_table"
PROVENANCE = "provenance.json"


@dataclass(frozen=True)
class CompanionResult:
    pdf: Path
    pages: int
    figures: tuple[str, ...]  # stems of the figure files pdflatex included (from its log)
    tex: str  # the document's source
    # from pdflatex's log: each \fftable's print scale (1: natural size), and the width in pt by
    # which each overfull line (text running past its column or the margin) is too wide
    table_scales: dict[str, float] = dataclasses.field(default_factory=dict)
    overfull_pt: tuple[float, ...] = ()


_FFTABLE_WIDTH = re.compile(r"fftable (\w+): natural ([\d.]+)pt room ([\d.]+)pt")
_FFTABLE_HEIGHT = re.compile(r"fftable (\w+): height ([\d.]+)pt hroom ([\d.]+)pt")


def table_scales(log: str) -> dict[str, float]:
    """The scale each ``\\fftable`` prints at (``latex_preamble`` logs its sizes): 1 at natural
    size, else the smaller of room / width and height room / height."""
    heights = {name: float(hroom) / float(h) for name, h, hroom in _FFTABLE_HEIGHT.findall(log)}
    return {
        name: min(1.0, float(room) / float(w), heights.get(name, 1.0))
        for name, w, room in _FFTABLE_WIDTH.findall(log)
    }


def overfull_widths(log: str) -> tuple[float, ...]:
    """How many pt each ``Overfull \\hbox`` of a pdflatex log is too wide."""
    return tuple(float(w) for w in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log))


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def title_page(profile: str, commit: str, dirty: bool, date: str) -> str:
    state = " (uncommitted changes)" if dirty else ""
    return "\n".join(
        [
            r"\begin{titlepage}\centering",
            r"{\Large FeatherFace ECA-CBAM: thesis companion\par}\vspace{1.5em}",
            rf"Figures, tables, numbers and provenance of the {latex_escape(profile)} run\par",
            r"\vspace{1em}",
            rf"commit \texttt{{{latex_escape(commit)}}}{latex_escape(state)}\par",
            rf"built {latex_escape(date)}\par",
            r"\vfill",
            r"{\small A smoke or study number comes from synthetic data and is never a thesis "
            r"number; each caption names its run.\par}",
            r"\end{titlepage}",
        ]
    )


def _short(value: Any, keep: int = 12) -> str:
    text = "" if value is None else str(value)
    return text[:keep] if re.fullmatch(r"[0-9a-f]{16,}", text) else text


def _breakable(escaped: str) -> str:
    """A LaTeX-escaped cell that may break after an underscore or a slash (file and notebook
    names are longer than their narrow columns)."""
    return escaped.replace(r"\_", r"\_\allowbreak{}").replace("/", "/\\allowbreak{}")


def provenance_table(provenance: dict[str, Any] | None) -> str:
    """A longtable: file, notebook, checkpoints, data fingerprint, commit, date."""
    if provenance is None:
        return (
            rf"\noindent No \texttt{{{LATEX_DIR}/{PROVENANCE}}} was found: provenance not recorded."
        )
    rows = []
    for name, rec in sorted(provenance.get("files", {}).items()):
        checkpoints = rec.get("checkpoints") or {}
        ckpt = "; ".join(f"{Path(p).name} {_short(h, 8)}" for p, h in checkpoints.items()) or "--"
        commit = _short(rec.get("git_commit"), 8) + ("+" if rec.get("git_dirty") else "")
        cells = [
            name,
            rec.get("notebook") or "--",
            ckpt,
            _short(rec.get("data_fingerprint"), 8) or "--",
            commit or "--",
            str(rec.get("time") or "--")[:16].replace("T", " "),
        ]
        rows.append(" & ".join(_breakable(latex_escape(c)) for c in cells) + r" \\")
    head = r"file & notebook & checkpoints (sha256) & data & commit & time (UTC) \\"
    return "\n".join(
        [
            r"\begingroup\footnotesize\setlength{\tabcolsep}{3pt}",
            r"\begin{longtable}{@{}>{\raggedright\arraybackslash}p{0.21\linewidth}"
            r">{\raggedright\arraybackslash}p{0.15\linewidth}"
            r">{\raggedright\arraybackslash}p{0.24\linewidth}"
            r">{\raggedright\arraybackslash}p{0.09\linewidth}"
            r">{\raggedright\arraybackslash}p{0.1\linewidth}"
            r">{\raggedright\arraybackslash}p{0.11\linewidth}@{}}",
            r"\caption{Provenance of every exported file (\texttt{provenance.json}; a + after "
            r"the commit: uncommitted changes)}\\",
            r"\toprule",
            head,
            r"\midrule\endfirsthead",
            r"\toprule",
            head,
            r"\midrule\endhead",
            *(rows or [r"\multicolumn{6}{l}{no files recorded} \\"]),
            r"\bottomrule",
            r"\end{longtable}\endgroup",
        ]
    )


def companion_tex(figures_dir: Path, profile: str, commit: str, dirty: bool, date: str) -> str:
    """The document: title page, all figures and tables, numbers, provenance."""
    numbers = (
        rf"\input{{{LATEX_DIR}/{NUMBERS_TABLE}}}"
        if (figures_dir / f"{NUMBERS_TABLE}.tex").is_file()
        else rf"\noindent No \texttt{{{latex_escape(f'{LATEX_DIR}/{NUMBERS_TABLE}.tex')}}} was found: the table "
        "of numbers is not part of this build."
    )
    prov_path = figures_dir / PROVENANCE
    provenance = json.loads(prov_path.read_text()) if prov_path.is_file() else None
    return "\n".join(
        [
            r"\documentclass[11pt]{article}",
            r"\usepackage[margin=2cm]{geometry}",
            r"\usepackage{longtable,array,booktabs,graphicx,float}",
            rf"\input{{{LATEX_DIR}/preamble}}",
            r"\begin{document}",
            title_page(profile, commit, dirty, date),
            r"\tableofcontents\clearpage",
            r"\section{Figures and tables}",
            rf"\input{{{LATEX_DIR}/{INDEX}}}",
            r"\section{Numbers quoted by the thesis}",
            numbers,
            r"\clearpage",
            r"\section{Provenance}",
            provenance_table(provenance),
            r"\end{document}",
            "",
        ]
    )


def _page_count(log: str) -> int:
    found = re.findall(r"Output written on .*?\((\d+) pages?", log, re.S)
    if not found:
        raise RuntimeError("pdflatex wrote no PDF (no 'Output written' line in its log)")
    return int(found[-1])


def build_companion(
    figures_dir: str | Path | None = None,
    profile: str = "smoke",
    out: str | Path | None = None,
    pdflatex: str | None = None,
) -> CompanionResult:
    """Compile the companion of ``figures_dir`` (default ``figures/``) into ``out`` (default
    ``<figures_dir>/companion.pdf``) with two pdflatex passes in a temporary folder."""
    src = repo_path(figures_dir) if figures_dir is not None else FIGURES_DIR
    if not src.is_dir():
        raise FileNotFoundError(f"figures_dir {src} is not a folder")
    exe = pdflatex or shutil.which("pdflatex")
    if exe is None:
        raise FileNotFoundError(
            "pdflatex not found: apt-get install texlive-latex-base texlive-latex-recommended "
            "texlive-latex-extra"
        )
    target = repo_path(out) if out is not None else src / f"{COMPANION}.pdf"
    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no") not in ("", "unknown")
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    with tempfile.TemporaryDirectory(prefix="companion-") as tmp:
        build = Path(tmp)
        figs = build / LATEX_DIR
        figs.mkdir()
        for f in src.iterdir():
            if f.is_file() and f.stem != COMPANION and f.name != f"{INDEX}.tex":
                (figs / f.name).symlink_to(f.resolve())
        # the folder's list, fresh; the numbers get their own section below
        (figs / f"{INDEX}.tex").write_text(latex_index(figs, numbers=False))
        tex = companion_tex(figs, profile, commit, dirty, date)
        (build / f"{COMPANION}.tex").write_text(tex)
        for _ in range(2):  # the second pass resolves the contents and longtable widths
            proc = subprocess.run(
                [exe, "-interaction=nonstopmode", "-halt-on-error", f"{COMPANION}.tex"],
                cwd=build, capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            log_path = build / f"{COMPANION}.log"
            log = log_path.read_text(errors="replace") if log_path.is_file() else proc.stdout
            if proc.returncode != 0:
                errors = [line for line in log.splitlines() if line.startswith("!")]
                raise RuntimeError(
                    f"pdflatex failed on the companion of {src}: "
                    + ("; ".join(errors[:3]) or proc.stdout[-500:])
                )
        pages = _page_count(log)
        # the graphics pdflatex read, from its log: "<figures/name.pdf, id=.., ..>"
        included = tuple(dict.fromkeys(re.findall(rf"<{LATEX_DIR}/([^<>,\s]+)\.pdf", log)))
        target.parent.mkdir(parents=True, exist_ok=True)
        copy_file(build / f"{COMPANION}.pdf", target)
    return CompanionResult(target, pages, included, tex, table_scales(log), overfull_widths(log))
