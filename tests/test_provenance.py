"""Provenance of exported files and the staleness check (issue 21 items 2, 3, 7a): every kind of
input touched one at a time (notebook, ffcore code, dataset, checkpoint, file bytes, missing
file, file without entry) is reported, and nothing else is."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import nbformat
import pandas as pd
import pytest
from PIL import Image

from ffcore import fingerprint as fp
from ffcore.cli import main
from ffcore.report import figures, provenance
from ffcore.reproduce import rerun_reason


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A notebook, a fake ffcore package, a dataset and a checkpoint, all in tmp_path."""
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    nbformat.write(nb, nbs / "09_test.ipynb")
    monkeypatch.setattr(provenance, "NOTEBOOKS_DIR", nbs)
    pkg = tmp_path / "pkg"
    (pkg / "report").mkdir(parents=True)
    (pkg / "report" / "a.py").write_text("A = 1\n")
    monkeypatch.setattr(fp, "PACKAGE", pkg)
    monkeypatch.setattr(fp, "loaded_ffcore_files", lambda: ["report/a.py"])
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    (data / "train" / "label.txt").write_text("# a.jpg\n1 2 3 4\n")
    ckpt = tmp_path / "phase3.pth"
    ckpt.write_bytes(b"weights")
    info = provenance.RunInfo.create(
        "09_test", {"profile": "ci", "seed": 0}, "ci", data_root=data, checkpoints=[ckpt]
    )
    out = tmp_path / "figures"
    fig, ax = figures.new_figure()
    ax.plot([0, 1], [1, 0])
    figures.save_figure(fig, "curve", out, provenance=info)
    matplotlib.pyplot.close(fig)
    figures.save_table(pd.DataFrame({"ap": [0.5]}), "ap", out, provenance=info)
    return {"out": out, "nb": nbs / "09_test.ipynb", "pkg": pkg, "data": data, "ckpt": ckpt}


def test_entries_are_complete_and_fresh(world) -> None:
    out = world["out"]
    entries = provenance.load(out)["files"]
    assert sorted(entries) == ["ap.csv", "ap.tex", "curve.pdf", "curve.png"]
    e = entries["curve.png"]
    assert e["sha256"] == fp.sha256_file(out / "curve.png")
    assert e["notebook"] == "09_test" and e["parameters"] == {"profile": "ci", "seed": 0}
    assert e["checkpoints"] == {str(world["ckpt"]): fp.sha256_file(world["ckpt"])}
    assert e["ffcore_files"] == ["report/a.py"]
    assert set(e["versions"]) == {
        "python", "torch", "torchvision", "numpy", "opencv-python", "pillow", "scipy", "onnxruntime",
    }  # fmt: skip
    assert {"ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA", "MKL_CBWR", "torch_cpu_capability"} <= set(
        e["cpu_kernels"]
    )
    assert isinstance(e["threads"], int) and e["git_commit"] and e["time"]
    # the index files get no entry, and nothing is stale
    assert (out / "all_figures.tex").is_file() and "all_figures.tex" not in entries
    assert provenance.check(out) == {}
    # the CSV stays a plain CSV: its readers need no comment= argument
    assert pd.read_csv(out / "ap.csv").columns.tolist() == ["Unnamed: 0", "ap"]


def test_figures_carry_their_provenance(world) -> None:
    png = json.loads(Image.open(world["out"] / "curve.png").text["Provenance"])
    assert png["notebook"] == "09_test" and png["checkpoints"]
    pdf = (world["out"] / "curve.pdf").read_bytes()
    assert b"09_test" in pdf  # the Subject of the PDF info dict


@pytest.mark.parametrize(
    ("touch", "stale", "reason"),
    [
        ("notebook", {"curve.pdf", "curve.png", "ap.csv", "ap.tex"}, "the code of 09_test changed"),
        ("ffcore", {"curve.pdf", "curve.png", "ap.csv", "ap.tex"}, "ffcore modules it used"),
        ("dataset", {"curve.pdf", "curve.png", "ap.csv", "ap.tex"}, "dataset"),
        ("checkpoint", {"curve.pdf", "curve.png", "ap.csv", "ap.tex"}, "checkpoint"),
        ("bytes", {"ap.csv"}, "bytes differ"),
        ("missing", {"curve.png"}, "file missing"),
        ("unrecorded", {"extra.csv"}, "no provenance entry"),
    ],
)
def test_each_kind_of_change_is_reported(world, touch: str, stale: set, reason: str) -> None:
    out = world["out"]
    if touch == "notebook":
        nb = nbformat.read(world["nb"], as_version=4)
        nb.cells[0].source = "x = 2"
        nbformat.write(nb, world["nb"])
    elif touch == "ffcore":
        (world["pkg"] / "report" / "a.py").write_text("A = 2\n")
    elif touch == "dataset":
        (world["data"] / "train" / "label.txt").write_text("# b.jpg\n1 2 3 4\n")
    elif touch == "checkpoint":
        world["ckpt"].write_bytes(b"other weights")
    elif touch == "bytes":
        (out / "ap.csv").write_text(",ap\n0,0.9\n")
    elif touch == "missing":
        (out / "curve.png").unlink()
    else:
        (out / "extra.csv").write_text("a\n1\n")
    found = provenance.check(out)
    assert set(found) == stale
    assert all(any(reason in r for r in found[name]) for name in stale)
    assert main(["figures", "--check", "--dir", str(out)]) == 1


