"""Where every exported file of ``figures/`` comes from, and whether it still does.

A notebook (or script) builds one ``RunInfo`` from its parameters (``RunInfo.create``) and hands
it to ``save_figure`` / ``save_table`` (``provenance=``); each written file then gets an entry in
``<figures>/provenance.json``: its sha256, the notebook and its parameters, the profile, the
dataset's fingerprint, the sha256 of every checkpoint and input file it was computed from, the
hash of the notebook's cells and of the ffcore modules loaded when it was written, the git
commit (dirty or not), the versions of python/torch/numpy/onnxruntime, the CPU kernel level and
thread count, and the time. PDFs and PNGs carry the same entry (without their own hash) in their
metadata (PDF ``Subject``, PNG text ``Provenance``); CSV and ``.tex`` files keep no header (every
reader of them stays as it is): their entry lives in ``provenance.json`` only.

``check`` (``python -m ffcore figures --check``) compares each entry with the tree now: a file
missing or whose bytes differ, a notebook, ffcore code, dataset, checkpoint or input file that
changed, a file without an entry, an entry recorded after the fact (``record_existing``: files
written by a command or at an older commit, whose code inputs cannot be verified). The files the
save functions derive from the others (``INDEX_FILES``) are not entered: they are rewritten from
the folder's content on every save.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ffcore import fingerprint as fp
from ffcore.atomic import temporary_pid, write_json
from ffcore.paths import FIGURES_DIR, NOTEBOOKS_DIR, REPO_ROOT, repo_path

PROVENANCE_FILE = "provenance.json"
# derived from the folder (rewritten on every save) or written by hand: no entry
INDEX_FILES = frozenset(
    {
        PROVENANCE_FILE,
        "README.md",
        "preamble.tex",
        "all_figures.tex",
        "numbers.tex",
        "numbers.json",
        "numbers_table.tex",
        # `make thesis` builds the companion from the folder (a build product, not committed)
        "companion.pdf",
        "companion.tex",
    }
)


def _shown(path: str | Path) -> str:
    """A path as recorded: relative to the repository root when inside it."""
    p = repo_path(path).resolve()
    try:
        return str(p.relative_to(REPO_ROOT.resolve()))
    except ValueError:
        return str(p)


def _hashes(paths: Iterable[str | Path]) -> dict[str, str | None]:
    """{recorded path: sha256, None when the file does not exist}."""
    out: dict[str, str | None] = {}
    for path in paths:
        p = repo_path(path)
        out[_shown(p)] = fp.sha256_file(p) if p.is_file() else None
    return out


def source_code_hash(notebook: str) -> str | None:
    """The hash of what wrote a file: a notebook's cells (``NN_name`` in notebooks/) or a
    script's bytes (a path ending in ``.py``, from the repository root); None if it is gone."""
    if notebook.endswith(".py"):
        path = repo_path(notebook)
        return fp.sha256_file(path) if path.is_file() else None
    path = NOTEBOOKS_DIR / f"{notebook}.ipynb"
    return fp.notebook_hash(path) if path.is_file() else None


def checkpoint_kernels(paths: Iterable[str | Path]) -> dict[str, dict[str, Any] | None]:
    """{recorded path: the kernel levels its training process reported} (the checkpoint's
    ``cpu_kernels``: ``cpu_capability``, ``onednn_isa``); None for a missing or unreadable file
    or one written before checkpoints recorded them."""
    from ffcore.models.checkpoint import CheckpointError, load_checkpoint

    out: dict[str, dict[str, Any] | None] = {}
    for path in paths:
        p = repo_path(path)
        try:
            recorded = load_checkpoint(p).get("cpu_kernels") if p.is_file() else None
        except CheckpointError:
            recorded = None
        out[_shown(p)] = dict(recorded) if recorded else None
    return out


