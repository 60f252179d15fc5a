"""One style for every thesis figure and table.

Figures are sized in inches for a LaTeX page (``COLUMN`` = one column of a two-column layout,
``FULL`` = text width), use a colour-blind-safe seaborn palette, and are saved as vector PDF plus
PNG. Tables are pandas DataFrames saved as CSV plus LaTeX.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)  # headless by default; a Jupyter kernel keeps its inline backend
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

COLUMN = 3.4  # inches
FULL = 7.0
PALETTE = "colorblind"
from ffcore.config import VARIANTS  # noqa: E402
from ffcore.paths import FIGURES_DIR, repo_path  # noqa: E402
from ffcore.schedule import PHASE_ORDER  # noqa: E402

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


def _check_name(name: str) -> None:
    if not name or any(c in name for c in "/\\ ."):
        raise ValueError(f"figure/table name must be a plain stem like 'pr_curves', got {name!r}")


def save_figure(fig, name: str, out_dir: str | Path | None = None) -> list[Path]:
    """Save ``fig`` as ``<out_dir>/<name>.pdf`` and ``.png`` (default out_dir: ``figures/``; a
    relative out_dir is taken from the repository root)."""
    _check_name(name)
    out = repo_path(out_dir) if out_dir is not None else FIGURES_DIR
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.pdf", out / f"{name}.png"]
    for path in paths:
        fig.savefig(path, metadata={"CreationDate": None} if path.suffix == ".pdf" else None)
    return paths


def save_table(
    df: pd.DataFrame,
    name: str,
    out_dir: str | Path | None = None,
    index: bool = True,
    float_format: str = "%.3f",
) -> list[Path]:
    """Save ``df`` as ``<name>.csv`` and ``<name>.tex`` (booktabs-style LaTeX)."""
    _check_name(name)
    out = repo_path(out_dir) if out_dir is not None else FIGURES_DIR
    out.mkdir(parents=True, exist_ok=True)
    csv, tex = out / f"{name}.csv", out / f"{name}.tex"
    df.to_csv(csv, index=index)
    tex.write_text(df.to_latex(index=index, float_format=lambda v: float_format % v, escape=True))
    return [csv, tex]
