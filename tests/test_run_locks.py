"""One reproduce per run folder and one study per study folder: a second run beside a live one is
refused with one line naming it; the lock of a dead run is taken over with a warning."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from errorline import one_error_line

from ffcore.cli import EXIT_USER_ERROR, main
from ffcore.training.lock import FolderLocked


def _write_lock(folder: Path, pid: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / ".lock"
    lock.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": 0}))
    return lock


@pytest.fixture
def live_pid() -> Iterator[int]:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield sleeper.pid
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.fixture
def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _notebook(folder: Path) -> Path:
    import nbformat

    folder.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell('run_dir = "unset"', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import pathlib; pathlib.Path(run_dir, 'ran').write_text('1')"),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, folder / "a.ipynb")
    return folder


def _reproduce(run: Path, notebooks: tuple[str, ...], nb_dir: Path) -> object:
    from ffcore.reproduce import reproduce

    return reproduce(
        "smoke", run, data_root=nb_dir, notebooks=notebooks, notebooks_dir=nb_dir,
        figures_dir=run / "figs", progress=False,
    )  # fmt: skip


@pytest.mark.notebook
def test_second_reproduce_into_a_run_folder_is_refused(tmp_path: Path, live_pid: int) -> None:
    run = tmp_path / "run"
    lock = _write_lock(run, live_pid)
    nb_dir = _notebook(tmp_path / "nbs")
    with pytest.raises(FolderLocked) as caught:
        _reproduce(run, ("a",), nb_dir)
    message = str(caught.value)
    assert f"process {live_pid} on {socket.gethostname()}" in message and str(run) in message
    assert "one run per run folder" in message and "\n" not in message
    assert not (run / "ran").exists() and not (run / "reproduce_state.json").exists()
    assert json.loads(lock.read_text())["pid"] == live_pid  # the live run's lock is kept


@pytest.mark.notebook
def test_reproduce_takes_over_the_lock_of_a_dead_run(tmp_path: Path, dead_pid: int) -> None:
    run = tmp_path / "run"
    _write_lock(run, dead_pid)
    with pytest.warns(UserWarning, match=f"stale lock of process {dead_pid}"):
        _reproduce(run, (), tmp_path)
    assert not (run / ".lock").exists()  # taken over, then released


def test_second_study_into_a_study_folder_is_refused(tmp_path: Path, live_pid: int, capsys):
    out = tmp_path / "study"
    _write_lock(out, live_pid)
    args = ["study", "--out", str(out), "--data-root", str(tmp_path / "data"), "--profile", "ci"]
    code = main([*args, "--configurations", "none", "--seeds", "1"])
    assert code == EXIT_USER_ERROR
    one_error_line(capsys.readouterr().err, f"process {live_pid}", str(out), "study folder")
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing run, nothing written


def test_study_takes_over_the_lock_of_a_dead_run(tmp_path: Path, dead_pid: int) -> None:
    from ffcore.study import StudySpec, run_study

    out = tmp_path / "study"
    _write_lock(out, dead_pid)
    spec = StudySpec("ci", str(out), str(tmp_path / "data"))
    with pytest.warns(UserWarning, match=f"stale lock of process {dead_pid}"):
        assert run_study([], spec, report=lambda _line: None) == []
    assert not (out / ".lock").exists()
    with pytest.raises(FolderLocked, match="study folder"):  # held while it runs
        from ffcore.training.lock import FolderLock

        with FolderLock(out, kind="study folder"):
            run_study([], spec, report=lambda _line: None)
