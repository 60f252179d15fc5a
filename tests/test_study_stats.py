"""Interval arithmetic of the ablation study against numbers computed by hand and with scipy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ffcore.report.study import (
    paired_differences,
    resolution,
    sentence,
    summarize,
    t_interval,
    verdict,
)


def test_t_interval_by_hand() -> None:
    # values 1, 2, 3: mean 2, sd 1, n 3, t(0.975, 2) = 4.302652729749464 (tables: 4.303)
    mean, low, high = t_interval([1.0, 2.0, 3.0])
    half = 4.302652729749464 / math.sqrt(3)
    assert mean == 2.0
    assert (low, high) == pytest.approx((2.0 - half, 2.0 + half), abs=1e-12)


def test_t_interval_matches_scipy() -> None:
    x = np.array([0.71, 0.74, 0.69, 0.77, 0.73])
    expect = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    _, low, high = t_interval(x)
    assert (low, high) == pytest.approx(expect, abs=1e-12)


def test_one_seed_has_no_interval() -> None:
    mean, low, high = t_interval([0.5])
    assert mean == 0.5 and math.isnan(low) and math.isnan(high)
    assert verdict(low, high) == "no interval (one seed)"


def _frame() -> pd.DataFrame:
    rows = []
    ap = {  # configuration -> AP on hard for seeds 0, 1, 2
        "cbam_phased": [0.70, 0.72, 0.74],
        "eca_cbam_phased": [0.71, 0.74, 0.75],  # differences 0.01, 0.02, 0.01
        "none": [0.60, 0.61, 0.62],
    }
    for conf, values in ap.items():
        for seed, v in enumerate(values):
            for subset in ("easy", "medium", "hard"):
                rows.append({"configuration": conf, "seed": seed, "subset": subset, "ap": v})
    return pd.DataFrame(rows)


def test_summary_and_paired_difference_by_hand() -> None:
    frame = _frame()
    s = summarize(frame).set_index(["configuration", "subset"])
    assert s.loc[("cbam_phased", "hard"), "mean"] == pytest.approx(0.72)
    assert s.loc[("cbam_phased", "hard"), "n_seeds"] == 3
    d = paired_differences(frame).set_index(["comparison", "subset"])
    row = d.loc[("ECA-CBAM - CBAM (phased)", "hard")]
    # differences 0.01, 0.02, 0.01: mean 0.04/3, sd sqrt(((-1/3)^2*2 + (2/3)^2)/2) / 100
    diffs = np.array([0.01, 0.02, 0.01])
    half = stats.t.ppf(0.975, 2) * diffs.std(ddof=1) / math.sqrt(3)
    assert row["mean_diff"] == pytest.approx(diffs.mean())
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(
        (diffs.mean() - half, diffs.mean() + half)
    )
    assert row["n"] == 3
    # the paired interval is far narrower than the unpaired spread of either configuration
    assert (
        row["ci_high"] - row["ci_low"]
        < s.loc[("cbam_phased", "hard"), "ci_high"] - s.loc[("cbam_phased", "hard"), "ci_low"]
    )
    assert row["verdict"] == "no significant difference"  # [-0.001, +0.028] straddles 0
    big = d.loc[("ECA-CBAM phased - none", "hard")]
    assert big["verdict"] == "significantly higher"
    # comparisons whose configurations were not run are left out
    assert "phased - joint (CBAM)" not in d.index.get_level_values(0)


def test_sentence_reads_like_the_issue() -> None:
    assert (
        sentence("ECA-CBAM - CBAM", "hard", 3, 0.004, -0.012, 0.020)
        == "ECA-CBAM - CBAM on hard: +0.4 points [-1.2, +2.0], n = 3: no significant difference"
    )


def test_resolution_by_hand() -> None:
    frame = _frame()
    frame = frame[frame.configuration != "none"]
    res = resolution(frame, paired_differences(frame))
    # sd(0.70, 0.72, 0.74) = 0.02; sd(0.71, 0.74, 0.75) = 0.0208167: mean 2.0408 points
    assert res.loc["hard", "seed sd (AP points)"] == pytest.approx(
        (2.0 + 100 * np.std([0.71, 0.74, 0.75], ddof=1)) / 2
    )
    # paired differences 0.01, 0.02, 0.01: half-width t(0.975, 2) * 0.0057735 / sqrt(3)
    half = 4.302652729749464 * np.std([0.01, 0.02, 0.01], ddof=1) / math.sqrt(3)
    assert res.loc["hard", "resolvable (AP points)"] == pytest.approx(100 * half)
