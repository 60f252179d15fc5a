"""One style for every thesis figure and table.

Figures are sized in inches for a LaTeX page (``COLUMN`` = one column of a two-column layout,
``FULL`` = text width), use a colour-blind-safe seaborn palette, name the run their numbers come
from (``source``), and are saved as vector PDF plus PNG. Tables are pandas DataFrames saved as CSV
plus booktabs LaTeX (``latex_table``: numbers right-aligned, thousands separators, fixed decimals,
an en dash for missing values, one header row). ``figures/all_figures.tex`` (every table and
figure of the folder) and ``figures/preamble.tex`` (the packages they need) are rewritten on
every save, so a new figure cannot be left out of the LaTeX document.

Backend: a script or the CLI draws headless (Agg); inside IPython/Jupyter the kernel's backend
(inline) is left alone, so a notebook shows every figure it exports.
"""

from __future__ import annotations

import math
import numbers
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

if TYPE_CHECKING:
    from ffcore.report.provenance import RunInfo


def _inside_ipython() -> bool:
    """True in a Jupyter kernel or an IPython shell (IPython imported and running)."""
    ipython = sys.modules.get("IPython")
    return ipython is not None and getattr(ipython, "get_ipython", lambda: None)() is not None


if not _inside_ipython() and "MPLBACKEND" not in os.environ:
    matplotlib.use("Agg")  # scripts and the CLI never open windows
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ffcore.config import VARIANTS  # noqa: E402
from ffcore.paths import FIGURES_DIR, repo_path  # noqa: E402
from ffcore.schedule import PHASE_ORDER  # noqa: E402

COLUMN = 3.4  # inches
FULL = 7.0
PALETTE = "colorblind"

# Fixed colours so a variant or phase has the same colour in every figure.
VARIANT_COLORS = dict(zip(VARIANTS, sns.color_palette(PALETTE, len(VARIANTS)), strict=True))
# ordered phases: a sequential, colour-blind-safe map
PHASE_COLORS = dict(zip(PHASE_ORDER, sns.color_palette("viridis", len(PHASE_ORDER)), strict=True))


def use_style() -> None:
    """Apply the thesis style (idempotent)."""
    sns.set_theme(context="paper", style="whitegrid", palette=PALETTE)
    plt.rcParams.update(
        {
            "font.size": 8,
            "axes.titlesize": 9,
            "axes.labelsize": 8,
            "legend.fontsize": 7,
            "xtick.labelsize": 7,
            "ytick.labelsize": 7,
            "figure.dpi": 150,
            "savefig.dpi": 300,
            "savefig.bbox": "tight",
            "pdf.fonttype": 42,  # embed TrueType: text stays selectable in the thesis PDF
        }
    )


def new_figure(
    width: str | float = "column", aspect: float = 0.75, ncols: int = 1, nrows: int = 1, **kwargs
):
    """A figure ``width`` inches wide ("column", "full" or a number), height = width * aspect."""
    use_style()
    w = (
        {"column": COLUMN, "full": FULL}.get(width, width)
        if isinstance(width, str)
        else float(width)
    )
    if not isinstance(w, float | int):
        raise ValueError(f"width must be 'column', 'full' or inches, got {width!r}")
    kwargs.setdefault("layout", "constrained")  # titles and labels never overlap
    return plt.subplots(nrows, ncols, figsize=(w, w * aspect), **kwargs)


# Human names for code names in table headers and legends.
HUMAN_NAMES: dict[str, str] = {
    "eca_cbam": "ECA-CBAM",
    "cbam": "CBAM",
    "none": "no attention",
    "retinaface_mnet025": "RetinaFace-MNet0.25",
    "neck_channels": "neck channels",
}


def human_name(name: object) -> str:
    """``eca_cbam`` -> ``ECA-CBAM``; other names with underscores become words."""
    text = str(name)
    return HUMAN_NAMES.get(text, text.replace("_", " "))


def plural(n: int, word: str) -> str:
    """``1 face``, ``2 faces``, ``0 faces``."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def source_label(profile: str, data_root: str | os.PathLike[str] | None = None) -> str:
    """Where a figure's numbers come from: ``"smoke run, synthetic data"`` for the embedded
    dataset (``data_root`` None or a folder the synthetic generator wrote), ``"full run, data
    <folder name>"`` for a dataset on disk (e.g. WIDER FACE)."""
    from ffcore.data.synthetic import read_manifest

    synthetic = data_root is None or read_manifest(repo_path(data_root)) is not None
    data = "synthetic data" if synthetic else f"data {repo_path(data_root).name}"
    return f"{profile} run, {data}"


def add_source(fig, source: str | None, title: str | None = None) -> None:
    """Name the run on the figure (a grey line above it, after ``title`` if given), so a smoke
    number is never read as a thesis number. ``source`` None: only the title (exact facts)."""
    text = "; ".join(t for t in (title, f"source: {source}" if source else None) if t)
    if text:
        fig.suptitle(text, fontsize=6.5, color="0.35", x=0.99, ha="right")


