"""A re-run never destroys finished work, and a resume refuses what it cannot continue (issue 20):
the start states of a phase (``resolve_start``), ``train --all`` continuing after a kill, a fresh
run refused in a folder that holds an earlier run, changed settings refused on resume, Ctrl-C,
and the one-line errors of the train and study commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from errorline import one_error_line

from ffcore.cli import EXIT_INTERRUPTED, main
from ffcore.config import TrainConfig
from ffcore.data.synthetic import generate_dataset
from ffcore.models.checkpoint import CheckpointError
from ffcore.training import engine
from ffcore.training.engine import fit_phase
from ffcore.training.start import (
    ConfigMismatch,
    OutputsExist,
    Refusal,
    Start,
    StartPlan,
    dataset_fingerprint,
    resolve_start,
)

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--batch-size", "4", "--image-size", "96", "--num-workers", "0", "--seed", "0"]


# -- the start states, one by one (no training) ---------------------------------------------------
def _cfg(tmp_path: Path, phase: str = "1", **kw) -> TrainConfig:
    base = dict(phase=phase, batch_size=4, image_size=96, save_folder=str(tmp_path / "w"), seed=0)
    return TrainConfig(**{**base, **kw})


def _state(phase: str, epoch: int, epochs: int, path: str = "ck.pth", **train) -> dict:
    settings = dict(batch_size=4, seed=0, image_size=96, epochs=epochs, attention_schedule="phased")
    return {
        "phase": phase, "epoch": epoch, "epochs": epochs, "path": path,
        "train_config": {**settings, **train}, "step_offset": 7, "epoch_offset": 2,
        "global_step": 9,
    }  # fmt: skip


def test_start_fresh(tmp_path: Path) -> None:
    plan = resolve_start(_cfg(tmp_path, epochs=3), None)
    assert isinstance(plan, StartPlan) and plan.kind is Start.FRESH
    assert (plan.epochs, plan.t0, plan.start_epoch, plan.step_offset) == (3, 3, 0, 0)


def test_start_from_previous(tmp_path: Path) -> None:
    # another batch size than phase 1's: a new phase is not a resume, nothing is compared
    plan = resolve_start(_cfg(tmp_path, "2a", epochs=2, batch_size=8), _state("1", 3, 3))
    assert isinstance(plan, StartPlan) and plan.kind is Start.FROM_PREVIOUS
    assert (plan.start_epoch, plan.step_offset, plan.epoch_offset) == (0, 9, 5)


def test_start_resume(tmp_path: Path) -> None:
    latest = tmp_path / "w" / "phase2a" / "latest.pth"
    plan = resolve_start(_cfg(tmp_path, "2a"), _state("2a", 1, 3, str(latest)))
    assert isinstance(plan, StartPlan) and plan.kind is Start.RESUME
    assert (plan.epochs, plan.start_epoch, plan.step_offset, plan.epoch_offset) == (3, 1, 7, 2)


def test_start_finish(tmp_path: Path) -> None:
    latest = tmp_path / "w" / "phase1" / "latest.pth"
    latest.parent.mkdir(parents=True)
    latest.write_bytes(b"")  # a kill after latest.pth, before the final checkpoint
    plan = resolve_start(_cfg(tmp_path), _state("1", 2, 2, str(latest)))
    assert isinstance(plan, StartPlan) and plan.kind is Start.FINISH and plan.start_epoch == 2


def test_start_refusals(tmp_path: Path) -> None:
    def refused(config: TrainConfig, state: dict | None, **kw) -> ValueError:
        plan = resolve_start(config, state, **kw)
        assert isinstance(plan, Refusal), plan
        return plan.error

    # the wrong phase, an unfinished previous phase
    assert "starts from the final checkpoint of phase 1" in str(refused(_cfg(tmp_path, "2a"), None))
    assert "did not finish" in str(refused(_cfg(tmp_path, "2a"), _state("1", 1, 3)))
    # resume with other settings: every difference named (checkpoint value, requested value)
    error = refused(_cfg(tmp_path, batch_size=8, seed=3, image_size=128), _state("1", 1, 3))
    assert isinstance(error, ConfigMismatch)
    assert error.differences == [("batch_size", 4, 8), ("seed", 0, 3), ("image_size", 96, 128)]
    assert "batch_size: 4 in the checkpoint, 8 requested" in str(error)
    error = refused(_cfg(tmp_path, epochs=5), _state("1", 1, 3))
    assert error.differences == [("epochs", 3, 5)]
    held = {"label_sha256": "a" * 64, "images": 4}
    error = refused(_cfg(tmp_path), _state("1", 1, 3, dataset_fingerprint=held),
                    fingerprint={"label_sha256": "b" * 64, "images": 5})  # fmt: skip
    assert [d[0] for d in error.differences] == ["dataset_fingerprint"]
    # the memory layout rounds differently: a resume keeps the checkpoint's
    error = refused(_cfg(tmp_path, channels_last=False), _state("1", 1, 3, channels_last=True))
    assert error.differences == [("channels_last", True, False)]
    # an older checkpoint without a field: that field is not compared
    old = _state("1", 1, 3)
    del old["train_config"]["seed"]
    assert resolve_start(_cfg(tmp_path, seed=3), old).kind is Start.RESUME
    # a fresh start into a folder holding an earlier run's latest.pth: refused, unless overwrite
    folder = tmp_path / "w" / "phase1"
    folder.mkdir(parents=True)
    (folder / "epochs.csv").write_text("phase,epoch\n1,0\n")
    assert resolve_start(_cfg(tmp_path), None).kind is Start.FRESH  # remains of a first epoch
    (folder / "latest.pth").write_bytes(b"")
    error = refused(_cfg(tmp_path), None)
    assert isinstance(error, OutputsExist) and error.latest == folder / "latest.pth"
    assert resolve_start(_cfg(tmp_path), None, overwrite=True).kind is Start.FRESH
    # FINISH with nothing left to finish: the phase is complete
    (folder / "phase1_epoch_2.pth").write_bytes(b"")
    (folder / "epochs.csv").write_text("phase,epoch\n1,0\n1,1\n1,2\n")
    error = refused(_cfg(tmp_path, epochs=2), None)  # a fresh run meets the complete phase
    assert isinstance(error, OutputsExist) and error.complete == folder / "phase1_epoch_2.pth"
    assert "start the next phase from" in str(error)
    error = refused(_cfg(tmp_path), _state("1", 2, 2, str(folder / "latest.pth")))
    assert isinstance(error, CheckpointError) and "already complete" in str(error)


def test_train_all_with_a_later_phase_checkpoint_starts_the_chain_there(tmp_path: Path) -> None:
    """What the Ctrl-C line offers under ``--all``: ``--resume_net <phase2a/latest.pth>``."""
    from ffcore.chain.phases import _chain_start
    from ffcore.models import build_model
    from ffcore.training.checkpoint import save_checkpoint

    chain, notes = ("1", "2a", "2b", "3"), []
    latest = save_checkpoint(
        tmp_path / "latest.pth", model=build_model("eca_cbam"), phase="2a", epoch=1, epochs=2
    )
    assert _chain_start(_cfg(tmp_path, resume_net=str(latest)), chain, notes.append) == 1
    assert notes == [
        f"{latest} is a phase 2a checkpoint after epoch 1/2: the chain resumes phase 2a; "
        "phase 1 not trained"
    ]
    assert _chain_start(_cfg(tmp_path), chain, notes.append) == 0 and len(notes) == 1
    # a complete one from another folder: phase 2a is done, the chain starts at 2b from it
    final = save_checkpoint(
        tmp_path / "final.pth", model=build_model("eca_cbam"), phase="2a", epoch=2, epochs=2
    )
    assert _chain_start(_cfg(tmp_path, resume_net=str(final)), chain, notes.append) == 2
    assert notes[-1].endswith("the chain starts at phase 2b from it; phase 1, 2a not trained")


def test_dataset_fingerprint(tmp_path: Path) -> None:
    label = tmp_path / "label.txt"
    label.write_text("# a.jpg\n1 2 3 4\n# b.jpg\n")
    first = dataset_fingerprint(label)
    assert first["images"] == 2 and dataset_fingerprint(tmp_path) == first
    label.write_text("# a.jpg\n1 2 3 5\n# b.jpg\n")
    assert dataset_fingerprint(label) != first and dataset_fingerprint(None) is None


# -- end to end -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("rerun") / "widerface", 4, 1, 128, seed=2)


def _config(label: Path, save: Path, phase: str = "1", **kw) -> TrainConfig:
    """What ``train ... SMALL --epochs 2 --device cpu --no-progress`` asks for."""
    base = dict(
        phase=phase, training_dataset=str(label), epochs=2, batch_size=4, image_size=96,
        num_workers=0, device="cpu", save_folder=str(save), progress=False,
    )  # fmt: skip
    return TrainConfig(**{**base, **kw})


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ffcore", "train", *args, "--device", "cpu", "--no-progress"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=900,
    )


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_train_all_rerun_after_a_kill_in_phase2a_continues(data: Path, tmp_path: Path) -> None:
    """Defect 1: the re-run of the same ``train --all`` keeps phase 1 and resumes phase 2a."""
    label = data / "train" / "label.txt"
    save = tmp_path / "w"
    phase1 = fit_phase(_config(label, save))
    # the kill: phase 2a after its first epoch of two
    fit_phase(_config(label, save, "2a", resume_net=str(phase1.checkpoint)), stop_after_epoch=1)
    before = _snapshot(save / "phase1")
    run = _cli("--all", "--training_dataset", str(label), "--save_folder", str(save),
               "--epochs", "2", *SMALL)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert f"phase 1: already complete ({phase1.checkpoint})" in run.stdout
    assert f"phase 2a: continuing {save / 'phase2a' / 'latest.pth'} (after epoch 1/2)" in run.stdout
    after = _snapshot(save / "phase1")
    changed = [k for k in before if not k.startswith("tensorboard") and before[k] != after.get(k)]
    assert not changed, changed  # history.csv, epochs.csv, both checkpoints: untouched
    epochs_2a = (save / "phase2a" / "epochs.csv").read_text().splitlines()
    assert [line.split(",")[1] for line in epochs_2a[1:]] == ["0", "1", "2"]
    assert (save / "phase3" / "phase3_epoch_2.pth").is_file()
    # once more: everything is complete, nothing is trained
    again = _cli("--all", "--training_dataset", str(label), "--save_folder", str(save),
                 "--epochs", "2", *SMALL)  # fmt: skip
    assert again.returncode == 0 and again.stdout.count("already complete") == 4, again.stdout


@pytest.mark.slow
def test_fresh_run_into_a_folder_with_an_unfinished_run_is_refused(data: Path, tmp_path: Path):
    """Defect 2: a fresh run refuses (one line offering --resume_net and --save_folder) and
    leaves history.csv, TensorBoard and latest.pth as they were; --overwrite replaces them."""
    label = data / "train" / "label.txt"
    save = tmp_path / "w"
    fit_phase(_config(label, save), stop_after_epoch=1)
    folder = save / "phase1"
    before = _snapshot(folder)
    args = ["--phase", "1", "--training_dataset", str(label), "--save_folder", str(save),
            "--epochs", "2", *SMALL]  # fmt: skip
    run = _cli(*args)
    assert run.returncode == 2
    one_error_line(run.stderr, str(folder), f"--resume_net {folder / 'latest.pth'}", "--save_folder",
               "--overwrite")  # fmt: skip
    assert _snapshot(folder) == before
    resumed = _cli(*args, "--resume_net", str(folder / "latest.pth"))
    assert resumed.returncode == 0, resumed.stderr
    history = (folder / "history.csv").read_bytes()
    assert history.startswith(before["history.csv"]) and len(history) > len(before["history.csv"])
    replaced = _cli(*args, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert (folder / "phase1_epoch_2.pth").is_file()
    assert len((folder / "epochs.csv").read_text().splitlines()) == 4  # header + epochs 0, 1, 2


@pytest.mark.slow
def test_resume_with_changed_settings_is_refused(data: Path, tmp_path: Path, capsys) -> None:
    """Defect 3: --batch-size, --seed, --image-size (and the dataset) named, nothing written."""
    label = data / "train" / "label.txt"
    save = tmp_path / "w"
    first = fit_phase(_config(label, save), stop_after_epoch=1)
    before = _snapshot(save / "phase1")
    base = ["train", "--phase", "1", "--training_dataset", str(label), "--save_folder", str(save),
            "--resume_net", str(first.latest), "--device", "cpu", "--no-progress",
            "--num-workers", "0"]  # fmt: skip
    code = main([*base, "--batch-size", "2", "--seed", "3", "--image-size", "128"])
    assert code == 2
    one_error_line(capsys.readouterr().err, str(first.latest), "--batch-size 4 (requested 2)",
               "--seed 0 (requested 3)", "--image-size 96 (requested 128)")  # fmt: skip
    changed = tmp_path / "label.txt"
    changed.write_text(label.read_text().replace("# ", "#  ", 1))
    assert main([*base, "--batch-size", "4", "--image-size", "96", "--training_dataset",
                 str(changed)]) == 2  # fmt: skip
    one_error_line(capsys.readouterr().err, "--training_dataset (its label file)")
    assert _snapshot(save / "phase1") == before


@pytest.mark.slow
def test_ctrl_c_exits_130_with_the_checkpoint_to_resume(data, tmp_path, capsys, monkeypatch):
    label = data / "train" / "label.txt"
    train = engine.train_one_epoch

    def interrupted_in_second_epoch(loop, epoch, last_good):
        if epoch == 1:
            raise KeyboardInterrupt
        return train(loop, epoch, last_good)

    monkeypatch.setattr(engine, "train_one_epoch", interrupted_in_second_epoch)
    save = tmp_path / "w"
    code = main(["train", "--phase", "1", "--training_dataset", str(label), "--save_folder",
                 str(save), "--epochs", "2", "--device", "cpu", "--no-progress", *SMALL])  # fmt: skip
    assert code == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert err.strip() == f"interrupted; resume with --resume_net {save / 'phase1' / 'latest.pth'}"
    assert not (save / "phase1" / ".lock").exists()


def test_train_and_study_flag_errors_name_the_flag(tmp_path: Path, capsys) -> None:
    assert main(["train", "--phase", "1", "--seed", "-3", "--save_folder", str(tmp_path)]) == 2
    one_error_line(capsys.readouterr().err, "--seed must be >= 0, got -3")
    assert main(["study", "--threads", "0", "--out", str(tmp_path / "s")]) == 2
    one_error_line(capsys.readouterr().err, "--threads must be >= 1, got 0")
    assert not (tmp_path / "s").exists()
    for first in ("3", "-1"):
        assert (
            main(["study", "--seeds", "3", "--first-seed", first, "--out", str(tmp_path / "s")])
            == 2
        )
        one_error_line(
            capsys.readouterr().err, f"--first-seed must be in 0..2 (--seeds 3), got {first}"
        )
    assert not (tmp_path / "s").exists()


def test_a_dataset_without_any_face_is_refused(data: Path, tmp_path: Path, capsys) -> None:
    label = tmp_path / "label.txt"
    lines = (data / "train" / "label.txt").read_text().splitlines()
    label.write_text("".join(f"{line}\n" for line in lines if line.startswith("#")))
    images = tmp_path / "images"
    images.symlink_to(data / "train" / "images")
    code = main(["train", "--phase", "1", "--training_dataset", str(label), "--save_folder",
                 str(tmp_path / "w"), "--device", "cpu", "--no-progress", "--epochs", "1",
                 *SMALL])  # fmt: skip
    assert code == 2
    one_error_line(capsys.readouterr().err, str(label), "has a face")
    assert not (tmp_path / "w" / "phase1" / "latest.pth").exists()
