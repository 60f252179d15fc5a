"""Statistics, tables and figures of the ablation study (``ffcore.study``).

The per-seed frame is the source of everything: ``load_results`` reads it from the cells'
``result.json`` files, ``export_study`` commits it as ``figures/ablation_per_seed.csv`` and
``read_per_seed`` reads it back, so every table and figure below can be rebuilt from that CSV
alone (no runs, no training).

For each configuration and subset: the mean AP over seeds and its 95 % Student-t interval. For
each comparison A - B of the declared ``FAMILY`` (six comparisons x three subsets = 18 tests,
fixed here before any result is read): the paired difference by seed (same data order and
augmentation), its 95 % t interval (mean +- t(0.975, n - 1) * sd / sqrt(n)), the paired t-test
p-value, the Holm-adjusted p over the family, an exact sign-flip permutation p beside it (no
normality assumed) and the difference the study could detect with 80 % power. The verdict says
"significantly higher/lower" only when the Holm-adjusted p is below ``ALPHA``.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

from ffcore.atomic import replacing
from ffcore.paths import FIGURES_DIR, repo_path
from ffcore.report import figures
from ffcore.report.numbers import Numbers, name_part
from ffcore.study import CONFIGURATIONS, RESULT_FILE

if TYPE_CHECKING:
    from ffcore.report.provenance import RunInfo

SUBSETS: tuple[str, ...] = ("easy", "medium", "hard")
CONFIDENCE = 0.95
ALPHA = 0.05  # family-wise error rate (Holm)
POWER = 0.80  # for the detectable difference and the seed count of a plan
# (A, B, label): the comparisons the thesis asks for, each reported as A - B
COMPARISONS: tuple[tuple[str, str, str], ...] = (
    ("eca_cbam_phased", "cbam_phased", "ECA-CBAM - CBAM (phased)"),
    ("eca_cbam_joint", "cbam_joint", "ECA-CBAM - CBAM (joint)"),
    ("eca_cbam_phased", "eca_cbam_joint", "phased - joint (ECA-CBAM)"),
    ("cbam_phased", "cbam_joint", "phased - joint (CBAM)"),
    ("eca_cbam_phased", "none", "ECA-CBAM phased - none"),
    ("cbam_phased", "none", "CBAM phased - none"),
)
Test = tuple[str, str, str, str]  # (A, B, label, subset)
# The family of tests Holm adjusts over, declared before any result is read: 6 x 3 = 18.
FAMILY: tuple[Test, ...] = tuple(
    (a, b, label, subset) for a, b, label in COMPARISONS for subset in SUBSETS
)
# The per-seed frame: one row per (cell, subset); AP as fractions, NaN where a result lacks it.
PER_SEED_COLUMNS: tuple[str, ...] = (
    "configuration", "seed", "subset", "ap",
    "ap_half_a", "ap_half_b", "ap_first96",
    "nme", "train_seconds", "train_cpu_seconds", "eval_seconds", "profile", "torch_threads",
    "eval_cpu_seconds",
)  # fmt: skip
PER_SEED_FILE = "ablation_per_seed.csv"
SIGNFLIP_EXACT_MAX = 16  # seeds up to which the sign-flip p enumerates all 2^n flips


# -- the per-seed frame ----------------------------------------------------------------------
def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _cell_rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    lm = r["ap"].get("landmarks") or {}
    splits = r.get("ap_splits") or {}
    seconds, cpu = r.get("seconds") or {}, r.get("cpu_seconds") or {}
    rows = []
    for subset in SUBSETS:
        row = {"configuration": r["configuration"], "seed": int(r["seed"]), "subset": subset}
        row["ap"] = _number(r["ap"].get(subset))
        for split in ("half_a", "half_b", "first96"):
            row[f"ap_{split}"] = _number((splits.get(split) or {}).get(subset))
        row |= {
            "nme": _number(lm.get("nme")),
            "train_seconds": _number(seconds.get("train")),
            "train_cpu_seconds": _number(cpu.get("train")),
            "eval_seconds": _number(seconds.get("evaluate")),
            "profile": r["profile"],
            "torch_threads": _number(r.get("torch_threads")),
            "eval_cpu_seconds": _number(cpu.get("evaluate")),
        }
        rows.append(row)
    return rows


def sort_per_seed(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in configuration order (``CONFIGURATIONS``), then seed, then subset (easy first)."""
    key = {c: i for i, c in enumerate(CONFIGURATIONS)} | {s: i for i, s in enumerate(SUBSETS)}
    out = frame.sort_values(
        ["configuration", "seed", "subset"],
        key=lambda col: col.map(key) if col.name != "seed" else col,
        kind="stable",
    )
    return out.reset_index(drop=True)


