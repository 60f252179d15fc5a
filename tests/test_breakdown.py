"""Per-group latency and MACs (ffcore.report.breakdown) on a tiny input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from ffcore.models import build_model
from ffcore.models.detector import MODULE_GROUPS
from ffcore.report.breakdown import (
    GROUPS,
    breakdown_table,
    group_macs,
    group_rounds,
    group_times,
    round_ratio,
    summarise_rounds,
)
from ffcore.report.complexity import count_macs


def test_group_macs_add_up_to_the_whole_count() -> None:
    model = build_model("eca_cbam")
    macs = group_macs(model, (96, 96))
    assert set(macs) == set(MODULE_GROUPS)
    assert sum(macs.values()) == count_macs(model, 96)  # fvcore's total, counted independently
    assert macs["shuffle"] == 0 and macs["backbone"] > macs["heads"] > 0


def test_group_times_with_a_fake_clock_count_each_group() -> None:
    # a clock that advances 1 ms per reading: every timed span is (readings inside it) ms
    ticks = itertools.count()
    models = {"a": build_model("none").eval(), "b": build_model("retinaface_mnet025").eval()}
    times = group_times(models, torch.zeros(1, 3, 96, 96), reps=2, clock=lambda: next(ticks) / 1e3)
    assert set(times["group"]) == {*GROUPS, "network", "other", "total"}
    assert list(times["model"].unique()) == ["a", "b"]  # the models' order (rounds rotate)
    t = times.set_index(["model", "group"])["median_ms"]
    # a group of one module is read twice (start, stop): 1 ms; backbone_attention of "none" is
    # three Identity modules, each read twice: 3 x 1 ms, with 1 ms between them
    assert t["a", "backbone"] == pytest.approx(1.0)
    assert t["a", "backbone_attention"] == pytest.approx(3.0)
    total_groups = sum(t["b", g] for g in GROUPS)
    assert total_groups + t["b", "other"] == pytest.approx(t["b", "total"])
    assert t["b", "network"] + t["b", "postprocess"] == pytest.approx(t["b", "total"])


def test_breakdown_table_ms_per_gmac() -> None:
    times = group_times(
        {"m (fused)": build_model("none").eval()}, torch.zeros(1, 3, 96, 96), reps=1
    )
    macs = {"m": {g: (10**9 if g == "backbone" else 0) for g in MODULE_GROUPS}}
    table = breakdown_table(times, macs).set_index("group")
    assert table.loc["backbone", "gmacs"] == 1.0
    assert table.loc["backbone", "ms_per_gmac"] == table.loc["backbone", "median_ms"]
    assert np.isnan(table.loc["shuffle", "ms_per_gmac"])


def test_round_ratio_pairs_the_rounds_and_summary_by_hand() -> None:
    """Per-round ratios (not a ratio of medians): rounds where a takes 2, 4, 9 ms and b 1, 2, 3
    give ratios 2, 2, 3: median 2, IQR 2-2.5; the medians alone would say 4 / 2 = 2 too, but
    their spread is not the ratio's."""
    import pandas as pd

    rows = [
        {"model": m, "round": r, "group": "network", "ms": ms}
        for m, values in {"a": (2.0, 4.0, 9.0), "b": (1.0, 2.0, 3.0)}.items()
        for r, ms in enumerate(values)
    ]
    rounds = pd.DataFrame(rows)
    assert round_ratio(rounds, "a", "b") == (2.0, 2.0, 2.5)
    summary = summarise_rounds(rounds).set_index("model")
    assert summary.loc["a", "median_ms"] == 4.0 and summary.loc["a", "p75_ms"] == 6.5
    ticks = itertools.count()
    models = {"x": build_model("none").eval(), "y": build_model("none").eval()}
    real = group_rounds(models, torch.zeros(1, 3, 64, 64), reps=3, clock=lambda: next(ticks) / 1e3)
    assert len(real[real.group == "network"]) == 6  # 2 models x 3 rounds
    # the same fake-clock spans for two identical models: every per-round ratio is 1
    assert round_ratio(real, "x", "y") == (1.0, 1.0, 1.0)
