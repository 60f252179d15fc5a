"""The kernel pin is checked and recorded, not assumed: an invalid pin variable is an error
before any work, each training process records the level torch and oneDNN report inside it, and
results of different levels are not put side by side unless allowed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from errorline import one_error_line

from ffcore.cli import EXIT_USER_ERROR, main
from ffcore.cpu_kernels import (
    PIN_VARIABLES,
    CpuKernels,
    InvalidKernelSetting,
    MixedKernels,
    check_environment,
    check_same_kernels,
    pinned_environment,
)

REPO = Path(__file__).resolve().parents[1]
X86 = "x86_64"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PIN_VARIABLES}
    return {**env, "PYTHONPATH": str(REPO), **extra}


# -- the check ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("ATEN_CPU_CAPABILITY", "garbage", "default, avx2, avx512"),
        ("ATEN_CPU_CAPABILITY", "AVX2", "default, avx2, avx512"),  # torch compares exactly
        ("ATEN_CPU_CAPABILITY", "", "default, avx2, avx512"),
        ("ONEDNN_MAX_CPU_ISA", "AVX3", "AVX512_CORE"),
        ("DNNL_MAX_CPU_ISA", "garbage", "SSE41"),
        ("MKL_CBWR", "AVX2,LOOSE", "COMPATIBLE"),
        ("MKL_ENABLE_INSTRUCTIONS", "AVX1024", "AVX512_E1"),
    ],
)
def test_invalid_pin_values_are_refused_naming_the_variable(name, value, allowed) -> None:
    with pytest.raises(InvalidKernelSetting) as caught:
        check_environment({name: value}, machine=X86)
    message = str(caught.value)
    assert message.startswith(f"{name}={value!r}") and allowed in message
    assert "\n" not in message


def test_values_the_libraries_accept_pass() -> None:
    # as each library reads them: ATen exact lower case; oneDNN (tested: ONEDNN_VERBOSE shows
    # "isa:Intel SSE4.1" for sse41) and MKL ignore case; MKL_CBWR may add ",STRICT"
    check_environment(
        {
            "ATEN_CPU_CAPABILITY": "avx2",
            "ONEDNN_MAX_CPU_ISA": "sse41",
            "DNNL_MAX_CPU_ISA": "AVX512_CORE_AMX",
            "MKL_CBWR": "avx2,strict",
            "MKL_ENABLE_INSTRUCTIONS": "AVX2",
            "UNRELATED": "garbage",
        },
        machine=X86,
    )
    check_environment({}, machine=X86)
    check_environment({"ATEN_CPU_CAPABILITY": "sve256"}, machine="aarch64")
    with pytest.raises(InvalidKernelSetting, match="default, sve128, sve256"):
        check_environment({"ATEN_CPU_CAPABILITY": "avx2"}, machine="aarch64")
    assert pinned_environment({})["ATEN_CPU_CAPABILITY"] == "avx2"  # the pin itself is valid
    with pytest.raises(InvalidKernelSetting, match="MKL_CBWR"):
        pinned_environment({"MKL_CBWR": "fast"}, CpuKernels("native"))  # inherited, kept


@pytest.mark.parametrize(
    ("command", "variable"),
    [("study", "ATEN_CPU_CAPABILITY"), ("reproduce", "ONEDNN_MAX_CPU_ISA")],
)
def test_study_and_reproduce_refuse_a_garbage_pin_before_any_work(
    tmp_path: Path, command: str, variable: str
) -> None:
    out = tmp_path / "out"
    args = [
        sys.executable,
        "-m",
        "ffcore",
        command,
        "--out",
        str(out),
        "--data-root",
        str(tmp_path),
    ]
    if command == "study":
        args += ["--configurations", "none", "--seeds", "1"]
    proc = subprocess.run(
        args, env=_clean_env(**{variable: "garbage"}), cwd=tmp_path, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == EXIT_USER_ERROR, proc.stderr
    one_error_line(proc.stderr, f"{variable}='garbage'", "allowed")
    assert not out.exists()  # refused before anything was written


def test_train_refuses_a_garbage_pin(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MKL_CBWR", "garbage")
    label = tmp_path / "label.txt"
    code = main(
        [
            "train",
            "--phase",
            "1",
            "--training_dataset",
            str(label),
            "--save_folder",
            str(tmp_path / "w"),
        ]
    )
    assert code == EXIT_USER_ERROR
    one_error_line(capsys.readouterr().err, "MKL_CBWR='garbage'", "AVX2")
    assert not (tmp_path / "w").exists()


# -- what a process runs with ------------------------------------------------------------------
_RECORD = (
    "import json; from ffcore.cpu_kernels import kernel_record; print(json.dumps(kernel_record()))"
)


def _record(env: dict[str, str]) -> dict[str, str | None]:
    proc = subprocess.run(
        [sys.executable, "-c", _RECORD], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_child_pinned_to_avx2_reports_avx2() -> None:
    """The capability and oneDNN's ISA are read inside the child; a CPU below AVX2 keeps its own
    level (the pin caps the kernels, it cannot raise them)."""
    native = _record(_clean_env())
    pinned = _record(pinned_environment(_clean_env()))
    has_avx2 = native["cpu_capability"] in ("AVX2", "AVX512")
    assert pinned["cpu_capability"] == ("AVX2" if has_avx2 else native["cpu_capability"])
    if has_avx2 and native["onednn_isa"] is not None:
        assert pinned["onednn_isa"] == "Intel AVX2"
    lowered = _record(_clean_env(ATEN_CPU_CAPABILITY="default", ONEDNN_MAX_CPU_ISA="SSE41"))
    assert lowered["cpu_capability"] == "DEFAULT"
    assert lowered["onednn_isa"] in (None, "Intel SSE4.1")


_TRAIN = """
import json, sys
from pathlib import Path
from ffcore.config import TrainConfig
from ffcore.data.synthetic import generate_dataset
from ffcore.report.provenance import checkpoint_kernels
from ffcore.training.engine import completed_phase, fit_phase
from ffcore.training.handover import write_result
from ffcore.models.checkpoint import load_checkpoint
tmp = Path(sys.argv[1])
root = generate_dataset(tmp / "data", 2, 1, 96, seed=0)
config = TrainConfig(phase="1", training_dataset=str(root / "train" / "label.txt"), epochs=1,
                     batch_size=2, image_size=96, num_workers=0, device="cpu",
                     save_folder=str(tmp / "w"), progress=False, probe_images=0, seed=0)
