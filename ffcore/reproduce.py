"""Run the numbered notebooks in order with papermill: the one command behind the thesis.

Each notebook gets the parameters it declares among (profile, run_dir, data_root, device,
figures_dir), with the fixed ones of ``ffcore.pipeline`` (08 reports the study profile, from the
committed per-seed CSV when ``run_dir`` holds no study cells); the executed copies and every metrics file land under ``run_dir``. A notebook runs
again when its parameters, its own content (the source of its cells, not outputs) or the code of
``ffcore`` changed since its executed copy was made (hashes in ``reproduce_state.json``), when
a file a parameter names changed (08's per-seed CSV: its SHA-256 is recorded), when the CPU
kernel level changed (``--cpu-kernels``: other kernels, other numbers), when
its executed copy is missing, when a notebook before it ran, when a file it exported to
``figures_dir`` is missing or edited (its entry in ``provenance.json`` names the notebook), or
when ``force``; each decision is printed with its reason. Before it starts, it prints what
``python -m ffcore figures --check`` prints for ``figures_dir``. Tables that quote another
notebook's numbers (07's AP by phase and claims from 06) are rebuilt together: a notebook that
runs re-runs every notebook after it. The first failure stops the run and names the notebook and the cell.

Paths: a path inside the repository is passed to the notebooks relative to the repository root
(how the notebooks resolve them), and the state file stores paths relative to the run folder, so
a run folder can be moved or shared.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ffcore.atomic import write_json
from ffcore.cpu_kernels import (
    PORTABLE,
    CpuKernels,
    check_same_kernels,
    environment_applied,
    pinned_environment,
)
from ffcore.fingerprint import code_hash, notebook_hash, sha256_file
from ffcore.paths import FIGURES_DIR, NOTEBOOKS_DIR, REPO_ROOT, repo_path
from ffcore.pipeline import FIXED_PARAMETERS, REPRODUCE_NOTEBOOKS
from ffcore.profiles import get_profile
from ffcore.training.lock import FolderLock

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
    write_json(run_dir / STATE_FILE, state, sort_keys=True)


PATH_PARAMETERS = ("run_dir", "data_root", "figures_dir")


def _as_passed(path: str | Path) -> str:
    """A path as the notebooks get it: relative to the repository root when inside it."""
    p = repo_path(path).resolve()
    try:
        return str(p.relative_to(REPO_ROOT.resolve()))
    except ValueError:
        return str(p)


def notebook_parameters(
    profile: str, run_dir: Path, data_root: str | Path | None, device: str, figures_dir: Path
) -> dict[str, Any]:
    return {
        "profile": profile,
        "run_dir": _as_passed(run_dir),
        "data_root": None if data_root is None else _as_passed(data_root),
        "device": device,
        "figures_dir": _as_passed(figures_dir),
    }


def declared_parameters(notebook: str | Path) -> set[str]:
    """The names the notebook's ``parameters`` cell declares (papermill's inspection)."""
    import papermill as pm

    return set(pm.inspect_notebook(str(notebook)))


def _recorded(params: dict[str, Any], run: Path) -> dict[str, Any]:
    """Parameters as the state file keeps them: path parameters relative to the run folder."""
    out = dict(params)
    for key in PATH_PARAMETERS:
        if isinstance(out.get(key), str):
            out[key] = os.path.relpath(repo_path(out[key]).resolve(), run.resolve())
    return out


def input_hashes(params: dict[str, Any]) -> dict[str, str]:
    """``{parameter: SHA-256}`` of the parameters that name an existing file (not a folder):
    the inputs a notebook reads besides the run folder, e.g. 08's committed per-seed CSV."""
    files = {k: repo_path(v) for k, v in params.items() if isinstance(v, str) and v}
    return {k: sha256_file(path) for k, path in sorted(files.items()) if path.is_file()}


def _changed(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys)


def rerun_reason(
    done: dict[str, Any], record: dict[str, Any], executed_exists: bool, force: bool,
    upstream: str | None, outputs: dict[str, list[str]] | None = None,
) -> str | None:  # fmt: skip
    """Why a notebook must run (None: it is up to date). ``record`` is what a run now would
    write to the state file; ``upstream`` the notebook before it that ran in this call;
    ``outputs`` its exported files that are missing or edited ({file: reasons}, from
    ``ffcore.report.provenance.outputs_of``)."""
    if force:
        return "forced"
    if not done:
        return "no record of a complete run"
    if not executed_exists:
        return "executed copy missing"
    if upstream is not None:
        return f"{upstream} before it ran again"
    if done.get("parameters") != record["parameters"]:
        return (
            f"parameters changed ({_changed(done.get('parameters') or {}, record['parameters'])})"
        )
    if done.get("notebook_hash") != record["notebook_hash"]:
        return "the notebook's cells changed"
    if done.get("code_hash") != record["code_hash"]:
        return "the ffcore code changed"
    before, now = done.get("inputs", {}), record.get("inputs", {})
    if before != now:
        names = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        return f"input file(s) changed ({', '.join(names)})"
    before_k, now_k = (
        done.get("cpu_kernels", PORTABLE.level),
        record.get("cpu_kernels", PORTABLE.level),
    )
    if before_k != now_k:
        return f"CPU kernels changed ({before_k} -> {now_k})"
    if outputs:
        shown = ", ".join(f"{name} {'/'.join(why)}" for name, why in sorted(outputs.items()))
        return f"exported file(s) missing or edited: {shown}"
    return None


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
    progress: bool = True,
    cpu_kernels: CpuKernels = PORTABLE,
    allow_mixed_kernels: bool = False,
) -> ReproduceResult:
    """Execute ``notebooks`` in order (see the module docstring for when one is skipped).
    ``extra_parameters`` (e.g. tiny epochs for tests) are offered to every notebook; each gets
    only the parameters its ``parameters`` cell declares. ``progress``: papermill's progress bar
    (one step per cell) and the notebook's own stderr (training bars) on stderr.
    ``cpu_kernels``: the kernel level of the notebook kernels (``ffcore.cpu_kernels``; they
    inherit this process's environment when papermill starts them; an invalid pin variable in
    the environment is an error before anything runs). The phase notebooks' results under
    ``run_dir`` must share one kernel level (``cpu_capability``) unless ``allow_mixed_kernels``
    (checked before the first notebook and after each). One run per ``run_dir`` at a time: a
    second is refused (``FolderLocked``, naming the first)."""
    import papermill as pm

    env = pinned_environment(os.environ, cpu_kernels)  # refuses an invalid pin variable
    prof = get_profile(profile)
    if prof.name == "full" and data_root is None:
        raise ValueError("the full profile needs data_root pointing at a WIDER FACE copy")
    nb_dir = Path(notebooks_dir)
    missing = [n for n in notebooks if not (nb_dir / f"{n}.ipynb").is_file()]
    if missing:
        raise FileNotFoundError(f"notebook(s) not found in {nb_dir}: {', '.join(missing)}")
    run = repo_path(run_dir if run_dir is not None else f"runs/{profile}")
    run.mkdir(parents=True, exist_ok=True)
    with FolderLock(run, kind="run folder"):
        return _reproduce(
            pm, prof.name, run, data_root, device, force, figures_dir, notebooks,
            extra_parameters, nb_dir, progress, env, allow_mixed_kernels, cpu_kernels.level,
        )  # fmt: skip