def load_results(out_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The per-seed frame (``PER_SEED_COLUMNS``) of every ``<out_dir>/*/result.json``: one row
    per (cell, subset), AP as fractions (``ap`` on the whole val set, ``ap_half_a`` / ``_b`` on
    its even / odd images, ``ap_first96`` on its first 96), the cell's landmark NME, seconds and
    CPU seconds; NaN where an older result lacks a key."""
    rows = []
    for path in sorted(Path(out_dir).glob(f"*/{RESULT_FILE}")):
        rows += _cell_rows(json.loads(path.read_text()))
    if not rows:
        raise FileNotFoundError(f"no study results (*/{RESULT_FILE}) under {out_dir}")
    return sort_per_seed(pd.DataFrame(rows, columns=list(PER_SEED_COLUMNS)))


def has_results(out_dir: str | os.PathLike[str]) -> bool:
    return any(Path(out_dir).glob(f"*/{RESULT_FILE}"))


def write_per_seed(results: pd.DataFrame, out_dir: str | os.PathLike[str] | None) -> Path:
    """``<out_dir>/ablation_per_seed.csv`` (default figures/): plain CSV, full precision."""
    out = repo_path(out_dir) if out_dir is not None else FIGURES_DIR
    out.mkdir(parents=True, exist_ok=True)
    path = out / PER_SEED_FILE
    with replacing(path) as tmp:
        sort_per_seed(results[list(PER_SEED_COLUMNS)]).to_csv(tmp, index=False)
    return path


def read_per_seed(csv_path: str | os.PathLike[str]) -> pd.DataFrame:
    """The per-seed frame back from ``write_per_seed``'s CSV; a file without the columns of
    ``PER_SEED_COLUMNS`` (in that order) is an error naming the file."""
    path = Path(csv_path)
    if not path.is_file():
        raise FileNotFoundError(f"no per-seed study results at {path}")
    frame = pd.read_csv(path, dtype={"configuration": str, "subset": str, "profile": str})
    columns = list(frame.columns)
    if columns != list(PER_SEED_COLUMNS):
        missing = [c for c in PER_SEED_COLUMNS if c not in columns]
        raise ValueError(
            f"{path}: not a per-seed study table; expected columns {list(PER_SEED_COLUMNS)}, "
            f"got {columns}" + (f" (missing {missing})" if missing else "")
        )
    if frame.empty:
        raise ValueError(f"{path}: no rows")
    return sort_per_seed(frame.astype({"seed": int}))


def study_frame(
    run_dir: str | os.PathLike[str], per_seed_csv: str | os.PathLike[str] | None, fallback: Any
) -> tuple[pd.DataFrame, str]:
    """(per-seed frame, where it came from): ``per_seed_csv`` when given, else the cells of
    ``run_dir`` when there are any, else the CSV ``fallback`` (e.g. the committed one)."""
    if per_seed_csv is None and has_results(run_dir):
        return load_results(run_dir), str(run_dir)
    path = Path(per_seed_csv if per_seed_csv is not None else fallback)
    return read_per_seed(path), str(path)


def study_source(results: pd.DataFrame, data_root: str | os.PathLike[str] | None) -> str:
    """The ``source`` line of the study's figures: the profile(s) of the per-seed frame and the
    data (``data_root`` None: the synthetic set), e.g. "study profile, synthetic data"."""
    profiles = "/".join(sorted(set(results["profile"].astype(str))))
    data = "synthetic data" if data_root is None else f"data {Path(data_root).name}"
    return f"{profiles} profile, {data}"


# -- statistics ------------------------------------------------------------------------------
def _finite(values: Any) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    return x[~np.isnan(x)]


def t_interval(values: Any, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high) of the Student-t interval of the mean; NaN bounds for n < 2."""
    x = _finite(values)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def paired_t_p(diffs: Any) -> float:
    """Two-sided p of the paired t-test (one-sample t on the differences); NaN for n < 2 and
    1 when every difference is 0."""
    d = _finite(diffs)
    if len(d) < 2:
        return math.nan
    if np.all(d == d[0]):
        return 1.0 if d[0] == 0 else 0.0
    return float(stats.ttest_1samp(d, 0.0).pvalue)


def signflip_p(diffs: Any, seed: int = 0) -> float:
    """Two-sided sign-flip permutation p of the mean difference: the share of the 2^n sign
    patterns (all of them for n <= 16; 100,000 random ones beyond) whose |mean| is at least the
    observed one. Exact under the null of a distribution symmetric about 0; NaN for n = 0."""
    d = _finite(diffs)
    n = len(d)
    if n == 0:
        return math.nan
    observed = abs(d.mean())
    tol = 1e-12 * max(1.0, observed)
    if n <= SIGNFLIP_EXACT_MAX:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(100_000, n))
    means = np.abs(signs @ d) / n
    return float(np.mean(means >= observed - tol))


def holm(pvalues: Any) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels); NaN stays NaN and is not counted in the family."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], alpha=ALPHA, method="holm")[1]
    return out


def detectable_difference(sd: float, n: int, power: float = POWER, alpha: float = ALPHA) -> float:
    """The true paired difference a two-sided paired t-test at ``alpha`` with ``n`` seeds finds
    with probability ``power``, given the sd of the differences (statsmodels TTestPower solved
    for the effect size, times sd); NaN for n < 2, 0 for sd = 0."""
    if n < 2 or math.isnan(sd):
        return math.nan
    if sd == 0:
        return 0.0
    effect = TTestPower().solve_power(nobs=n, alpha=alpha, power=power, alternative="two-sided")
    return float(effect) * sd


def verdict(p_holm: float, mean: float) -> str:
    if math.isnan(p_holm):
        return "no test (one seed)"
    if p_holm < ALPHA:
        return "significantly higher" if mean > 0 else "significantly lower"
    return "no significant difference"


def sentence(label: str, subset: str, n: int, mean: float, low: float, high: float,
             p_holm: float) -> str:  # fmt: skip
    """E.g. "ECA-CBAM - CBAM (phased) on hard: +0.4 points [-1.2, +2.0], n = 3, Holm p = 0.84:
    no significant difference" (AP points = percent)."""
    interval = "" if math.isnan(low) else f" [{100 * low:+.1f}, {100 * high:+.1f}]"
    holm_p = "" if math.isnan(p_holm) else f", Holm p = {p_holm:.2g}"
    return (
        f"{label} on {subset}: {100 * mean:+.1f} points{interval}, n = {n}{holm_p}: "
        f"{verdict(p_holm, mean)}"
    )


def _pivot(results: pd.DataFrame, subset: str, value: str = "ap") -> pd.DataFrame:
    sub = results[results.subset == subset]
    return sub.pivot_table(index="seed", columns="configuration", values=value, dropna=False)


def _paired(results: pd.DataFrame, a: str, b: str, subset: str, value: str = "ap") -> pd.Series:
    """A - B by seed for the seeds present in both (NaN dropped)."""
    table = _pivot(results, subset, value)
    return (table[a] - table[b]).dropna()


def _family_present(results: pd.DataFrame, family: tuple[Test, ...] = FAMILY) -> list[Test]:
    present = set(results["configuration"])
    return [t for t in family if t[0] in present and t[1] in present]


def paired_differences(results: pd.DataFrame, family: tuple[Test, ...] = FAMILY) -> pd.DataFrame:
    """One row per test of ``family`` whose two configurations were run: comparison, subset, n
    (seeds in both), mean_diff, sd_diff, ci_low, ci_high (AP fractions), p (paired t), p_holm
    (Holm over the tests run), p_signflip, mde80 (the difference detectable with 80 % power, AP
    fraction), verdict (from p_holm) and sentence."""
    rows = []
    for a, b, label, subset in _family_present(results, family):
        d = _paired(results, a, b, subset)
        mean, low, high = t_interval(d)
        sd = float(d.std(ddof=1)) if len(d) > 1 else math.nan
        rows.append(
            {
                "comparison": label, "a": a, "b": b, "subset": subset, "n": len(d),
                "mean_diff": mean, "sd_diff": sd, "ci_low": low, "ci_high": high,
                "p": paired_t_p(d), "p_signflip": signflip_p(d),
                "mde80": detectable_difference(sd, len(d)),
            }
        )  # fmt: skip
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame.insert(frame.columns.get_loc("p") + 1, "p_holm", holm(frame["p"]))
    frame["verdict"] = [verdict(p, m) for p, m in zip(frame.p_holm, frame.mean_diff, strict=True)]
    frame["sentence"] = [
        sentence(r.comparison, r.subset, r.n, r.mean_diff, r.ci_low, r.ci_high, r.p_holm)
        for r in frame.itertuples()
    ]
    return frame


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


# -- where the variance comes from -----------------------------------------------------------
def _sd(x: Any) -> float:
    x = _finite(x)
    return float(x.std(ddof=1)) if len(x) > 1 else math.nan


def variance_components(results: pd.DataFrame, family: tuple[Test, ...] = FAMILY) -> pd.DataFrame:
    """Per test of ``family`` (AP points): ``paired sd`` (sd over seeds of the paired difference
    d on the whole val set), ``paired sd, first 96`` (the same on the first 96 images, the old
    small val set), ``evaluation sd`` (sqrt(var(d_A - d_B) / 4), d_A and d_B the differences on
    the two disjoint halves: each half has twice the evaluation variance of the whole, so their
    difference has four times it) and ``training sd`` (sqrt(max(0, var(d) - evaluation var)))."""
    rows = []
    for a, b, label, subset in _family_present(results, family):
        table = {
            v: _pivot(results, subset, v) for v in ("ap", "ap_first96", "ap_half_a", "ap_half_b")
        }
        d = table["ap"][a] - table["ap"][b]
        halves = (table["ap_half_a"][a] - table["ap_half_a"][b]) - (
            table["ap_half_b"][a] - table["ap_half_b"][b]
        )
        sd, eval_sd = _sd(d), _sd(halves) / 2
        train_var = max(0.0, sd**2 - eval_sd**2) if not math.isnan(eval_sd) else math.nan
        rows.append(
            {
                "comparison": label,
                "subset": subset,
                "paired sd": 100 * sd,
                "paired sd, first 96": 100 * _sd(table["ap_first96"][a] - table["ap_first96"][b]),
                "evaluation sd": 100 * eval_sd,
                "training sd": 100 * math.sqrt(train_var),
            }
        )
    return pd.DataFrame(rows)


def variance_decomposition(
    results: pd.DataFrame, family: tuple[Test, ...] = FAMILY
) -> pd.DataFrame:
    """Per subset, the median over the comparisons of ``variance_components`` (AP points): the
    paired-difference sd on the whole val set and on its first 96 images ("before"), and how
    much of it is evaluation noise (finite val set) and training noise (seed)."""
    parts = variance_components(results, family)
    if parts.empty:
        raise ValueError("no comparison of the family has both configurations in the results")
    table = parts.drop(columns="comparison").groupby("subset").median()
    table.insert(0, "comparisons", parts.groupby("subset").size())
    table = table.rename(
        columns={
            "paired sd": "paired sd (AP points)",
            "paired sd, first 96": "paired sd, first 96 images (before)",
            "evaluation sd": "evaluation sd",
            "training sd": "training (seed) sd",
        }
    )
    return table.loc[[s for s in SUBSETS if s in table.index]]


def resolution(results: pd.DataFrame, diffs: pd.DataFrame) -> pd.DataFrame:
    """Per subset: the seed-to-seed standard deviation of AP (mean over configurations) and the
    smallest difference the grid resolves (median half-width of the paired 95 % intervals), in
    AP points. A true difference much below the second cannot be told from seed noise."""
    sd = results.groupby(["subset", "configuration"])["ap"].std(ddof=1).groupby("subset").mean()
    half = ((diffs["ci_high"] - diffs["ci_low"]) / 2).groupby(diffs["subset"]).median()
    frame = pd.DataFrame({"seed sd (AP points)": sd * 100, "resolvable (AP points)": half * 100})
    return frame.loc[[s for s in SUBSETS if s in frame.index]]


def pairing_correlation(results: pd.DataFrame, family: tuple[Test, ...] = FAMILY) -> pd.DataFrame:
    """Per test of ``family``: the Pearson correlation over seeds of A's and B's AP (how much
    pairing by seed removes; sd(A - B)^2 = sd_A^2 + sd_B^2 - 2 r sd_A sd_B), NaN below 3
    seeds. The former study (independent initial weights per variant) measured a median of
    0.47 with 5 of 18 negative."""
    rows = []
    for a, b, label, subset in _family_present(results, family):
        both = _pivot(results, subset)[[a, b]].dropna()
        r = float(stats.pearsonr(both[a], both[b])[0]) if len(both) > 2 else math.nan
        rows.append({"comparison": label, "subset": subset, "n": len(both), "r": r})
    return pd.DataFrame(rows)


def conclusion_lines(
    diffs: pd.DataFrame, target_points: float = 1.0, alpha: float = ALPHA
) -> list[str]:
    """What the grid resolves, in sentences computed from ``paired_differences`` (so the
    notebook's conclusion never types a number): the median 95 % half-width per subset against
    ``target_points``, the median detectable difference, and the tests significant after
    Holm."""
    if diffs.empty:
        return ["no comparison has both of its configurations in the results"]
    half = ((diffs["ci_high"] - diffs["ci_low"]) / 2 * 100).groupby(diffs["subset"]).median()
    mde = (diffs["mde80"] * 100).groupby(diffs["subset"]).median()
    n = int(diffs["n"].min())
    lines = []
    for subset in [s for s in SUBSETS if s in half.index]:
        met = "meets" if half[subset] <= target_points else "misses"
        lines.append(
            f"{subset}: median paired 95 % half-width {half[subset]:.2f} AP points ({met} the "
            f"{target_points:g}-point goal); a difference of {mde[subset]:.2f} points is found "
            f"with 80 % power (n = {n} seeds)"
        )
    significant = diffs[diffs["p_holm"] < alpha]
    lines.append(
        f"{len(significant)} of {len(diffs)} tests significant after Holm (family-wise "
        f"{alpha:g}):" + "".join(f"\n  {s}" for s in significant["sentence"])
        if len(significant)
        else f"no test of the {len(diffs)} is significant after Holm (family-wise {alpha:g})"
    )
    return lines


# -- sizing the study from a pilot -----------------------------------------------------------
def seeds_for_halfwidth(sd: float, target: float, confidence: float = CONFIDENCE) -> int:
    """Smallest n >= 2 with t(0.5 + confidence / 2, n - 1) * sd / sqrt(n) <= target."""
    if math.isnan(sd) or target <= 0:
        raise ValueError(f"need a measured sd and a positive target, got sd={sd}, {target=}")
    n = 2
    while stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n) > target:
        n += 1
    return n