result = fit_phase(config)
again = completed_phase(config)
handed = json.loads(write_result(tmp / "run", result).read_text())
print(json.dumps({
    "result": [result.cpu_capability, result.onednn_isa],
    "completed": [again.cpu_capability, again.onednn_isa],
    "checkpoint": load_checkpoint(result.checkpoint)["cpu_kernels"],
    "handover": [handed["cpu_capability"], handed["onednn_isa"]],
    "provenance": list(checkpoint_kernels([result.checkpoint]).values()),
}))
"""


def test_fit_phase_carries_the_record_of_its_process(tmp_path: Path, monkeypatch) -> None:
    """The record read in the training process (``kernel_record``, replaced here by a marker)
    reaches the checkpoint, the FitResult (also read back for a complete phase), result.json
    and the provenance of the checkpoint."""
    from ffcore.config import TrainConfig
    from ffcore.data.synthetic import generate_dataset
    from ffcore.models.checkpoint import load_checkpoint
    from ffcore.report.provenance import checkpoint_kernels
    from ffcore.training import engine
    from ffcore.training.handover import write_result

    marker = {"cpu_capability": "MARKER", "onednn_isa": "Intel MARKER"}
    monkeypatch.setattr(engine, "kernel_record", lambda: dict(marker))
    root = generate_dataset(tmp_path / "data", 2, 1, 96, seed=0)
    config = TrainConfig(
        phase="1", training_dataset=str(root / "train" / "label.txt"), epochs=1, batch_size=2,
        image_size=96, num_workers=0, device="cpu", save_folder=str(tmp_path / "w"),
        progress=False, probe_images=0, seed=0,
    )  # fmt: skip
    result = engine.fit_phase(config)
    assert (result.cpu_capability, result.onednn_isa) == ("MARKER", "Intel MARKER")
    assert load_checkpoint(result.checkpoint)["cpu_kernels"] == marker
    again = engine.completed_phase(config)
    assert (again.cpu_capability, again.onednn_isa) == ("MARKER", "Intel MARKER")
    handed = json.loads(write_result(tmp_path / "run", result).read_text())
    assert (handed["cpu_capability"], handed["onednn_isa"]) == ("MARKER", "Intel MARKER")
    assert list(checkpoint_kernels([result.checkpoint]).values()) == [marker]


@pytest.mark.slow
def test_training_records_the_level_its_process_ran_with(tmp_path: Path) -> None:
    """A level below the CPU's own (ATen DEFAULT, oneDNN SSE4.1), so a record assumed from the
    CPU or from the pin would differ: the checkpoint, the FitResult (also when read back for a
    complete phase), result.json and the provenance carry what the training process reported."""
    env = _clean_env(ATEN_CPU_CAPABILITY="default", ONEDNN_MAX_CPU_ISA="SSE41")
    proc = subprocess.run(
        [sys.executable, "-c", _TRAIN, str(tmp_path)], env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    capability, isa = got["result"]
    assert capability == "DEFAULT" and isa in (None, "Intel SSE4.1")
    assert got["completed"] == got["handover"] == [capability, isa]
    assert got["checkpoint"] == {"cpu_capability": capability, "onednn_isa": isa}
    assert got["provenance"] == [got["checkpoint"]]


# -- mixing ----------------------------------------------------------------------------------------
def test_check_same_kernels() -> None:
    assert check_same_kernels({"a": "AVX2", "b": "AVX2"}) == "AVX2"
    assert check_same_kernels({"a": None, "b": None}) is None  # older results: nothing to compare
    with pytest.raises(MixedKernels, match=r"AVX2: a, c; AVX512: b") as caught:
        check_same_kernels({"a": "AVX2", "b": "AVX512", "c": "AVX2"})
    assert "\n" not in str(caught.value)
    with pytest.raises(MixedKernels, match=r"AVX2: a; unrecorded: b"):
        check_same_kernels({"a": "AVX2", "b": None})
    assert check_same_kernels({"a": "AVX2", "b": "AVX512"}, allow_mixed=True) is None


def _cell(out: Path, configuration: str, seed: int, capability: str | None) -> Path:
    folder = out / f"{configuration}_s{seed}"
    folder.mkdir(parents=True)
    result = {
        "configuration": configuration, "seed": seed, "profile": "ci",
        "ap": {"easy": 0.9, "medium": 0.8, "hard": 0.5}, "cpu_capability": capability,
    }  # fmt: skip
    path = folder / "result.json"
    path.write_text(json.dumps(result))
    return path


def test_study_results_of_different_levels_are_refused(tmp_path: Path) -> None:
    from ffcore.report.study_frame import load_results, write_per_seed

    first = _cell(tmp_path, "none", 0, "AVX2")
    second = _cell(tmp_path, "none", 1, "AVX512")
    with pytest.raises(MixedKernels, match=rf"AVX2: {first}; AVX512: {second}"):
        load_results(tmp_path)
    frame = load_results(tmp_path, allow_mixed_kernels=True)
    assert len(frame) == 6
    frame["cpu_capability"] = ["AVX2"] * 3 + ["AVX512"] * 3  # the column the cells will carry
    with pytest.raises(MixedKernels, match="AVX2: ci none seed 0; AVX512: ci none seed 1"):
        write_per_seed(frame, tmp_path / "figs")
    assert not (tmp_path / "figs" / "ablation_per_seed.csv").exists()
    written = write_per_seed(frame, tmp_path / "figs", allow_mixed_kernels=True)
    assert len(pd.read_csv(written)) == 6


@pytest.mark.notebook
def test_reproduce_refuses_phase_results_of_different_levels(tmp_path: Path) -> None:
    from ffcore.reproduce import reproduce
    from ffcore.training.handover import result_path

    run = tmp_path / "run"
    for pid, level in (("1", "AVX2"), ("2a", "AVX512")):
        path = result_path(run, pid)
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"phase": pid, "checkpoint": "x.pth", "cpu_capability": level}))
    kw = dict(data_root=tmp_path, notebooks=(), notebooks_dir=tmp_path, figures_dir=tmp_path / "f")
    with pytest.raises(MixedKernels, match=r"AVX2: .*02_phase1/result\.json; AVX512: .*phase2a"):
        reproduce("smoke", run, **kw)
    assert reproduce("smoke", run, allow_mixed_kernels=True, **kw).executed == []
