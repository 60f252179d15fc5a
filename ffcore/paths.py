"""Where things live. Relative paths in notebooks and the CLI are taken from the repository root,
so a notebook behaves the same under JupyterLab (cwd = notebooks/) and papermill (cwd = anywhere)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FIGURES_DIR = REPO_ROOT / "figures"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
DEFAULT_DATA_ROOT = REPO_ROOT / "data" / "synthetic"
DEFAULT_RUN_DIR = REPO_ROOT / "runs" / "smoke"


def repo_path(path: str | Path) -> Path:
    """An absolute path as given, else the path relative to the repository root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p
