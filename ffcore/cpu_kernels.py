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
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

LEVELS = ("portable", "native")


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
    sets is kept (an explicit choice of the caller wins)."""
    return {**(setting or PORTABLE).variables(), **base}


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
