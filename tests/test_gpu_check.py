"""benchmarks/gpu_check.py: argument handling, a clean exit without CUDA, and every step on CPU
at a tiny size (the script is meant for a GPU; no GPU is available to the test suite)."""

from __future__ import annotations

import pytest
import torch

from benchmarks import gpu_check


def test_arguments_are_checked() -> None:
    args = gpu_check.parse_args([])
    assert (args.device, args.image_size, args.batch_size) == ("cuda", 640, 32)
    for bad in (["--image-size", "100"], ["--steps", "1"], ["--device", "tpu"]):
        with pytest.raises(SystemExit):
            gpu_check.parse_args(bad)


def test_without_cuda_it_says_so_and_measures_nothing(monkeypatch, capsys) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    called = []
    monkeypatch.setattr(gpu_check, "train_steps", lambda *a: called.append(1))
    assert gpu_check.main([]) == gpu_check.EXIT_NO_CUDA
    assert "CUDA is not available" in capsys.readouterr().err and not called


@pytest.mark.slow
def test_every_step_runs_on_cpu(capsys) -> None:
    argv = ["--device", "cpu", "--image-size", "96", "--batch-size", "2", "--steps", "2"]
    assert gpu_check.main([*argv, "--rounds", "2", "--skip-onnx"]) == 0
    out = capsys.readouterr().out
    for pid in ("1", "2a", "2b", "3"):
        assert f"train phase {pid:>2}: " in out
    assert (
        "NOT FINITE" not in out and out.count("eval batch") == 2
    )  # fp32 at batch 1 and 2; fp16 on CUDA only
