"""One style for every thesis figure and table.

Figures are made at the width they are printed at: ``TEXT_WIDTH_IN`` (the text width of the
thesis page, 16 cm, which ``preamble.tex`` sets) or ``HALF_WIDTH_IN`` (half of it, less a gap), and
``all_figures.tex`` includes each PDF at its natural size, so nothing is scaled and every text
prints at the size the style gives it (at least ``MIN_FONT_PT``; ``print_problems`` checks a
figure, ``save_figure`` refuses one that would print smaller or at another width). They use a
colour-blind-safe seaborn palette, true minus signs, name the run their numbers come
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
from matplotlib.text import Text  # noqa: E402

from ffcore.atomic import replacing_all, write_text  # noqa: E402
from ffcore.config import VARIANTS  # noqa: E402
from ffcore.paths import FIGURES_DIR, repo_path  # noqa: E402
from ffcore.schedule import PHASE_ORDER  # noqa: E402

TEXT_WIDTH_CM = 16.0  # the text width of the thesis page (set by preamble.tex)
TEXT_WIDTH_IN = TEXT_WIDTH_CM / 2.54  # 6.30 in
HALF_GAP_IN = 0.2  # between two half-width figures side by side
HALF_WIDTH_IN = (TEXT_WIDTH_IN - HALF_GAP_IN) / 2  # 3.05 in
FULL = TEXT_WIDTH_IN  # names kept for callers: "full" = text width, "column" = half of it
COLUMN = HALF_WIDTH_IN
WIDTHS_IN: dict[str, float] = {"full": TEXT_WIDTH_IN, "text": TEXT_WIDTH_IN,
                               "column": HALF_WIDTH_IN, "half": HALF_WIDTH_IN}  # fmt: skip
MIN_FONT_PT = 8.0  # the smallest text of a figure as printed (it is printed at 100 %)
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
            "font.size": 9,
            "axes.titlesize": 9,
            "axes.labelsize": 9,
            "figure.titlesize": 9,
            "legend.fontsize": 8,
            "legend.title_fontsize": 8,
            "xtick.labelsize": 8,
            "ytick.labelsize": 8,
            "axes.unicode_minus": True,  # U+2212, not a hyphen, before negative numbers
            "figure.dpi": 150,
            "savefig.dpi": 300,
            # the page is the figure: no tight bbox, which changes the width (constrained
            # layout keeps labels and outside legends on the page instead)
            "savefig.bbox": "standard",
            "savefig.pad_inches": 0.0,
            "pdf.fonttype": 42,  # embed TrueType: text stays selectable in the thesis PDF
        }
    )


def new_figure(
    width: str | float = "column", aspect: float = 0.75, ncols: int = 1, nrows: int = 1, **kwargs
):
    """A figure as wide as it is printed: ``width`` "full" (or "text": ``TEXT_WIDTH_IN``),
    "column" (or "half": ``HALF_WIDTH_IN``) or one of those two numbers; height = width * aspect."""
    use_style()
    w = WIDTHS_IN.get(width) if isinstance(width, str) else float(width)
    if w is None or not any(math.isclose(w, v, abs_tol=0.01) for v in WIDTHS_IN.values()):
        raise ValueError(
            f"width must be 'full' ({TEXT_WIDTH_IN:.2f} in, the text width) or 'column' "
            f"({HALF_WIDTH_IN:.2f} in, half of it), got {width!r}: a figure is made at the width "
            "it is printed at"
        )
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


def source_label(
    profile: str, data_root: str | os.PathLike[str] | None = None, photo: str | None = None
) -> str:
    """Where a figure's numbers come from: ``"smoke run, synthetic data"`` for the embedded
    dataset (``data_root`` None or a folder the synthetic generator wrote), ``"full run, data
    <folder name>"`` for a dataset on disk (e.g. WIDER FACE). ``photo`` (where the image drawn
    comes from, e.g. "real") names the model's training data and the image apart:
    ``"model: smoke run, synthetic data; photo: real"``."""
    from ffcore.data.synthetic import read_manifest

    synthetic = data_root is None or read_manifest(repo_path(data_root)) is not None
    data = "synthetic data" if synthetic else f"data {repo_path(data_root).name}"
    run = f"{profile} run, {data}"
    return run if photo is None else f"model: {run}; photo: {photo}"


def add_source(fig, source: str | None, title: str | None = None) -> None:
    """Name the run on the figure (a grey line above it, after ``title`` if given), so a smoke
    number is never read as a thesis number. ``source`` None: only the title (exact facts).
    A source that names its parts (``model: ...; photo: ...``) is written as it is."""
    named = source is not None and source.startswith("model: ")
    label = (source if named else f"source: {source}") if source else None
    text = "; ".join(t for t in (title, label) if t)
    if text:
        fig.suptitle(text, fontsize=MIN_FONT_PT, color="0.35", x=0.99, ha="right")


def print_problems(fig) -> list[str]:
    """Why ``fig`` would not print well when included at its natural size: a width other than
    ``TEXT_WIDTH_IN`` / ``HALF_WIDTH_IN``, a visible text smaller than ``MIN_FONT_PT``, or a
    text that sticks out of the page (it would be cut). Empty when it prints well."""
    problems = []
    width = float(fig.get_figwidth())
    if not any(math.isclose(width, v, abs_tol=0.01) for v in WIDTHS_IN.values()):
        problems.append(
            f"width {width:.2f} in is neither the text width ({TEXT_WIDTH_IN:.2f} in) nor half "
            f"of it ({HALF_WIDTH_IN:.2f} in)"
        )
    fig.draw_without_rendering()  # lays the figure out as it is saved
    for text in fig.findobj(Text):
        if not text.get_visible() or not text.get_text().strip():
            continue
        if text.get_fontsize() < MIN_FONT_PT - 1e-6:
            problems.append(f"text {text.get_text()!r} at {text.get_fontsize():.1f} pt")
    drawn = fig.get_tightbbox(fig.canvas.get_renderer())  # inches; what is drawn
    tol = 0.02
    if drawn.x0 < -tol or drawn.y0 < -tol or drawn.x1 > width + tol:
        problems.append(
            f"drawn from ({drawn.x0:.2f}, {drawn.y0:.2f}) to {drawn.x1:.2f} in (x, y): outside the page"
        )
    if drawn.y1 > fig.get_figheight() + tol:
        problems.append(f"drawn up to {drawn.y1:.2f} in, above the page")
    return problems


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
    figure stays open: in a notebook the inline backend shows it below the cell. A figure that
    would not print at its natural size (``print_problems``) is an error naming it. ``provenance``
    (the run's ``RunInfo``): both files carry it in their metadata and get an entry in
    ``provenance.json`` (``ffcore.report.provenance``)."""
    _check_name(name)
    problems = print_problems(fig)
    if problems:
        raise ValueError(f"figure {name!r} would not print well: " + "; ".join(problems))
    out = repo_path(out_dir) if out_dir is not None else FIGURES_DIR
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.pdf", out / f"{name}.png"]
    entry = provenance.entry() if provenance is not None else None
    with replacing_all(paths) as temporaries:
        for path, tmp in zip(paths, temporaries, strict=True):
            if provenance is not None:
                metadata = provenance.metadata(path.suffix, entry)
            else:
                metadata = {"CreationDate": None} if path.suffix == ".pdf" else None
            fig.savefig(tmp, metadata=metadata)
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
    "<": r"\textless{}",  # a bare < prints as an inverted exclamation mark in OT1
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    "`": r"\textasciigrave{}",
    '"': r"\textquotedbl{}",
    "\u2212": r"$-$",
    "\u2013": "--",
    "\u2014": "---",
    "\u00d7": r"$\times$",
    "\u2248": r"$\approx$",
    "\u2264": r"$\leq$",
    "\u2265": r"$\geq$",
    "\u00b2": r"\textsuperscript{2}",
}
# what a plain-text string means, before character escaping (order matters)
_LATEX_PHRASES: tuple[tuple[str, str], ...] = (
    (r"<=", "\u2264"),
    (r">=", "\u2265"),
    (r"~(?=\d)", "\u2248"),  # "~460K": approximately
    (r"(?<![\w.])-(?=\d)", "\u2212"),  # a negative number: a minus sign
    (r"(?<=\d)-(?=\d)", "\u2013"),  # a range of numbers ("0.93-0.99"): an en dash
    (r"(?<=\s)-(?=\s)", "\u2212"),  # "A - B", "ECA-CBAM - CBAM": a difference
)


