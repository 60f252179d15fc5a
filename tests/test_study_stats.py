"""Statistics of the ablation study against numbers computed by hand and with scipy/statsmodels:
intervals, paired t, Holm, sign-flip p, TOST, detectable difference, the declared family of 24
tests per schedule, phase trajectory and phase 3, 1x against 2x, variance decomposition, the
per-seed CSV as the source of every aggregate, the seed plan and the findings in words."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_paired

from ffcore.report.numbers import Numbers
from ffcore.report.study import export_study, register_numbers
from ffcore.report.study_frame import (
    PER_SEED_COLUMNS,
    SUBSETS,
    load_results,
    read_per_seed,
    write_per_seed,
)
from ffcore.report.study_stats import (
    EQUIVALENCE_MARGIN,
    FAMILY,
    SD_BOUND_COLUMN,
    SEEDS_AT_BOUND_COLUMN,
    agreement,
    detectable_difference,
    holm,
    paired_differences,
    paired_t_p,
    phase3_gain,
    phase3_variants,
    phase_trajectory,
    plan_study,
    resolution,
    schedule_table,
    sd_upper_bound,
    seeds_for_halfwidth,
    seeds_for_power,
    sentence,
    sentences,
    signflip_p,
    summarize,
    t_interval,
    tost,
    variance_decomposition,
    verdict,
)
from ffcore.study import CONFIGURATIONS


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


def test_one_seed_has_no_interval_and_no_test() -> None:
    mean, low, high = t_interval([0.5])
    assert mean == 0.5 and math.isnan(low) and math.isnan(high)
    assert math.isnan(paired_t_p([0.5]))
    assert verdict(math.nan, 0.5) == "no test (one seed)"


# -- the tests of a comparison, on 4 seeds by hand -----------------------------------------
D4 = [0.01, 0.02, 0.03, 0.02]  # mean 0.02, sd sqrt(2/3) / 100, t = 0.02 / (sd / 2) = sqrt(24)


def _t_cdf_df3(t: float) -> float:
    """Student t CDF with 3 degrees of freedom in closed form (any statistics textbook)."""
    u = t / math.sqrt(3)
    return 0.5 + (u / (1 + u * u) + math.atan(u)) / math.pi


def test_paired_t_p_by_hand_and_scipy() -> None:
    t = math.sqrt(24)
    assert 0.02 / (math.sqrt(2 / 3) / 100 / 2) == pytest.approx(t)
    by_hand = 2 * (1 - _t_cdf_df3(t))  # = 0.01628...
    assert paired_t_p(D4) == pytest.approx(by_hand, rel=1e-9)
    a = np.array([0.70, 0.71, 0.69, 0.72])
    assert paired_t_p(a + D4 - a) == pytest.approx(stats.ttest_rel(a + D4, a).pvalue, rel=1e-9)
    assert paired_t_p([0.0, 0.0, 0.0]) == 1.0  # no difference at all


def test_holm_by_hand_and_statsmodels() -> None:
    # sorted 0.01, 0.03, 0.04, 0.20: x4 = 0.04, x3 = 0.09, x2 = 0.08 -> running max 0.09, x1 = 0.2
    p = [0.01, 0.04, 0.03, 0.20]
    assert holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.20])
    assert holm(p) == pytest.approx(multipletests(p, method="holm")[1])
    # a NaN (one seed) is not part of the family: the other three are adjusted as three
    out = holm([0.01, math.nan, 0.03, 0.20])
    assert math.isnan(out[1]) and out[[0, 2, 3]] == pytest.approx([0.03, 0.06, 0.20])


def test_signflip_p_by_hand_and_scipy() -> None:
    # all four differences positive: of the 16 sign patterns only +/- all reach |mean| 0.02
    assert signflip_p(D4) == pytest.approx(2 / 16)
    # 1, -1, 2, 0: |sum| 2. Signs of (1, -1, 2) give sums 2, 4, 0, 2, -2, 0, -4, -2 (the zero's
    # sign changes nothing): 6 of 8 reach |sum| >= 2
    assert signflip_p([1.0, -1.0, 2.0, 0.0]) == pytest.approx(0.75)
    rng = np.random.default_rng(3)
    for n in (5, 8):
        x = rng.normal(0.3, 1.0, n)
        ref = stats.permutation_test(
            (x,), np.mean, permutation_type="samples", n_resamples=2**n, alternative="two-sided"
        ).pvalue
        assert signflip_p(x) == pytest.approx(ref)


def test_detectable_difference_has_the_power_it_claims() -> None:
    sd, n = 0.02, 6
    mde = detectable_difference(sd, n)
    # power of the two-sided paired t at that difference, from the noncentral t (scipy)
    crit = stats.t.ppf(0.975, n - 1)
    nc = mde / sd * math.sqrt(n)
    power = stats.nct.sf(crit, n - 1, nc) + stats.nct.cdf(-crit, n - 1, nc)
    assert power == pytest.approx(0.80, abs=1e-6)
    assert mde / sd == pytest.approx(TTestPower().solve_power(nobs=n, alpha=0.05, power=0.8))
    assert math.isnan(detectable_difference(sd, 1)) and detectable_difference(0.0, 4) == 0.0


def test_seeds_for_halfwidth_and_power() -> None:
    # t(0.975, 5) / sqrt(6) = 2.5706 / 2.4495 = 1.049 > 1; t(0.975, 6) / sqrt(7) = 2.4469 / 2.6458
    # = 0.925 <= 1 (tables): 7 seeds for a half-width of one sd
    assert seeds_for_halfwidth(1.0, 1.0) == 7
    assert seeds_for_halfwidth(0.5, 1.0) == 4  # 3.182 / 2 * 0.5 = 0.80; 4.303 / 1.732 * 0.5 > 1
    n = seeds_for_power(1.0, 1.0)

    def power(k: int) -> float:
        crit, nc = stats.t.ppf(0.975, k - 1), math.sqrt(k)
        return stats.nct.sf(crit, k - 1, nc) + stats.nct.cdf(-crit, k - 1, nc)

    assert power(n) >= 0.8 > power(n - 1)
    assert n == 10  # effect size 1 needs 10 pairs for 80 % power (two-sided, 0.05)
    with pytest.raises(ValueError, match="target"):
        seeds_for_halfwidth(1.0, 0.0)


# -- equivalence (TOST) ---------------------------------------------------------------------
def test_tost_by_hand_and_statsmodels() -> None:
    d = np.array([0.2, -0.1, 0.3, 0.0])  # AP points: mean 0.1, sd sqrt(0.1 / 3)
    se = math.sqrt(0.1 / 3) / 2
    eq = tost(d, margin=1.0)
    # H0 mean <= -1: t = 1.1 / se against the upper tail; H0 mean >= 1: t = -0.9 / se, lower
    assert eq.p_lower == pytest.approx(1 - _t_cdf_df3(1.1 / se), rel=1e-6)
    assert eq.p_upper == pytest.approx(_t_cdf_df3(-0.9 / se), rel=1e-6)
    assert eq.p == max(eq.p_lower, eq.p_upper) == eq.p_upper
    # the 90 % interval: t(0.95, 3) = 2.353363434801823 (tables: 2.353)
    assert (eq.low, eq.high) == pytest.approx((0.1 - 2.353363434801823 * se,
                                               0.1 + 2.353363434801823 * se))  # fmt: skip
    base = np.array([70.0, 71.0, 69.0, 72.0])
    p_sm = ttost_paired(base + d, base, -1.0, 1.0)[0]
    assert eq.p == pytest.approx(p_sm, rel=1e-9)
    # equivalent at 5 % exactly when the 90 % interval lies inside the margin
    wide = tost(np.array([0.9, -0.5, 1.6, 0.2]), margin=1.0)
    assert (wide.p < 0.05) == (wide.low > -1 and wide.high < 1) and wide.p > 0.05
    assert eq.p < 0.05 and eq.low > -1 and eq.high < 1
    assert math.isnan(tost([0.3]).p)


def test_margin_is_one_ap_point() -> None:
    assert EQUIVALENCE_MARGIN == 1.0


# -- frames -------------------------------------------------------------------------------------
def _frame() -> pd.DataFrame:
    """Final rows only, in the older layout (no profile, phase, variant: defaults apply)."""
    rows = []
    ap = {  # configuration -> AP on every subset for seeds 0, 1, 2
        "cbam_phased": [0.70, 0.72, 0.74],
        "eca_cbam_phased": [0.71, 0.74, 0.75],  # differences 0.01, 0.02, 0.01
        "none": [0.60, 0.61, 0.62],
    }
    for conf, values in ap.items():
        for seed, v in enumerate(values):
            for subset in SUBSETS:
                rows.append({"configuration": conf, "seed": seed, "subset": subset, "ap": v})
    return pd.DataFrame(rows)


def test_family_is_declared_in_code() -> None:
    assert len(FAMILY) == 24 and len(set(FAMILY)) == 24
    assert {t[3] for t in FAMILY} == set(SUBSETS)
    pairs = {(a, b) for a, b, _, _ in FAMILY}
    attention = ("cbam_phased", "eca_cbam_phased", "cbam_joint", "eca_cbam_joint")
    assert pairs == (
        {(c, "none") for c in attention}
        | {("eca_cbam_phased", "cbam_phased"), ("eca_cbam_joint", "cbam_joint")}
        | {("cbam_phased", "cbam_joint"), ("eca_cbam_phased", "eca_cbam_joint")}
    )


def test_variance_family_is_the_former_18() -> None:
    from ffcore.report.study_stats import VARIANCE_FAMILY

    assert len(VARIANCE_FAMILY) == 18 and set(VARIANCE_FAMILY) < set(FAMILY)
    assert {(a, b) for a, b, _, _ in VARIANCE_FAMILY if b == "none"} == {
        ("cbam_phased", "none"), ("eca_cbam_phased", "none"),
    }  # fmt: skip


def test_summary_and_paired_difference_by_hand() -> None:
    frame = _frame()
    s = summarize(frame).set_index(["configuration", "subset"])
    assert s.loc[("cbam_phased", "hard"), "mean"] == pytest.approx(0.72)
    assert s.loc[("cbam_phased", "hard"), "n_seeds"] == 3
    d = paired_differences(frame).set_index(["comparison", "subset"])
    row = d.loc[("ECA-CBAM - CBAM (phased)", "hard")]
    diffs = np.array([1.0, 2.0, 1.0])  # AP points
    half = stats.t.ppf(0.975, 2) * diffs.std(ddof=1) / math.sqrt(3)
    assert row["mean"] == pytest.approx(diffs.mean())
    assert (row["low"], row["high"]) == pytest.approx((diffs.mean() - half, diffs.mean() + half))
    assert row["n"] == 3 and row["profile"] == "study"
    # t = 1.333 / (0.5774 / sqrt 3) = 4: p = 2 * (1 - F_2(4)), F_2(t) = 1/2 + t / (2 sqrt(2 + t^2))
    assert row["p"] == pytest.approx(2 * (0.5 - 4 / (2 * math.sqrt(18))), rel=1e-9)
    assert row["verdict"] == "no significant difference"
    # three comparisons were run: Holm over their 9 tests, and the verdict follows p_holm
    assert len(d) == 9
    assert d["p_holm"].to_numpy() == pytest.approx(multipletests(d["p"], method="holm")[1])
    big = d.loc[("ECA-CBAM phased - none", "hard")]
    assert big["p_holm"] < 0.05 and big["verdict"] == "significantly higher"
    assert big["p_signflip"] == pytest.approx(2 / 8)  # 3 seeds: the smallest possible
    assert "phased - joint (CBAM)" not in d.index.get_level_values(0)
    # equivalence only on ECA-CBAM - CBAM: TOST of the same differences against +-1 point
    assert row["margin"] == 1.0
    assert row["p_equivalence"] == pytest.approx(tost(diffs).p)
    assert row["equivalence_verdict"] == "not shown equivalent"  # 90 % high 2.3 > 1
    assert math.isnan(big["p_equivalence"]) and big["equivalence_verdict"] == ""


def test_verdict_follows_holm_not_the_interval() -> None:
    # an interval above 0 (p = 0.0163 alone) is not significant once adjusted over 24 tests
    assert verdict(0.0163 * 24, 0.02) == "no significant difference"
    assert verdict(0.01, -0.02) == "significantly lower"


def test_sentence_reads_like_the_issue() -> None:
    assert (
        sentence("ECA-CBAM - CBAM", "hard", 3, 0.4, -1.2, 2.0, 0.84)
        == "ECA-CBAM - CBAM on hard: +0.4 points [-1.2, +2.0], n = 3, Holm p = 0.84: "
        "no significant difference"
    )


def test_resolution_by_hand() -> None:
    frame = _frame()
    frame = frame[frame.configuration != "none"]
    res = resolution(frame, paired_differences(frame))
    assert res.loc["hard", "seed sd (AP points)"] == pytest.approx(
        (2.0 + 100 * np.std([0.71, 0.74, 0.75], ddof=1)) / 2
    )
    half = 4.302652729749464 * np.std([1.0, 2.0, 1.0], ddof=1) / math.sqrt(3)
    assert res.loc["hard", "resolvable (AP points)"] == pytest.approx(half)


# -- the long layout: phases, phase-3 variants, 1x and 2x -----------------------------------
CONFS = tuple(CONFIGURATIONS)
VARIANT_SHIFT = {"no_mixup": -0.01, "no_dropout": 0.0, "no_regularisers": -0.03}


def _long_frame(
    profiles=("study",), phases=True, variants=True, seeds=4, two_x_shift=0.0
) -> pd.DataFrame:
    """Every configuration k and seed s: ap_half_a after phase i = 0.5 + 0.01 k + 0.02 i +
    0.001 s (k + 1) i + 0.05 j (subset j), so phase 3 - phase 2b = 0.02 + 0.001 s (k + 1);
    ap (phase 3) = ap_half_a; ECA-CBAM phased also runs the three phase-3 variants, variant v
    scoring ap + VARIANT_SHIFT[v] + 0.001 s (v's index + 1)."""
    rows = []
    for profile in profiles:
        extra = two_x_shift if profile.endswith("_2x") else 0.0
        for k, conf in enumerate(CONFS):
            for s in range(seeds):
                for i, phase in enumerate(("1", "2a", "2b", "3")):
                    if phase != "3" and not phases:
                        continue
                    for j, subset in enumerate(SUBSETS):
                        half = 0.5 + 0.01 * k + 0.02 * i + 0.001 * s * (k + 1) * i + 0.05 * j
                        half += extra * (k > 0)
                        row = {
                            "profile": profile, "configuration": conf,
                            "phase3_variant": "as_specified", "phase": phase, "seed": s,
                            "subset": subset, "ap": half if phase == "3" else math.nan,
                            "ap_half_a": half, "ap_half_b": half, "ap_first96": half,
                            "nme": 0.05, "train_seconds": 100.0, "train_cpu_seconds": 100.0,
                            "eval_seconds": 10.0, "eval_cpu_seconds": 10.0, "torch_threads": 1,
                            "cpu_capability": "AVX2",
                        }  # fmt: skip
                        rows.append(row)
                        if phase == "3" and variants and conf == "eca_cbam_phased":
                            for v, (name, shift) in enumerate(VARIANT_SHIFT.items()):
                                ap = half + shift + 0.001 * s * (v + 1)
                                rows.append(row | {"phase3_variant": name, "ap": ap,
                                                   "ap_half_a": ap})  # fmt: skip
    return pd.DataFrame(rows, columns=list(PER_SEED_COLUMNS))


def test_phase_trajectory_by_hand() -> None:
    t = phase_trajectory(_long_frame()).set_index(["configuration", "phase", "subset"])
    row = t.loc[("cbam_phased", "2b", "hard")]  # k = 1, i = 2, j = 2
    values = [100 * (0.5 + 0.01 + 0.04 + 0.001 * s * 2 * 2 + 0.1) for s in range(4)]
    mean, low, high = t_interval(values)
    assert (row["mean"], row["low"], row["high"]) == pytest.approx((mean, low, high))
    assert row["n"] == 4 and len(t) == 5 * 4 * 3
    assert phase_trajectory(_long_frame(phases=False)).empty  # final rows only: no trajectory


def test_phase3_gain_by_hand_and_scipy() -> None:
    frame = _long_frame()
    g = phase3_gain(frame).set_index(["configuration", "subset"])
    row = g.loc[("eca_cbam_phased", "easy")]  # k = 2: d = 2 + 0.3 s points
    d = np.array([2.0, 2.3, 2.6, 2.9])
    assert row["mean"] == pytest.approx(d.mean()) and row["n"] == 4
    half_a = frame[(frame.configuration == "eca_cbam_phased") & (frame.subset == "easy")
                   & (frame.phase3_variant == "as_specified")]  # fmt: skip
    after = half_a[half_a.phase == "3"].ap_half_a.to_numpy()
    before = half_a[half_a.phase == "2b"].ap_half_a.to_numpy()
    assert row["p"] == pytest.approx(stats.ttest_rel(after, before).pvalue)
    # Holm over the 5 configurations x 3 subsets of the profile
    assert len(g) == 15
    assert g["p_holm"].to_numpy() == pytest.approx(multipletests(g["p"], method="holm")[1])
    assert row["verdict"] == "significantly higher"
    assert phase3_gain(_long_frame(phases=False)).empty


def test_phase3_variants_by_hand_and_scipy() -> None:
    frame = _long_frame()
    v = phase3_variants(frame)
    assert set(v["configuration"]) == {"eca_cbam_phased"} and len(v) == 9  # 3 x 3: the family
    row = v.set_index(["variant", "subset"]).loc[("no_mixup", "medium")]
    d = 100 * (-0.01 + 0.001 * np.arange(4))  # -1, -0.9, -0.8, -0.7 points
    assert row["mean"] == pytest.approx(d.mean())
    mean, low, high = t_interval(d)
    assert (row["low"], row["high"]) == pytest.approx((low, high))
    assert row["p"] == pytest.approx(stats.ttest_1samp(d, 0).pvalue)
    assert v["p_holm"].to_numpy() == pytest.approx(multipletests(v["p"], method="holm")[1])
    assert phase3_variants(_long_frame(variants=False)).empty


def test_holm_is_over_the_24_of_each_schedule() -> None:
    rng = np.random.default_rng(4)
    frame = _long_frame(("study", "study_2x"), phases=False, variants=False, two_x_shift=0.01)
    frame["ap"] += rng.normal(0, 0.004, len(frame))
    d = paired_differences(frame)
    assert len(d) == 48 and d.groupby("profile").size().to_dict() == {"study": 24, "study_2x": 24}
    for _, group in d.groupby("profile"):
        assert group["p_holm"].to_numpy() == pytest.approx(
            multipletests(group["p"], method="holm")[1]
        )
    table = schedule_table(d)
    assert len(table) == 24 and set(table["profiles"]) == {"study / study_2x"}
    for _, r in table.iterrows():
        one = d[(d.profile == "study") & (d.comparison == r.comparison) & (d.subset == r.subset)]
        m, lo, hi = one[["mean", "low", "high"]].iloc[0]
        assert r["1x"] == f"{m:+.1f} [{lo:+.1f}, {hi:+.1f}]"
    assert schedule_table(paired_differences(_long_frame(phases=False))).empty


def test_agreement_of_1x_and_2x() -> None:
    def row(mean: float, p: float) -> pd.Series:
        return pd.Series({"mean": mean, "p_holm": p})

    assert agreement(row(-1, 0.01), row(-2, 0.001)) == "confirmed"
    assert agreement(row(-1, 0.01), row(1, 0.01)).startswith("overturned")
    assert agreement(row(-1, 0.01), row(-0.5, 0.3)) == "sign kept, not significant"
    assert agreement(row(-1, 0.01), row(0.5, 0.3)) == "sign reversed, not significant"
    assert agreement(row(-1, 0.3), row(-1, 0.01)) == "significant only at 2x"
    assert agreement(row(-1, 0.3), row(1, 0.3)) == "neither significant"


# -- the findings in words ------------------------------------------------------------------
def test_story_words_follow_the_holm_verdicts() -> None:
    from ffcore.report.study_story import describe, story

    rng = np.random.default_rng(2)
    frame = _long_frame(phases=False, variants=False)
    frame["ap"] += rng.normal(0, 0.003, len(frame))
    d = paired_differences(frame)
    for _, r in d.iterrows():
        text = describe(r)
        assert ("lower" in text) == (r["verdict"] == "significantly lower"), text
        assert ("higher" in text) == (r["verdict"] == "significantly higher"), text
        assert f"[{r['low']:+.1f}, {r['high']:+.1f}]" in text
    told = story(frame, d)
    assert "not yet in the per-seed CSV" in told.parts["PhaseThree"]
    assert "no 2x rows" in told.parts["Schedules"]
    assert "synthetic val set" in told.parts["Scope"] and "WIDER FACE" in told.parts["Scope"]
    assert not any("<" in text for text in told.parts.values())  # README markers


def test_headlines_count_and_name_the_holm_verdicts(tmp_path) -> None:
    """The short story (companion): its counts and the tests it names are those of the Holm
    verdicts of ``paired_differences``, counted here from the verdict column."""
    from ffcore.report.layout import study_results
    from ffcore.report.study_stats import ATTENTION_LABELS
    from ffcore.report.study_story import register_story, story

    rng = np.random.default_rng(2)
    frame = _long_frame(("study", "study_2x"), variants=False, seeds=8, two_x_shift=0.01)
    frame["ap"] += rng.normal(0, 0.0005, len(frame))
    d = paired_differences(frame)
    told = story(frame, d)
    for profile, times in (("study", "1x"), ("study_2x", "2x")):
        rows = d[(d.profile == profile) & d.comparison.isin(ATTENTION_LABELS)]
        lower = rows[rows.verdict == "significantly lower"]
        higher = rows[rows.verdict == "significantly higher"]
        counts = (f"At {times}, attention against none: {len(lower)} of the {len(rows)} tests "
                  f"lower, {len(higher)} higher, {len(rows) - len(lower) - len(higher)} with no "
                  "measurable difference")  # fmt: skip
        assert counts in told.headlines["Attention"], told.headlines["Attention"]
        assert len(lower) + len(higher) > 0  # the configurations' offsets make tests differ
        for word, sig in (("lower", lower), ("higher", higher)):
            for comparison, subsets in sig.groupby("comparison", sort=False)["subset"]:
                *head, last = list(subsets)
                listed = f"{', '.join(head)} and {last}" if head else last
                assert f"{comparison} {word} on {listed}" in told.headlines["Attention"]
    assert (
        "1x (8 seeds) against 2x (8 seeds), the 24 tests run at both:"
        in (told.headlines["Schedules"])
    )
    assert "Scope" not in told.headlines and "phase 3 - phase 2b" in told.headlines["PhaseThree"]
    # the companion's study section tells the headlines, in the story's order
    numbers = Numbers("08_ablation_study", "study")
    register_story(numbers, told)
    entries = numbers.entries()
    lines = study_results(entries, tmp_path)
    parts = ("Attention", "Phasing", "Equivalence", "PhaseThree", "Schedules")
    assert lines == [x for k in parts for x in ("", told.headlines[k])]  # a paragraph each
    no_story = {k: v for k, v in entries.items() if not k.startswith("StudyHeadline")}
    assert study_results(no_story, tmp_path) == []  # nothing else registered, no CSV


def test_story_tells_equivalence_phases_and_schedules_when_present() -> None:
    from ffcore.report.study_story import story

    frame = _long_frame(("study", "study_2x"), two_x_shift=0.01)
    told = story(frame)
    # ECA-CBAM - CBAM: d = 1 point + 0.001 s points... (k = 2 against k = 1): outside the margin
    assert "ECA-CBAM - CBAM (phased)" in told.parts["Equivalence"]
    assert "phase 3 - phase 2b" in told.parts["PhaseThree"]
    assert "no mixup - as specified" in told.parts["PhaseThree"]
    assert "study (4 seeds) against study_2x (4 seeds;" in told.parts["Schedules"]
    close = _long_frame(phases=False, variants=False)
    close.loc[close.configuration == "eca_cbam_phased", "ap"] = close.loc[
        close.configuration == "cbam_phased", "ap"
    ].to_numpy() + np.tile(np.repeat([0.001, -0.002, 0.003, 0.0], 3), 1)
    d = paired_differences(close)
    eq = d[d.comparison == "ECA-CBAM - CBAM (phased)"]
    assert (eq["equivalence_verdict"] == "equivalent within ±1").all()
    assert (
        "shown equivalent within ±1 point on every subset" in story(close, d).parts["Equivalence"]
    )


def test_the_2x_schedule_tells_its_seeds_and_half_widths_against_its_goal() -> None:
    """A 2x grid read while it runs (3 of the 1x grid's 4 seeds): the story and the numbers name
    each schedule's seeds and the 2x median half-width, computed here by hand from the frame
    (scipy's t quantile over each comparison's per-seed differences) against its 1.5 goal."""
    from ffcore.report.numbers import Numbers
    from ffcore.report.study_story import story

    rng = np.random.default_rng(7)
    frame = _long_frame(("study", "study_2x"), phases=False, variants=False)
    frame = frame[(frame.profile == "study") | (frame.seed < 3)].copy()
    frame["ap"] += rng.normal(0, 0.01, len(frame))
    d = paired_differences(frame)
    two = frame[frame.profile == "study_2x"].pivot_table(
        index=["subset", "seed"], columns="configuration", values="ap"
    )
    expected = {}
    for subset in SUBSETS:
        halves = []
        for _, r in d[(d.profile == "study_2x") & (d.subset == subset)].iterrows():
            x = 100 * (two.loc[subset][r.a] - two.loc[subset][r.b]).to_numpy()
            halves.append(stats.t.ppf(0.975, len(x) - 1) * np.std(x, ddof=1) / math.sqrt(len(x)))
        expected[subset] = float(np.median(halves))
    widths = " / ".join(f"{expected[s]:.2f}" for s in SUBSETS)
    met = "within" if max(expected.values()) <= 1.5 else "not yet within"
    text = story(frame, d).parts["Schedules"]
    assert text.startswith(
        f"study (4 seeds) against study_2x (3 seeds; median paired 95 % half-width {widths} "
        f"points, {met} its 1.5-point goal), the 24 tests run at both: "
    ), text
    numbers = Numbers("08_ablation_study", "study")
    register_numbers(numbers, frame, d)
    assert numbers["StudySeeds"].value == 4 and numbers["StudyTwoXSeeds"].value == 3
    for subset in SUBSETS:
        word = subset.capitalize()
        assert numbers[f"StudyTwoXHalfWidth{word}"].value == pytest.approx(expected[subset])
    missed = [s for s in SUBSETS if expected[s] > 1.5]
    assert numbers["StudyTwoXGoal"].value.startswith("the 1.5-point goal")
    assert ("missed on " + " and ".join(missed) in numbers["StudyTwoXGoal"].value) == bool(missed)
    assert numbers["StudyGoal"].value.startswith("the 1-point goal")


def test_statistics_draw_nothing() -> None:
    code = ("import sys; import ffcore.report.study_stats, ffcore.report.study_frame, "
            "ffcore.report.study_story; assert 'matplotlib' not in sys.modules")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# -- variance decomposition on numbers whose answer is known --------------------------------
T = np.array([0.02, 0.0, -0.02, 0.0])  # training effect per seed: var 8e-4 / 3
E = np.array([0.01, -0.01, 0.01, -0.01])  # evaluation error of a half: var 4e-4 / 3
OFF = ("cbam_phased", "cbam_joint")  # these score 0.5 exactly; the others 0.5 + T


def _per_seed_frame(configurations=tuple(CONFIGURATIONS)) -> pd.DataFrame:
    """``OFF`` scores 0.5 everywhere; every other configuration 0.5 + T on the whole set, + E /
    - E on the two halves and + 3 E on the first 96 images."""
    rows = []
    for conf in configurations:
        for seed in range(4):
            off = 0.0 if conf in OFF else 1.0
            for k, subset in enumerate(SUBSETS):
                ap = 0.5 + off * T[seed] + 0.1 * k
                rows.append(
                    {
                        "profile": "study", "configuration": conf,
                        "phase3_variant": "as_specified", "phase": "3", "seed": seed,
                        "subset": subset, "ap": ap,
                        "ap_half_a": ap + off * E[seed], "ap_half_b": ap - off * E[seed],
                        "ap_first96": ap + off * 3 * E[seed], "nme": 0.05 + 0.001 * seed,
                        "train_seconds": 100.0 + seed, "train_cpu_seconds": 190.0,
                        "eval_seconds": 10.0, "eval_cpu_seconds": 10.0, "torch_threads": 2.0,
                        "cpu_capability": "AVX2",
                    }
                )  # fmt: skip
    return pd.DataFrame(rows, columns=list(PER_SEED_COLUMNS))


def test_variance_decomposition_on_known_numbers() -> None:
    # only ECA-CBAM - CBAM (phased) has both configurations: one comparison per subset
    frame = _per_seed_frame(("cbam_phased", "eca_cbam_phased"))
    v = variance_decomposition(frame)
    assert list(v.index) == list(SUBSETS) and (v["comparisons"] == 1).all()
    # d = T: sd sqrt(8e-4 / 3); d_A - d_B = 2 E: var / 4 = var(E) = 4e-4 / 3; training the rest
    assert v["paired sd (AP points)"].to_numpy() == pytest.approx(100 * math.sqrt(8e-4 / 3))
    assert v["evaluation sd"].to_numpy() == pytest.approx(100 * math.sqrt(4e-4 / 3))
    assert v["training (seed) sd"].to_numpy() == pytest.approx(100 * math.sqrt(4e-4 / 3))
    # first 96: d = T + 3 E, T and E orthogonal here (sum T * E = 0): var 8e-4 / 3 + 9 * 4e-4 / 3
    assert v["paired sd, first 96 images (before)"].to_numpy() == pytest.approx(
        100 * math.sqrt(44e-4 / 3)
    )


def test_variance_decomposition_training_part_is_never_negative() -> None:
    frame = _per_seed_frame(("cbam_phased", "eca_cbam_phased"))
    frame["ap_half_a"] += np.where(frame.configuration == "cbam_phased", 0, 10 * E[frame.seed])
    v = variance_decomposition(frame)
    assert (v["training (seed) sd"] == 0).all()


def test_grid_numbers_for_the_readme() -> None:
    """The README's study numbers (spans, variance steps, correlation, cost, the 1-point plan)
    against numpy, scipy and statsmodels on a two-configuration grid."""
    from ffcore.report.numbers import Numbers

    u = np.array([-0.02, 0.01, 0.0, 0.01])  # CBAM's own seed effect: d = T - u
    frame = _per_seed_frame(("cbam_phased", "eca_cbam_phased"))
    cbam = frame.configuration == "cbam_phased"
    for column in ("ap", "ap_half_a", "ap_half_b", "ap_first96"):
        frame.loc[cbam, column] += u[frame.seed[cbam]] + 0.03  # and 3 points above on average
    frame["train_cpu_seconds"] = 150.0 + 10 * frame.seed + 5 * cbam
    numbers = Numbers("08_ablation_study", "study")
    register_numbers(numbers, frame, frame.iloc[0:0])  # no comparisons: the grid's numbers only

    def sd(x) -> float:
        return 100 * float(np.std(x, ddof=1))

    assert numbers["StudyCells"].value == 8 and numbers["StudyVarianceTests"].value == 3
    assert numbers["StudyApSpanEasy"].text == "50.0-53.0"  # 0.5 + mean T (0) vs 0.5 + 0.03
    assert numbers["StudyApSpanHard"].text == "70.0-73.0"
    d, halves = T - u, 2 * E
    assert numbers["StudySdAllMedium"].value == pytest.approx(sd(d))
    assert numbers["StudySdEvaluationMedium"].value == pytest.approx(sd(halves) / 2)
    assert numbers["StudySdTrainingMedium"].value == pytest.approx(
        math.sqrt(sd(d) ** 2 - (sd(halves) / 2) ** 2)
    )
    assert numbers["StudySdFirstNinetySixMedium"].value == pytest.approx(sd(d + 3 * E))
    assert sd(d) ** 2 - (sd(halves) / 2) ** 2 > (sd(halves) / 2) ** 2  # training dominates
    assert numbers["StudyTrainingNoiseSubsets"].value == "easy, medium and hard"
    r = stats.pearsonr(0.5 + T, 0.5 + u).statistic
    assert numbers["StudyPairingCorrelation"].value == pytest.approx(r)
    assert r < 0 and numbers["StudyPairingNegative"].value == 3  # one comparison, 3 subsets
    train = 150.0 + 10 * np.arange(4)
    cells_train = np.concatenate([train + 5, train])
    assert numbers["StudyCellTrainCpuMean"].value == pytest.approx(cells_train.mean())
    assert numbers["StudyCellTrainCpuSd"].value == pytest.approx(np.std(cells_train, ddof=1))
    assert numbers["StudyCellEvalCpuSd"].value == 0
    # the plan: paired sd of d, seeds by the t half-width and by statsmodels' power
    target = 1.0
    half = next(n for n in range(2, 1000)
                if stats.t.ppf(0.975, n - 1) * sd(d) / math.sqrt(n) <= target)  # fmt: skip
    power = math.ceil(TTestPower().solve_power(effect_size=target / sd(d), alpha=0.05,
                                               power=0.8) - 1e-9)  # fmt: skip
    assert numbers["StudyPlanSdHard"].value == pytest.approx(sd(d))
    assert numbers["StudyPlanSeedsHalfWidthEasy"].value == half
    assert numbers["StudyPlanSeedsPowerEasy"].value == power
    # 4 seeds: the sd over 3 df at its 80 % upper bound, by scipy's chi-square
    bound = sd(d) * math.sqrt(3 / stats.chi2.ppf(0.2, 3))
    assert numbers["StudyPlanSdBoundHard"].value == pytest.approx(bound)
    assert numbers["StudyPlanSeedsAtBoundHard"].value == next(
        n for n in range(2, 1000) if stats.t.ppf(0.975, n - 1) * bound / math.sqrt(n) <= target
    )
    seeds = max(half, power, 2)
    cpu = cells_train.mean() + 10.0
    assert numbers["StudyPlanSeeds"].value == seeds
    assert numbers["StudyPlanCells"].value == 5 * seeds
    assert numbers["StudyPlanCellCpu"].value == pytest.approx(cpu)
    # 2 cells at a time on 2 cores: one core a cell (of its 2 threads); 40 tasks of 2 threads
    assert numbers["StudyPlanLocalHours"].value == pytest.approx(
        math.ceil(5 * seeds / 2) * cpu / 3600
    )
    assert numbers["StudyPlanSlurmHours"].value == pytest.approx(
        math.ceil(5 * seeds / 40) * cpu / 2 / 3600
    )
    assert numbers["StudyPlanHalfWidthSeeds"].value == half
    assert numbers["StudyPlanHalfWidthHours"].value == pytest.approx(
        math.ceil(5 * half / 2) * cpu / 3600
    )


# -- the per-seed CSV is the source ---------------------------------------------------------
def _result(conf: str, seed: int, new: bool) -> dict:
    r = {
        "configuration": conf, "seed": seed, "profile": "ci",
        "ap": {"easy": 0.9 + seed / 100, "medium": 0.8, "hard": None, "landmarks": {"nme": 0.07}},
        "seconds": {"train": 12.5},
    }  # fmt: skip
    if new:
        r["ap_splits"] = {k: {"easy": 0.91, "medium": 0.81, "hard": 0.5}
                          for k in ("half_a", "half_b", "first96")}  # fmt: skip
        r["seconds"]["evaluate"] = 2.0
        r["cpu_seconds"] = {"train": 24.0, "evaluate": 3.0}
        # per phase since issue 20 (what the per-phase format reads): 24 CPU s in all
        r["phase_seconds"] = {p: {"wall": 12.5 / 4, "cpu": 6.0} for p in ("1", "2a", "2b", "3")}
        r["torch_threads"] = 2
    return r


def test_load_results_reads_old_and_new_results(tmp_path) -> None:
    for conf, seed, new in (("none", 1, True), ("eca_cbam_joint", 0, False), ("none", 0, True)):
        (tmp_path / f"{conf}_seed{seed}").mkdir()
        (tmp_path / f"{conf}_seed{seed}" / "result.json").write_text(
            json.dumps(_result(conf, seed, new))
        )
    # (a cell of the per-phase format: tests/test_chain.py)
    frame = load_results(tmp_path)
    assert tuple(frame.columns) == PER_SEED_COLUMNS
    final = frame[frame.phase == "3"]
    # configuration order (none first), then seed, then subset
    assert list(zip(final.configuration, final.seed, strict=True))[::3] == [
        ("none", 0), ("none", 1), ("eca_cbam_joint", 0),
    ]  # fmt: skip
    assert list(frame.subset[:3]) == list(SUBSETS)
    assert (frame.phase3_variant == "as_specified").all() and (frame.phase == "3").all()
    new = frame.iloc[0]
    assert new.ap == 0.9 and new.ap_half_a == 0.91 and new.train_cpu_seconds == 24.0
    assert new.eval_seconds == 2.0 and new.torch_threads == 2 and new.nme == 0.07
    old = frame[frame.configuration == "eca_cbam_joint"]
    assert old[["ap_half_a", "ap_first96", "train_cpu_seconds", "torch_threads"]].isna().all().all()
    assert math.isnan(old.ap.iloc[2])  # hard None -> NaN


@pytest.mark.slow  # draws and saves every study figure
def test_every_aggregate_follows_from_the_per_seed_csv(tmp_path) -> None:
    frame = _long_frame(("study", "study_2x"), two_x_shift=0.01)
    rng = np.random.default_rng(1)
    frame["ap"] += rng.normal(0, 0.003, len(frame))  # every comparison gets some difference
    shuffled = frame.sample(frac=1.0, random_state=0)
    # the source names both profiles; each figure of one profile names that one alone (the
    # 2x forest plot's title, with both, was cut at the page's edge)
    out = export_study(shuffled, tmp_path, "study/study_2x profile, synthetic data")
    assert out.forest._suptitle.get_text().endswith("; source: study profile, synthetic data")
    for name in ("ablation_per_seed.csv", "ablation_forest.pdf", "ablation_forest.png",
                 "ablation_forest_study_2x.png", "ablation_variance.csv", "ablation_study.png",
                 "ablation_phases.png", "ablation_phases.csv", "ablation_phase3.csv",
                 "ablation_phase3_variants.csv", "ablation_schedules.csv"):  # fmt: skip
        assert (tmp_path / name).is_file(), name
    back = read_per_seed(tmp_path / "ablation_per_seed.csv")
    expect = frame.sort_values(["profile"], kind="stable")  # written sorted, full precision
    from ffcore.report.study_frame import sort_per_seed

    pd.testing.assert_frame_equal(back, sort_per_seed(expect), check_dtype=False)
    # recomputed from the CSV alone: the same tables as exported
    written = pd.read_csv(tmp_path / "ablation_study.csv")
    pd.testing.assert_frame_equal(written, summarize(back), check_exact=False, rtol=1e-12)
    again = paired_differences(back)
    pd.testing.assert_frame_equal(again, out.comparisons)
    table = pd.read_csv(tmp_path / "ablation_comparisons.csv", keep_default_na=False,
                        na_values=[""])  # fmt: skip
    need = ["profile", "comparison", "a", "b", "subset", "n", "mean", "low", "high", "p",
            "p_holm", "p_signflip", "detectable", "verdict", "margin", "eq_low", "eq_high",
            "p_equivalence", "equivalence_verdict"]  # fmt: skip
    assert set(need) <= set(table.columns) and len(table) == 48
    assert table["p_holm"].to_numpy() == pytest.approx(again["p_holm"].to_numpy())
    eca = table["comparison"].str.startswith("ECA-CBAM - CBAM")
    assert table.loc[eca, ["margin", "eq_low", "p_equivalence"]].notna().all().all()
    assert table.loc[~eca, ["margin", "eq_low", "eq_high", "p_equivalence",
                            "equivalence_verdict"]].isna().all().all()  # fmt: skip
    variance = pd.read_csv(tmp_path / "ablation_variance.csv", index_col="subset")
    assert variance.to_numpy() == pytest.approx(variance_decomposition(back).to_numpy())
    variants = pd.read_csv(tmp_path / "ablation_phase3_variants.csv")
    assert variants["p_holm"].to_numpy() == pytest.approx(phase3_variants(back)["p_holm"])
    assert len(out.schedules) == 24 and "study_2x (4 seeds;" in out.story.parts["Schedules"]
    # printed per schedule: the 2x table of its own rows, the schedules table without the words
    two = pd.read_csv(tmp_path / "ablation_comparisons_study_2x.csv")
    assert set(two.profile) == {"study_2x"} and len(two) == 24
    assert (tmp_path / "ablation_comparisons_study_2x.tex").is_file()
    schedules = pd.read_csv(tmp_path / "ablation_schedules.csv")
    assert {"profiles", "1x verdict", "2x verdict", "agreement"} <= set(schedules.columns)
    printed = (tmp_path / "ablation_schedules.tex").read_text()
    assert "1x Holm p" in printed and "verdict" not in printed and "profiles" not in printed


@pytest.mark.slow  # draws and saves every study figure
def test_final_rows_only_export_makes_no_phase_files(tmp_path) -> None:
    out = export_study(_per_seed_frame(), tmp_path, "study profile, synthetic data")
    assert out.phases is None and out.variants.empty and out.schedules.empty
    made = {p.stem for p in tmp_path.iterdir()}
    assert not made & {"ablation_phases", "ablation_phase3", "ablation_phase3_variants",
                       "ablation_schedules", "ablation_forest_study_2x"}  # fmt: skip


# -- the plan -------------------------------------------------------------------------------
def test_plan_from_a_pilot_by_hand() -> None:
    pilot = _per_seed_frame()  # 5 configurations x 4 seeds
    plan = plan_study(pilot, target_points=1.0, jobs=2, cores=2, slurm_tasks=7)
    # d = +-T (sd 100 sqrt(8e-4 / 3) points) for the four comparisons with exactly one side in
    # OFF (CBAM phased / joint - none, both ECA-CBAM - CBAM), d = 0 for the other four: the
    # median of the eight is half that sd
    sd = 100 * math.sqrt(8e-4 / 3) / 2
    row = plan.per_subset.loc["hard"]
    assert row["paired sd (AP points)"] == pytest.approx(sd)
    assert row["seeds for half-width"] == seeds_for_halfwidth(sd, 1.0)
    assert row["seeds for 80% power"] == seeds_for_power(sd, 1.0)
    assert plan.seeds == max(row["seeds for half-width"], row["seeds for 80% power"])
    # 200 CPU s per cell on 2 threads; 2 cells at once on 2 cores: 1 core each -> 200 s a cell
    assert plan.cell_cpu_seconds == 200.0 and plan.cells == 5 * plan.seeds
    assert plan.local_wall_seconds == math.ceil(plan.cells / 2) * 200.0
    assert plan.slurm_wall_seconds == math.ceil(plan.cells / 7) * 100.0
    assert "seeds:" in "\n".join(plan.lines())
    # the sd's bound: 4 pilot seeds, sd over 3 df, at the 80 % upper bound
    assert row[SD_BOUND_COLUMN] == pytest.approx(sd_upper_bound(sd, 4))
    assert row[SEEDS_AT_BOUND_COLUMN] == seeds_for_halfwidth(sd_upper_bound(sd, 4), 1.0)
    assert row[SEEDS_AT_BOUND_COLUMN] >= row["seeds for half-width"]


def test_sd_upper_bound_covers_by_simulation() -> None:
    """At sigma equal to the 80 % upper bound of an sd s measured over n seeds, a sample sd
    falls at or below s one time in five (drawn, not by the chi-square formula)."""
    rng = np.random.default_rng(7)
    s, n = 3.0, 9
    upper = sd_upper_bound(s, n)
    draws = rng.normal(0.0, upper, size=(200_000, n)).std(axis=1, ddof=1)
    assert (draws <= s).mean() == pytest.approx(0.20, abs=0.005)
    assert sd_upper_bound(s, 31) < upper  # more seeds, a tighter bound
    with pytest.raises(ValueError, match="two seeds"):
        sd_upper_bound(s, 1)


def test_plan_command_prints_the_plan_and_needs_a_pilot(tmp_path, capsys) -> None:
    from ffcore.cli import main

    csv = write_per_seed(_per_seed_frame(), tmp_path)
    assert main(["study", "--plan", "--per-seed", str(csv), "--slurm-tasks", "10"]) == 0
    out = capsys.readouterr().out
    assert "seeds for half-width" in out and "SLURM: 10 tasks" in out
    assert main(["study", "--plan", "--out", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no results" in err[0]


def test_pairing_correlation_by_hand() -> None:
    from ffcore.report.study_stats import pairing_correlation

    frame = _frame()
    r = pairing_correlation(frame).set_index(["comparison", "subset"])["r"]
    # eca_cbam_phased (71, 74, 75) against cbam_phased (70, 72, 74), in hundredths: deviations
    # x = (-2.33, 0.67, 1.67), y = (-2, 0, 2): r = (4.67 + 0 + 3.33) / sqrt(8.67 * 8)
    assert r[("ECA-CBAM - CBAM (phased)", "hard")] == pytest.approx(
        8 / math.sqrt(8.6667 * 8), abs=1e-4
    )
    assert r[("CBAM phased - none", "easy")] == pytest.approx(1.0)


def test_conclusion_lines_follow_the_comparisons() -> None:
    from ffcore.report.study_stats import conclusion_lines

    diffs = paired_differences(_frame())
    lines = conclusion_lines(diffs, target_points=1.0)
    assert len(lines) == 4 and lines[0].startswith("study, easy: median paired 95 % half-width")
    half = ((diffs.high - diffs.low) / 2).groupby(diffs.subset).median()["easy"]
    assert f"{half:.2f} AP points" in lines[0]
    assert ("meets" in lines[0]) == (half <= 1.0)
    significant = diffs[diffs.p_holm < 0.05]
    assert lines[-1].startswith(f"study: {len(significant)} of {len(diffs)} tests significant")
    assert all(s in lines[-1] for s in sentences(significant))
    assert conclusion_lines(diffs.iloc[0:0]) == [
        "no comparison has both of its configurations in the results"
    ]
    one_seed = paired_differences(_frame()[lambda f: f.seed == f.seed.min()])
    lines = conclusion_lines(one_seed)
    assert lines[0] == "study, easy: no interval with n = 1 seed(s) (a paired interval needs two)"
    assert not any("nan" in line for line in lines)


@pytest.mark.slow  # draws and saves every study figure
def test_study_numbers_and_provenance(tmp_path) -> None:
    from ffcore.report import provenance
    from ffcore.report.numbers import Numbers, rewrite_markers

    frame = _per_seed_frame()
    csv = tmp_path / "input.csv"
    frame.to_csv(csv, index=False)
    info = provenance.RunInfo.create("08_ablation_study", {"seeds": 4}, "study", inputs=[csv])
    out = export_study(frame, tmp_path / "figs", "ci profile, synthetic data", provenance=info)
    recorded = provenance.load(tmp_path / "figs")["files"]
    # every exported file has its entry; the rewritten CSVs' entries match their bytes
    assert sorted(recorded) == provenance.exported_files(tmp_path / "figs")
    assert provenance.check(tmp_path / "figs") == {}
    numbers = Numbers("08_ablation_study", "study")
    register_numbers(numbers, frame, out.comparisons, out.story)
    assert numbers["StudySeeds"].value == 4 and numbers["StudyConfigurations"].value == 5
    # ECA-CBAM phased - CBAM phased: 0.5 + T[seed] + 0.1k against 0.5 + 0.1k, i.e. mean T
    diff = numbers["EcaCbamPhasedMinusCbamPhasedHardDiff"]
    assert diff.value == pytest.approx(100 * sum(T) / len(T))
    assert diff.text == f"{100 * sum(T) / len(T):+.1f}"
    assert numbers["EcaCbamPhasedMinusCbamPhasedHardVerdict"].value in {
        "no significant difference", "significantly higher", "significantly lower",
    }  # fmt: skip
    eq = out.comparisons.set_index(["comparison", "subset"]).loc[("ECA-CBAM - CBAM (phased)",
                                                                  "hard")]  # fmt: skip
    assert numbers["EcaCbamPhasedMinusCbamPhasedHardTostP"].value == pytest.approx(
        eq["p_equivalence"]
    )
    assert numbers["EcaCbamPhasedMinusCbamPhasedHardEqVerdict"].value == eq["equivalence_verdict"]
    # the story goes into README markers through numbers.json
    entries = numbers.entries()
    text = "x <!-- ff:StudyStoryAttention -->old<!-- /ff --> y"
    assert out.story.parts["Attention"] in rewrite_markers(text, entries)


@pytest.mark.slow  # draws and saves every study figure, twice
def test_a_grown_per_seed_csv_is_written_and_one_read_alone_is_kept(tmp_path) -> None:
    """Notebook 08 reads figures/ablation_per_seed.csv: alone, the export leaves it as read;
    grown by cells (extends_csv), it writes the grown rows, and the CSV's entry no longer names
    the old bytes as its input, so the grown CSV is not stale while what was computed from the
    old one is, until the run from the CSV alone re-makes it."""
    from ffcore.report import provenance
    from ffcore.report.study_frame import read_per_seed

    frame = _per_seed_frame()
    base = frame[frame.seed != frame.seed.max()]
    figs = tmp_path / "figs"
    figs.mkdir()
    csv = figs / "ablation_per_seed.csv"
    base.to_csv(csv, index=False)
    before = csv.read_bytes()
    info = provenance.RunInfo.create("08_ablation_study", {"seeds": 3}, "study", inputs=[csv])
    export_study(read_per_seed(csv), figs, "ci profile, synthetic data", provenance=info)
    assert csv.read_bytes() == before  # the source itself, kept as read
    grown = provenance.RunInfo.create("08_ablation_study", {"extends_csv": str(csv)}, "study",
                                      inputs=[csv])  # fmt: skip
    export_study(frame, figs, "ci profile, synthetic data", provenance=grown)
    written = read_per_seed(csv)
    assert len(written) == len(frame) and set(written.seed) == set(frame.seed)
    entry = provenance.load(figs)["files"]["ablation_per_seed.csv"]
    assert entry["inputs"] == {} and entry["parameters"] == {"extends_csv": str(csv)}
    stale = provenance.check(figs)
    assert "ablation_per_seed.csv" not in stale and "ablation_study.csv" in stale