def seeds_for_power(
    sd: float, difference: float, power: float = POWER, alpha: float = ALPHA
) -> int:
    """Seeds for a two-sided paired t-test at ``alpha`` to find a true ``difference`` with
    probability ``power`` (statsmodels TTestPower solved for nobs, rounded up, at least 2)."""
    if math.isnan(sd) or difference <= 0:
        raise ValueError(
            f"need a measured sd and a positive difference, got sd={sd}, {difference=}"
        )
    if sd == 0:
        return 2
    n = TTestPower().solve_power(effect_size=difference / sd, alpha=alpha, power=power,
                                 alternative="two-sided")  # fmt: skip
    return max(2, math.ceil(float(np.squeeze(n)) - 1e-9))


@dataclass(frozen=True)
class StudyPlan:
    """How many seeds a study needs for ``target_points`` and what the grid costs.

    ``per_subset``: subset -> measured paired sd, seeds for the 95 % half-width, seeds for 80 %
    power (AP points). ``seeds``: the largest of those. ``cell_cpu_seconds``: mean over the
    pilot's cells of training + evaluation CPU seconds; wall times assume a cell's CPU time is
    spread over its ``threads`` without loss (an estimate, not a measurement)."""

    target_points: float
    per_subset: pd.DataFrame
    seeds: int
    configurations: int
    cells: int
    pilot_cells: int
    cell_cpu_seconds: float
    threads: int
    jobs: int
    cores: int
    local_wall_seconds: float
    slurm_tasks: int | None
    slurm_wall_seconds: float | None

    def lines(self) -> list[str]:
        """The plan as the CLI prints it."""

        def hours(seconds: float) -> str:
            return f"{seconds / 3600:.1f} h"

        out = [f"plan for a 95 % paired half-width of {self.target_points:g} AP points "
               f"(pilot: {self.pilot_cells} cells)"]  # fmt: skip
        out += self.per_subset.to_string(float_format=lambda v: f"{v:.2f}").splitlines()
        out.append(
            f"seeds: {self.seeds} -> {self.cells} cells ({self.configurations} configurations); "
            f"{self.cell_cpu_seconds:.0f} CPU s per cell ({self.threads} threads)"
        )
        out.append(f"here: {self.jobs} cells at once on {self.cores} cores: "
                   f"{hours(self.local_wall_seconds)}")  # fmt: skip
        if self.slurm_tasks:
            out.append(f"SLURM: {self.slurm_tasks} tasks: {hours(self.slurm_wall_seconds or 0)}")
        return out


