"""ffcore.cpu_kernels: the portable (AVX2) kernel pin takes effect in a child process and makes
training steps bit-identical run to run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ffcore.cpu_kernels import CpuKernels, environment_applied, pinned_environment

REPO = Path(__file__).resolve().parents[1]

_REPORT = "import json; from ffcore.cpu_kernels import current_kernels; print(json.dumps(current_kernels()))"

# Three SGD steps of the detector at 96 px from seed 0; prints the sha256 of the weights.
_TRAIN = """
import hashlib, torch
from ffcore.models import build_model
torch.manual_seed(0); torch.set_num_threads(1)
model = build_model("eca_cbam", init_seed=0).train()
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
x = torch.randn(2, 3, 96, 96)
for _ in range(3):
    out = model(x)
    loss = sum(t.float().square().mean() for t in out)
    opt.zero_grad(); loss.backward(); opt.step()
h = hashlib.sha256()
for v in model.state_dict().values():
    h.update(v.detach().contiguous().numpy().tobytes())
print(h.hexdigest())
"""


def _child(code: str, setting: CpuKernels) -> str:
    base = {k: v for k, v in os.environ.items() if k not in CpuKernels().variables()}
    env = pinned_environment({**base, "PYTHONPATH": str(REPO)}, setting)
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def test_variables_and_explicit_choice_wins() -> None:
    assert CpuKernels("native").variables() == {}
    pinned = CpuKernels(threads=2).variables()
    assert pinned["ATEN_CPU_CAPABILITY"] == "avx2" and pinned["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert pinned["MKL_CBWR"] == "AVX2" and pinned["OMP_NUM_THREADS"] == "2"
    env = pinned_environment({"ATEN_CPU_CAPABILITY": "default", "X": "1"})
    assert env["ATEN_CPU_CAPABILITY"] == "default" and env["X"] == "1"
    assert env["MKL_CBWR"] == "AVX2"
    with pytest.raises(ValueError, match="level"):
        CpuKernels("avx512")
    with pytest.raises(ValueError, match="threads"):
        CpuKernels(threads=0)


def test_environment_applied_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FFCORE_TEST_KEEP", "1")
    with environment_applied({"FFCORE_TEST_NEW": "2"}):
        assert os.environ.get("FFCORE_TEST_NEW") == "2" and "FFCORE_TEST_KEEP" not in os.environ
    assert os.environ["FFCORE_TEST_KEEP"] == "1" and "FFCORE_TEST_NEW" not in os.environ


def test_pinned_child_reports_avx2() -> None:
    """AVX2 where the CPU has it (AVX2 or AVX-512); a CPU below AVX2 keeps its own level (the
    pin caps the kernels, it cannot raise them)."""
    native = json.loads(_child(_REPORT, CpuKernels("native")))
    pinned = json.loads(_child(_REPORT, CpuKernels()))
    has_avx2 = native["capability"] in ("AVX2", "AVX512")
    assert pinned["capability"] == ("AVX2" if has_avx2 else native["capability"])
    assert pinned["env"]["ONEDNN_MAX_CPU_ISA"] == "AVX2" and pinned["env"]["MKL_CBWR"] == "AVX2"
    assert native["env"]["ATEN_CPU_CAPABILITY"] is None


@pytest.mark.slow
def test_pinned_training_steps_are_bit_identical() -> None:
    first, second = _child(_TRAIN, CpuKernels()), _child(_TRAIN, CpuKernels())
    assert first == second
    native = _child(_TRAIN, CpuKernels("native"))  # informative: differs on an AVX-512 CPU
    print(f"pinned {first[:12]} native {native[:12]} ({'same' if native == first else 'differ'})")
