"""Run the numbered notebooks in order with papermill: the one command behind the thesis.

Each notebook gets the same parameters (profile, run_dir, data_root, device, figures_dir); the
executed copies and every metrics file land under ``run_dir``. A notebook whose executed copy is
complete for the same parameters is skipped (until one upstream of it runs again), unless
``force``. The first failure stops the run and names the notebook and the cell.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ffcore.paths import FIGURES_DIR, NOTEBOOKS_DIR, repo_path
from ffcore.pipeline import REPRODUCE_NOTEBOOKS
from ffcore.profiles import get_profile

NOTEBOOKS = REPRODUCE_NOTEBOOKS  # the order they run in (ffcore.pipeline)
STATE_FILE = "reproduce_state.json"


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the notebook, the cell and the error."""


@dataclass
class ReproduceResult:
    run_dir: Path
    executed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def _load_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / STATE_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}  # a state file cut by a crash only costs a re-run


def _save_state(run_dir: Path, state: dict[str, Any]) -> None:
    tmp = run_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(run_dir / STATE_FILE)


def notebook_parameters(
    profile: str, run_dir: Path, data_root: str | Path | None, device: str, figures_dir: Path
) -> dict[str, Any]:
    return {
        "profile": profile,
        "run_dir": str(run_dir),
        "data_root": None if data_root is None else str(repo_path(data_root)),
        "device": device,
        "figures_dir": str(figures_dir),
    }


def reproduce(
    profile: str = "smoke",
    run_dir: str | Path | None = None,
    data_root: str | Path | None = None,
    device: str = "cpu",
    force: bool = False,
    figures_dir: str | Path = FIGURES_DIR,
    notebooks: tuple[str, ...] = NOTEBOOKS,
    extra_parameters: dict[str, Any] | None = None,
    notebooks_dir: str | Path = NOTEBOOKS_DIR,
) -> ReproduceResult:
    """Execute ``notebooks`` in order. ``extra_parameters`` (e.g. tiny epochs for tests) are
    passed to every notebook; papermill ignores the ones a notebook does not declare."""
    import papermill as pm

    prof = get_profile(profile)
    if prof.name == "full" and data_root is None:
        raise ValueError("the full profile needs data_root pointing at a WIDER FACE copy")
    nb_dir = Path(notebooks_dir)
    missing = [n for n in notebooks if not (nb_dir / f"{n}.ipynb").is_file()]
    if missing:
        raise FileNotFoundError(f"notebook(s) not found in {nb_dir}: {', '.join(missing)}")
    run = repo_path(run_dir if run_dir is not None else f"runs/{profile}")
    run.mkdir(parents=True, exist_ok=True)
    figs = repo_path(figures_dir)
    if data_root is None:
        from ffcore.data.synthetic import ensure_dataset

        data_root = ensure_dataset(profile=profile)
    params = notebook_parameters(profile, run, data_root, device, figs) | (extra_parameters or {})
    state = _load_state(run)
    result = ReproduceResult(run)
    upstream_ran = False
    for name in notebooks:
        source = nb_dir / f"{name}.ipynb"
        executed = run / f"{name}.ipynb"
        done = state.get(name, {})
        if (
            not force
            and not upstream_ran
            and done.get("parameters") == params
            and executed.is_file()
        ):
            result.skipped.append(name)
            print(
                f"[reproduce] {name}: complete for these parameters, skipped (use --force to re-run)"
            )
            continue
        print(f"[reproduce] {name}: running")
        state.pop(name, None)
        _save_state(run, state)
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(
                str(source), str(executed), parameters=params, kernel_name="python3",
                cwd=str(nb_dir), progress_bar=False,
            )  # fmt: skip
        except pm.PapermillExecutionError as exc:
            first_line = (exc.source or "").strip().splitlines()[:1]
            raise NotebookFailed(
                f"{name}.ipynb failed in cell {exc.cell_index + 1} of the executed copy (execution count {exc.exec_count}): "
                f"{exc.ename}: {exc.evalue}\n  cell starts with: {first_line[0] if first_line else ''}\n"
                f"  executed copy with the traceback: {executed}"
            ) from None
        seconds = time.perf_counter() - t0
        state[name] = {"parameters": params, "seconds": round(seconds, 1)}
        _save_state(run, state)
        result.executed.append(name)
        result.seconds[name] = seconds
        upstream_ran = True
        print(f"[reproduce] {name}: done in {seconds:.0f} s")
    return result