def plan_study(
    results: pd.DataFrame,
    target_points: float = 1.0,
    jobs: int | None = None,
    cores: int | None = None,
    slurm_tasks: int | None = None,
    configurations: int = len(CONFIGURATIONS),
) -> StudyPlan:
    """Size the grid from a pilot (the per-seed frame of a smaller study): per subset the
    median over the family of the paired-difference sd, the seeds for a 95 % half-width of
    ``target_points``, and for 80 % power at that difference; the grid's wall time with
    ``jobs`` cells at a time on ``cores`` cores (default: os.cpu_count() both) and on
    ``slurm_tasks`` tasks. Trains nothing."""
    cores = cores or os.cpu_count() or 1
    jobs = jobs or cores
    sds = variance_components(results)
    if sds.empty or sds["paired sd"].isna().all():
        raise ValueError("the pilot needs two seeds of two configurations of one comparison")
    sd = sds.groupby("subset")["paired sd"].median()
    rows = {}
    for subset in [s for s in SUBSETS if s in sd.index]:
        rows[subset] = {
            "paired sd (AP points)": sd[subset],
            "seeds for half-width": seeds_for_halfwidth(sd[subset], target_points),
            "seeds for 80% power": seeds_for_power(sd[subset], target_points),
        }
    per_subset = pd.DataFrame.from_dict(rows, orient="index")
    seeds = int(per_subset[["seeds for half-width", "seeds for 80% power"]].to_numpy().max())
    cells = results.drop_duplicates(["configuration", "seed"])
    train_cpu = cells["train_cpu_seconds"].fillna(cells["train_seconds"])
    eval_cpu = cells["eval_cpu_seconds"].fillna(cells["eval_seconds"]).fillna(0.0)
    cpu = float((train_cpu + eval_cpu).mean())
    threads = int(cells["torch_threads"].fillna(1).median())
    n_cells = configurations * seeds
    per_cell_wall = cpu / max(1.0, min(threads, cores / jobs))
    local = math.ceil(n_cells / jobs) * per_cell_wall
    slurm = math.ceil(n_cells / slurm_tasks) * cpu / threads if slurm_tasks else None
    return StudyPlan(
        float(target_points), per_subset, seeds, configurations, n_cells, len(cells), cpu,
        threads, jobs, cores, local, slurm_tasks, slurm,
    )  # fmt: skip


