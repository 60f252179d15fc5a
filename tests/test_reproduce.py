"""The papermill runner: order, parameters, skip/force, and failures that name the cell."""

from __future__ import annotations

import json
import os

import nbformat
import pytest
from jsonwalk import json_strings

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


def _edit_cell(path, old: str, new: str) -> None:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        cell.source = cell.source.replace(old, new)
    nbformat.write(nb, path)


def test_edited_notebook_reruns_with_what_follows_only(notebooks, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    names = ("a", "b")
    _run(notebooks, run, names)
    capsys.readouterr()
    # outputs and metadata do not count: an executed copy with the same cells is the same notebook
    assert _run(notebooks, run, names).skipped == ["a", "b"]
    assert "up to date" in capsys.readouterr().out
    _edit_cell(notebooks / "b.ipynb", "p.write_text", "p.write_text ")  # 'editing a cell of 07'
    again = _run(notebooks, run, names)
    assert again.skipped == ["a"] and again.executed == ["b"]
    assert "b: running (the notebook's cells changed)" in capsys.readouterr().out
    _edit_cell(notebooks / "a.ipynb", "p.write_text", "p.write_text ")
    assert _run(notebooks, run, names).executed == ["a", "b"]
    assert "b: running (a before it ran again)" in capsys.readouterr().out


def test_changed_ffcore_code_reruns_everything(notebooks, tmp_path, monkeypatch, capsys) -> None:
    import ffcore.reproduce as rp

    run = tmp_path / "run"
    _run(notebooks, run, ("a",))
    monkeypatch.setattr(rp, "code_hash", lambda: "another version of ffcore")
    assert _run(notebooks, run, ("a",)).executed == ["a"]
    assert "a: running (the ffcore code changed)" in capsys.readouterr().out


def test_only_declared_parameters_are_passed(notebooks, tmp_path) -> None:
    run = tmp_path / "run"
    _run(notebooks, run, ("a",), extra_parameters={"undeclared": 1})
    state = json.loads((run / "reproduce_state.json").read_text())
    # a declares run_dir, profile and step: device, data_root, figures_dir are not passed
    assert set(state["a"]["parameters"]) == {"run_dir", "profile"}
    executed = nbformat.read(run / "a.ipynb", as_version=4)
    injected = next(
        c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])
    )
    assert "device" not in injected.source and "undeclared" not in injected.source


def test_run_folder_holds_relative_paths_and_can_move(notebooks, tmp_path) -> None:
    run = tmp_path / "run"
    _run(notebooks, run, ("a", "b"))
    state = json.loads((run / "reproduce_state.json").read_text())
    assert not [s for s in json_strings(state) if s.startswith("/")], state
    moved = tmp_path / "moved"
    run.rename(moved)
    # the moved folder reads as the same run: nothing re-runs
    assert _run(notebooks, moved, ("a", "b")).skipped == ["a", "b"]


def test_phase_result_and_evaluation_paths_survive_a_move(tmp_path) -> None:
    from ffcore.training.handover import phase_result, relative_to_run

    run = tmp_path / "run"
    (run / "02_phase1").mkdir(parents=True)
    (run / "weights" / "phase1").mkdir(parents=True)
    (run / "weights" / "phase1" / "p1.pth").write_bytes(b"x")
    ckpt = relative_to_run(run / "weights" / "phase1" / "p1.pth", run)
    (run / "02_phase1" / "result.json").write_text(json.dumps({"checkpoint": ckpt}))
    run.rename(tmp_path / "elsewhere")
    moved = phase_result(tmp_path / "elsewhere", "1")
    assert moved["checkpoint"] == str(tmp_path / "elsewhere" / "weights" / "phase1" / "p1.pth")
    assert __import__("pathlib").Path(moved["checkpoint"]).is_file()


