"""The companion PDF (``make thesis``), a document in the notebooks' order: a title page (the
run, the commits its figures come from, the build commit), contents and lists of figures and
tables, the Findings (every claim of the thesis against this folder: ``report.findings``), one
section per notebook with its method prose, the sentences its numbers make and each figure next
to the table of its numbers (``report.layout``), the table of numbers and the provenance table,
compiled twice with pdflatex into ``figures/companion.pdf``.

A file the layout expects that the folder lacks is listed on a "Missing inputs" page, marked by
a framed note where it would be, and returned in ``CompanionResult.missing`` (``strict``: an
error after the PDF is written). A figure or table the layout does not declare is shown under
"Other figures and tables", never dropped.

The document is built in a temporary folder holding a ``figures/`` of links to the real files
(without the companion itself); its ``.tex``, aux files and log stay there.
``figures/companion.pdf`` is a build product, not committed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ffcore import fingerprint as fp
from ffcore.atomic import copy_file
from ffcore.paths import FIGURES_DIR, repo_path
from ffcore.report.figures import (
    FIT_TABLE,
    INDEX,
    LATEX_DIR,
    PREAMBLE,
    caption_of,
    latex_escape,
    latex_index,
    latex_preamble,
)  # fmt: skip
from ffcore.report.findings import build_findings, findings_tex, summary
from ffcore.report.layout import (
    NOT_SHOWN,
    PARAGRAPH,
    SECTIONS,
    Item,
    Section,
    expected_files,
    placements,
    undeclared,
)  # fmt: skip
from ffcore.report.numbers import load_numbers

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
    missing: tuple[str, ...] = ()  # expected inputs the folder lacks (framed in the PDF)


class MissingInputs(RuntimeError):
    """The companion was built, but files it expects are missing (``strict``)."""


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


def _notebook_ranges(names: list[str]) -> str:
    """``["01_model", "02_phase1", "03_phase2a", "06_evaluation"]`` -> ``01–03, 06``."""
    nums = sorted({int(n[:2]) for n in names})
    runs: list[list[int]] = []
    for n in nums:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(f"{r[0]:02d}" if len(r) == 1 else f"{r[0]:02d}\u2013{r[-1]:02d}" for r in runs)


def content_commits(provenance: dict[str, Any] | None, shown: Iterable[str]) -> list[str]:
    """One phrase per commit the ``shown`` files were made at (from their provenance entries):
    ``"129ec3d (notebooks 01–07; benchmarks/breakdown.py)"``, a + after a commit whose
    entries recorded uncommitted changes outside the outputs."""
    files = (provenance or {}).get("files", {})
    by_commit: dict[str, dict[str, Any]] = {}
    for name in shown:
        rec = files.get(name)
        if not rec or not rec.get("git_commit"):
            continue
        commit = str(rec["git_commit"])[:7]
        group = by_commit.setdefault(commit, {"sources": set(), "dirty": False, "time": ""})
        group["sources"].add(str(rec.get("notebook")))
        group["dirty"] |= bool(rec.get("git_dirty"))
        group["time"] = max(group["time"], str(rec.get("time") or ""))
    phrases = []
    for commit, g in sorted(by_commit.items(), key=lambda kv: kv[1]["time"]):
        notebooks = sorted(s for s in g["sources"] if re.fullmatch(r"\d\d_\w+", s))
        others = sorted(s for s in g["sources"] if s not in notebooks)
        parts = ([f"notebook{'s' if len(notebooks) > 1 else ''} {_notebook_ranges(notebooks)}"]
                 if notebooks else []) + others  # fmt: skip
        phrases.append(f"{commit}{'+' if g['dirty'] else ''} ({'; '.join(parts)})")
    return phrases


def _commit_phrase(phrase: str) -> str:
    """``"129ec3d+ (notebooks 01–07)"`` with the commit in typewriter type."""
    commit, _, rest = phrase.partition(" ")
    return rf"\texttt{{{latex_escape(commit)}}} {latex_escape(rest)}"


def title_page(
    profile: str, commit: str, dirty: bool, date: str, content: Sequence[str] = ()
) -> str:
    """Title, the run, the commits the content comes from (``content_commits``) and the commit
    the document was built at."""
    state = " (uncommitted changes)" if dirty else ""
    made = (
        rf"figures and tables from commit{'s' if len(content) > 1 else ''} "
        + ", ".join(_commit_phrase(c) for c in content)
        + r"\par"
        if content
        else r"no provenance recorded for the files shown\par"
    )
    dirty_note = (
        r"{\small (+: recorded with uncommitted changes to the code)\par}"
        if any("+" in c for c in content)
        else ""
    )
    return "\n".join(
        [
            r"\begin{titlepage}\centering",
            r"{\Large FeatherFace ECA-CBAM: thesis companion\par}\vspace{1.5em}",
            rf"Findings, figures, tables, numbers and provenance of the {latex_escape(profile)} "
            r"run\par",
            r"\vspace{1em}",
            made,
            dirty_note,
            r"\vspace{0.5em}",
            rf"built at commit \texttt{{{latex_escape(commit[:12])}}}{latex_escape(state)}, "
            rf"{latex_escape(date)}\par",
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
            r"\caption[Provenance of every exported file]{Provenance of every exported file "
            r"(\texttt{provenance.json}; a + after the commit: uncommitted changes to the code, "
            r"the outputs in figures/ and runs/ aside)}\\",
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


def _missing_box(name: str, made_by: str) -> str:
    """A visible frame where a missing input would be."""
    return "\n".join(
        [
            r"\begin{center}\fcolorbox{red}{white}{\parbox{0.9\linewidth}{\centering",
            rf"\textbf{{Missing input:}} \texttt{{{latex_escape(f'{LATEX_DIR}/{name}')}}} "
            rf"(made by {made_by}) is not in this folder, so it is not shown here.}}}}",
            r"\end{center}",
        ]
    )


def short_caption(caption: str, limit: int = 90) -> str:
    """The caption for the lists of figures and tables: up to its first colon, semicolon or
    parenthesis (the whole caption when that leaves too little to name it), cut at a word
    before ``limit`` characters."""
    head = re.split(r"[:;(]", caption, maxsplit=1)[0].strip().rstrip(",")
    if len(head) < 24:  # "AP", "Phase 1", "The figure": too short to name it in a list
        head = caption.strip()
    if len(head) > limit:
        head = head[:limit].rsplit(" ", 1)[0] + r"\ldots"
    return "{" + head + "}"  # braces: a ] inside stays in the optional argument


def _float_tex(folder: Path, name: str, kind: str, made_by: str, optional: bool,
               body: str, numbers_of: str | None = None) -> list[str]:  # fmt: skip
    """One float (``kind`` "figure" or "table") of the exported file ``name``, its caption
    from provenance; a missing file is a box naming ``made_by`` unless ``optional``."""
    ext = "pdf" if kind == "figure" else "tex"
    if not (folder / f"{name}.{ext}").is_file():
        return [] if optional else [_missing_box(f"{name}.{ext}", made_by)]
    cap = caption_of(folder, name, kind)
    if numbers_of is not None:
        cap += rf" (the numbers of Figure~\ref{{fig:{numbers_of}}})"
    label = "fig" if kind == "figure" else "tab"
    size = "" if kind == "figure" else r"\small"
    return [
        rf"\begin{{{kind}}}[!htbp]\centering{size}",
        *([body] if kind == "figure" else []),
        rf"\caption[{short_caption(cap)}]{{{cap}}}\label{{{label}:{name}}}",
        *([] if kind == "figure" else [body]),
        rf"\end{{{kind}}}",
    ]


def _item_tex(folder: Path, item: Item, made_by: str) -> str:
    """A figure and the table of its numbers (or one of them), kept together."""
    parts = []
    figure_shown = bool(item.figure) and (folder / f"{item.figure}.pdf").is_file()
    if item.figure:
        body = rf"\includegraphics{{{LATEX_DIR}/{item.figure}}}"
        parts += _float_tex(folder, item.figure, "figure", made_by, item.optional, body)
    if item.table:
        body = rf"\{FIT_TABLE}{{{item.table}}}{{\input{{{LATEX_DIR}/{item.table}}}}}"
        numbers_of = item.figure if figure_shown else None
        parts += _float_tex(folder, item.table, "table", made_by, item.optional, body, numbers_of)
    return "\n".join([*parts, r"\FloatBarrier", ""]) if parts else ""


def _paragraph(sentences: Sequence[str]) -> str:
    """The sentences as LaTeX, a new paragraph at each ``PARAGRAPH`` among them."""
    groups, current = [], []
    for sentence in [*sentences, PARAGRAPH]:
        if sentence == PARAGRAPH:
            if current:
                groups.append(latex_escape(" ".join(current)))
            current = []
        else:
            current.append(sentence)
    return "\n\n".join(groups)


def section_tex(folder: Path, section: Section, numbers: dict[str, Any]) -> str:
    """Heading, who made it, method prose, the generated result sentences, then its items."""
    results = _paragraph(section.results(numbers, folder))
    return "\n".join(
        [
            rf"\section{{{section.title}}}",
            rf"{{\small\emph{{Made by {section.made_by}.}}}}\par\smallskip",
            section.method,
            "",
            results,
            "",
            *(_item_tex(folder, item, section.made_by) for item in section.items),
        ]
    )


def missing_inputs(folder: Path) -> list[str]:
    """The files the document expects (``layout.SECTIONS``, the numbers and provenance tables)
    that ``folder`` lacks."""
    expected = [name for s in SECTIONS for name in expected_files(s)]
    expected += [NUMBERS_TABLE + ".tex", PROVENANCE]
    return [name for name in expected if not (folder / name).is_file()]


def findings_section(folder: Path) -> str:
    found = build_findings(folder)
    return "\n".join(
        [
            r"\section{Findings}",
            "Each claim of the thesis beside what this folder measured, the run it comes "
            "from, whether the two can be compared, and a verdict; every row is computed "
            r"from the files of this folder by \texttt{ffcore.report.findings}, none is typed. "
            + latex_escape(summary(found)),
            findings_tex(found),
        ]
    )


def companion_tex(
    figures_dir: Path, profile: str, commit: str, dirty: bool, date: str,
    missing: Sequence[str] = (),
) -> str:  # fmt: skip
    """The document: title page, contents and lists, missing inputs, Findings, one section per
    notebook (``layout.SECTIONS``), other files, numbers, provenance."""
    numbers = (
        # one size smaller than the table asks for: its name column is as wide as the longest
        # number name (an unbreakable CamelCase word), which ran 12 pt past the margin
        rf"\begingroup\let\footnotesize\scriptsize\input{{{LATEX_DIR}/{NUMBERS_TABLE}}}\endgroup"
        if (figures_dir / f"{NUMBERS_TABLE}.tex").is_file()
        else rf"\noindent No \texttt{{{latex_escape(f'{LATEX_DIR}/{NUMBERS_TABLE}.tex')}}} was found: the table "
        "of numbers is not part of this build."
    )
    prov_path = figures_dir / PROVENANCE
    provenance = json.loads(prov_path.read_text()) if prov_path.is_file() else None
    entries = load_numbers(figures_dir / "numbers.json")
    names = sorted(p.name for p in figures_dir.iterdir() if p.is_file())
    shown = [n for n, where in placements(names).items() if where and n not in NOT_SHOWN]
    others = undeclared(names)
    missing_part = (
        [
            r"\section*{Missing inputs}\addcontentsline{toc}{section}{Missing inputs}",
            "This folder lacks files the document expects; a framed note marks the place of "
            "each, so this PDF is incomplete:",
            r"\begin{itemize}",
            *(rf"\item \texttt{{{latex_escape(name)}}}" for name in missing),
            r"\end{itemize}",
        ]
        if missing
        else []
    )
    other_part = (
        [
            r"\section{Other figures and tables}",
            "Files of this folder that no section of the companion declares "
            r"(\texttt{ffcore.report.layout}).",
            *(
                _item_tex(
                    figures_dir,
                    Item(
                        s if (figures_dir / f"{s}.pdf").is_file() else None,
                        s if (figures_dir / f"{s}.tex").is_file() else None,
                    ),
                    "an undeclared source",
                )
                for s in others
            ),
        ]  # fmt: skip
        if others
        else []
    )
    return "\n".join(
        [
            r"\documentclass[11pt]{article}",
            r"\usepackage[margin=2cm]{geometry}",
            r"\usepackage{longtable,array,booktabs,graphicx,float,placeins,xcolor}",
            rf"\input{{{LATEX_DIR}/preamble}}",
            r"\usepackage[colorlinks,linkcolor=blue!50!black,urlcolor=blue!50!black]{hyperref}",
            r"\setlength{\emergencystretch}{2em}",  # long names (ECA-CBAM) in narrow lines
            r"\begin{document}",
            title_page(profile, commit, dirty, date, content_commits(provenance, shown)),
            r"\tableofcontents",
            r"\listoffigures",
            r"\listoftables",
            r"\clearpage",
            *missing_part,
            findings_section(figures_dir),
            *(section_tex(figures_dir, s, entries) for s in SECTIONS),
            *other_part,
            r"\section{Numbers quoted by the thesis}",
            "Every number of this table is a macro of \\texttt{figures/numbers.tex}, written "
            "by the notebook or script named beside it.",
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
    strict: bool = False,
) -> CompanionResult:
    """Compile the companion of ``figures_dir`` (default ``figures/``) into ``out`` (default
    ``<figures_dir>/companion.pdf``) with three pdflatex passes in a temporary folder. Missing
    inputs are framed in the PDF and listed in the result; ``strict``: raise ``MissingInputs``
    naming them (after writing the PDF)."""
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
    head, is_dirty = fp.git_state()
    commit, dirty = head or "unknown", bool(is_dirty)
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    with tempfile.TemporaryDirectory(prefix="companion-") as tmp:
        build = Path(tmp)
        figs = build / LATEX_DIR
        figs.mkdir()
        for f in src.iterdir():
            if f.is_file() and f.stem != COMPANION and f.name != f"{INDEX}.tex":
                (figs / f.name).symlink_to(f.resolve())
        # the folder's list, fresh (its own input for the thesis; this document has its order)
        (figs / f"{INDEX}.tex").write_text(latex_index(figs, numbers=False))
        missing = missing_inputs(figs)
        if not (figs / f"{PREAMBLE}.tex").is_file():  # \fftable and the packages
            missing.append(f"{PREAMBLE}.tex")
            (figs / f"{PREAMBLE}.tex").write_text(latex_preamble())  # atomic-ok: build folder
        tex = companion_tex(figs, profile, commit, dirty, date, missing)
        (build / f"{COMPANION}.tex").write_text(tex)
        for _ in range(3):  # contents, lists of figures and longtable widths settle by the third
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
    result = CompanionResult(
        target, pages, included, tex, table_scales(log), overfull_widths(log), tuple(missing)
    )
    if strict and missing:
        raise MissingInputs(
            f"the companion {target} lacks {len(missing)} input(s) of {src}: {', '.join(missing)}"
        )
    return result