def latex_escape(text: object) -> str:
    """Plain text as LaTeX that prints what it says: special characters escaped (``& % $ # _ {
    } ~ ^ \\ < > |``), ``<=`` / ``>=`` as relation signs, ``~460K`` as approximately, a minus
    sign for negative numbers and spaced differences (``A - B``), an en dash for number ranges,
    ``"quoted"`` with typographic quotes and ```code``` in typewriter type."""
    parts = re.split(r"(`[^`]+`)", str(text))
    out = []
    for part in parts:
        if len(part) > 2 and part.startswith("`") and part.endswith("`"):
            out.append(r"\texttt{" + "".join(_LATEX_SPECIAL.get(c, c) for c in part[1:-1]) + "}")
            continue
        for pattern, meaning in _LATEX_PHRASES:
            part = re.sub(pattern, meaning, part)
        part = re.sub(r'"([^"]*)"', "\x01\\1\x02", part)  # a quoted phrase
        escaped = "".join(_LATEX_SPECIAL.get(c, c) for c in part)
        out.append(escaped.replace("\x01", "``").replace("\x02", "''"))
    return "".join(out)


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
        return _minus(f"{int(value):,}")
    if isinstance(value, numbers.Real):
        return _minus(f"{float(value):,.{decimals}f}")
    return latex_escape(value)


