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

    Returns one row per candidate: median_ms, p25_ms, p75_ms, ``ratio`` (its median over the
    first one's) and the median and interquartile range of the per-round ratio (``ratio_median``,
    ``ratio_p25``, ``ratio_p75``: each round's time over the first candidate's in the same
    round, so a slow moment of the machine cancels out).
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
    first = np.asarray(next(iter(times.values())))
    rows = {}
    for name, t in times.items():
        per_round = np.asarray(t) / first  # this candidate / the first, round by round
        rows[name] = {
            "median_ms": float(np.median(t)),
            "p25_ms": float(np.percentile(t, 25)),
            "p75_ms": float(np.percentile(t, 75)),
            "ratio_median": float(np.median(per_round)),
            "ratio_p25": float(np.percentile(per_round, 25)),
            "ratio_p75": float(np.percentile(per_round, 75)),
        }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.insert(3, "ratio", frame["median_ms"] / frame["median_ms"].iloc[0])
    return frame