# -- figures ---------------------------------------------------------------------------------
def _n_label(frame: pd.DataFrame, column: str) -> str:
    n = sorted(set(int(v) for v in frame[column]))
    return f"n = {n[0]}" if len(n) == 1 else f"n = {n[0]}-{n[-1]}"


def plot_study(results: pd.DataFrame, summary: pd.DataFrame, source: str):
    """AP per configuration, one panel per subset: mean with its 95 % interval and every seed
    as a dot. An interval reaching above 100 % is drawn up to 100 % and marked with a caret (the
    suptitle says so). ``source`` names the run and data (e.g. "study profile, synthetic data")."""
    confs = _ordered(summary["configuration"])
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


SUBSET_COLORS = dict(zip(SUBSETS, figures.sns.color_palette(figures.PALETTE, 3), strict=True))


def _p_text(p: float) -> str:
    if math.isnan(p):
        return "--"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def plot_forest(diffs: pd.DataFrame, source: str):
    """The paired differences A - B in AP points, one row per test of the family (grouped by
    comparison, a colour per subset): mean, 95 % t interval, a zero line; a filled marker where
    the Holm-adjusted p is below ALPHA, open otherwise, and the Holm p printed at the right."""
    labels = list(dict.fromkeys(diffs["comparison"]))
    # at least 0.36 of the width high: the legend (up to five entries) must fit beside the axes
    fig, ax = figures.new_figure("full", max(0.36, 0.08 + 0.026 * len(diffs) + 0.012 * len(labels)))
    y, ticks = 0.0, []
    offsets = dict(zip(SUBSETS, (0.27, 0.0, -0.27), strict=True))  # easy on top
    for label in labels:
        rows = diffs[diffs.comparison == label]
        for r in rows.itertuples():
            yy = y + offsets[r.subset]
            color = SUBSET_COLORS[r.subset]
            significant = not math.isnan(r.p_holm) and r.p_holm < ALPHA
            if not math.isnan(r.ci_low):
                ax.hlines(yy, 100 * r.ci_low, 100 * r.ci_high, color=color, lw=1.2)
            ax.plot(100 * r.mean_diff, yy, "o", ms=4.5, color=color, mec=color,
                    mfc=color if significant else "white", zorder=3)  # fmt: skip
            text = _p_text(r.p_holm)
            ax.annotate(text, (1.005, yy), xycoords=("axes fraction", "data"), fontsize=figures.MIN_FONT_PT,
                        va="center", color=color)  # fmt: skip
        ticks.append(y)
        y -= 1.0
    ax.axvline(0, color="0.3", lw=0.8, ls="--", zorder=1)
    ax.set_yticks(ticks, labels)
    ax.set_ylim(y + 0.5, 0.5)
    ax.grid(axis="y", visible=False)
    for t in ticks[1:]:
        ax.axhline(t + 0.5, color="0.85", lw=0.6)
    ax.set_xlabel("paired difference A - B (AP points), 95 % t interval")
    ax.annotate("Holm p", (1.005, 0.5), xycoords=("axes fraction", "data"), fontsize=figures.MIN_FONT_PT,
                va="bottom", color="0.3")  # fmt: skip
    handles = [
        figures.plt.Line2D([], [], marker="o", ls="-", color=SUBSET_COLORS[s], label=s)
        for s in SUBSETS
        if s in set(diffs["subset"])
    ]
    handles += [
        figures.plt.Line2D([], [], marker="o", ls="", color="0.3", label="Holm p < 0.05"),
        figures.plt.Line2D(
            [], [], marker="o", ls="", color="0.3", mfc="white", label="not significant"
        ),  # fmt: skip
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.07, 1.0), frameon=False)
    figures.add_source(
        fig,
        source,
        f"Paired differences by seed ({_n_label(diffs, 'n')}, {len(diffs)} tests, Holm-adjusted)",
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


def comparison_table(diffs: pd.DataFrame) -> pd.DataFrame:
    """The comparisons for LaTeX: differences, intervals and the detectable difference (mde80)
    in AP points; p (paired t), p_holm, p_signflip; the verdict (from p_holm)."""
    columns = ["comparison", "subset", "n", "mean_diff", "ci_low", "ci_high", "p", "p_holm",
               "p_signflip", "mde80", "verdict"]  # fmt: skip
    t = _in_points(diffs[columns], "mean_diff", "difference (AP points)", "n")
    t["mde80"] = t["mde80"] * 100
    return t


COMPARISON_DECIMALS = {"p": 3, "p_holm": 3, "p_signflip": 3}


def cost_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per configuration: seeds, landmark NME (mean and 95 % interval over seeds), training
    seconds per cell (mean and standard deviation; CPU time on a shared machine is noisy) and
    training CPU seconds and evaluation seconds per cell (means)."""
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
                "train CPU s (mean)": cells["train_cpu_seconds"].mean(),
                "eval s (mean)": cells["eval_seconds"].mean(),
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class StudyExport:
    """What ``export_study`` computed and wrote (all from the per-seed frame)."""

    summary: pd.DataFrame
    comparisons: pd.DataFrame
    variance: pd.DataFrame
    costs: pd.DataFrame
    figure: Any  # AP per configuration
    forest: Any  # paired differences
    per_seed_csv: Path


def export_study(
    results: pd.DataFrame,
    out_dir: str | os.PathLike[str] | None,
    source: str,
    provenance: RunInfo | None = None,
) -> StudyExport:
    """Write to ``out_dir`` (default figures/) the per-seed frame (``ablation_per_seed.csv``)
    and everything computed from it: ``ablation_study.{csv,tex,pdf,png}`` (the CSV holds AP as
    fractions), ``ablation_comparisons.{csv,tex}``, ``ablation_forest.{pdf,png}``,
    ``ablation_variance.{csv,tex}`` and ``ablation_costs.{csv,tex}``. ``provenance``: every file
    gets its entry (``ffcore.report.provenance``), the per-seed CSV only when it is not one of
    the run's inputs (rewritten from itself it keeps the entry of the study that made it)."""
    from ffcore.report.provenance import record

    results = sort_per_seed(results)
    per_seed = write_per_seed(results, out_dir)
    if provenance is not None and str(per_seed.resolve()) not in {
        str(repo_path(p).resolve()) for p in provenance.inputs
    }:
        record([per_seed], provenance)
    summary, diffs = summarize(results), paired_differences(results)
    costs = cost_table(results)
    src = {"source": source, "provenance": provenance}
    fig = plot_study(results, summary, source)
    figures.save_figure(fig, "ablation_study", out_dir, provenance=provenance)
    csv, _ = figures.save_table(summary_table(summary), "ablation_study", out_dir, index=False,
                                decimals=1, **src)  # fmt: skip
    with replacing(csv) as tmp:  # fractions, machine-readable (save_table wrote percent)
        summary.to_csv(tmp, index=False)
    if provenance is not None:
        record([csv], provenance)
    forest = None
    variance = pd.DataFrame()
    if not diffs.empty:
        forest = plot_forest(diffs, source)
        figures.save_figure(forest, "ablation_forest", out_dir, provenance=provenance)
        figures.save_table(comparison_table(diffs), "ablation_comparisons", out_dir,
                           index=False, decimals={**COMPARISON_DECIMALS, "n": 0}
                           | {"difference (AP points)": 1, "95% CI low": 1, "95% CI high": 1,
                              "mde80": 1}, **src)  # fmt: skip
        variance = variance_decomposition(results)
        figures.save_table(variance, "ablation_variance", out_dir, decimals=2, **src)
    figures.save_table(costs, "ablation_costs", out_dir, index=False,
                       decimals={"NME": 4, "NME 95% CI low": 4, "NME 95% CI high": 4,
                                 "train s (mean)": 0, "train s (sd)": 0,
                                 "train CPU s (mean)": 0, "eval s (mean)": 1}, **src)  # fmt: skip
    return StudyExport(summary, diffs, variance, costs, fig, forest, per_seed)


def register_numbers(numbers: Numbers, results: pd.DataFrame, diffs: pd.DataFrame) -> None:
    """The study's numbers for the thesis (``ffcore.report.numbers``), in AP points: the seed
    count, per subset the resolution (median paired 95 % half-width, median mde80), and per
    comparison and subset (``<A>Minus<B><Subset>``) the difference, its interval, the Holm p
    and the verdict."""
    numbers.add("StudySeeds", int(results["seed"].nunique()), "{:d}", "seeds",
                "seeds per configuration of the ablation grid")  # fmt: skip
    numbers.add("StudyConfigurations", int(results["configuration"].nunique()), "{:d}", "",
                "configurations of the ablation grid")  # fmt: skip
    if diffs.empty:
        return
    half = ((diffs["ci_high"] - diffs["ci_low"]) / 2 * 100).groupby(diffs["subset"]).median()
    mde = (diffs["mde80"] * 100).groupby(diffs["subset"]).median()
    for subset in [s for s in SUBSETS if s in half.index]:
        word = name_part(subset)
        numbers.add(f"StudyHalfWidth{word}", float(half[subset]), "{:.2f}", "AP points",
                    f"median paired 95 % half-width over the family, {subset}")  # fmt: skip
        numbers.add(f"StudyMdeEighty{word}", float(mde[subset]), "{:.1f}", "AP points",
                    f"median difference detectable with 80 % power, {subset}")  # fmt: skip
    for r in diffs.itertuples():
        base = f"{name_part(r.a)}Minus{name_part(r.b)}{name_part(r.subset)}"
        what = f"{r.comparison} on {r.subset}"
        numbers.add(f"{base}Diff", 100 * r.mean_diff, "{:+.1f}", "AP points", f"{what}: mean")
        numbers.add(f"{base}CiLow", 100 * r.ci_low, "{:+.1f}", "AP points", f"{what}: 95 % low")
        numbers.add(f"{base}CiHigh", 100 * r.ci_high, "{:+.1f}", "AP points", f"{what}: 95 % high")
        numbers.add(f"{base}HolmP", r.p_holm, "{:.2g}", "", f"{what}: Holm-adjusted p")
        numbers.add(f"{base}Verdict", r.verdict, unit="", description=f"{what}: verdict")