def percent_text(value: float, decimals: int = 1) -> str:
    """A percentage rounded to ``decimals`` places that never reads as a full 100 when it is
    below it: ``99.6`` -> "99.6", ``99.96`` -> "99.9" (rounded down there), ``100`` -> "100.0"."""
    if not math.isfinite(value):
        return ""
    text = f"{value:.{decimals}f}"
    if value < 100.0 and float(text) >= 100.0:
        text = f"{math.floor(value * 10**decimals) / 10**decimals:.{decimals}f}"
    return text


def _minus(number: str) -> str:
    """A formatted number with a true minus sign (``$-$``), not a hyphen."""
    return "$-$" + number[1:] if number.startswith("-") else number


HEADER_CHARS = 6  # a header longer than its column's cells goes on lines of about this ...
HEADER_SHORT = 9  # ... unless it is this short
POINTS_PER_CHAR = 4.6  # about, at \small
SPLIT_POINTS = 560.0  # a table estimated wider than this is split in stacked column groups
WRAP_CHARS = 20  # a text column with a longer cell wraps ...
WRAP_EM = 9  # ... in a paragraph column this wide
WRAPPED_COLUMN = r">{\raggedright\arraybackslash}p"  # needs the array package


def _printed_length(cell: str) -> int:
    """About how many characters a LaTeX cell prints (commands count as one, ``$`` none)."""
    return len(re.sub(r"\\[a-zA-Z]+(\{\})?", "x", cell).replace("$", ""))


