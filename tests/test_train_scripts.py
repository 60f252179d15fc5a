"""The seed's commands verbatim: train/train_phase{1,2a,2b,3}.py chained from a working folder
holding ./data/widerface (their default dataset), writing ./weights/phaseX/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ffcore.data.synthetic import generate_dataset

REPO = Path(__file__).resolve().parents[1]
SIZE = ["--epochs", "1", "--batch-size", "4", "--image-size", "96", "--num-workers", "0"]


@pytest.mark.slow
def test_the_four_phase_scripts_chain(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "data" / "widerface", 8, 2, 128, seed=0)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the scripts find ffcore
    steps = [
        ("1", ["--training_dataset", "./data/widerface/train/label.txt"]),
        ("2a", ["--resume_net", "./weights/phase1/phase1_epoch_1.pth"]),
        ("2b", ["--resume_net", "./weights/phase2a/phase2a_epoch_1.pth"]),
        ("3", ["--resume_net", "./weights/phase2b/phase2b_epoch_1.pth"]),
    ]
    for phase, args in steps:
        script = REPO / "train" / f"train_phase{phase}.py"
        run = subprocess.run(
            [sys.executable, str(script), *args, *SIZE, "--no-progress", "--device", "cpu"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, run.stderr[-2000:]
        assert f"phase {phase} " in run.stdout
        assert (tmp_path / "weights" / f"phase{phase}" / f"phase{phase}_epoch_1.pth").is_file()
    # the scripts are the library's command: the phase is fixed, --all is refused
    run = subprocess.run(
        [sys.executable, str(REPO / "train" / "train_phase1.py"), "--all"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2 and "not allowed with argument" in run.stderr
