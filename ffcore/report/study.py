"""Figures, tables and the export of the ablation study (``ffcore.study``).

The per-seed frame (``study_frame``) is the source of everything: ``export_study`` writes it
as ``figures/ablation_per_seed.csv`` and everything computed from it by ``study_stats`` (the
statistics, which draw nothing) and ``study_story`` (the findings in words), so every table and
figure below can be rebuilt from that CSV alone (no runs, no training).
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.patches import Patch
from scipy import stats

from ffcore.atomic import replacing
from ffcore.paths import FIGURES_DIR, repo_path
from ffcore.report import figures
from ffcore.report.numbers import Numbers, name_part
from ffcore.report.study_frame import (
    PER_SEED_FILE,
    PHASE3_VARIANT_LABELS,
    SUBSETS,
    TWO_X,
    final_rows,
    ordered_configurations,
    profile_source,
    profiles,
    read_per_seed,
    sort_per_seed,
    write_per_seed,
)
from ffcore.report.study_stats import (
    ALPHA,
    EQUIVALENCE_LABELS,
    EQUIVALENCE_MARGIN,
    GOAL_POINTS,
    PLAN_SD_BOUND,
    SD_BOUND_COLUMN,
    SEEDS_AT_BOUND_COLUMN,
    cell_costs,
    cost_table,
    goal_points,
    half_widths,
    paired_differences,
    pairing_correlation,
    plan_study,
    summarize,
    variance_components,
    variance_decomposition,
)
from ffcore.report.study_story import Story, listed, register_story, story
from ffcore.schedule import PHASE_ORDER
from ffcore.study import CONFIGURATIONS

if TYPE_CHECKING:
    from ffcore.report.provenance import RunInfo

# The machines the README's plan is stated for: the committed grid's (2 cells at a time on 2
# cores) and a SLURM array of 40 one-core tasks.
PLAN_JOBS = 2
PLAN_CORES = 2
PLAN_SLURM_TASKS = 40
SUBSET_COLORS = dict(zip(SUBSETS, figures.sns.color_palette(figures.PALETTE, 3), strict=True))


def _n_label(frame: pd.DataFrame, column: str) -> str:
    n = sorted(set(int(v) for v in frame[column]))
    return f"n = {n[0]}" if len(n) == 1 else f"n = {n[0]}-{n[-1]}"


def _stem(name: str, profile: str, first: str) -> str:
    """``name`` for the first profile, ``name_<profile>`` for the others (e.g. the 2x)."""
    return name if profile == first else f"{name}_{profile}"


def _schedule_tag(frame: pd.DataFrame) -> str:
    """ "2x schedule: " for a frame of a 2x profile (``<p>_2x``), else nothing."""
    names = set(frame["profile"]) if "profile" in frame else set()
    return "2x schedule: " if names and all(str(p).endswith(TWO_X) for p in names) else ""


# -- figures ---------------------------------------------------------------------------------
def plot_study(results: pd.DataFrame, summary: pd.DataFrame, source: str):
    """AP per configuration (final rows of the first profile), one panel per subset: mean with
    its 95 % interval and every seed as a dot. An interval reaching above 100 % is drawn up to
    100 % and marked with a caret. ``source`` names the run and data."""
    profile = profiles(results)[0]
    results = final_rows(results, profile)
    if "profile" in summary.columns:
        summary = summary[summary["profile"] == profile]
    confs = ordered_configurations(summary["configuration"])
    fig, axes = figures.new_figure("full", 0.4, ncols=len(SUBSETS), sharey=False)
    colors = [figures.VARIANT_COLORS[CONFIGURATIONS[c].variant] for c in confs]
    clipped_any = False
    for ax, subset in zip(axes, SUBSETS, strict=True):
        s = summary[summary.subset == subset].set_index("configuration").loc[confs]
        x = np.arange(len(confs))
        mean, low, high = s["mean"] * 100, s["ci_low"] * 100, s["ci_high"] * 100
        clipped = high > 100
        clipped_any |= bool(clipped.any())
        top = high.clip(upper=100)
        ax.vlines(x, low, top, color="black", lw=1, zorder=3)
        ax.hlines(np.r_[low, top[~clipped]], np.r_[x, x[~clipped.to_numpy()]] - 0.08,
                  np.r_[x, x[~clipped.to_numpy()]] + 0.08, color="black", lw=1, zorder=3)  # fmt: skip
        ax.scatter(x[clipped.to_numpy()], top[clipped], marker="^", s=18, color="black", zorder=5)
        ax.scatter(x, mean, marker="_", s=200, c=colors, zorder=4)
        for i, conf in enumerate(confs):
            seeds = results[(results.configuration == conf) & (results.subset == subset)]
            jitter = np.linspace(-0.12, 0.12, len(seeds)) if len(seeds) > 1 else [0.0]
            ax.scatter(i + np.asarray(jitter), seeds["ap"] * 100, s=10, color=colors[i],
                       alpha=0.7, edgecolors="none", zorder=2)  # fmt: skip
        ax.set_xticks(x, [CONFIGURATIONS[c].label for c in confs], rotation=35, ha="right")
        ax.set_title(subset)
        values = np.r_[results[results.subset == subset]["ap"] * 100, low, top]
        lo, hi = np.nanmin(values), np.nanmax(values)
        pad = max(0.5, 0.1 * (hi - lo))
        ax.set_ylim(lo - pad, min(100.0, hi) + (0.6 if hi >= 100 else pad))
    axes[0].set_ylabel("AP (%)")
    note = "; ^: interval clipped at 100 %" if clipped_any else ""
    figures.add_source(
        fig,
        source,
        f"AP per configuration (dots: seeds, bars: 95 % t interval, {_n_label(summary, 'n_seeds')})"
        + note,
    )
    return fig


def _p_text(p: float) -> str:
    if math.isnan(p):
        return "--"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def plot_forest(diffs: pd.DataFrame, source: str):
    """The paired differences A - B in AP points of one profile (the first of ``diffs``), one
    row per test of the family (grouped by comparison, a colour per subset): mean, 95 % t
    interval, a zero line; a filled marker where the Holm-adjusted p is below ALPHA, open
    otherwise, the Holm p printed in a column at the right; the equivalence margin shaded
    around the ECA-CBAM - CBAM rows. The legend sits below the axes, clear of the p column."""
    diffs = diffs[diffs["profile"] == diffs["profile"].iloc[0]] if "profile" in diffs else diffs
    labels = list(dict.fromkeys(diffs["comparison"]))
    fig, ax = figures.new_figure("full", max(0.42, 0.16 + 0.026 * len(diffs) + 0.012 * len(labels)))
    y, ticks = 0.0, []
    offsets = dict(zip(SUBSETS, (0.27, 0.0, -0.27), strict=True))  # easy on top
    shaded = False
    for label in labels:
        rows = diffs[diffs.comparison == label]
        if label in EQUIVALENCE_LABELS:
            ax.fill_betweenx([y - 0.45, y + 0.45], -EQUIVALENCE_MARGIN, EQUIVALENCE_MARGIN,
                             color="0.88", lw=0, zorder=0)  # fmt: skip
            shaded = True
        for r in rows.itertuples():
            yy = y + offsets[r.subset]
            color = SUBSET_COLORS[r.subset]
            significant = not math.isnan(r.p_holm) and r.p_holm < ALPHA
            if not math.isnan(r.low):
                ax.hlines(yy, r.low, r.high, color=color, lw=1.2)
            ax.plot(r.mean, yy, "o", ms=4.5, color=color, mec=color,
                    mfc=color if significant else "white", zorder=3)  # fmt: skip
            ax.annotate(_p_text(r.p_holm), (1.01, yy), xycoords=("axes fraction", "data"),
                        fontsize=figures.MIN_FONT_PT, va="center", color=color)  # fmt: skip
        ticks.append(y)
        y -= 1.0
    ax.axvline(0, color="0.3", lw=0.8, ls="--", zorder=1)
    ax.set_yticks(ticks, labels)
    ax.set_ylim(y + 0.5, 0.5)
    ax.grid(axis="y", visible=False)
    for t in ticks[1:]:
        ax.axhline(t + 0.5, color="0.85", lw=0.6)
    ax.set_xlabel("paired difference A - B (AP points), 95 % t interval")
    ax.annotate("Holm p", (1.01, 0.5), xycoords=("axes fraction", "data"),
                fontsize=figures.MIN_FONT_PT, va="bottom", color="0.3")  # fmt: skip
    handles = [
        figures.plt.Line2D([], [], marker="o", ls="-", color=SUBSET_COLORS[s], label=s)
        for s in SUBSETS
        if s in set(diffs["subset"])
    ]
    handles += [
        figures.plt.Line2D([], [], marker="o", ls="", color="0.3", label="Holm p < 0.05"),
        figures.plt.Line2D([], [], marker="o", ls="", color="0.3", mfc="white",
                           label="not significant"),
    ]  # fmt: skip
    if shaded:
        handles.append(Patch(color="0.88", label=f"equivalence margin "
                                              f"±{EQUIVALENCE_MARGIN:g}"))  # fmt: skip
    # two columns: the subsets in the first, the marker meanings in the second
    fig.legend(handles=handles, loc="outside lower center", ncols=2,
               frameon=False)  # fmt: skip
    figures.add_source(
        fig,
        source,
        _schedule_tag(diffs)
        + f"Paired differences ({_n_label(diffs, 'n')}, {len(diffs)} tests, Holm-adjusted)",
    )
    return fig


def plot_phases(trajectory: pd.DataFrame, source: str):
    """AP on half A of val after each phase (the trajectory of the main chain, one profile):
    one panel per subset, a line per configuration, the mean over seeds with its 95 % t
    interval as error bars."""
    profile = trajectory["profile"].iloc[0]
    t = trajectory[trajectory["profile"] == profile]
    fig, axes = figures.new_figure("full", 0.42, ncols=len(SUBSETS), sharey=False)
    confs = ordered_configurations(t["configuration"])
    step = 0.08
    for ax, subset in zip(axes, SUBSETS, strict=True):
        for k, conf in enumerate(confs):
            rows = t[(t.configuration == conf) & (t.subset == subset)].set_index("phase")
            rows = rows.loc[[p for p in PHASE_ORDER if p in rows.index]]
            x = (
                np.array([PHASE_ORDER.index(p) for p in rows.index])
                + (k - (len(confs) - 1) / 2) * step
            )
            err = np.vstack([rows["mean"] - rows["low"], rows["high"] - rows["mean"]])
            style = "-" if CONFIGURATIONS[conf].schedule != "joint" else "--"
            ax.errorbar(x, rows["mean"], yerr=np.nan_to_num(err), ls=style, marker="o", ms=3,
                        lw=1, capsize=2, color=figures.VARIANT_COLORS[CONFIGURATIONS[conf].variant],
                        label=CONFIGURATIONS[conf].label)  # fmt: skip
        ax.set_xticks(range(len(PHASE_ORDER)), list(PHASE_ORDER))
        ax.set_xlabel("phase")
        ax.set_title(subset)
    axes[0].set_ylabel("AP on half A of val (%)")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=min(len(names), 3),
               frameon=False)  # fmt: skip
    figures.add_source(
        fig, source, _schedule_tag(t) + f"AP after each phase ({_n_label(t, 'n')}, 95 % t interval)"
    )
    return fig


# -- tables ----------------------------------------------------------------------------------
def _in_points(frame: pd.DataFrame, value: str, value_name: str, seeds: str) -> pd.DataFrame:
    """``value`` and its interval as AP points (x 100) under human column names."""
    t = frame.copy()
    for col in (value, "ci_low", "ci_high"):
        t[col] = t[col] * 100
    return t.rename(
        columns={seeds: "seeds", value: value_name, "ci_low": "95% CI low",
                 "ci_high": "95% CI high"}
    )  # fmt: skip


def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary for LaTeX: AP in percent, human configuration names."""
    t = _in_points(summary, "mean", "AP (%)", "n_seeds")
    t["configuration"] = [CONFIGURATIONS[c].label for c in t["configuration"]]
    return t