def test_check_exits_zero_when_current(world, capsys) -> None:
    assert main(["figures", "--check", "--dir", str(world["out"])]) == 0
    assert "matches its recorded inputs" in capsys.readouterr().out


def test_recorded_after_the_fact_is_stale_with_its_commit(world) -> None:
    out = world["out"]
    (out / "study.csv").write_text("a\n1\n")
    code = main(
        ["figures", "--dir", str(out), "--record", "study.csv", "--source", "ffcore study",
         "--commit", "abbb520", "--profile", "study"]
    )  # fmt: skip
    assert code == 0
    entry = provenance.load(out)["files"]["study.csv"]
    assert entry["git_commit"] == "abbb520" and entry["sha256"] == fp.sha256_file(out / "study.csv")
    (reason,) = provenance.check(out)["study.csv"]
    assert "recorded after the fact from commit abbb520" in reason


def test_recorded_after_the_fact_keeps_the_environment_it_ran_in(world) -> None:
    # the per-seed CSV: exported by notebook 08, computed by cells of their own kernel level
    out = world["out"]
    (out / "per_seed.csv").write_text("a\n1\n")
    args = ["figures", "--dir", str(out), "--record", "per_seed.csv", "--source", "ffcore study",
            "--commit", "527aac2", "--profile", "study", "--threads", "1",
            "--cpu-capability", "AVX2"]  # fmt: skip
    assert main(args) == 0
    entry = provenance.load(out)["files"]["per_seed.csv"]
    assert entry["threads"] == 1 and entry["cpu_kernels"] == {"torch_cpu_capability": "AVX2"}


def test_record_refuses_without_commit_or_file(world) -> None:
    with pytest.raises(ValueError, match="commit"):
        provenance.record_existing([world["out"] / "ap.csv"], "x", "", "ci", "note")
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        provenance.record_existing([world["out"] / "nope.csv"], "x", "c0ffee", "ci", "note")


def test_a_missing_or_edited_output_reruns_its_notebook(world) -> None:
    out = world["out"]
    assert provenance.outputs_of("09_test", out) == {}
    (out / "curve.png").unlink()
    (out / "ap.tex").write_text("edited by hand")
    outputs = provenance.outputs_of("09_test", out)
    assert outputs == {"curve.png": ["missing"], "ap.tex": ["edited"]}
    assert provenance.outputs_of("01_model", out) == {}
    record = {"parameters": {}, "notebook_hash": "n", "code_hash": "c"}
    assert rerun_reason(record, record, True, False, None, {}) is None
    reason = rerun_reason(record, record, True, False, None, outputs)
    assert reason == "exported file(s) missing or edited: ap.tex edited, curve.png missing"


def test_the_companion_build_product_needs_no_entry(tmp_path: Path) -> None:
    """`make thesis` writes companion.pdf into figures/: a build product, never stale."""
    from ffcore.report.provenance import exported_files

    for name in ("companion.pdf", "companion.tex", "a_table.csv"):
        (tmp_path / name).write_text("x")
    assert exported_files(tmp_path) == ["a_table.csv"]


def test_absent_run_outputs_are_unverifiable_not_stale(world, capsys) -> None:
    """A fresh clone has no runs/ (checkpoints) and no generated data/: the files computed from
    them are not stale (nothing present differs), and the check says once which inputs it could
    not compare."""
    out = world["out"]
    world["ckpt"].unlink()
    assert provenance.check(out) == {}
    assert provenance.unverifiable(out) == {
        name: [str(world["ckpt"])] for name in ("ap.csv", "ap.tex", "curve.pdf", "curve.png")
    }
    import shutil

    shutil.rmtree(world["data"])
    absent = provenance.unverifiable(out)["curve.png"]
    assert sorted(absent) == sorted([str(world["data"]), str(world["ckpt"])])
    assert main(["figures", "--check", "--dir", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "matches its recorded inputs" in lines[0]
    assert "4 file(s) not checked against 2 recorded input(s) absent here" in lines[1]
    # what is present is still compared: edited bytes are stale
    (out / "ap.csv").write_text(",ap\n0,0.9\n")
    assert set(provenance.check(out)) == {"ap.csv"}


def test_the_dirty_flag_ignores_the_outputs(tmp_path: Path) -> None:
    """A notebook rewriting figures/ (or runs/) does not mark its own run dirty; code does."""
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    for rel in ("figures/a.csv", "runs/b.txt", "ffcore/c.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    commit, dirty = fp.git_state(tmp_path)
    assert commit and dirty is False
    (tmp_path / "figures/a.csv").write_text("2\n")
    (tmp_path / "runs/b.txt").write_text("2\n")
    assert fp.git_state(tmp_path) == (commit, False)
    (tmp_path / "ffcore/c.py").write_text("2\n")
    assert fp.git_state(tmp_path) == (commit, True)
