"""The study's findings in plain words, generated from its statistics (``study_stats``), never
typed: a sentence says "lower" or "higher" only when the Holm verdict does, "no measurable
difference" otherwise, always with the interval; "equivalent" only when the TOST says so.

``story(results)`` returns the paragraphs by name (``STORY_PARTS``): notebook 08 shows them as
Markdown (``story_markdown``) and ``register_story`` enters them in the numbers registry, from
which ``python -m ffcore figures --readme`` writes them into the README's markers. The text
holds no "<" (a README marker's content cannot).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from ffcore.profiles import PROFILES
from ffcore.report.numbers import Numbers
from ffcore.report.study_frame import (
    PHASE3_VARIANT_LABELS,
    SUBSETS,
    TWO_X,
    has_phase_rows,
    has_variant_rows,
    two_x_pairs,
)
from ffcore.report.study_stats import (
    ALPHA,
    ATTENTION_LABELS,
    COMPARISONS,
    EQUIVALENCE_LABELS,
    EQUIVALENCE_MARGIN,
    EQUIVALENT,
    PHASING_LABELS,
    goal_points,
    half_widths,
    paired_differences,
    phase3_gain,
    phase3_variants,
    schedule_table,
)
from ffcore.study import CONFIGURATIONS

STORY_PARTS: tuple[str, ...] = ("Attention", "Phasing", "Equivalence", "PhaseThree",
                                "Schedules", "Scope")  # fmt: skip
SCOPE = (
    "Every number here is AP under the WIDER FACE protocol on the synthetic val set, after a "
    "minutes-per-cell CPU schedule: none of it says anything about WIDER FACE itself or about "
    "the thesis's full schedule."
)


@dataclass(frozen=True)
class Measured:
    """What the paragraphs, the headlines and the study's exports all read, computed once per
    ``story``."""

    diffs: pd.DataFrame
    gain: pd.DataFrame  # phase3_gain
    variants: pd.DataFrame  # phase3_variants
    table: pd.DataFrame  # schedule_table
    seeds: dict[str, int]  # seeds per profile (the largest n of its comparisons)

    @classmethod
    def of(cls, results: pd.DataFrame, diffs: pd.DataFrame) -> Measured:
        seeds = {str(p): int(g["n"].max()) for p, g in diffs.groupby("profile", sort=True)}
        return cls(diffs, phase3_gain(results), phase3_variants(results), schedule_table(diffs),
                   seeds)  # fmt: skip


@dataclass(frozen=True)
class Story:
    """The paragraphs (``STORY_PARTS``) of one per-seed frame, their ``headlines``, and the
    frames they were told from."""

    parts: dict[str, str]
    headlines: dict[str, str]
    measured: Measured

    def markdown(self) -> str:
        titles = {"Attention": "What attention costs or gains", "Phasing": "Phased or joint",
                  "Equivalence": "ECA-CBAM against CBAM", "PhaseThree": "What phase 3 does",
                  "Schedules": "1x against 2x", "Scope": "What this is not"}  # fmt: skip
        return "\n\n".join(f"**{titles[k]}.** {v}" for k, v in self.parts.items())


def schedule_name(profile: str) -> str:
    """E.g. "1x schedule (study profile, epochs 12 / 3 / 4 / 3)"."""
    times = "2x" if profile.endswith("_2x") else "1x"
    prof = PROFILES.get(profile)
    epochs = (
        f", epochs {' / '.join(map(str, prof.phase_epochs))}"
        if prof is not None and prof.phase_epochs
        else ""
    )
    return f"{times} schedule ({profile} profile{epochs})"


def _points(mean: float, low: float, high: float) -> str:
    interval = "" if math.isnan(low) else f" [{low:+.1f}, {high:+.1f}]"
    return f"{mean:+.1f} points{interval}"


def _word(p_holm: float, mean: float) -> str:
    if not math.isnan(p_holm) and p_holm < ALPHA:
        return "higher" if mean > 0 else "lower"
    return "no measurable difference"


def describe(row: pd.Series) -> str:
    """One test in words, e.g. "hard lower (-2.7 points [-3.8, -1.7], Holm p = 0.0062)"."""
    holm = "" if math.isnan(row["p_holm"]) else f", Holm p = {row['p_holm']:.2g}"
    return (f"{row['subset']} {_word(row['p_holm'], row['mean'])} "
            f"({_points(row['mean'], row['low'], row['high'])}{holm})")  # fmt: skip


def _comparison(group: pd.DataFrame, label: str) -> str:
    rows = group[group["comparison"] == label]
    return f"{label}: " + "; ".join(describe(r) for _, r in rows.iterrows())


def _count(group: pd.DataFrame) -> str:
    words = [_word(p, m) for p, m in zip(group["p_holm"], group["mean"], strict=True)]
    lower, higher = words.count("lower"), words.count("higher")
    return (f"{lower} of the {len(words)} tests lower, {higher} higher, "
            f"{len(words) - lower - higher} with no measurable difference")  # fmt: skip


def _per_profile(diffs: pd.DataFrame, labels: tuple[str, ...], what: str) -> str:
    parts = []
    for profile, group in diffs.groupby("profile", sort=True):
        mine = group[group["comparison"].isin(labels)]
        if mine.empty:
            continue
        present = [lb for lb in labels if lb in set(mine["comparison"])]
        parts.append(
            f"At the {schedule_name(profile)}, {what}: {_count(mine)} (Holm over the "
            f"{len(group)} tests of the family; each 95 % interval is the test's own, "
            "unadjusted, so it may exclude 0 where Holm does not reject). "
            + ". ".join(_comparison(mine, lb) for lb in present)
            + "."
        )
    return " ".join(parts) if parts else f"No comparison of {what} has both configurations run."


def _equivalence(diffs: pd.DataFrame) -> str:
    rows = diffs[diffs["comparison"].isin(EQUIVALENCE_LABELS)]
    if rows.empty:
        return "ECA-CBAM and CBAM were not both run: no equivalence test."
    parts = [
        f"Equivalence of ECA-CBAM and CBAM is tested with two one-sided paired t-tests against "
        f"a margin of ±{EQUIVALENCE_MARGIN:g} AP point declared before the data, each row at "
        f"{ALPHA:g} (90 % interval shown)."
    ]
    for (profile, label), group in rows.groupby(["profile", "comparison"], sort=False):
        detail = "; ".join(
            f"{r['subset']} {r['equivalence_verdict']}"
            + ("" if math.isnan(r["eq_low"]) else f" (90 % interval [{r['eq_low']:+.1f}, "
               f"{r['eq_high']:+.1f}], p = {r['p_equivalence']:.2g})")
            for _, r in group.iterrows()
        )  # fmt: skip
        parts.append(f"At the {schedule_name(profile)}, {label}: {_equivalent_on(group)} "
                     f"({detail}).")  # fmt: skip
    return " ".join(parts)


def _equivalent_on(group: pd.DataFrame) -> str:
    """The equivalence verdict of one comparison over its subsets, e.g. "shown equivalent on
    medium only"."""
    ok = group[group["equivalence_verdict"] == EQUIVALENT]
    if len(ok) == len(group):
        return f"shown equivalent within ±{EQUIVALENCE_MARGIN:g} point on every subset"
    if len(ok):
        return f"shown equivalent on {listed(list(ok['subset']))} only"
    return "not shown equivalent on any subset"


