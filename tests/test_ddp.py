import os
import socket
import subprocess
import sys

import pandas as pd
import pytest

from ffcore.data.synthetic import generate_dataset
from ffcore.models.checkpoint import load_checkpoint
from ffcore.paths import REPO_ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_gloo_processes_train(tmp_path):
    """`torchrun --nproc_per_node 2 -m ffcore train` on CPU: DDP with gloo, sharded data."""
    label = generate_dataset(tmp_path / "data", 8, 1, 128, seed=1) / "train" / "label.txt"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_port", str(_free_port()), "-m", "ffcore", "train", "--phase", "1",
        "--training_dataset", str(label), "--epochs", "1", "--batch-size", "2",
        "--image-size", "96", "--save_folder", str(tmp_path / "w"), "--device", "cpu",
        "--num-workers", "0", "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    history = pd.read_csv(tmp_path / "w" / "phase1" / "history.csv")
    # 8 images over 2 processes = 4 each, batch 2 -> 2 steps; throughput counts both processes
    assert history.step.tolist() == [1, 2]
    state = load_checkpoint(tmp_path / "w" / "phase1" / "phase1_epoch_1.pth")
    assert state["epoch"] == 1 and not any(k.startswith("module.") for k in state["model"])
    assert run.stdout.count("phase 1 (none): 1/1 epochs") == 1  # only rank 0 reports
