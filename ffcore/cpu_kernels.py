"""Pin PyTorch's CPU kernels to a portable instruction set, so a run gives the same numbers on
every x86-64 machine (spec layer: no torch import at module level).

PyTorch picks its vectorised kernels (ATen), oneDNN (convolutions) and MKL (GEMM) by the CPU's
widest instruction set; AVX-512 and AVX2 kernels round differently, so one epoch of phase 1 on
an AVX-512 machine differs from the same epoch on an AVX2 one. The variables below must be in
the environment before torch is imported, so they are set for child processes: the papermill
kernels of ``ffcore.reproduce`` and the cell processes of ``ffcore.study``.

    ATEN_CPU_CAPABILITY=avx2   ATen's dispatch (torch.backends.cpu.get_cpu_capability())
    ONEDNN_MAX_CPU_ISA=AVX2    oneDNN (ONEDNN_VERBOSE=1 prints "isa:Intel AVX2")
    DNNL_MAX_CPU_ISA=AVX2      the same, oneDNN's older name
    MKL_CBWR=AVX2              MKL's conditional numerical reproducibility (MKL_VERBOSE shows CNR)

The libraries ignore a value they do not know (torch warns deep in a log, oneDNN and MKL stay
silent) and run their native kernels, so ``check_environment`` refuses such a value before any
work starts (``pinned_environment`` calls it). What a process actually runs with is read inside
it (``active_capability``, ``onednn_isa``, ``kernel_record``: these import torch) and recorded in
its results; ``check_same_kernels`` refuses to put results of different levels side by side.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

LEVELS = ("portable", "native")

_ONEDNN_ISAS = (
    "ALL", "DEFAULT", "SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
    "AVX512_CORE_VNNI", "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16",
    "AVX10_1_512_AMX", "AVX512_CORE_AMX", "AVX10_1_512_AMX_FP16", "AVX512_CORE_AMX_FP16",
    "AVX10_2_512", "AVX10_2_512_AMX_2",
)  # fmt: skip
_MKL_BRANCHES = (
    "AUTO", "COMPATIBLE", "SSE2", "SSSE3", "SSE4_1", "SSE4_2", "AVX", "AVX2", "AVX512",
    "AVX512_E1", "AVX512_MIC", "AVX512_MIC_E1",
)  # fmt: skip
_MKL_INSTRUCTIONS = (
    "SSE4_2", "AVX", "AVX2", "AVX2_E1", "AVX512", "AVX512_E1", "AVX512_E2", "AVX512_E3",
    "AVX512_E4", "AVX512_E5", "AVX512_MIC", "AVX512_MIC_E1",
)  # fmt: skip


def _aten_levels(machine: str) -> tuple[str, ...]:
    """The values of ATEN_CPU_CAPABILITY torch's dispatcher knows on this architecture
    (``aten/src/ATen/native/DispatchStub.cpp``; compared case-sensitively)."""
    machine = machine.lower()
    if machine in ("x86_64", "amd64", "i386", "i686", "x86"):
        return ("default", "avx2", "avx512")
    if machine in ("aarch64", "arm64"):
        return ("default", "sve128", "sve256")
    if machine == "s390x":
        return ("default", "zvector")
    if machine.startswith("ppc64"):
        return ("default", "vsx")
    return ("default",)


def allowed_values(machine: str | None = None) -> dict[str, tuple[str, ...]]:
    """Each pin variable and the values its library accepts (ATen's exactly as written; oneDNN
    and MKL ignore case, and MKL_CBWR may end in ``,STRICT``)."""
    return {
        "ATEN_CPU_CAPABILITY": _aten_levels(machine or platform.machine()),
        "ONEDNN_MAX_CPU_ISA": _ONEDNN_ISAS,
        "DNNL_MAX_CPU_ISA": _ONEDNN_ISAS,
        "MKL_CBWR": _MKL_BRANCHES,
        "MKL_ENABLE_INSTRUCTIONS": _MKL_INSTRUCTIONS,
    }


PIN_VARIABLES = tuple(allowed_values("x86_64"))


class InvalidKernelSetting(ValueError):
    """A pin variable holds a value its library would ignore; the message names the variable
    and the values it accepts."""


def _valid(name: str, value: str, allowed: tuple[str, ...]) -> bool:
    if name == "ATEN_CPU_CAPABILITY":
        return value in allowed
    text = value.strip().upper()
    if name == "MKL_CBWR" and text.endswith(",STRICT"):
        text = text.removesuffix(",STRICT").strip()
    return text in allowed


def check_environment(env: Mapping[str, str], machine: str | None = None) -> None:
    """Refuse a value of a pin variable (``PIN_VARIABLES``) in ``env`` that its library would
    ignore -- torch, oneDNN and MKL then run their native kernels while the run believes it is
    pinned. An unset variable is fine (the library's own choice)."""
    allowed = allowed_values(machine)
    for name, values in allowed.items():
        value = env.get(name)
        if value is None or _valid(name, value, values):
            continue
        case = "" if name == "ATEN_CPU_CAPABILITY" else " (any case)"
        raise InvalidKernelSetting(
            f"{name}={value!r} in the environment is not a value its library accepts, which "
            f"would silently run the native kernels; allowed{case}: {', '.join(values)} "
            "(or leave it unset)"
        )


@dataclass(frozen=True)
class CpuKernels:
    """``level``: ``portable`` pins AVX2 kernels (the default), ``native`` leaves the CPU's own.
    ``threads``: intra-op threads of the child processes (None: leave as is)."""

    level: str = "portable"
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {self.level!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")

    def variables(self) -> dict[str, str]:
        """The environment variables this setting sets."""
        env: dict[str, str] = {}
        if self.level == "portable":
            env |= {
                "ATEN_CPU_CAPABILITY": "avx2",
                "ONEDNN_MAX_CPU_ISA": "AVX2",
                "DNNL_MAX_CPU_ISA": "AVX2",
                "MKL_CBWR": "AVX2",
            }
        if self.threads is not None:
            env |= {"OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        return env


PORTABLE = CpuKernels()  # the default of reproduce and the study


def pinned_environment(
    base: Mapping[str, str], setting: CpuKernels | None = None
) -> dict[str, str]:
    """``base`` (e.g. ``os.environ``) with ``setting``'s variables; a variable ``base`` already
    sets is kept (an explicit choice of the caller wins). An invalid value of a pin variable is
    an ``InvalidKernelSetting`` (``check_environment``)."""
    env = {**(setting or PORTABLE).variables(), **base}
    check_environment(env)
    return env


@contextlib.contextmanager
def environment_applied(env: Mapping[str, str]) -> Iterator[None]:
    """Make ``os.environ`` equal ``env`` inside the block (child processes inherit it), then
    restore it."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def current_kernels() -> dict[str, object]:
    """What is in force in this process: the variables and torch's own report (imports torch)."""
    import torch

    names = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_CBWR")
    return {
        "env": {n: os.environ.get(n) for n in names},
        "capability": torch.backends.cpu.get_cpu_capability(),
        "mkl": torch.backends.mkl.is_available(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "threads": torch.get_num_threads(),
    }


# -- what a process runs with (these import torch) ----------------------------------------------
def active_capability() -> str:
    """The ATen kernel level this process dispatches to, as torch reports it (``"AVX2"``,
    ``"AVX512"``, ``"DEFAULT"``): read where the work runs, never assumed from a variable."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


@functools.lru_cache(maxsize=1)  # fixed for the life of a process
def onednn_isa() -> str | None:
    """The instruction set oneDNN uses in this process (``"Intel AVX2"``), or None when oneDNN
    is absent or does not say. torch has no query for it: a small convolution runs with oneDNN's
    verbose mode on, with the process's stdout (file descriptor 1) sent to a temporary file for
    those milliseconds, and the ``isa:`` line (printed once per process) or, when something else
    printed it before, the convolution's implementation name (``jit:avx2``) is read back."""
    import ctypes
    import sys
    import tempfile

    import torch

    if not torch.backends.mkldnn.is_available():
        return None
    libc = ctypes.CDLL(None)
    with tempfile.TemporaryFile() as capture:
        sys.stdout.flush()
        libc.fflush(None)
        saved = os.dup(1)
        try:
            os.dup2(capture.fileno(), 1)
            x = torch.zeros(8, 16, 32, 32)
            with torch.no_grad(), torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                torch.nn.functional.conv2d(x, torch.zeros(16, 16, 3, 3))
            libc.fflush(None)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode(errors="replace")
    found = re.search(r"info,cpu,isa:([^\n]+)", text)
    if found:
        return found.group(1).strip()
    impl = re.search(r"exec,cpu,convolution,[^,:]*:([a-z0-9_]+)", text)
    return f"{impl.group(1).upper()} (from the convolution kernel)" if impl else None


def kernel_record() -> dict[str, str | None]:
    """``{"cpu_capability": ..., "onednn_isa": ...}`` of this process (``active_capability``,
    ``onednn_isa``): what a result records about the kernels it ran with. MKL's branch cannot be
    read back from torch (its query is not exported); ``MKL_CBWR`` in the environment is
    recorded by the provenance instead."""
    return {"cpu_capability": active_capability(), "onednn_isa": onednn_isa()}


# -- comparing results -----------------------------------------------------------------------
UNRECORDED = "unrecorded"


class MixedKernels(ValueError):
    """Results computed with different kernel levels were put side by side; the message names
    each level and the results that ran with it."""


def check_same_kernels(
    records: Mapping[str, str | None], allow_mixed: bool = False, what: str = "results"
) -> str | None:
    """``records``: result name (a cell, a file) -> the ``cpu_capability`` it recorded (None:
    an older result that recorded none). Returns the one level they share (None when none is
    recorded); different levels -- an unrecorded one among recorded ones included -- are a
    ``MixedKernels`` error naming them, unless ``allow_mixed``."""
    groups: dict[str, list[str]] = {}
    for name, level in records.items():
        groups.setdefault(UNRECORDED if level is None else str(level), []).append(str(name))
    if len(groups) <= 1 or allow_mixed:
        levels = [k for k in groups if k != UNRECORDED]
        return levels[0] if len(levels) == 1 and len(groups) == 1 else None
    shown = "; ".join(
        f"{level}: {', '.join(names[:6])}"
        + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        for level, names in sorted(groups.items())
    )
    raise MixedKernels(
        f"{what} ran with different CPU kernel levels ({shown}); their numbers are not "
        "comparable bit for bit: re-run them at one level, or allow mixed kernels explicitly"
    )
