"""torchrun support: the process's rank from the environment, process-group set-up, and the
all-reduce that makes every rank stop together on a non-finite loss."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    enabled: bool = False
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def dist_from_env() -> DistInfo:
    """The torchrun environment (WORLD_SIZE, RANK, LOCAL_RANK); single process without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(True, int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def all_finite(value: torch.Tensor, info: DistInfo) -> bool:
    flag = torch.isfinite(value.detach()).to(torch.float32).reshape(1)
    if info.enabled:
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() > 0)


@contextmanager
def distributed(info: DistInfo, device: torch.device) -> Iterator[None]:
    started = info.enabled and not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield
    finally:
        if started:
            dist.destroy_process_group()