def _phase_three(results: pd.DataFrame, measured: Measured) -> str:
    if not has_phase_rows(results) and not has_variant_rows(results):
        return ("These data are not yet in the per-seed CSV: it holds only the final (phase-3) "
                "rows, so what phase 3 does, and what each of its regularisers does, is not "
                "measured here.")  # fmt: skip
    parts = []
    gain = measured.gain
    if gain.empty:
        parts.append("The per-seed CSV holds no phase-2b rows: phase 3 - phase 2b is not measured.")
    for profile, group in gain.groupby("profile", sort=True) if len(gain) else ():
        per_conf = []
        for conf in [c for c in CONFIGURATIONS if c in set(group["configuration"])]:
            rows = group[group["configuration"] == conf]
            per_conf.append(f"{CONFIGURATIONS[conf].label}: "
                            + "; ".join(describe(r) for _, r in rows.iterrows()))  # fmt: skip
        parts.append(
            f"At the {schedule_name(profile)}, phase 3 - phase 2b on half A of val, paired by "
            f"seed: {_count(group)} (Holm over the {len(group)}). " + ". ".join(per_conf) + "."
        )
    variants = measured.variants
    if variants.empty:
        parts.append("The per-seed CSV holds no phase-3 variant rows: what each regulariser "
                     "of phase 3 does is not measured.")  # fmt: skip
    for (profile, conf), group in (
        variants.groupby(["profile", "configuration"], sort=True) if len(variants) else ()
    ):
        per_variant = []
        for variant in dict.fromkeys(group["variant"]):
            rows = group[group["variant"] == variant]
            per_variant.append(f"{PHASE3_VARIANT_LABELS.get(variant, variant)} - as specified: "
                               + "; ".join(describe(r) for _, r in rows.iterrows()))  # fmt: skip
        parts.append(
            f"Phase-3 variants of {CONFIGURATIONS[conf].label} at the {schedule_name(profile)} "
            f"(whole val, paired by seed, Holm over the {len(group)}): "
            + ". ".join(per_variant)
            + "."
        )
    return " ".join(parts)