def phase_kernels(run: Path) -> dict[str, str | None]:
    """``{result.json path: cpu_capability}`` of the phase notebooks' results under ``run``."""
    from ffcore.schedule import PHASE_ORDER
    from ffcore.training.handover import result_path

    found = {}
    for pid in PHASE_ORDER:
        path = result_path(run, pid)
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError:
                data = {}
            found[str(path)] = data.get("cpu_capability") if isinstance(data, dict) else None
    return found


def _reproduce(
    pm: Any, profile: str, run: Path, data_root: str | Path | None, device: str, force: bool,
    figures_dir: str | Path, notebooks: tuple[str, ...], extra_parameters: dict[str, Any] | None,
    nb_dir: Path, progress: bool, env: dict[str, str], allow_mixed: bool, kernel_level: str,
) -> ReproduceResult:  # fmt: skip
    check_same_kernels(phase_kernels(run), allow_mixed, what=f"the phase results of {run}")
    figs = repo_path(figures_dir)
    if data_root is None:
        from ffcore.data.synthetic import ensure_dataset

        data_root = ensure_dataset(profile=profile)
    offered = notebook_parameters(profile, run, data_root, device, figs) | (extra_parameters or {})
    from ffcore.report import provenance

    if figs.is_dir():  # what is stale before this run (the notebooks below rebuild theirs)
        for line in provenance.check_lines(provenance.check(figs), figs):
            print(f"[reproduce] {line}", flush=True)
    code = code_hash()
    state = _load_state(run)
    result = ReproduceResult(run)
    upstream: str | None = None
    for name in notebooks:
        source = nb_dir / f"{name}.ipynb"
        executed = run / f"{name}.ipynb"
        declared = declared_parameters(source)
        params = {k: v for k, v in offered.items() if k in declared}
        params |= {k: v for k, v in FIXED_PARAMETERS.get(name, {}).items() if k in declared}
        record = {
            "parameters": _recorded(params, run),
            "notebook_hash": notebook_hash(source),
            "code_hash": code,
            "inputs": input_hashes(params),
            "cpu_kernels": kernel_level,
        }
        outputs = provenance.outputs_of(name, figs)
        reason = rerun_reason(
            state.get(name, {}), record, executed.is_file(), force, upstream, outputs
        )
        if reason is None:
            result.skipped.append(name)
            print(
                f"[reproduce] {name}: up to date (same parameters, input files, notebook, "
                "ffcore code and CPU kernels), skipped (--force or FORCE=1 re-runs it)",
                flush=True,
            )
            continue
        print(f"[reproduce] {name}: running ({reason})", flush=True)
        state.pop(name, None)
        _save_state(run, state)
        t0 = time.perf_counter()
        try:
            with environment_applied(env):
                pm.execute_notebook(
                    str(source), str(executed), parameters=params, kernel_name="python3",
                    cwd=str(nb_dir), progress_bar=progress,
                    stderr_file=sys.stderr if progress else None,
                )  # fmt: skip
        except pm.PapermillExecutionError as exc:
            first_line = (exc.source or "").strip().splitlines()[:1]
            raise NotebookFailed(
                f"{name}.ipynb failed in cell {exc.cell_index + 1} of the executed copy (execution count {exc.exec_count}): "
                f"{exc.ename}: {exc.evalue}\n  cell starts with: {first_line[0] if first_line else ''}\n"
                f"  executed copy with the traceback: {executed}"
            ) from None
        seconds = time.perf_counter() - t0
        # the inputs as the notebook left them (08 rewrites the per-seed CSV it read)
        state[name] = record | {"inputs": input_hashes(params), "seconds": round(seconds, 1)}
        _save_state(run, state)
        result.executed.append(name)
        result.seconds[name] = seconds
        upstream = name
        print(f"[reproduce] {name}: done in {seconds:.0f} s", flush=True)
        check_same_kernels(phase_kernels(run), allow_mixed, what=f"the phase results of {run}")
    return result