def _header_cell(text: str, chars: int, align: str) -> str:
    """A header as one line, or, when longer than ``chars``, as lines of at most about
    ``chars`` characters broken at spaces (a nested tabular aligned like its column)."""
    if len(text) <= HEADER_SHORT:
        return latex_escape(text)
    words, lines = text.split(), []
    for word in words:
        if lines and len(lines[-1]) + 1 + len(word) <= chars:
            lines[-1] += " " + word
        else:
            lines.append(word)
    if len(lines) <= 1:
        return latex_escape(text)
    a = "r" if align == "r" else "l"
    return (
        rf"\begin{{tabular}}[b]{{@{{}}{a}@{{}}}}"
        + r" \\ ".join(latex_escape(line) for line in lines)
        + r"\end{tabular}"
    )


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

    rows = []
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
        rows.append(cells)

    def longest(k: int) -> int:  # characters of the column's longest cell as printed (about)
        return max((_printed_length(cells[k]) for cells in rows), default=0)

    def spec(k: int, col) -> str:  # a long text column wraps in a ragged-right paragraph column
        if numeric(col):
            return "r"
        return "l" if longest(k) <= WRAP_CHARS else rf"{WRAPPED_COLUMN}{{{WRAP_EM}em}}"

    specs = [spec(len(index_cols) + j, c) for j, c in enumerate(body_cols)]
    header = [latex_escape(n) for n in names] + [
        _header_cell(
            human_name(c), max(HEADER_CHARS, min(longest(len(index_cols) + j), WRAP_CHARS)), sp
        )
        for j, (c, sp) in enumerate(zip(body_cols, specs, strict=True))
    ]

    def points(k: int) -> float:  # about how wide column k prints (\small, 4 pt column gaps)
        plain = re.sub(r"\\begin\{tabular\}\[b\]\{@\{\}[lr]@\{\}\}|\\end\{tabular\}", "", header[k])
        lines = re.split(r"\\\\", plain)
        chars = WRAP_EM * 2 if "p{" in (["l"] * len(index_cols) + specs)[k] else longest(k)
        return POINTS_PER_CHAR * max(chars, *(_printed_length(x)
                                              for x in lines)) + 8  # fmt: skip

    # too wide for the text: the body columns split into stacked parts, each repeating the
    # columns that name the rows (the index, else the leading text columns)
    n_index = len(index_cols)
    if not n_index:  # without an index, the leading text columns name the rows in every part
        while n_index < len(specs) - 1 and specs[n_index] != "r":
            n_index += 1
    groups: list[list[int]] = [[]]
    used = sum(points(k) for k in range(n_index))
    for k in range(n_index, len(header)):
        if groups[-1] and used + points(k) > SPLIT_POINTS:
            groups.append([])
            used = sum(points(i) for i in range(n_index))
        groups[-1].append(k)
        used += points(k)
    parts = []
    for group in groups:
        keep = list(range(n_index)) + group
        spec_all = ["l"] * len(index_cols) + specs
        part = [
            f"\\begin{{tabular}}{{{''.join(spec_all[k] for k in keep)}}}",
            r"\toprule",
            " & ".join(header[k] for k in keep) + r" \\",
            r"\midrule",
        ]
        part += [" & ".join(cells[k] for k in keep) + r" \\" for cells in rows]
        part += [r"\bottomrule", r"\end{tabular}"]
        parts.append(part)
    if len(parts) == 1:
        return "\n".join(parts[0] + [""])
    stacked = [r"\begin{tabular}{@{}c@{}}"]
    for i, part in enumerate(parts):
        stacked += part + ([r"\\[2ex]"] if i < len(parts) - 1 else [])
    return "\n".join(stacked + [r"\end{tabular}", ""])


def save_table(
    df: pd.DataFrame,
    name: str,
    out_dir: str | Path | None = None,
    index: bool = True,
    decimals: int | Mapping[str, int] = 3,
    source: str | None = None,
    provenance: RunInfo | None = None,
    latex: bool = True,
) -> list[Path]:
    """Save ``df`` as ``<name>.csv`` and ``<name>.tex`` (``latex_table``) and rewrite
    ``all_figures.tex``. ``source`` (the run the numbers come from) goes into the caption.
    ``provenance`` (the run's ``RunInfo``): both files get an entry in ``provenance.json`` (no
    header in the files themselves: their readers stay plain ``pd.read_csv``). ``latex=False``:
    the CSV alone (data behind a printed table or figure, too long to print)."""
    _check_name(name)
    out = repo_path(out_dir) if out_dir is not None else FIGURES_DIR
    out.mkdir(parents=True, exist_ok=True)
    csv, tex = out / f"{name}.csv", out / f"{name}.tex"
    written = [csv, tex] if latex else [csv]
    with replacing_all(written) as temporaries:
        df.to_csv(temporaries[0], index=index)
        if latex:
            # one comment line (a second line of a multi-line source would be read as LaTeX)
            comment = f"% source: {' '.join(source.splitlines())}\n" if source else ""
            with open(temporaries[1], "w", encoding="utf-8") as f:  # atomic-ok: a temporary
                f.write(comment + latex_table(df, decimals=decimals, index=index))
    if provenance is not None:
        from ffcore.report.provenance import record

        record(written, provenance)
    write_latex_index(out)
    return written