def _interval(low: pd.Series, high: pd.Series, decimals: int = 1) -> list[str]:
    return [
        "" if math.isnan(lo) else f"[{lo:+.{decimals}f}, {hi:+.{decimals}f}]"
        for lo, hi in zip(low, high, strict=True)
    ]


def comparison_table(diffs: pd.DataFrame) -> pd.DataFrame:
    """The comparisons for LaTeX (AP points): difference with its 95 % interval, Holm p, the
    difference detectable with 80 % power and the verdict (the CSV keeps every column: p,
    sign-flip p, sd; the equivalence test is ``equivalence_table``)."""
    t = pd.DataFrame({
        "profile": diffs["profile"], "comparison": diffs["comparison"],
        "subset": diffs["subset"], "n": diffs["n"], "difference": diffs["mean"],
        "95% CI": _interval(diffs["low"], diffs["high"]), "Holm p": diffs["p_holm"],
        "detectable": diffs["detectable"], "verdict": diffs["verdict"],
    })  # fmt: skip
    return t if t["profile"].nunique() > 1 else t.drop(columns="profile")


def equivalence_table(diffs: pd.DataFrame) -> pd.DataFrame:
    """The ECA-CBAM - CBAM rows for LaTeX: difference, its 90 % interval against the declared
    margin, the TOST p and the equivalence verdict beside the difference verdict."""
    rows = diffs[diffs["equivalence_verdict"].fillna("") != ""]
    t = pd.DataFrame({
        "profile": rows["profile"], "comparison": rows["comparison"], "subset": rows["subset"],
        "n": rows["n"], "difference": rows["mean"],
        "90% CI": _interval(rows["eq_low"], rows["eq_high"]), "margin": rows["margin"],
        "TOST p": rows["p_equivalence"], "equivalence": rows["equivalence_verdict"],
        "difference verdict": rows["verdict"],
    })  # fmt: skip
    return t if t["profile"].nunique() > 1 else t.drop(columns="profile")


