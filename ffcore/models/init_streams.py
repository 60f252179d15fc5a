"""Initial weights drawn from named streams, so that variants share what they have in common.

``init_stream(seed, "neck")`` seeds torch's CPU generator from (seed, name) for the modules built
inside it and restores the generator afterwards. A detector built with ``init_seed=S`` draws
each module group (backbone, neck, each context module, heads) and each part of each attention
block (``backbone_attention.0.channel``, ``... .spatial``) from its own stream, so for one S
every tensor that two variants share -- same state-dict key, same shape -- is bit-identical,
and building the model leaves the global RNG (data order, dropout) untouched. ``seed=None`` is
the plain behaviour: draws from the global generator in construction order.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator

import torch


def stream_seed(seed: int, name: str) -> int:
    """A 63-bit seed for the stream ``name`` of ``seed`` (stable across runs and machines)."""
    digest = hashlib.sha256(f"ffcore-init:{int(seed)}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@contextlib.contextmanager
def init_stream(seed: int | None, name: str) -> Iterator[None]:
    """Build modules inside this block from the stream ``name`` of ``seed`` (None: no change)."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(seed, name))
        yield


StreamFactory = Callable[[str], contextlib.AbstractContextManager[None]]


def streams(seed: int | None, prefix: str = "") -> StreamFactory:
    """``streams(S, "neck_attention.1")("spatial")`` is ``init_stream(S, "neck_attention.1.spatial")``."""
    return lambda name: init_stream(seed, f"{prefix}.{name}" if prefix else name)