def _schedules(measured: Measured) -> str:
    diffs, table = measured.diffs, measured.table
    if table.empty:
        return ("The per-seed CSV holds no 2x rows (profile study_2x): whether a verdict "
                "survives twice the training is not measured here.")  # fmt: skip
    parts = []
    for one_x, two_x in two_x_pairs(diffs):
        group = table[table["profiles"] == f"{one_x} / {two_x}"]
        seeds = measured.seeds
        half = half_widths(diffs[diffs.profile == two_x])
        widths = " / ".join(f"{half[s]:.2f}" for s in SUBSETS if s in half.index)
        goal = goal_points(two_x)
        met = "within" if (half <= goal).all() else "not yet within"
        counts = group["agreement"].value_counts()
        tally = ", ".join(f"{n} {word}" for word, n in counts.items())
        changed = group[~group["agreement"].isin(("confirmed", "neither significant"))]
        detail = "; ".join(f"{r['comparison']} on {r['subset']}: 1x {r['1x']}, 2x {r['2x']} "
                           f"({r['agreement']})" for _, r in changed.iterrows())  # fmt: skip
        parts.append(
            f"{one_x} ({seeds[one_x]} seeds) against {two_x} ({seeds[two_x]} seeds; median "
            f"paired 95 % half-width {widths} points, {met} its {goal:g}-point goal), the "
            f"{len(group)} tests run at both: {tally}"
            + (f". Changed: {detail}." if detail else ".")
        )
    return " ".join(parts)


def story(results: pd.DataFrame, diffs: pd.DataFrame | None = None) -> Story:
    """The paragraphs of ``STORY_PARTS`` for the per-seed frame ``results`` (``diffs``: its
    ``paired_differences`` when already computed)."""
    diffs = paired_differences(results) if diffs is None else diffs
    measured = Measured.of(results, diffs)
    attention = tuple(c.label for c in COMPARISONS if c.label in ATTENTION_LABELS)
    parts = {
        "Attention": _per_profile(diffs, attention, "attention against none"),
        "Phasing": _per_profile(diffs, PHASING_LABELS, "phased against joint attention"),
        "Equivalence": _equivalence(diffs),
        "PhaseThree": _phase_three(results, measured),
        "Schedules": _schedules(measured),
        "Scope": SCOPE,
    }
    return Story(parts, _headlines(measured), measured)


def _times(profile: str) -> str:
    return "2x" if profile.endswith(TWO_X) else "1x"