COMPARISON_DECIMALS = {"n": 0, "difference": 1, "Holm p": 3, "detectable": 1, "margin": 1,
                       "TOST p": 3}  # fmt: skip


def difference_table(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """A frame of paired differences (``phase3_gain``, ``phase3_variants``) for LaTeX: the
    ``keys``, n, difference, 95 % interval, Holm p, verdict (AP points)."""
    t = frame[keys + ["n", "mean"]].rename(columns={"mean": "difference"})
    if "configuration" in t:
        t["configuration"] = [CONFIGURATIONS[c].label for c in t["configuration"]]
    if "variant" in t:
        t["variant"] = [PHASE3_VARIANT_LABELS.get(v, v) for v in t["variant"]]
    t["95% CI"] = _interval(frame["low"], frame["high"])
    t["Holm p"] = frame["p_holm"]
    t["verdict"] = frame["verdict"]
    return t


@dataclasses.dataclass(frozen=True)
class StudyExport:
    """What ``export_study`` computed and wrote (all from the per-seed frame)."""

    summary: pd.DataFrame
    comparisons: pd.DataFrame
    variance: pd.DataFrame
    costs: pd.DataFrame
    phase_gain: pd.DataFrame  # phase 3 - phase 2b (empty without phase rows)
    variants: pd.DataFrame  # phase-3 variants - as specified (empty without variant rows)
    schedules: pd.DataFrame  # 1x against 2x (empty without 2x rows)
    story: Story
    figure: Any  # AP per configuration
    forest: Any  # paired differences
    phases: Any  # AP by phase (None without phase rows)
    per_seed_csv: Path


def export_study(
    results: pd.DataFrame,
    out_dir: str | os.PathLike[str] | None,
    source: str,
    provenance: RunInfo | None = None,
) -> StudyExport:
    """Write to ``out_dir`` (default figures/) the per-seed frame (``ablation_per_seed.csv``)
    and everything computed from it: ``ablation_study.{csv,tex,pdf,png}`` (the CSV holds AP as
    fractions), ``ablation_comparisons.{csv,tex}`` (the CSV: ``COMPARISON_COLUMNS``, AP
    points), ``ablation_forest.{pdf,png}`` (``_<profile>`` for a second profile),
    ``ablation_variance``, ``ablation_costs``, and when the frame holds them
    ``ablation_phases.{csv,tex,pdf,png}`` (AP by phase), ``ablation_phase3`` (phase 3 - 2b),
    ``ablation_phase3_variants`` and ``ablation_schedules`` (1x against 2x), then
    ``thesis_claims_vs_measured`` again (``ffcore.report.findings``: two of its claims quote
    these comparisons; notebook 07, before the study, made it first). ``provenance``:
    every file gets its entry. A per-seed CSV that is one of the run's inputs is left as read
    when ``results`` are its rows (rewriting the source from itself would change its bytes,
    not its numbers); grown (notebook 08's ``extends_csv``), it is written, and its entry
    names the run's parameters and no longer itself as an input."""
    from ffcore.report.provenance import record
    from ffcore.report.study_stats import phase_trajectory

    results = sort_per_seed(results)
    target = (repo_path(out_dir) if out_dir is not None else FIGURES_DIR) / PER_SEED_FILE
    inputs = {str(repo_path(p).resolve()): p for p in provenance.inputs} if provenance else {}
    source_itself = str(target.resolve()) in inputs
    if source_itself and read_per_seed(target).equals(results):
        per_seed = target  # the source itself: kept as read (its layout and its entry)
    else:
        per_seed = write_per_seed(results, out_dir)
        if provenance is not None:
            if source_itself:  # grown from itself: the old bytes are not an input of the new
                kept = {k: v for k, v in provenance.inputs.items()
                        if k != inputs[str(target.resolve())]}  # fmt: skip
                record([per_seed], dataclasses.replace(provenance, inputs=kept))
            else:
                record([per_seed], provenance)
    summary, diffs = summarize(results), paired_differences(results)
    costs = cost_table(results)
    src = {"source": source, "provenance": provenance}

    def csv_as(frame: pd.DataFrame, written: list[Path]) -> None:
        with replacing(written[0]) as tmp:  # machine-readable (save_table wrote for print)
            frame.to_csv(tmp, index=False)
        if provenance is not None:
            record([written[0]], provenance)

    names = profiles(results)
    fig = plot_study(results, summary, profile_source(source, results, names[0]))
    figures.save_figure(fig, "ablation_study", out_dir, provenance=provenance)
    written = figures.save_table(summary_table(summary), "ablation_study", out_dir, index=False,
                                 decimals=1, **src)  # fmt: skip
    csv_as(summary, written)
    forest = None
    variance = pd.DataFrame()
    for profile in profiles(diffs) if len(diffs) else []:
        mine, mine_source = (
            diffs[diffs.profile == profile],
            profile_source(source, results, profile),
        )
        one = plot_forest(mine, mine_source)
        forest = one if forest is None else forest
        figures.save_figure(one, _stem("ablation_forest", profile, names[0]), out_dir,
                            provenance=provenance)  # fmt: skip
        # printed per schedule, beside its forest plot (both in one table ran past a page);
        # the first profile's CSV holds every schedule's rows
        written = figures.save_table(
            comparison_table(mine), _stem("ablation_comparisons", profile, names[0]), out_dir,
            index=False, decimals=COMPARISON_DECIMALS, source=mine_source, provenance=provenance,
        )  # fmt: skip
        csv_as(diffs if profile == names[0] else mine, written)
    if len(diffs):
        equivalence = equivalence_table(diffs)
        if len(equivalence):
            figures.save_table(equivalence, "ablation_equivalence", out_dir, index=False,
                               decimals=COMPARISON_DECIMALS, **src)  # fmt: skip
        variance = variance_decomposition(results)
        figures.save_table(variance, "ablation_variance", out_dir, decimals=2, **src)
    figures.save_table(costs, "ablation_costs", out_dir, index=False,
                       decimals={"NME": 4, "NME 95% CI low": 4, "NME 95% CI high": 4,
                                 "train s (mean)": 0, "train s (sd)": 0,
                                 "train CPU s (mean)": 0, "eval s (mean)": 1,
                                 "cell CPU s (mean)": 0}, **src)  # fmt: skip
    trajectory, phases = phase_trajectory(results), None
    for profile in profiles(trajectory) if len(trajectory) else []:
        one = plot_phases(trajectory[trajectory.profile == profile],
                          profile_source(source, results, profile))  # fmt: skip
        phases = one if phases is None else phases
        stem = _stem("ablation_phases", profile, profiles(trajectory)[0])
        figures.save_figure(one, stem, out_dir, provenance=provenance)
    if len(trajectory):
        written = figures.save_table(
            phase_table(trajectory), "ablation_phases", out_dir, index=False,
            decimals={"n": 0}, **src,
        )  # fmt: skip
        csv_as(trajectory, written)
    told = story(results, diffs)
    gain, variants, schedules = told.measured.gain, told.measured.variants, told.measured.table
    for frame, name, keys in (
        (gain, "ablation_phase3", ["profile", "configuration", "subset"]),
        (variants, "ablation_phase3_variants", ["profile", "configuration", "variant", "subset"]),
    ):
        if len(frame):
            written = figures.save_table(difference_table(frame, keys), name, out_dir, index=False,
                                         decimals={"n": 0, "difference": 1, "Holm p": 3}, **src)  # fmt: skip
            csv_as(frame, written)
    if len(schedules):
        written = figures.save_table(schedule_print(schedules), "ablation_schedules", out_dir,
                                     index=False, decimals={"1x Holm p": 3, "2x Holm p": 3},
                                     **src)  # fmt: skip
        csv_as(schedules, written)
    # the thesis claims quote these comparisons: the table notebook 07 made before them is
    # made again from the folder as it is now (each row names its own run)
    from ffcore.report import findings

    found = findings.build_findings(per_seed.parent)
    figures.save_table(findings.findings_frame(found), findings.TABLE_NAME, out_dir,
                       source=f"{source}, and each row's own run", provenance=provenance)  # fmt: skip
    return StudyExport(summary, diffs, variance, costs, gain, variants, schedules, told, fig,
                       forest, phases, per_seed)  # fmt: skip


def schedule_print(schedules: pd.DataFrame) -> pd.DataFrame:
    """``schedule_table`` for LaTeX: per test, each schedule's difference [interval] and Holm p
    and the agreement; the profiles (one pair) and the verdict words, which the Holm p and the
    agreement already say, are left to the CSV, so the table fits the page."""
    return schedules.rename(columns={"1x p_holm": "1x Holm p", "2x p_holm": "2x Holm p"})[
        ["comparison", "subset", "1x", "1x Holm p", "2x", "2x Holm p", "agreement"]
    ]


def phase_table(trajectory: pd.DataFrame) -> pd.DataFrame:
    """The trajectory for LaTeX, one row per (profile, configuration, phase): seeds and, per
    subset, AP (%) on half A of val with its 95 % interval over seeds."""
    rows = []
    for (profile, conf, phase), group in trajectory.groupby(
        ["profile", "configuration", "phase"], sort=False
    ):
        row = {"profile": profile, "configuration": CONFIGURATIONS[conf].label, "phase": phase,
               "n": int(group["n"].min())}  # fmt: skip
        for r in group.itertuples():
            ci = "" if math.isnan(r.low) else f" [{r.low:.1f}, {r.high:.1f}]"
            row[r.subset] = f"{r.mean:.1f}{ci}"
        rows.append(row)
    return pd.DataFrame(rows, columns=["profile", "configuration", "phase", "n", *SUBSETS])


# -- numbers ---------------------------------------------------------------------------------
def _prefix(profile: str, first: str) -> str:
    """The number-name prefix of a profile: none for the first, "TwoX" for its 2x."""
    if profile == first:
        return ""
    return "TwoX" if profile == first + TWO_X else name_part(profile)


def register_numbers(
    numbers: Numbers, results: pd.DataFrame, diffs: pd.DataFrame, told: Story | None = None
) -> None:
    """The study's numbers for the thesis (``ffcore.report.numbers``), in AP points: the seed
    count, per subset the resolution (median paired 95 % half-width, median detectable
    difference), per comparison and subset (``<A>Minus<B><Subset>``, prefixed ``TwoX`` for the
    2x schedule) the difference, its interval, the Holm p and the verdict, for ECA-CBAM - CBAM
    the equivalence p and verdict, the story's paragraphs (``StudyStory<Part>``) and the grid's
    spans, variance steps, cost and 1-point plan (``_register_grid``)."""
    names = profiles(results)
    first = final_rows(results, names[0])
    numbers.add("StudySeeds", int(first["seed"].nunique()), "{:d}", "seeds",
                "seeds per configuration of the ablation grid")  # fmt: skip
    numbers.add("StudyConfigurations", int(first["configuration"].nunique()), "{:d}", "",
                "configurations of the ablation grid")  # fmt: skip
    numbers.add("StudyEquivalenceMargin", EQUIVALENCE_MARGIN, "{:g}", "AP points",
                "equivalence margin of ECA-CBAM - CBAM (declared before the data)")  # fmt: skip
    if told is not None:
        register_story(numbers, told)
    _register_grid(numbers, results[results["profile"] == names[0]])
    if diffs.empty:
        return
    for profile in profiles(diffs):
        _register_resolution(numbers, diffs[diffs.profile == profile], names[0])
    for r in diffs.itertuples():
        pre = _prefix(r.profile, names[0])
        base = f"{pre}{name_part(r.a)}Minus{name_part(r.b)}{name_part(r.subset)}"
        what = f"{r.comparison} on {r.subset} ({r.profile})"
        numbers.add(f"{base}Diff", r.mean, "{:+.1f}", "AP points", f"{what}: mean")
        numbers.add(f"{base}CiLow", r.low, "{:+.1f}", "AP points", f"{what}: 95 % low")
        numbers.add(f"{base}CiHigh", r.high, "{:+.1f}", "AP points", f"{what}: 95 % high")
        numbers.add(f"{base}HolmP", r.p_holm, "{:.2g}", "", f"{what}: Holm-adjusted p")
        numbers.add(f"{base}Verdict", r.verdict, unit="", description=f"{what}: verdict")
        if r.comparison in EQUIVALENCE_LABELS:
            numbers.add(f"{base}EqLow", r.eq_low, "{:+.1f}", "AP points", f"{what}: 90 % low")
            numbers.add(f"{base}EqHigh", r.eq_high, "{:+.1f}", "AP points", f"{what}: 90 % high")
            numbers.add(f"{base}TostP", r.p_equivalence, "{:.2g}", "",
                        f"{what}: TOST p (the larger one-sided p)")  # fmt: skip
            numbers.add(f"{base}EqVerdict", r.equivalence_verdict, unit="",
                        description=f"{what}: equivalence verdict")  # fmt: skip


def _register_resolution(numbers: Numbers, mine: pd.DataFrame, first: str) -> None:
    """Of one profile's family (``Study...``, ``StudyTwoX...`` for the 2x): its seeds (2x only;
    ``StudySeeds`` is the first profile's), per subset the median paired 95 % half-width and
    the median difference detectable with 80 % power, and the half-widths against the goal
    (``goal_points``)."""
    profile = str(mine["profile"].iloc[0])
    pre, goal_at = f"Study{_prefix(profile, first)}", goal_points(profile)
    where = "" if profile == first else f" ({profile})"
    if profile != first:
        numbers.add(f"{pre}Seeds", int(mine["n"].max()), "{:d}", "seeds",
                    f"seeds per configuration{where}")  # fmt: skip
    half = half_widths(mine)
    mde = mine["detectable"].groupby(mine["subset"]).median()
    present = [s for s in SUBSETS if s in half.index]
    met = [s for s in present if half[s] <= goal_at]
    missed = [s for s in present if s not in met]
    goal = ", ".join(
        f"{verb} on {' and '.join(which)}"
        for verb, which in (("met", met), ("missed", missed))
        if which
    )
    numbers.add(f"{pre}Goal", f"the {goal_at:g}-point goal {goal}", unit="",
                description=f"median paired 95 % half-width against its goal{where}")  # fmt: skip
    for subset in present:
        word = name_part(subset)
        numbers.add(f"{pre}HalfWidth{word}", float(half[subset]), "{:.2f}", "AP points",
                    f"median paired 95 % half-width over the family, {subset}{where}")  # fmt: skip
        numbers.add(f"{pre}MdeEighty{word}", float(mde[subset]), "{:.1f}", "AP points",
                    f"median difference detectable with 80 % power, {subset}{where}")  # fmt: skip


def _span(values: pd.Series) -> str:
    return f"{values.min():.1f}-{values.max():.1f}"


def _register_grid(numbers: Numbers, rows: pd.DataFrame) -> None:
    """The first profile's grid, in AP points unless said: the span over configurations of mean
    AP, the variance steps (median over ``VARIANCE_FAMILY`` of the paired sd on the first 96 val
    images and on all of them, of its evaluation and training parts), the pairing correlation,
    the CPU seconds of a cell (``cell_costs``: all its training and scoring), and the seeds,
    cells and hours of the 1-point plan (``plan_study`` on ``PLAN_JOBS`` cells at a time on
    ``PLAN_CORES`` cores and on ``PLAN_SLURM_TASKS`` tasks)."""
    first, costs = final_rows(rows), cell_costs(rows)
    cells = first.drop_duplicates(["configuration", "seed"])
    numbers.add("StudyCells", len(cells), "{:d}", "cells", "cells of the ablation grid")
    for column, word, what in (
        ("train_cpu", "Train", "training CPU s of a cell (main chain and phase-3 variants)"),
        ("eval_cpu", "Eval", "scoring CPU s of a cell (every phase and variant scored)"),
    ):
        seconds = costs[column].dropna()
        if len(seconds) > 1:
            numbers.add(f"StudyCell{word}CpuMean", float(seconds.mean()), "{:.0f}", "CPU s",
                        f"{what}: mean over the cells")  # fmt: skip
            numbers.add(f"StudyCell{word}CpuSd", float(seconds.std(ddof=1)), "{:.0f}", "CPU s",
                        f"{what}: sd over the cells")  # fmt: skip
    mean_ap = 100 * first.groupby(["subset", "configuration"])["ap"].mean()
    for subset in [s for s in SUBSETS if s in mean_ap.index.get_level_values(0)]:
        numbers.add(f"StudyApSpan{name_part(subset)}", _span(mean_ap[subset]), unit="AP (%)",
                    description=f"lowest-highest mean AP over the configurations, {subset}")  # fmt: skip
    parts = variance_components(first)
    if parts.empty or parts["paired sd"].isna().all():
        return
    numbers.add("StudyVarianceTests", len(parts), "{:d}", "tests",
                "tests (comparison x subset) of the variance family (VARIANCE_FAMILY)")  # fmt: skip
    steps = parts.drop(columns="comparison").groupby("subset").median()
    for subset in [s for s in SUBSETS if s in steps.index]:
        word = name_part(subset)
        for column, step in (("paired sd, first 96", "FirstNinetySix"), ("paired sd", "All"),
                             ("evaluation sd", "Evaluation"), ("training sd", "Training")):  # fmt: skip
            numbers.add(f"StudySd{step}{word}", float(steps.loc[subset, column]), "{:.2f}",
                        "AP points", f"median {column} over the variance family, {subset}")  # fmt: skip
    numbers.add("StudyEvaluationSdSpan", _span(steps["evaluation sd"]), unit="AP points",
                description="lowest-highest median evaluation sd over the subsets")  # fmt: skip
    training = [s for s in SUBSETS if s in steps.index
                and steps.loc[s, "training sd"] > steps.loc[s, "evaluation sd"]]  # fmt: skip
    numbers.add("StudyTrainingNoiseSubsets", listed(training) or "no subset", unit="",
                description="subsets whose median training sd exceeds the evaluation sd")  # fmt: skip
    with warnings.catch_warnings():  # a constant AP over seeds has no correlation: NaN, left out
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        r = pairing_correlation(first)["r"].dropna()
    numbers.add("StudyPairingCorrelation", float(r.median()), "{:.2f}", "",
                "median over the variance family of the correlation over seeds")  # fmt: skip
    numbers.add("StudyPairingNegative", int((r < 0).sum()), "{:d}", "tests",
                "tests of the variance family with a negative correlation over seeds")  # fmt: skip
    plan = plan_study(rows, GOAL_POINTS, PLAN_JOBS, PLAN_CORES, PLAN_SLURM_TASKS)
    for subset, row in plan.per_subset.iterrows():
        word = name_part(subset)
        numbers.add(f"StudyPlanSd{word}", float(row["paired sd (AP points)"]), "{:.2f}",
                    "AP points", f"median paired sd over the family, {subset}")  # fmt: skip
        numbers.add(f"StudyPlanSeedsHalfWidth{word}", int(row["seeds for half-width"]), "{:d}",
                    "seeds", f"seeds for a 1-point 95 % half-width, {subset}")  # fmt: skip
        numbers.add(f"StudyPlanSeedsPower{word}", int(row["seeds for 80% power"]), "{:d}",
                    "seeds", f"seeds for 80 % power at 1 point, {subset}")  # fmt: skip
        numbers.add(f"StudyPlanSdBound{word}", float(row[SD_BOUND_COLUMN]), "{:.2f}",
                    "AP points", f"{PLAN_SD_BOUND:.0%} upper bound of that sd, {subset}")  # fmt: skip
        numbers.add(f"StudyPlanSeedsAtBound{word}", int(row[SEEDS_AT_BOUND_COLUMN]), "{:d}",
                    "seeds", f"seeds for a 1-point half-width at that bound, {subset}")  # fmt: skip
    numbers.add("StudyPlanSeeds", plan.seeds, "{:d}", "seeds", "seeds of the 1-point plan")
    numbers.add("StudyPlanCells", plan.cells, "{:d}", "cells", "cells of the 1-point plan")
    numbers.add("StudyPlanCellCpu", plan.cell_cpu_seconds, "{:.0f}", "CPU s",
                "training + scoring CPU seconds of a cell (mean over the pilot)")  # fmt: skip
    numbers.add("StudyPlanLocalHours", plan.local_wall_seconds / 3600, "{:.1f}", "h",
                f"the plan's wall time, {PLAN_JOBS} cells at a time on {PLAN_CORES} cores")  # fmt: skip
    numbers.add("StudyPlanSlurmHours", (plan.slurm_wall_seconds or math.nan) / 3600, "{:.1f}",
                "h", f"the plan's wall time on {PLAN_SLURM_TASKS} SLURM tasks")  # fmt: skip
    half_seeds = int(plan.per_subset["seeds for half-width"].max())
    per_cell_wall = plan.local_wall_seconds / math.ceil(plan.cells / plan.jobs)
    half_hours = math.ceil(plan.configurations * half_seeds / plan.jobs) * per_cell_wall / 3600
    numbers.add("StudyPlanHalfWidthSeeds", half_seeds, "{:d}", "seeds",
                "seeds for a 1-point 95 % half-width on every subset")  # fmt: skip
    numbers.add("StudyPlanHalfWidthHours", half_hours, "{:.1f}", "h",
                f"wall time of those seeds, {PLAN_JOBS} cells at a time on {PLAN_CORES} cores")  # fmt: skip