@dataclass(frozen=True)
class RunInfo:
    """What one notebook or script run computes from; built once per run (``create``)."""

    notebook: str  # "06_evaluation" (notebooks/) or "benchmarks/deploy_precision.py"
    parameters: Mapping[str, Any]
    profile: str
    data_root: str | None
    data_fingerprint: str | None
    checkpoints: Mapping[str, str | None]  # path -> sha256
    inputs: Mapping[str, str | None]  # other files read (a per-seed CSV, an AP table): sha256
    notebook_hash: str | None
    environment: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        notebook: str,
        parameters: Mapping[str, Any],
        profile: str,
        data_root: str | os.PathLike[str] | None = None,
        checkpoints: Iterable[str | os.PathLike[str]] = (),
        inputs: Iterable[str | os.PathLike[str]] = (),
    ) -> RunInfo:
        """Fingerprint the inputs now (dataset, checkpoints, input files, notebook, git,
        versions, CPU kernels); ``parameters`` must be JSON-serialisable."""
        json.dumps(dict(parameters))  # fail here, naming nothing written yet
        checkpoints = list(checkpoints)  # read twice below
        commit, dirty = fp.git_state()
        kernels, threads = fp.cpu_kernels()
        root = None if data_root is None else _shown(data_root)
        return cls(
            notebook=notebook,
            parameters=dict(parameters),
            profile=profile,
            data_root=root,
            data_fingerprint=fp.data_fingerprint(None if root is None else repo_path(root)),
            checkpoints=_hashes(checkpoints),
            inputs=_hashes(inputs),
            notebook_hash=source_code_hash(notebook),
            environment={
                "git_commit": commit,
                "git_dirty": dirty,
                "versions": fp.versions(),
                "cpu_kernels": kernels,
                "threads": threads,
                "checkpoint_cpu_kernels": checkpoint_kernels(checkpoints),
            },
        )

    @classmethod
    def for_notebook(
        cls,
        notebook: str,
        parameters: Mapping[str, Any],
        profile: str,
        data_root: str | os.PathLike[str] | None,
        checkpoints: Iterable[str | os.PathLike[str]] = (),
    ) -> RunInfo:
        """``create`` for a notebook whose ``data_root`` None means the profile's synthetic
        dataset (``ffcore.data.synthetic.ensure_dataset``)."""
        from ffcore.data.synthetic import ensure_dataset

        root = repo_path(data_root) if data_root is not None else ensure_dataset(profile=profile)
        return cls.create(notebook, parameters, profile, data_root=root, checkpoints=checkpoints)

    def entry(self) -> dict[str, Any]:
        """The provenance of a file written now (without its own sha256)."""
        files = fp.loaded_ffcore_files()
        return {
            "notebook": self.notebook,
            "parameters": dict(self.parameters),
            "profile": self.profile,
            "data_root": self.data_root,
            "data_fingerprint": self.data_fingerprint,
            "checkpoints": dict(self.checkpoints),
            "inputs": dict(self.inputs),
            "notebook_hash": self.notebook_hash,
            "ffcore_files": files,
            "ffcore_hash": fp.modules_hash(files),
            **dict(self.environment),
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def metadata(self, suffix: str, entry: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """savefig ``metadata=`` carrying ``entry`` (default: ``self.entry()``): PDF ``Subject``
        (no creation date, so the bytes depend only on the content and the entry), PNG text
        ``Provenance``."""
        text = json.dumps(dict(entry if entry is not None else self.entry()), sort_keys=True)
        if suffix == ".pdf":
            return {"CreationDate": None, "Subject": text}
        return {"Provenance": text}


# -- the file -------------------------------------------------------------------------------------
def load(out_dir: str | Path | None = None) -> dict[str, Any]:
    """``{"files": {name: entry}}`` of ``<out_dir>/provenance.json`` (empty when missing)."""
    path = (repo_path(out_dir) if out_dir is not None else FIGURES_DIR) / PROVENANCE_FILE
    if not path.is_file():
        return {"files": {}}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        raise ValueError(f"{path} has no 'files' mapping")
    return data


def _write(out: Path, data: dict[str, Any]) -> Path:
    return write_json(out / PROVENANCE_FILE, data, indent=1, sort_keys=True)


def _store(paths: Iterable[Path], make_entry) -> None:
    by_dir: dict[Path, list[Path]] = {}
    for p in paths:
        by_dir.setdefault(p.resolve().parent, []).append(p)
    for out, files in by_dir.items():
        data = load(out)
        for p in files:
            data["files"][p.name] = {"sha256": fp.sha256_file(p)} | make_entry(p)
        _write(out, data)


def record(
    paths: Iterable[str | Path], info: RunInfo, entry: Mapping[str, Any] | None = None
) -> None:
    """Enter ``paths`` (just written by the run ``info``) in their folder's provenance.json;
    ``entry``: the one ``info.entry()`` gave the files' metadata (default: a new one)."""
    entry = dict(entry if entry is not None else info.entry())
    _store([repo_path(p) for p in paths], lambda _p: dict(entry))


def record_existing(
    paths: Iterable[str | Path],
    source: str,
    commit: str,
    profile: str,
    note: str,
    parameters: Mapping[str, Any] | None = None,
    data_root: str | None = None,
    threads: int | None = None,
    cpu_kernels: Mapping[str, Any] | None = None,
) -> None:
    """Enter files that were written without provenance (by a command, or at an older commit)
    as they are: their bytes' sha256, what wrote them (``source``), the commit they were made
    at, a ``note`` and, when known, the torch ``threads`` and ``cpu_kernels`` they ran with
    (e.g. the study cells' level for the per-seed CSV, not the exporting process's). Their code inputs are unknown, so ``check`` reports them as
    recorded-after-the-fact until the source runs again."""
    files = [repo_path(p) for p in paths]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"cannot record files that do not exist: {', '.join(missing)}")
    if not commit:
        raise ValueError("commit must name the commit the files were made at")
    entry = {
        "notebook": source,
        "parameters": dict(parameters or {}),
        "profile": profile,
        "data_root": data_root,
        "data_fingerprint": None,
        "checkpoints": {},
        "inputs": {},
        "notebook_hash": None,
        "ffcore_files": [],
        "ffcore_hash": None,
        "git_commit": commit,
        "git_dirty": None,
        "versions": {},
        "cpu_kernels": dict(cpu_kernels or {}),
        "threads": threads,
        "checkpoint_cpu_kernels": {},
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "recorded_after_the_fact": note,
    }
    _store(files, lambda _p: dict(entry))


# -- staleness ------------------------------------------------------------------------------------
def exported_files(out_dir: str | Path | None = None) -> list[str]:
    """The file names of ``out_dir`` that need an entry (everything but ``INDEX_FILES``)."""
    out = repo_path(out_dir) if out_dir is not None else FIGURES_DIR
    return sorted(
        p.name
        for p in out.iterdir()
        if p.is_file() and p.name not in INDEX_FILES and temporary_pid(p.name) is None
    )


def stale_reasons(name: str, entry: Mapping[str, Any], out: Path) -> list[str]:
    """Why the file ``name`` of ``out`` no longer matches its entry (empty: it does)."""
    path = out / name
    if not path.is_file():
        return ["file missing"]
    reasons = []
    if fp.sha256_file(path) != entry.get("sha256"):
        reasons.append(
            "bytes differ from the recorded sha256 (edited or written without provenance)"
        )
    if entry.get("recorded_after_the_fact"):
        commit = str(entry.get("git_commit") or "?")[:12]
        reasons.append(
            f"recorded after the fact from commit {commit} ({entry['recorded_after_the_fact']}); "
            f"not re-run with provenance since"
        )
        return reasons
    source = str(entry.get("notebook"))
    if source_code_hash(source) != entry.get("notebook_hash"):
        reasons.append(f"the code of {source} changed")
    files = entry.get("ffcore_files") or []
    if fp.modules_hash(files) != entry.get("ffcore_hash"):
        reasons.append("the ffcore modules it used changed")
    root = entry.get("data_root")
    present = root is not None and repo_path(root).is_dir()  # absent: unverifiable, not stale
    if present and fp.data_fingerprint(repo_path(root)) != entry.get("data_fingerprint"):
        reasons.append(f"the dataset {root} changed")
    for kind, files_ in (("checkpoint", entry.get("checkpoints")), ("input", entry.get("inputs"))):
        for file, sha in (files_ or {}).items():
            p = repo_path(file)
            if p.is_file() and fp.sha256_file(p) != sha:
                reasons.append(f"{kind} {file} changed")
    return reasons


def absent_inputs(entry: Mapping[str, Any]) -> list[str]:
    """The recorded inputs of ``entry`` not on this machine: the dataset folder, checkpoints
    and input files (run outputs under runs/ and the generated data/ are not committed, so a
    fresh clone has none of them). What is absent cannot be compared: unverifiable, not stale."""
    found = []
    root = entry.get("data_root")
    if root is not None and not repo_path(root).is_dir():
        found.append(str(root))
    for files_ in (entry.get("checkpoints"), entry.get("inputs")):
        found += [str(f) for f in (files_ or {}) if not repo_path(f).is_file()]
    return found


def check(out_dir: str | Path | None = None) -> dict[str, list[str]]:
    """{file name: reasons} for every file of ``out_dir`` that is stale or has no entry, and
    every entry whose file is gone. Empty: everything is current."""
    out = repo_path(out_dir) if out_dir is not None else FIGURES_DIR
    entries = load(out)["files"]
    found: dict[str, list[str]] = {}
    for name in sorted(set(exported_files(out)) | set(entries)):
        if name not in entries:
            found[name] = ["no provenance entry"]
            continue
        reasons = stale_reasons(name, entries[name], out)
        if reasons:
            found[name] = reasons
    return found


def unverifiable(out_dir: str | Path | None = None) -> dict[str, list[str]]:
    """{file name: its recorded inputs not on this machine} (``absent_inputs``) for the entries
    of ``out_dir`` written with provenance: files whose inputs a re-run has to produce before
    they can be checked (``check`` compares only what is present)."""
    out = repo_path(out_dir) if out_dir is not None else FIGURES_DIR
    found = {}
    for name, entry in sorted(load(out)["files"].items()):
        absent = [] if entry.get("recorded_after_the_fact") else absent_inputs(entry)
        if absent:
            found[name] = absent
    return found


def check_lines(stale: Mapping[str, list[str]], out_dir: str | Path | None = None) -> list[str]:
    """What ``check`` found, one line per stale file, then one line for the files whose
    recorded inputs are absent here (``unverifiable``: a fresh clone has no runs/)."""
    folder = repo_path(out_dir) if out_dir is not None else FIGURES_DIR
    out = _shown(folder)
    if not stale:
        lines = [f"{out}: every exported file matches its recorded inputs (those present here)"]
    else:
        lines = [f"{out}: {len(stale)} exported file(s) stale or unrecorded:"]
        lines += [f"  {name}: {'; '.join(reasons)}" for name, reasons in stale.items()]
    absent = unverifiable(folder) if folder.is_dir() else {}
    if absent:
        inputs = sorted({p for paths in absent.values() for p in paths})
        top = sorted({Path(p).parts[0] for p in inputs if Path(p).parts})
        lines.append(
            f"{out}: {len(absent)} file(s) not checked against {len(inputs)} recorded input(s) "
            f"absent here (under {', '.join(f'{t}/' for t in top)}: generated, not committed); "
            "a run that makes them checks them"
        )
    return lines


def outputs_of(notebook: str, out_dir: str | Path | None = None) -> dict[str, list[str]]:
    """{file: reasons} for the recorded files of ``notebook`` that are missing or whose bytes
    differ: the outputs a re-run of that notebook must rebuild."""
    out = repo_path(out_dir) if out_dir is not None else FIGURES_DIR
    if not out.is_dir():
        return {}
    found = {}
    for name, entry in load(out)["files"].items():
        if entry.get("notebook") != notebook:
            continue
        path = out / name
        if not path.is_file():
            found[name] = ["missing"]
        elif fp.sha256_file(path) != entry.get("sha256"):
            found[name] = ["edited"]
    return found