def legend_outside(ax, **kwargs):
    """A legend to the right of ``ax``, never over the data."""
    kwargs.setdefault("loc", "upper left")
    kwargs.setdefault("bbox_to_anchor", (1.01, 1.0))
    kwargs.setdefault("borderaxespad", 0.0)
    kwargs.setdefault("frameon", False)
    return ax.legend(**kwargs)


def _check_name(name: str) -> None:
    if not name or any(c in name for c in "/\\ ."):
        raise ValueError(f"figure/table name must be a plain stem like 'pr_curves', got {name!r}")


def save_figure(
    fig, name: str, out_dir: str | Path | None = None, provenance: RunInfo | None = None
) -> list[Path]:
    """Save ``fig`` as ``<out_dir>/<name>.pdf`` and ``.png`` (default out_dir: ``figures/``; a
    relative out_dir is taken from the repository root) and rewrite ``all_figures.tex``. The
    figure stays open: in a notebook the inline backend shows it below the cell. ``provenance``
    (the run's ``RunInfo``): both files carry it in their metadata and get an entry in
    ``provenance.json`` (``ffcore.report.provenance``)."""
    _check_name(name)
    out = repo_path(out_dir) if out_dir is not None else FIGURES_DIR
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.pdf", out / f"{name}.png"]
    entry = provenance.entry() if provenance is not None else None
    for path in paths:
        if provenance is not None:
            metadata = provenance.metadata(path.suffix, entry)
        else:
            metadata = {"CreationDate": None} if path.suffix == ".pdf" else None
        fig.savefig(path, metadata=metadata)
    if provenance is not None:
        from ffcore.report.provenance import record

        record(paths, provenance, entry)
    write_latex_index(out)
    return paths


# -- LaTeX tables ---------------------------------------------------------------------------------
EN_DASH = "--"  # LaTeX for an en dash: a missing value
_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "\u2013": "--",
    "\u2014": "---",
    "\u00d7": r"$\times$",
    "\u2248": r"$\approx$",
    "\u2264": r"$\leq$",
    "\u2265": r"$\geq$",
    "\u00b2": r"\textsuperscript{2}",
}


def latex_escape(text: object) -> str:
    return "".join(_LATEX_SPECIAL.get(c, c) for c in str(text))


def _is_missing(value: object) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool | np.bool_)


def format_number(value: object, decimals: int) -> str:
    """Integers with thousands separators, floats with ``decimals`` (0: as an integer), missing
    values as an en dash, booleans as yes/no, anything else as text."""
    if _is_missing(value):
        return EN_DASH
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        return f"{float(value):,.{decimals}f}"
    return latex_escape(value)


def latex_table(df: pd.DataFrame, decimals: int | Mapping[str, int] = 3, index: bool = True) -> str:
    r"""A booktabs ``tabular`` of ``df``: one header row (index names and human column names),
    numeric columns right-aligned, text left-aligned. ``decimals``: one number for every float,
    or a mapping from column name or row label to its decimals (rows win; 3 otherwise). A row
    index with several levels becomes several columns, each label written once per group
    (no ``\multirow``, no ``\cline``)."""
    per = dict(decimals) if isinstance(decimals, Mapping) else {}
    default = 3 if isinstance(decimals, Mapping) else int(decimals)
    frame = df.copy()
    names: list[str] = []
    if index:
        names = [human_name(n) if n is not None else "" for n in frame.index.names]
        frame = frame.reset_index(names=[f"__index{i}" for i in range(len(names))])
    index_cols = list(frame.columns[: len(names)])
    body_cols = list(frame.columns[len(names) :])

    columns = {col: frame[col].tolist() for col in frame.columns}  # keeps each column's types

    def numeric(col) -> bool:  # right-aligned: mostly numbers
        values = [v for v in columns[col] if not _is_missing(v)]
        return bool(values) and 2 * sum(_is_number(v) for v in values) > len(values)

    def label(value: object) -> str:
        return latex_escape(human_name(value) if isinstance(value, str) else value)

    align = "l" * len(index_cols) + "".join("r" if numeric(c) else "l" for c in body_cols)
    header = [latex_escape(n) for n in names] + [latex_escape(human_name(c)) for c in body_cols]
    lines = [
        f"\\begin{{tabular}}{{{align}}}",
        r"\toprule",
        " & ".join(header) + r" \\",
        r"\midrule",
    ]
    for r in range(len(frame)):
        cells = []
        same_group = r > 0
        for k, col in enumerate(index_cols):
            value = columns[col][r]
            # an outer label equal to the one above (and its outer labels too) is left blank
            same_group = same_group and value == columns[col][r - 1]
            outer = k < len(index_cols) - 1
            cells.append("" if same_group and outer else label(value))
        row_label = str(columns[index_cols[-1]][r]) if index_cols else ""
        for col in body_cols:
            places = per.get(row_label, per.get(str(col), default))
            cells.append(format_number(columns[col][r], places))
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def save_table(
    df: pd.DataFrame,
    name: str,
    out_dir: str | Path | None = None,
    index: bool = True,
    decimals: int | Mapping[str, int] = 3,
    source: str | None = None,
    provenance: RunInfo | None = None,
) -> list[Path]:
    """Save ``df`` as ``<name>.csv`` and ``<name>.tex`` (``latex_table``) and rewrite
    ``all_figures.tex``. ``source`` (the run the numbers come from) goes into the caption.
    ``provenance`` (the run's ``RunInfo``): both files get an entry in ``provenance.json`` (no
    header in the files themselves: their readers stay plain ``pd.read_csv``)."""
    _check_name(name)
    out = repo_path(out_dir) if out_dir is not None else FIGURES_DIR
    out.mkdir(parents=True, exist_ok=True)
    csv, tex = out / f"{name}.csv", out / f"{name}.tex"
    df.to_csv(csv, index=index)
    comment = f"% source: {source}\n" if source else ""
    tex.write_text(comment + latex_table(df, decimals=decimals, index=index))
    if provenance is not None:
        from ffcore.report.provenance import record

        record([csv, tex], provenance)
    write_latex_index(out)
    return [csv, tex]


