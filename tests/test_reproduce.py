"""The papermill runner: order, parameters, skip/force, and failures that name the cell."""

from __future__ import annotations

import json

import nbformat
import pytest

from ffcore.reproduce import NotebookFailed, reproduce

pytestmark = pytest.mark.notebook


def _write_notebook(path, *sources: str) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(
        'run_dir = "unset"\nprofile = "unset"\nstep = 0', metadata={"tags": ["parameters"]}
    )
    nb.cells = [params, *(nbformat.v4.new_code_cell(s) for s in sources)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


@pytest.fixture
def notebooks(tmp_path):
    nb_dir = tmp_path / "nbs"
    nb_dir.mkdir()
    log = "import pathlib, json\np = pathlib.Path(run_dir) / 'log.txt'\np.write_text((p.read_text() if p.exists() else '') + NAME + str(step) + ',')"
    _write_notebook(nb_dir / "a.ipynb", log.replace("NAME", "'a'"))
    _write_notebook(nb_dir / "b.ipynb", log.replace("NAME", "'b'"))
    _write_notebook(nb_dir / "bad.ipynb", "x = 1", "raise ValueError('boom ' + profile)")
    return nb_dir


def _run(nb_dir, run_dir, names, **kw):
    return reproduce("smoke", run_dir, data_root=nb_dir, notebooks=names, notebooks_dir=nb_dir,
                     figures_dir=run_dir / "figs", **kw)  # fmt: skip


def test_runs_in_order_passes_parameters_and_skips_complete(notebooks, tmp_path) -> None:
    run = tmp_path / "run"
    first = _run(notebooks, run, ("a", "b"), extra_parameters={"step": 1})
    assert first.executed == ["a", "b"]
    assert (run / "log.txt").read_text() == "a1,b1,"
    assert (run / "a.ipynb").is_file() and (run / "b.ipynb").is_file()
    again = _run(notebooks, run, ("a", "b"), extra_parameters={"step": 1})
    assert again.skipped == ["a", "b"] and again.executed == []
    changed = _run(notebooks, run, ("a", "b"), extra_parameters={"step": 2})
    assert changed.executed == ["a", "b"]
    forced = _run(notebooks, run, ("a", "b"), extra_parameters={"step": 2}, force=True)
    assert forced.executed == ["a", "b"]
    assert (run / "log.txt").read_text() == "a1,b1,a2,b2,a2,b2,"
    state = json.loads((run / "reproduce_state.json").read_text())
    assert state["a"]["parameters"]["step"] == 2 and state["a"]["parameters"]["profile"] == "smoke"


def test_downstream_reruns_when_upstream_reruns(notebooks, tmp_path) -> None:
    run = tmp_path / "run"
    _run(notebooks, run, ("a", "b"))
    (run / "a.ipynb").unlink()  # a is no longer complete: b must follow it
    assert _run(notebooks, run, ("a", "b")).executed == ["a", "b"]


def test_failure_names_notebook_and_cell_and_stops(notebooks, tmp_path) -> None:
    run = tmp_path / "run"
    with pytest.raises(
        NotebookFailed,
        match=r"bad\.ipynb failed in cell 4 of the executed copy .*ValueError: boom smoke",
    ):
        _run(notebooks, run, ("bad", "a"))
    assert not (run / "log.txt").exists()  # stopped at the first failure
    state = json.loads((run / "reproduce_state.json").read_text())
    assert "bad" not in state


def test_missing_notebook_is_a_clear_error(notebooks, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        _run(notebooks, tmp_path / "run", ("a", "nope"))


def test_full_profile_requires_data_root(tmp_path) -> None:
    with pytest.raises(ValueError, match="data_root"):
        reproduce("full", tmp_path)
