"""Bad input, end to end through the CLI: exit code 2 (check-data: 1, its report), one line
``error: ...`` naming the file, no traceback, and nothing half-written."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from errorline import one_error_line

from ffcore.cli import EXIT_BROKEN_PIPE, main
from ffcore.data.synthetic import generate_dataset
from ffcore.models import build_model
from ffcore.training.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--epochs", "1", "--batch-size", "4", "--image-size", "96", "--num-workers", "0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("cli") / "widerface", 4, 2, 128, seed=1)


@pytest.fixture()
def copy(data: Path, tmp_path: Path) -> Path:
    """A private copy of the dataset to damage."""
    return Path(shutil.copytree(data, tmp_path / "widerface"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ck") / "phase3.pth"
    return save_checkpoint(path, model=build_model("eca_cbam"), phase="3", epoch=1, epochs=1)


def _error(capsys: pytest.CaptureFixture[str], *names: str) -> str:
    """The one error line; asserts it names every ``names``."""
    return one_error_line(capsys.readouterr().err, *names)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def _first_image(label: Path) -> tuple[Path, int]:
    for n, line in enumerate(label.read_text().splitlines(), start=1):
        if line.startswith("#"):
            return label.parent / "images" / line[1:].strip(), n
    raise AssertionError("no image")


def _train(label: Path | str, save: Path, *extra: str) -> int:
    args = ["train", "--phase", "1", "--training_dataset", str(label), "--save_folder", str(save)]
    return main([*args, "--device", "cpu", "--no-progress", *SMALL, *extra])


# -- devices (defects 3, 4) -------------------------------------------------------------------
def test_train_with_a_bad_device_name(tmp_path: Path, capsys) -> None:
    assert _train(tmp_path / "none.txt", tmp_path / "w", "--device", "foo") == 2
    _error(capsys, "'foo'", "not a device name")
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("command", ["detect", "evaluate"])
def test_unavailable_gpu_is_not_a_bad_checkpoint(
    command: str, checkpoint: Path, data: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    where = [str(data / "val")] if command == "detect" else ["--data-root", str(data)]
    out = tmp_path / "pred"
    code = main([command, "--checkpoint", str(checkpoint), *where, "--device", "cuda"]
                + (["--out", str(out)] if command == "evaluate" else []))  # fmt: skip
    assert code == 2
    line = _error(capsys, "'cuda'", "CUDA is not available")
    assert "checkpoint" not in line and not out.exists()


# -- detect --out (defects 4, 8) ----------------------------------------------------------------
def test_detect_out_with_an_unknown_extension(checkpoint: Path, data: Path, tmp_path, capsys):
    image, _ = _first_image(data / "train" / "label.txt")
    out = tmp_path / "x.xyz"
    assert main(["detect", "--checkpoint", str(checkpoint), str(image), "--out", str(out)]) == 2
    _error(capsys, str(out), "no image writer for '.xyz'")
    assert not out.exists()


def test_detect_out_into_a_missing_folder(checkpoint: Path, data: Path, tmp_path, capsys):
    image, _ = _first_image(data / "train" / "label.txt")
    out = tmp_path / "missing" / "a.png"
    assert main(["detect", "--checkpoint", str(checkpoint), str(image), "--out", str(out)]) == 2
    line = _error(capsys, str(tmp_path / "missing"), "does not exist")
    assert "extension" not in line


def test_detect_into_a_closed_pipe_exits_quietly(data: Path) -> None:
    label = data / "train" / "label.txt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ffcore", "check-data", "--training_dataset", str(label)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    proc.stdout.close()  # `... | head` that already left
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == EXIT_BROKEN_PIPE
    assert "Traceback" not in err and "BrokenPipe" not in err, err


# -- checkpoints (defect 8) -----------------------------------------------------------------------
def test_a_pickled_module_is_refused_without_unsafe_advice(data: Path, tmp_path, capsys) -> None:
    path = tmp_path / "model.pth"
    torch.save(torch.nn.Linear(2, 2), path)
    image, _ = _first_image(data / "train" / "label.txt")
    assert main(["detect", "--checkpoint", str(path), str(image)]) == 2
    line = _error(capsys, str(path), "pickled Python objects")
    assert "weights_only" not in line


# -- training data (defects 2, 8, 9) ------------------------------------------------------------
def test_check_data_and_train_refuse_a_truncated_jpeg(copy: Path, tmp_path, capsys) -> None:
    label = copy / "train" / "label.txt"
    image, line = _first_image(label)
    _truncate(image)
    assert main(["check-data", "--training_dataset", str(label)]) == 1
    assert f"{label}:{line}: image is truncated" in capsys.readouterr().err
    assert _train(label, tmp_path / "w") == 2
    _error(capsys, f"{label}:{line}", "truncated", str(image))
    assert not (tmp_path / "w").exists()  # nothing half-written: not even the phase folder


def test_train_accepts_the_folder_of_label_txt_and_names_a_folder_without(
    copy: Path, tmp_path, capsys
) -> None:
    from ffcore.data.widerface import resolve_label_file

    assert resolve_label_file(copy / "train") == (copy / "train" / "label.txt").absolute()
    assert _train(copy, tmp_path / "w") == 2  # the root holds train/, not label.txt
    line = _error(capsys, str(copy), "folder without label.txt")
    assert "label file not found" not in line


def test_negative_sizes_are_errors_and_outside_boxes_warnings(copy: Path, tmp_path, capsys):
    label = copy / "train" / "label.txt"
    lines = label.read_text().splitlines()
    faces = [n for n, text in enumerate(lines) if not text.startswith("#")]
    neg, out = faces[0], faces[1]
    numbers = lines[neg].split()
    numbers[2] = "-5"
    lines[neg] = " ".join(numbers)
    numbers = lines[out].split()
    numbers[0], numbers[1] = "5000", "5000"
    lines[out] = " ".join(numbers)
    label.write_text("\n".join(lines) + "\n")
    assert main(["check-data", "--training_dataset", str(label)]) == 1
    captured = capsys.readouterr()
    assert f"{label}:{neg + 1}: box has a negative width or height (w=-5" in captured.err
    assert f"{label}:{out + 1}: box 5000, 5000" in captured.out  # a warning, with the line
    assert _train(label, tmp_path / "w") == 2
    _error(capsys, f"{label}:{neg + 1}", "negative width")
    # without the negative box, the outside box is only a warning naming its line
    lines[neg] = lines[neg].replace("-5", "5", 1)
    label.write_text("\n".join(lines) + "\n")
    from ffcore.data.widerface import validate_dataset

    report = validate_dataset(label)
    assert report.ok and report.warnings == tuple(
        w for w in report.warnings if w.startswith(f"{label}:{out + 1}: box")
    )
    assert len(report.warnings) == 1


# -- starting checkpoints (defect 10) -------------------------------------------------------------
def test_explicit_variant_must_match_the_checkpoint(data: Path, tmp_path: Path, capsys) -> None:
    ck = save_checkpoint(
        tmp_path / "p1.pth", model=build_model("cbam"), phase="1", epoch=1, epochs=1
    )
    label = data / "train" / "label.txt"
    args = ["train", "--phase", "2a", "--training_dataset", str(label), "--resume_net", str(ck)]
    code = main([*args, "--variant", "eca_cbam", "--save_folder", str(tmp_path / "w"), *SMALL])
    assert code == 2
    _error(capsys, str(ck), "holds variant 'cbam'")
    assert not (tmp_path / "w").exists()


# -- concurrent runs (defect 1) -----------------------------------------------------------------
def test_second_run_on_a_phase_folder_is_refused(data: Path, tmp_path: Path, capsys) -> None:
    import json
    import socket

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        folder = tmp_path / "w" / "phase1"
        folder.mkdir(parents=True)
        lock = {"pid": sleeper.pid, "host": socket.gethostname(), "started": 0}
        (folder / ".lock").write_text(json.dumps(lock))
        assert _train(data / "train" / "label.txt", tmp_path / "w") == 2
        _error(capsys, f"process {sleeper.pid}", str(folder))
        assert sorted(p.name for p in folder.iterdir()) == [".lock"]  # untouched
    finally:
        sleeper.kill()
        sleeper.wait()


# -- evaluate (defects 2, 7) ------------------------------------------------------------------------
def test_evaluate_checks_before_predicting(copy: Path, checkpoint: Path, tmp_path, capsys) -> None:
    out = tmp_path / "pred"
    val = sorted((copy / "val" / "images").glob("*/*.jpg"))
    _truncate(val[-1])
    args = ["evaluate", "--checkpoint", str(checkpoint), "--data-root", str(copy)]
    assert main([*args, "--out", str(out)]) == 2
    _error(capsys, str(val[-1]), "truncated")
    assert not out.exists() and not list(tmp_path.glob(".pred*"))
    shutil.rmtree(copy / "ground_truth")
    assert main([*args, "--out", str(out)]) == 2
    _error(capsys, str(copy / "ground_truth"))
    assert not out.exists()