# -- the LaTeX document of the folder ------------------------------------------------------------
PREAMBLE = "preamble"
INDEX = "all_figures"
# exactly what the tables (booktabs) and figures (graphicx) need
PREAMBLE_PACKAGES: tuple[str, ...] = ("booktabs", "graphicx", "longtable")  # longtable: numbers
LATEX_DIR = "figures"  # the folder as named from the repository root in \input / \includegraphics


def _descriptions() -> dict[str, str]:
    """stem -> "what it shows", from the table of ``figures/README.md``."""
    readme = FIGURES_DIR / "README.md"
    if not readme.is_file():
        return {}
    found = {}
    for row in re.findall(r"^\| (`[^|]+) \|[^|]*\|[^|]*\| ([^|]+) \|$", readme.read_text(), re.M):
        for stem in re.findall(r"`([^`]+)`", row[0]):
            found[stem] = row[1].strip()
    return found


def _table_source(tex: Path) -> str | None:
    first = tex.read_text().split("\n", 1)[0]
    return first[len("% source: ") :] if first.startswith("% source: ") else None


def latex_index(out_dir: str | Path | None = None) -> str:
    """The text of ``all_figures.tex`` for the tables (``*.tex``) and figures (``*.pdf``) now in
    ``out_dir``: each in a float with a caption from ``figures/README.md`` and its source."""
    out = repo_path(out_dir) if out_dir is not None else FIGURES_DIR
    described = _descriptions()
    skip = {PREAMBLE, INDEX, "numbers", "numbers_table"}  # the numbers: inputs, not tables
    tables = sorted(p for p in out.glob("*.tex") if p.stem not in skip)
    plots = sorted(out.glob("*.pdf"))
    parts = [
        "% Generated by ffcore.report.figures (rewritten on every save_figure / save_table).",
        "% Every table and figure of this folder; see preamble.tex for the packages.",
    ]

    def caption(stem: str, source: str | None) -> str:
        text = described.get(stem, stem.replace("_", " "))
        if source:
            text += f" (source: {source})"
        return latex_escape(text[:1].upper() + text[1:])

    floats = 0

    def flush() -> None:  # a page break every few floats: LaTeX holds at most 18 pending
        nonlocal floats
        floats += 1
        if floats % 6 == 0:
            parts.append(r"\clearpage")

    for tex in tables:
        flush()
        parts += [
            r"\begin{table}[htbp]",
            r"\centering\small",
            rf"\caption{{{caption(tex.stem, _table_source(tex))}}}",
            rf"\label{{tab:{tex.stem}}}",
            rf"\resizebox{{\ifdim\width>\linewidth\linewidth\else\width\fi}}{{!}}{{\input{{{LATEX_DIR}/{tex.stem}}}}}",
            r"\end{table}",
            "",
        ]
    for pdf in plots:
        flush()
        parts += [
            r"\begin{figure}[htbp]",
            r"\centering",
            rf"\includegraphics[width=\linewidth]{{{LATEX_DIR}/{pdf.stem}}}",
            rf"\caption{{{caption(pdf.stem, None)}}}",
            rf"\label{{fig:{pdf.stem}}}",
            r"\end{figure}",
            "",
        ]
    parts.append(rf"\InputIfFileExists{{{LATEX_DIR}/numbers_table}}{{}}{{}}")
    parts.append(r"\clearpage")
    return "\n".join(parts) + "\n"


def latex_preamble() -> str:
    return (
        "% The packages the tables and figures of this folder need (ffcore.report.figures).\n"
        + "".join(f"\\usepackage{{{p}}}\n" for p in PREAMBLE_PACKAGES)
        + f"\\InputIfFileExists{{{LATEX_DIR}/numbers}}{{}}{{}}\n"  # the \\ff... macros
    )


def write_latex_index(out_dir: str | Path | None = None) -> list[Path]:
    """Rewrite ``preamble.tex`` and ``all_figures.tex`` of ``out_dir`` (default ``figures/``)."""
    out = repo_path(out_dir) if out_dir is not None else FIGURES_DIR
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{PREAMBLE}.tex", out / f"{INDEX}.tex"]
    paths[0].write_text(latex_preamble())
    paths[1].write_text(latex_index(out))
    return paths