def test_notebook_kernels_run_with_the_pinned_cpu_kernels(tmp_path, monkeypatch) -> None:
    from ffcore.cpu_kernels import CpuKernels

    for name in CpuKernels().variables():
        monkeypatch.delenv(name, raising=False)
    nb_dir = tmp_path / "nbs"
    nb_dir.mkdir()
    probe = (
        "import os, pathlib, torch\n"
        "pathlib.Path(run_dir, 'kernels.txt').write_text("
        "os.environ.get('ONEDNN_MAX_CPU_ISA', '-') + ' ' + torch.backends.cpu.get_cpu_capability())"
    )
    _write_notebook(nb_dir / "k.ipynb", probe)
    _run(nb_dir, tmp_path / "pinned", ("k",))
    assert (tmp_path / "pinned" / "kernels.txt").read_text() == "AVX2 AVX2"
    _run(nb_dir, tmp_path / "native", ("k",), cpu_kernels=CpuKernels("native"))
    assert (tmp_path / "native" / "kernels.txt").read_text().startswith("- ")
    assert "ONEDNN_MAX_CPU_ISA" not in os.environ  # this process untouched


def test_a_deleted_export_reruns_its_notebook(tmp_path, capsys) -> None:
    nb_dir = tmp_path / "nbs"
    nb_dir.mkdir()
    _write_notebook(
        nb_dir / "c.ipynb",
        "import pandas as pd\nfrom ffcore.report import figures\n"
        "from ffcore.report.provenance import RunInfo\n"
        "info = RunInfo.create('c', {'step': step}, profile)\n"
        "figures.save_table(pd.DataFrame({'x': [step]}), 'out', f'{run_dir}/figs', provenance=info)",
    )
    run = tmp_path / "run"
    assert _run(nb_dir, run, ("c",)).executed == ["c"]
    assert _run(nb_dir, run, ("c",)).skipped == ["c"]
    (run / "figs" / "out.csv").unlink()
    capsys.readouterr()
    assert _run(nb_dir, run, ("c",)).executed == ["c"]
    out = capsys.readouterr().out
    assert "out.csv: file missing" in out  # the check printed before the run
    assert "c: running (exported file(s) missing or edited: out.csv missing)" in out
    assert (run / "figs" / "out.csv").is_file()


def test_recorded_checkpoints_lists_the_phases_that_ran(tmp_path) -> None:
    """Only the phases with a result.json, in phase order (notebook 06 records these as the
    checkpoints its exports depend on; a run of phase 3 alone must not fail there)."""
    from ffcore.training.handover import recorded_checkpoints

    run = tmp_path / "run"
    for folder, name in (("05_phase3", "p3.pth"), ("02_phase1", "p1.pth")):
        (run / folder).mkdir(parents=True)
        (run / folder / "result.json").write_text(json.dumps({"checkpoint": name}))
    assert recorded_checkpoints(run) == {"1": str(run / "p1.pth"), "3": str(run / "p3.pth")}
    assert list(recorded_checkpoints(run)) == ["1", "3"]
    assert recorded_checkpoints(tmp_path / "empty") == {}


def test_a_changed_input_file_or_kernel_level_reruns(notebooks, tmp_path, capsys) -> None:
    """A parameter naming a file (08's committed per-seed CSV) is hashed: new bytes re-run the
    notebook (and what follows); so does another CPU kernel level."""
    from ffcore.cpu_kernels import CpuKernels

    run, csv = tmp_path / "run", tmp_path / "per_seed.csv"
    csv.write_text("seed\n0\n")
    given = {"step": str(csv)}
    assert _run(notebooks, run, ("a", "b"), extra_parameters=given).executed == ["a", "b"]
    assert _run(notebooks, run, ("a", "b"), extra_parameters=given).skipped == ["a", "b"]
    csv.write_text("seed\n1\n")
    capsys.readouterr()
    assert _run(notebooks, run, ("a", "b"), extra_parameters=given).executed == ["a", "b"]
    assert "a: running (input file(s) changed (step))" in capsys.readouterr().out
    native = _run(notebooks, run, ("a",), extra_parameters=given, cpu_kernels=CpuKernels("native"))
    assert native.executed == ["a"]
    assert "a: running (CPU kernels changed (portable -> native))" in capsys.readouterr().out
