"""compare_latency: per-round ratios and their spread, from a fake clock (no wall-clock asserts)."""

from __future__ import annotations

import itertools

import pytest

from ffcore.report import timing


def test_per_round_ratio_cancels_a_slow_round(monkeypatch) -> None:
    # durations in s in execution order; the order rotates (a b, b a, a b, b a): b takes twice
    # a, and round 3 is 10x slower for both
    durations = [1, 2, 2, 1, 10, 20, 2, 1]
    clock = itertools.accumulate(itertools.chain.from_iterable((0, d) for d in durations))
    ticks = iter(clock)
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(ticks))
    table = timing.compare_latency({"a": lambda: None, "b": lambda: None}, reps=4, warmup=0)
    assert table.loc["b", "ratio"] == pytest.approx(2.0)
    assert table.loc["b", "ratio_p25"] == pytest.approx(2.0)
    assert table.loc["b", "ratio_p75"] == pytest.approx(2.0)
    assert table.loc["a", "ratio"] == 1.0
    assert table.loc["b", "median_ms"] == pytest.approx(2000.0)
    # the same rounds on a clock passed in (CPU seconds: time.process_time)
    ticks = iter(itertools.accumulate(itertools.chain.from_iterable((0, d) for d in durations)))
    cpu = timing.compare_latency(
        {"a": lambda: None, "b": lambda: None}, reps=4, warmup=0, clock=lambda: next(ticks)
    )
    assert cpu.loc["b", "ratio"] == pytest.approx(2.0)