# -- the LaTeX document of the folder ------------------------------------------------------------
PREAMBLE = "preamble"
INDEX = "all_figures"
# exactly what the tables (booktabs, array for wrapped columns, longtable for the numbers) and
# figures (graphicx) need
PREAMBLE_PACKAGES: tuple[str, ...] = ("booktabs", "array", "graphicx", "longtable")
LATEX_DIR = "figures"  # the folder as named from the repository root in \input / \includegraphics
TABLE_MIN_SCALE = 0.9  # a table wider than the text is shrunk at most to this, else turned
FIT_TABLE = "fftable"  # the preamble's command that places a table (see latex_preamble)


def _descriptions() -> dict[tuple[str, str], str]:
    """(stem, kind) -> "what it shows", from the table of ``figures/README.md``; kind is
    "figure" or "table" (a row of kind "figure + table" describes both)."""
    readme = FIGURES_DIR / "README.md"
    if not readme.is_file():
        return {}
    found = {}
    rows = re.findall(r"^\| (`[^|]+) \| ([^|]*) \|[^|]*\| ([^|]+) \|$", readme.read_text(), re.M)
    for stems, kind, text in rows:
        for stem in re.findall(r"`([^`]+)`", stems):
            for k in ("figure", "table"):
                if k in kind:
                    found[(stem, k)] = text.strip()
    return found


def _table_source(tex: Path) -> str | None:
    first = tex.read_text().split("\n", 1)[0]
    return first[len("% source: ") :] if first.startswith("% source: ") else None


def _caption(
    described: Mapping[tuple[str, str], str], stem: str, kind: str, source: str | None
) -> str:
    text = described.get((stem, kind), f"{kind} {stem.replace('_', ' ')}")
    if source:
        text += f" (source: {source})"
    return latex_escape(text[:1].upper() + text[1:])


def caption_of(out_dir: str | Path, stem: str, kind: str) -> str:
    """The LaTeX caption ``all_figures.tex`` gives the ``kind`` ("figure" or "table") ``stem``
    of ``out_dir``: its description in ``figures/README.md`` and, for a table, its source."""
    tex = repo_path(out_dir) / f"{stem}.tex"
    source = _table_source(tex) if kind == "table" and tex.is_file() else None
    return _caption(_descriptions(), stem, kind, source)


def latex_index(out_dir: str | Path | None = None, numbers: bool = True) -> str:
    """The text of ``all_figures.tex`` for the tables (``*.tex``) and figures (``*.pdf``) now in
    ``out_dir``: each in a float with a caption from ``figures/README.md`` and its source, then
    (``numbers``) the table of numbers when ``numbers_table.tex`` exists."""
    out = repo_path(out_dir) if out_dir is not None else FIGURES_DIR
    described = _descriptions()
    # the numbers are inputs, not tables; the companion PDF (make thesis) is built from this index
    skip = {PREAMBLE, INDEX, "numbers", "numbers_table", "companion"}
    tables = sorted(p for p in out.glob("*.tex") if p.stem not in skip)
    plots = sorted(p for p in out.glob("*.pdf") if p.stem not in skip)
    parts = [
        "% Generated by ffcore.report.figures (rewritten on every save_figure / save_table).",
        "% Every table and figure of this folder; see preamble.tex for the packages.",
    ]

    def caption(stem: str, kind: str, source: str | None) -> str:
        return _caption(described, stem, kind, source)

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
            rf"\caption{{{caption(tex.stem, 'table', _table_source(tex))}}}",
            rf"\label{{tab:{tex.stem}}}",
            rf"\{FIT_TABLE}{{{tex.stem}}}{{\input{{{LATEX_DIR}/{tex.stem}}}}}",
            r"\end{table}",
            "",
        ]
    for pdf in plots:
        flush()
        parts += [
            r"\begin{figure}[htbp]",
            r"\centering",
            # its natural size: the figure was made at the width it prints at (new_figure)
            rf"\includegraphics{{{LATEX_DIR}/{pdf.stem}}}",
            rf"\caption{{{caption(pdf.stem, 'figure', None)}}}",
            rf"\label{{fig:{pdf.stem}}}",
            r"\end{figure}",
            "",
        ]
    if numbers:
        parts.append(rf"\InputIfFileExists{{{LATEX_DIR}/numbers_table}}{{}}{{}}")
    parts.append(r"\clearpage")
    return "\n".join(parts) + "\n"


