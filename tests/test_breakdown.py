"""Per-group latency and MACs (ffcore.report.breakdown) on a tiny input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from ffcore.models import build_model
from ffcore.models.detector import MODULE_GROUPS
from ffcore.report.breakdown import GROUPS, breakdown_table, group_macs, group_times
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
    assert set(times["group"]) == {*GROUPS, "other", "total"}
    t = times.set_index(["model", "group"])["median_ms"]
    # a group of one module is read twice (start, stop): 1 ms; backbone_attention of "none" is
    # three Identity modules, each read twice: 3 x 1 ms, with 1 ms between them
    assert t["a", "backbone"] == pytest.approx(1.0)
    assert t["a", "backbone_attention"] == pytest.approx(3.0)
    total_groups = sum(t["b", g] for g in GROUPS)
    assert total_groups + t["b", "other"] == pytest.approx(t["b", "total"])


def test_breakdown_table_ms_per_gmac() -> None:
    times = group_times(
        {"m (fused)": build_model("none").eval()}, torch.zeros(1, 3, 96, 96), reps=1
    )
    macs = {"m": {g: (10**9 if g == "backbone" else 0) for g in MODULE_GROUPS}}
    table = breakdown_table(times, macs).set_index("group")
    assert table.loc["backbone", "gmacs"] == 1.0
    assert table.loc["backbone", "ms_per_gmac"] == table.loc["backbone", "median_ms"]
    assert np.isnan(table.loc["shuffle", "ms_per_gmac"])
