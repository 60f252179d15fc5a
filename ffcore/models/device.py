"""The one device check of train, detect and evaluate: a device that does not exist or is not
available is reported as such, before any file is read."""

from __future__ import annotations

import torch


def resolve_device(name: str | torch.device | None, local_rank: int = 0) -> torch.device:
    """``name`` ("cpu", "cuda", "cuda:1", "mps"; None: CUDA when available, else CPU) as a
    ``torch.device``; a plain "cuda" becomes ``cuda:<local_rank>``. Raises ``ValueError`` for a
    device name torch does not know or a device this machine does not have."""
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device {str(name)!r} is not a device name (expected cpu, cuda, cuda:N or mps): "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(name)!r} requested but CUDA is not available")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"device {str(name)!r} requested but this machine has {count} GPU(s)")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(name)!r} requested but MPS is not available")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {str(name)!r} is not supported (expected cpu, cuda or mps)")
    return device