def listed(words: list[str]) -> str:
    """``["a", "b", "c"]`` -> ``"a, b and c"``."""
    return " and ".join([", ".join(words[:-1]), words[-1]] if len(words) > 1 else words)


def _named(group: pd.DataFrame, key: str = "comparison") -> str:
    """The tests of ``group`` whose Holm verdict is a difference, by ``key``, e.g. "CBAM phased
    - none lower on medium and hard"; empty when there is none."""
    named = []
    for name, rows in group.groupby(key, sort=False):
        for word in ("lower", "higher"):
            subsets = [r["subset"] for _, r in rows.iterrows()
                       if _word(r["p_holm"], r["mean"]) == word]  # fmt: skip
            if subsets:
                named.append(f"{name} {word} on {listed(subsets)}")
    return "; ".join(named)


def _headline(times: str, what: str, group: pd.DataFrame, key: str = "comparison") -> str:
    named = _named(group, key)
    return f"At {times}, {what}: {_count(group)}" + (f" ({named})." if named else ".")


def _headlines(measured: Measured) -> dict[str, str]:
    """The story in one sentence per part and schedule (``STORY_PARTS`` but the scope): the
    counts of the Holm verdicts and the tests that differ, each equivalence verdict, the 1x/2x
    tally; for a short summary (the companion's study section). Intervals are in ``story``."""
    diffs = measured.diffs
    out: dict[str, list[str]] = {k: [] for k in STORY_PARTS if k != "Scope"}
    for profile, group in diffs.groupby("profile", sort=True):
        times = _times(str(profile))
        for part, labels, what in (
            ("Attention", ATTENTION_LABELS, "attention against none"),
            ("Phasing", PHASING_LABELS, "phased against joint attention"),
        ):
            mine = group[group["comparison"].isin(labels)]
            if len(mine):
                out[part].append(_headline(times, what, mine))
        for label, rows in group[group["comparison"].isin(EQUIVALENCE_LABELS)].groupby(
            "comparison", sort=False
        ):
            out["Equivalence"].append(f"At {times}, {label}: {_equivalent_on(rows)}.")
    gain = measured.gain
    for profile, group in gain.groupby("profile", sort=True) if len(gain) else ():
        labelled = group.assign(label=group["configuration"].map(
            lambda c: CONFIGURATIONS[c].label))  # fmt: skip
        out["PhaseThree"].append(
            _headline(_times(str(profile)), "phase 3 - phase 2b", labelled, "label")
        )
    variants = measured.variants
    for (profile, conf), group in (
        variants.groupby(["profile", "configuration"], sort=True) if len(variants) else ()
    ):
        labelled = group.assign(label=group["variant"].map(
            lambda v: f"{PHASE3_VARIANT_LABELS.get(v, v)} - as specified"))  # fmt: skip
        what = f"the phase-3 variants of {CONFIGURATIONS[conf].label}"
        out["PhaseThree"].append(_headline(_times(str(profile)), what, labelled, "label"))
    table = measured.table
    for one_x, two_x in two_x_pairs(diffs) if len(table) else ():
        group = table[table["profiles"] == f"{one_x} / {two_x}"]
        seeds = [measured.seeds[p] for p in (one_x, two_x)]
        tally = ", ".join(f"{n} {word}" for word, n in group["agreement"].value_counts().items())
        out["Schedules"].append(f"1x ({seeds[0]} seeds) against 2x ({seeds[1]} seeds), the "
                                f"{len(group)} tests run at both: {tally}.")  # fmt: skip
    return {part: " ".join(lines) for part, lines in out.items() if lines}


def register_story(numbers: Numbers, told: Story) -> None:
    """Each paragraph as a text number ``StudyStory<Part>`` (README markers, numbers.tex) and
    each headline as ``StudyHeadline<Part>`` (the companion's study section)."""
    for name, text in told.parts.items():
        numbers.add(f"StudyStory{name}", text, unit="", description=f"study in words: {name}")
    for name, text in told.headlines.items():
        numbers.add(f"StudyHeadline{name}", text, unit="",
                    description=f"study in one sentence per schedule: {name}")  # fmt: skip
