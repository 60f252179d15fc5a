"""Issue 29, items 8-11: check-data reports a training set without a face as train refuses it;
paths typed on the command line are taken from the working directory; ``train --all
--resume_net`` of a later phase says where the chain starts and never logs a row of NaN; a
checkpoint that is no FeatherFace model, and a bad make-synthetic seed, are named as such."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from ffcore.cli import build_parser, main
from ffcore.data.synthetic import generate_dataset
from ffcore.data.widerface import no_face_problem
from ffcore.models import build_model
from ffcore.paths import FIGURES_DIR, REPO_ROOT
from ffcore.training.checkpoint import save_checkpoint
from tests.errorline import one_error_line

SMALL = ["--batch-size", "4", "--image-size", "96", "--num-workers", "0", "--seed", "0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("r3") / "widerface", 4, 1, 128, seed=3)


# -- item 8: check-data and train apply one rule to a training set without a face ---------------
def test_check_data_reports_a_faceless_training_set_as_train_refuses_it(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    label = tmp_path / "label.txt"
    lines = (data / "train" / "label.txt").read_text().splitlines()
    label.write_text("".join(f"{line}\n" for line in lines if line.startswith("#")))
    (tmp_path / "images").symlink_to(data / "train" / "images")
    expected = no_face_problem(label, 4, 0)
    assert expected == f"{label}: none of its 4 images has a face; there is nothing to train on"
    assert main(["check-data", "--training_dataset", str(label)]) == 1
    captured = capsys.readouterr()
    assert "no errors" not in captured.out and f"  {expected}" in captured.err.splitlines()
    code = main(["train", "--phase", "1", "--training_dataset", str(label), "--save_folder",
                 str(tmp_path / "w"), "--device", "cpu", "--no-progress", "--epochs", "1",
                 *SMALL])  # fmt: skip
    assert code == 2
    assert expected in one_error_line(capsys.readouterr().err)
    assert main(["check-data", "--training_dataset", str(data / "train" / "label.txt")]) == 0
    assert "no errors" in capsys.readouterr().out


# -- item 9: paths typed by the user are taken from the working directory ------------------------
def test_path_flags_resolve_against_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    parse = build_parser().parse_args
    here = tmp_path / "fig3"
    assert parse(["figures", "--check", "--dir", "fig3"]).dir == here
    assert parse(["figures", "--readme", "R.md"]).readme == tmp_path / "R.md"
    assert parse(["thesis", "--figures-dir", "fig3", "--out", "c.pdf"]).figures_dir == here
    assert parse(["thesis", "--out", "c.pdf"]).out == tmp_path / "c.pdf"
    study = parse(["study", "--out", "s", "--data-root", "d", "--per-seed", "p.csv"])
    assert (study.out, study.data_root, study.per_seed) == (
        tmp_path / "s", tmp_path / "d", tmp_path / "p.csv",
    )  # fmt: skip
    rep = parse(["reproduce", "--out", "r", "--data-root", "d", "--figures-dir", "f"])
    assert (rep.out, rep.data_root, rep.figures_dir) == (
        tmp_path / "r",
        tmp_path / "d",
        tmp_path / "f",
    )
    assert parse(["size-report", "--out-dir", "t"]).out_dir == tmp_path / "t"
    # the defaults stay the repository's own folders
    assert parse(["figures", "--check"]).dir == FIGURES_DIR
    assert parse(["figures", "--readme"]).readme == REPO_ROOT / "README.md"
    assert parse(["thesis"]).figures_dir == FIGURES_DIR
    assert parse(["reproduce"]).figures_dir == FIGURES_DIR
    from ffcore.cli import _study_out

    assert _study_out(parse(["study"])) == REPO_ROOT / "runs" / "ablation" / "study"
    assert _study_out(parse(["study", "--profile", "study_2x"])).name == "study_2x"
    assert _study_out(parse(["study", "--out", "mine"])) == tmp_path / "mine"


def test_figures_check_and_thesis_from_another_folder(
    tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fig3").mkdir()
    (tmp_path / "fig3" / "mine.csv").write_text("a\n1\n")
    assert main(["figures", "--check", "--dir", "fig3"]) == 1
    out = capsys.readouterr().out
    assert "mine.csv" in out and "no provenance entry" in out
    assert main(["thesis", "--figures-dir", "nowhere"]) != 0
    one_error_line(capsys.readouterr().err, str(tmp_path / "nowhere"))


# -- item 10: train --all --resume_net of a later phase -------------------------------------------
def _complete(path: Path, phase: str) -> Path:
    model = build_model("eca_cbam")
    return save_checkpoint(path, model=model, phase=phase, epoch=1, epochs=1)


def test_train_all_from_a_complete_last_phase_says_nothing_is_left(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start = _complete(tmp_path / "elsewhere" / "phase3_epoch_1.pth", "3")
    save = tmp_path / "w"
    code = main(["train", "--all", "--training_dataset", str(data / "train" / "label.txt"),
                 "--resume_net", str(start), "--save_folder", str(save), "--device", "cpu",
                 "--no-progress", "--epochs", "1", *SMALL])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert f"{start} is a complete phase 3 checkpoint: no phase is left to train" in out
    assert "phase 1, 2a, 2b, 3 not trained" in out
    assert not save.exists() or not any(save.rglob("epochs.csv"))


@pytest.mark.slow
def test_train_all_from_a_complete_phase_2a_starts_at_2b_without_a_nan_row(
    data: Path, tmp_path: Path
) -> None:
    start = _complete(tmp_path / "elsewhere" / "phase2a_epoch_1.pth", "2a")
    save = tmp_path / "w"
    proc = subprocess.run(
        [sys.executable, "-m", "ffcore", "train", "--all", "--training_dataset",
         str(data / "train" / "label.txt"), "--resume_net", str(start), "--save_folder",
         str(save), "--device", "cpu", "--no-progress", "--epochs", "1", *SMALL],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (
        f"{start} is a complete phase 2a checkpoint: the chain starts at phase 2b from it; "
        "phase 1, 2a not trained"
    ) in proc.stdout
    assert sorted(p.name for p in save.iterdir()) == ["phase2b", "phase3"]
    for phase in ("2b", "3"):
        rows = pd.read_csv(save / f"phase{phase}" / "epochs.csv")
        assert rows.epoch.tolist() == [0, 1]
        assert rows.train_total[1:].notna().all() and rows.probe_total.notna().all()
    held = torch.load(save / "phase2b" / "phase2b_epoch_1.pth", weights_only=True)
    assert held["train_config"]["resume_net"] == str(start)


# -- item 11: messages -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wrong(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("wrong")
    model = build_model("none")
    bare = folder / "bare.pth"
    torch.save(model.state_dict(), bare)  # a state dict alone, as reference repositories save
    keys = save_checkpoint(folder / "keys.pth", model=model, phase="3", epoch=1, epochs=1)
    state = torch.load(keys, weights_only=True)
    first = next(iter(state["model"]))
    state["model"]["stray.weight"] = state["model"].pop(first)
    torch.save(state, keys)
    return {"bare": bare, "keys": keys, "first": first}


@pytest.mark.parametrize("command", ["evaluate", "export-onnx"])
def test_a_checkpoint_that_is_no_featherface_model_is_named_as_such(
    command: str, wrong: dict, data: Path, tmp_path: Path, capsys
) -> None:
    extra = (
        ["--data-root", str(data)] if command == "evaluate" else ["--out", str(tmp_path / "m.onnx")]
    )
    assert main([command, "--checkpoint", str(wrong["bare"]), *extra]) == 2
    line = one_error_line(capsys.readouterr().err, str(wrong["bare"]))
    assert "cannot be loaded as a FeatherFace model" in line and "start or resume" not in line
    assert "missing keys format, model" in line
    assert main([command, "--checkpoint", str(wrong["keys"]), *extra]) == 2
    line = one_error_line(capsys.readouterr().err, str(wrong["keys"]))
    assert "cannot be loaded as a FeatherFace model" in line
    assert f"missing keys {wrong['first']}; unexpected keys stray.weight" in line
    assert not (tmp_path / "m.onnx").exists()


def test_make_synthetic_names_its_flags(tmp_path: Path, capsys) -> None:
    assert main(["make-synthetic", "--out", str(tmp_path / "d"), "--seed", "-1"]) == 2
    one_error_line(capsys.readouterr().err, "--seed must be >= 0, got -1")
    assert main(["make-synthetic", "--out", str(tmp_path / "d"), "--train", "0"]) == 2
    one_error_line(capsys.readouterr().err, "--train and --val must be >= 1")
    assert not (tmp_path / "d").exists()
