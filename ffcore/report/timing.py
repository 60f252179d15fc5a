"""Side-by-side latency: candidates are run alternately on the same input, so machine noise
hits all of them alike; compare by ratios with their spread, never by absolutes.

Each round runs every candidate once (in a rotating order); the ratio of a candidate to the
first one is taken per round, and the table reports the median of those per-round ratios with
their interquartile range. Where the IQR contains 1.0 the two are not measurably different on
this machine, and ``verdict`` says so instead of printing a number that would flip between runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd

NO_DIFFERENCE = "no measurable difference"


def ratio_verdict(ratio: float, low: float, high: float) -> str:
    """``"no measurable difference"`` when [low, high] contains 1, else ``"1.23x (1.15-1.31)"``."""
    if not np.isfinite([ratio, low, high]).all():
        return "not measured"
    if low <= 1.0 <= high:
        return NO_DIFFERENCE
    return f"{ratio:.2f}\u00d7 (IQR {low:.2f}\u2013{high:.2f})"


def compare_latency(
    candidates: dict[str, Callable[[], object]],
    reps: int = 30,
    warmup: int = 2,
    clock: Callable[[], float] | None = None,
) -> pd.DataFrame:
    """Time each zero-argument callable in ``reps`` alternating rounds (A B C, B C A, ...).
    ``clock``: wall time (``time.perf_counter``) by default; ``time.process_time`` measures this process' CPU seconds
    (a cost, less disturbed by other processes than a latency).

    Returns one row per candidate: ``median_ms``, ``p25_ms``, ``p75_ms``; ``ratio`` (median of
    the per-round ratios to the first candidate), ``ratio_p25``, ``ratio_p75`` (their
    interquartile range), ``verdict`` (``ratio_verdict``) and ``reps``.
    """
    if not candidates:
        raise ValueError("no candidates to time")
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    clock = clock or time.perf_counter
    names = list(candidates)
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times = np.zeros((reps, len(names)))
    for r in range(reps):
        for k in range(len(names)):
            j = (k + r) % len(names)  # rotate the order: no candidate always runs first
            t0 = clock()
            candidates[names[j]]()
            times[r, j] = (clock() - t0) * 1e3
    ratios = times / times[:, :1]
    frame = pd.DataFrame(
        {
            "median_ms": np.median(times, axis=0),
            "p25_ms": np.percentile(times, 25, axis=0),
            "p75_ms": np.percentile(times, 75, axis=0),
            "ratio": np.median(ratios, axis=0),
            "ratio_p25": np.percentile(ratios, 25, axis=0),
            "ratio_p75": np.percentile(ratios, 75, axis=0),
        },
        index=names,
    )
    frame["verdict"] = [
        "reference" if i == 0 else ratio_verdict(*row)
        for i, row in enumerate(frame[["ratio", "ratio_p25", "ratio_p75"]].to_numpy())
    ]
    frame["reps"] = reps
    return frame
