"""Side-by-side latency: candidates are run alternately on the same input, so machine noise
hits all of them alike; report medians and spreads, and compare by ratios, never absolutes."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd


def compare_latency(
    candidates: dict[str, Callable[[], object]], reps: int = 20, warmup: int = 2
) -> pd.DataFrame:
    """Time each zero-argument callable ``reps`` times, interleaved (A B C A B C ...).

    Returns one row per candidate: median_ms, p25_ms, p75_ms, and ``ratio`` to the first one.
    """
    if not candidates:
        raise ValueError("no candidates to time")
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(reps):
        for name, fn in candidates.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    rows = {
        name: {
            "median_ms": float(np.median(t)),
            "p25_ms": float(np.percentile(t, 25)),
            "p75_ms": float(np.percentile(t, 75)),
        }
        for name, t in times.items()
    }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame["ratio"] = frame["median_ms"] / frame["median_ms"].iloc[0]
    return frame
