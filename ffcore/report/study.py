"""Statistics, tables and the figure of the ablation study (``ffcore.study``).

For each configuration and subset: the mean AP over seeds and its 95 % Student-t interval. For
each comparison A - B: the paired difference by seed (same data order and augmentation) with its
95 % t interval, and a sentence saying what it shows. With n seeds the interval is
mean +- t(0.975, n - 1) * sd / sqrt(n); with one seed there is no interval (NaN).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ffcore.report import figures
from ffcore.study import CONFIGURATIONS, RESULT_FILE

SUBSETS: tuple[str, ...] = ("easy", "medium", "hard")
CONFIDENCE = 0.95
# (A, B, label): the comparisons the thesis asks for, each reported as A - B
COMPARISONS: tuple[tuple[str, str, str], ...] = (
    ("eca_cbam_phased", "cbam_phased", "ECA-CBAM - CBAM (phased)"),
    ("eca_cbam_joint", "cbam_joint", "ECA-CBAM - CBAM (joint)"),
    ("eca_cbam_phased", "eca_cbam_joint", "phased - joint (ECA-CBAM)"),
    ("cbam_phased", "cbam_joint", "phased - joint (CBAM)"),
    ("eca_cbam_phased", "none", "ECA-CBAM phased - none"),
    ("cbam_phased", "none", "CBAM phased - none"),
)


def t_interval(values: Any, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high) of the Student-t interval of the mean; NaN bounds for n < 2."""
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def load_results(out_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per (cell, subset): configuration, seed, subset, ap (fraction), plus the cell's
    landmark NME and training seconds, from every ``<out_dir>/*/result.json``."""
    rows = []
    for path in sorted(Path(out_dir).glob(f"*/{RESULT_FILE}")):
        import json

        r = json.loads(path.read_text())
        lm = r["ap"].get("landmarks") or {}
        for subset in SUBSETS:
            rows.append(
                {
                    "configuration": r["configuration"],
                    "seed": int(r["seed"]),
                    "subset": subset,
                    "ap": np.nan if r["ap"][subset] is None else float(r["ap"][subset]),
                    "nme": np.nan if lm.get("nme") is None else float(lm["nme"]),
                    "train_seconds": float(r["seconds"]["train"]),
                    "profile": r["profile"],
                }
            )
    if not rows:
        raise FileNotFoundError(f"no study results (*/{RESULT_FILE}) under {out_dir}")
    return pd.DataFrame(rows)


def _ordered(names: Any) -> list[str]:
    return [c for c in CONFIGURATIONS if c in set(names)]


def summarize(results: pd.DataFrame, value: str = "ap") -> pd.DataFrame:
    """configuration, subset, n_seeds, mean, ci_low, ci_high (in the units of ``value``)."""
    rows = []
    for conf in _ordered(results["configuration"]):
        for subset in SUBSETS:
            vals = results[(results.configuration == conf) & (results.subset == subset)][value]
            mean, low, high = t_interval(vals)
            rows.append(
                {
                    "configuration": conf,
                    "subset": subset,
                    "n_seeds": int(vals.notna().sum()),
                    "mean": mean,
                    "ci_low": low,
                    "ci_high": high,
                }
            )
    return pd.DataFrame(rows)


def verdict(low: float, high: float) -> str:
    if math.isnan(low) or math.isnan(high):
        return "no interval (one seed)"
    if low > 0:
        return "significantly higher"
    if high < 0:
        return "significantly lower"
    return "no significant difference"


def sentence(label: str, subset: str, n: int, mean: float, low: float, high: float) -> str:
    """E.g. "ECA-CBAM - CBAM (phased) on hard: +0.4 points [-1.2, +2.0], n = 3: no significant
    difference" (AP points = percent)."""
    interval = "" if math.isnan(low) else f" [{100 * low:+.1f}, {100 * high:+.1f}]"
    return f"{label} on {subset}: {100 * mean:+.1f} points{interval}, n = {n}: {verdict(low, high)}"


def paired_differences(
    results: pd.DataFrame, comparisons: tuple[tuple[str, str, str], ...] = COMPARISONS
) -> pd.DataFrame:
    """comparison, subset, n (seeds present in both), mean_diff, ci_low, ci_high (AP fractions),
    verdict and sentence, for each comparison whose two configurations were run."""
    present = set(results["configuration"])
    rows = []
    for a, b, label in comparisons:
        if a not in present or b not in present:
            continue
        for subset in SUBSETS:
            sub = results[results.subset == subset].pivot_table(
                index="seed", columns="configuration", values="ap"
            )
            diff = (sub[a] - sub[b]).dropna()
            mean, low, high = t_interval(diff)
            rows.append(
                {
                    "comparison": label,
                    "subset": subset,
                    "n": len(diff),
                    "mean_diff": mean,
                    "ci_low": low,
                    "ci_high": high,
                    "verdict": verdict(low, high),
                    "sentence": sentence(label, subset, len(diff), mean, low, high),
                }
            )
    return pd.DataFrame(rows)


def plot_study(results: pd.DataFrame, summary: pd.DataFrame, source: str):
    """AP per configuration, one panel per subset: mean with its 95 % interval and every seed
    as a dot. ``source`` names the run and data (e.g. "study profile, synthetic data")."""
    confs = _ordered(summary["configuration"])
    fig, axes = figures.new_figure("full", 0.36, ncols=len(SUBSETS), sharey=False)
    colors = [figures.VARIANT_COLORS[CONFIGURATIONS[c].variant] for c in confs]
    for ax, subset in zip(axes, SUBSETS, strict=True):
        s = summary[summary.subset == subset].set_index("configuration").loc[confs]
        x = np.arange(len(confs))
        yerr = np.vstack([s["mean"] - s["ci_low"], s["ci_high"] - s["mean"]]) * 100
        ax.errorbar(x, s["mean"] * 100, yerr=np.nan_to_num(yerr), fmt="none", ecolor="black",
                    capsize=3, lw=1, zorder=3)  # fmt: skip
        ax.scatter(x, s["mean"] * 100, marker="_", s=200, c=colors, zorder=4, label="mean, 95% CI")
        for i, conf in enumerate(confs):
            seeds = results[(results.configuration == conf) & (results.subset == subset)]
            jitter = np.linspace(-0.12, 0.12, len(seeds)) if len(seeds) > 1 else [0.0]
            ax.scatter(i + np.asarray(jitter), seeds["ap"] * 100, s=10, color=colors[i],
                       alpha=0.7, edgecolors="none", zorder=2)  # fmt: skip
        ax.set_xticks(x, [CONFIGURATIONS[c].label for c in confs], rotation=35, ha="right")
        ax.set_title(f"{subset}")
        lo = np.nanmin([results[results.subset == subset]["ap"].min(), s["ci_low"].min()]) * 100
        hi = np.nanmax([results[results.subset == subset]["ap"].max(), s["ci_high"].max()]) * 100
        pad = max(0.5, 0.15 * (hi - lo))
        ax.set_ylim(lo - pad, min(100.5, hi + pad))
    axes[0].set_ylabel("AP (%)")
    n = int(summary["n_seeds"].max())
    fig.suptitle(f"Ablation: AP per configuration (dots: seeds, bars: 95% CI, n = {n}); {source}",
                 fontsize=8)  # fmt: skip
    return fig


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


def comparison_table(diffs: pd.DataFrame) -> pd.DataFrame:
    """The comparisons for LaTeX: differences and intervals in AP points, with the verdict."""
    columns = ["comparison", "subset", "n", "mean_diff", "ci_low", "ci_high", "verdict"]
    return _in_points(diffs[columns], "mean_diff", "difference (AP points)", "n")


def cost_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per configuration: seeds, landmark NME (mean and 95 % interval over seeds) and training
    seconds per cell (mean and standard deviation; CPU time on a shared machine is noisy)."""
    per_cell = results.drop_duplicates(["configuration", "seed"])
    rows = []
    for conf in _ordered(per_cell["configuration"]):
        cells = per_cell[per_cell.configuration == conf]
        nme, low, high = t_interval(cells["nme"])
        rows.append(
            {
                "configuration": CONFIGURATIONS[conf].label,
                "seeds": len(cells),
                "NME": nme,
                "NME 95% CI low": low,
                "NME 95% CI high": high,
                "train s (mean)": cells["train_seconds"].mean(),
                "train s (sd)": cells["train_seconds"].std(ddof=1),
            }
        )
    return pd.DataFrame(rows)


def export_study(
    results: pd.DataFrame, out_dir: str | os.PathLike[str] | None, source: str
) -> tuple[pd.DataFrame, pd.DataFrame, Any]:
    """Write ``ablation_study.{csv,tex,pdf,png}``, ``ablation_comparisons.{csv,tex}`` and
    ``ablation_costs.{csv,tex}`` to ``out_dir`` (default figures/); returns (summary,
    comparisons, figure). ``ablation_study.csv`` holds AP as fractions (configuration, subset,
    n_seeds, mean, ci_low, ci_high); the LaTeX tables show percent."""
    summary, diffs = summarize(results), paired_differences(results)
    fig = plot_study(results, summary, source)
    src = {"source": source}
    figures.save_figure(fig, "ablation_study", out_dir)
    csv, _ = figures.save_table(summary_table(summary), "ablation_study", out_dir, index=False,
                                decimals=1, **src)  # fmt: skip
    figures.save_table(comparison_table(diffs), "ablation_comparisons", out_dir, index=False,
                       decimals=1, **src)  # fmt: skip
    figures.save_table(cost_table(results), "ablation_costs", out_dir, index=False,
                       decimals={"NME": 4, "NME 95% CI low": 4, "NME 95% CI high": 4,
                                 "train s (mean)": 0, "train s (sd)": 0}, **src)  # fmt: skip
    summary.to_csv(csv, index=False)  # fractions, machine-readable (save_table wrote percent)
    return summary, diffs, fig


def resolution(results: pd.DataFrame, diffs: pd.DataFrame) -> pd.DataFrame:
    """Per subset: the seed-to-seed standard deviation of AP (mean over configurations) and the
    smallest difference the grid resolves (median half-width of the paired 95 % intervals), in
    AP points. A true difference much below the second cannot be told from seed noise."""
    sd = results.groupby(["subset", "configuration"])["ap"].std(ddof=1).groupby("subset").mean()
    half = ((diffs["ci_high"] - diffs["ci_low"]) / 2).groupby(diffs["subset"]).median()
    frame = pd.DataFrame({"seed sd (AP points)": sd * 100, "resolvable (AP points)": half * 100})
    return frame.loc[[s for s in SUBSETS if s in frame.index]]