def latex_preamble() -> str:
    r"""The packages, the text width the figures are made for (``TEXT_WIDTH_CM``, centred on
    the page) and ``\fftable{name}{table}``: a table at its natural size when it fits the text
    width, shrunk to it when that takes no more than ``TABLE_MIN_SCALE``, else turned sideways
    (shrunk only if it is longer than the page or, turned, taller than the text is wide, which
    the log then shows). Each table writes ``fftable <name>: natural <width> room <width>`` and
    ``fftable <name>: height <height> hroom <height>`` to the log (turned: its height across the
    text width; two short lines, as TeX wraps log lines at 79 characters), so its scale can be
    checked."""
    packages = "".join(f"\\usepackage{{{p}}}\n" for p in PREAMBLE_PACKAGES)
    return (
        "% The packages the tables and figures of this folder need (ffcore.report.figures).\n"
        + packages
        + f"% the text width the figures are made for (TEXT_WIDTH_CM = {TEXT_WIDTH_CM:g}), centred\n"
        + f"\\setlength{{\\textwidth}}{{{TEXT_WIDTH_CM:g}cm}}\n"
        + "\\setlength{\\oddsidemargin}{\\dimexpr(\\paperwidth-\\textwidth)/2-1in\\relax}\n"
        + "\\setlength{\\evensidemargin}{\\oddsidemargin}\n"
        + "% \\fftable{name}{tabular}: natural size; shrunk to the text width down to "
        + f"{TABLE_MIN_SCALE:g} at most; else sideways\n"
        + "\\newsavebox{\\fftablebox}\n"
        + "\\newlength{\\fftableroom}\n"
        + "\\newlength{\\fftablehroom}\n"
        + "\\newlength{\\fftableheight}\n"
        + "\\newcommand{\\fftable}[2]{%\n"
        + "  \\sbox{\\fftablebox}{\\setlength{\\tabcolsep}{4pt}#2}%\n"
        + "  \\setlength{\\fftableheight}{\\dimexpr\\ht\\fftablebox+\\dp\\fftablebox\\relax}%\n"
        + "  \\setlength{\\fftableroom}{\\linewidth}\\setlength{\\fftablehroom}{0.9\\textheight}%\n"
        + f"  \\ifdim{TABLE_MIN_SCALE:g}\\wd\\fftablebox>\\linewidth"
        + "\\setlength{\\fftableroom}{0.9\\textheight}\\setlength{\\fftablehroom}{\\linewidth}\\fi\n"
        + "  \\typeout{fftable #1: natural \\the\\wd\\fftablebox\\space room \\the\\fftableroom}%\n"
        + "  \\typeout{fftable #1: height \\the\\fftableheight\\space hroom \\the\\fftablehroom}%\n"
        + "  \\ifdim\\wd\\fftablebox>\\fftableroom\n"
        + "    \\sbox{\\fftablebox}{\\resizebox{\\fftableroom}{!}{\\usebox{\\fftablebox}}}\\fi\n"
        + "  \\setlength{\\fftableheight}{\\dimexpr\\ht\\fftablebox+\\dp\\fftablebox\\relax}%\n"
        + "  \\ifdim\\fftableheight>\\fftablehroom\n"
        + "    \\sbox{\\fftablebox}{\\resizebox*{!}{\\fftablehroom}{\\usebox{\\fftablebox}}}\\fi\n"
        + "  \\ifdim\\fftableroom>\\linewidth\\rotatebox{90}{\\usebox{\\fftablebox}}"
        + "\\else\\usebox{\\fftablebox}\\fi}\n"
        + f"\\InputIfFileExists{{{LATEX_DIR}/numbers}}{{}}{{}}\n"  # the \\ff... macros
    )


def write_latex_index(out_dir: str | Path | None = None) -> list[Path]:
    """Rewrite ``preamble.tex`` and ``all_figures.tex`` of ``out_dir`` (default ``figures/``)."""
    out = repo_path(out_dir) if out_dir is not None else FIGURES_DIR
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{PREAMBLE}.tex", out / f"{INDEX}.tex"]
    write_text(paths[0], latex_preamble())
    write_text(paths[1], latex_index(out))
    return paths
