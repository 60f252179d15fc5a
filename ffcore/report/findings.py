"""What the thesis claims, beside what this folder measured: one ``Finding`` per claim, with the
measured value, the run it comes from, whether the two can be compared and a verdict. Computed
from the exported files of a figures folder (``numbers.json``, ``param_table.csv``,
``model_size.csv``, ``ablation_comparisons.csv``), never typed: the companion's Findings section
and the table ``thesis_claims_vs_measured`` (notebook 07) are both ``build_findings``.

Verdicts (``VERDICTS``): *confirmed* (the measurement matches the claim as printed, or the study
supports it), *contradicted* (it does not, or the study shows the opposite), *not comparable*
(measured, but on other data than the claim: synthetic AP against WIDER FACE targets), *not
measurable here* (the hardware is not part of this build), *not supported by this study* (the
study finds no difference either way), *inconclusive* (the study could not tell), *not
measured* (the file that would hold the measurement is absent).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ffcore.paths import repo_path
from ffcore.profiles import PROFILES
from ffcore.report.labels import SYNTHETIC_AP, WIDER_AP
from ffcore.report.numbers import NUMBERS_JSON, Numbers, load_numbers, name_part
from ffcore.thesis import AP_TARGET_STEP, AP_TARGETS, CLAIM_STEP, CLAIM_TEXT, CLAIMS, STATEMENTS

CONFIRMED = "confirmed"
CONTRADICTED = "contradicted"
NOT_COMPARABLE = "not comparable"
NOT_MEASURABLE = "not measurable here"
NOT_SUPPORTED = "not supported by this study"
INCONCLUSIVE = "inconclusive"
NOT_MEASURED = "not measured"
VERDICTS = (
    CONFIRMED, CONTRADICTED, NOT_COMPARABLE, NOT_MEASURABLE, NOT_SUPPORTED, INCONCLUSIVE,
    NOT_MEASURED,
)  # fmt: skip
SUBSETS = ("easy", "medium", "hard")
PARAM_TABLE = "param_table.csv"
MODEL_SIZE = "model_size.csv"
COMPARISONS = "ablation_comparisons.csv"
TABLE_NAME = "thesis_claims_vs_measured"  # the exported table (notebook 07)
# the comparisons of the study read here (labels of ffcore.report.study.COMPARISONS)
ECA_VS_CBAM = ("ECA-CBAM - CBAM (phased)", "ECA-CBAM - CBAM (joint)")
PHASED_VS_JOINT = ("phased - joint (ECA-CBAM)", "phased - joint (CBAM)")
# the columns of ablation_comparisons.csv, new names first (older exports: the second)
_COLUMNS = {
    "mean": ("mean", "difference (AP points)"),
    "low": ("low", "95% CI low"),
    "high": ("high", "95% CI high"),
}
SWITCH_ON_PHASES = ("2a", "2b")  # the phases that switch an attention module on


@dataclass(frozen=True)
class Finding:
    claim: str  # the claim, as the thesis states it
    thesis: str  # its value as printed ("" for a statement without a number)
    measured: str  # the measurement ("--": none)
    source: str  # the run or file the measurement comes from
    comparable: str  # "yes", or why not / how far
    verdict: str  # one of VERDICTS
    reason: str  # one sentence: why this verdict


# -- formatting -----------------------------------------------------------------------------------
def integer(value: float) -> str:
    """``476357`` -> ``476,357``."""
    return f"{int(round(value)):,}"


def signed(value: float, places: int = 1) -> str:
    """``-0.7`` -> ``−0.7``, ``0.4`` -> ``+0.4``; a value that rounds to zero is ``+0.0``."""
    value = value if round(value, places) != 0 else 0.0
    return f"{value:+.{places}f}".replace("-", "\u2212")


def within(measured: float, claim: float, step: float) -> bool:
    """Whether ``measured`` matches ``claim`` printed to ``step`` (half a step either side)."""
    return abs(measured - claim) <= step / 2 + 1e-9 * max(1.0, abs(claim))


# -- inputs ---------------------------------------------------------------------------------------
def _read_csv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path, index_col=0) if path.is_file() else None


def comparison_rows(table: pd.DataFrame | None, label: str) -> list[dict[str, Any]]:
    """The rows of ``ablation_comparisons.csv`` for ``label``, one per subset, with the keys
    subset, mean, low, high (AP points), verdict and, when the export tested it,
    equivalence_verdict. Reads the new columns (mean, low, high) and the older ones; with
    several profiles (study, study_2x) those of the first."""
    if table is None or "comparison" not in table:
        return []
    rows = table[table["comparison"] == label]
    if "profile" in rows and rows["profile"].nunique() > 1:  # the main grid, not its 2x twin
        rows = rows[rows["profile"] == rows["profile"].iloc[0]]
    out = []
    for _, r in rows.iterrows():
        row: dict[str, Any] = {"subset": r["subset"], "verdict": str(r.get("verdict", ""))}
        for key, names in _COLUMNS.items():
            name = next((n for n in names if n in r.index), None)
            row[key] = float(r[name]) if name is not None else math.nan
        if "equivalence_verdict" in r.index and isinstance(r["equivalence_verdict"], str):
            row["equivalence_verdict"] = r["equivalence_verdict"]
            row["margin"] = float(r["margin"]) if "margin" in r.index else math.nan
        out.append(row)
    return sorted(out, key=lambda r: SUBSETS.index(r["subset"]) if r["subset"] in SUBSETS else 9)


def _source(numbers: Mapping[str, Mapping[str, Any]], name: str, what: str) -> str:
    e = numbers.get(name, {})
    src, profile = e.get("source"), e.get("profile")
    run = f"{profile} run" if profile in PROFILES else profile
    return f"{what} ({src}, {run})" if src else what


# -- one function per claim -----------------------------------------------------------------------
def parameter_finding(key: str, variant: str, measured: float | None, source: str) -> Finding:
    claim = f"{variant} has {CLAIM_TEXT[key]} parameters"
    if measured is None:
        return Finding(claim, CLAIM_TEXT[key], "--", source, "yes", NOT_MEASURED,
                       f"{source} is not in this folder.")  # fmt: skip
    value, step = CLAIMS[key], CLAIM_STEP[key]
    ok = within(measured, value, step)
    reason = (
        f"{integer(measured)} counted from the architecture; the claim as printed allows "
        f"{integer(value - step / 2)}\u2013{integer(value + step / 2)}."
    )
    return Finding(claim, integer(value), integer(measured), source, "yes (the architecture)",
                   CONFIRMED if ok else CONTRADICTED, reason)  # fmt: skip


def size_finding(sizes: pd.DataFrame | None, source: str) -> Finding:
    key = "model_size_mb"
    claim = f"the model takes {CLAIM_TEXT[key]}"
    row32, row16 = "state dict MB fp32", "state dict MB fp16"
    if sizes is None or "eca_cbam" not in sizes or row32 not in sizes.index:
        return Finding(claim, CLAIM_TEXT[key], "--", source, "yes", NOT_MEASURED,
                       f"{source} is not in this folder.")  # fmt: skip
    mb32 = float(sizes.loc[row32, "eca_cbam"])
    parts = [f"the fp32 state dict of ECA-CBAM is {mb32:.2f} MB"]
    if "tensor MB fp32" in sizes.index:
        parts.append(
            f"its parameters alone {float(sizes.loc['tensor MB fp32', 'eca_cbam']):.2f} MB"
        )
    other = f"; fp16, which the thesis does not name, gives {float(sizes.loc[row16, 'eca_cbam']):.2f} MB" if row16 in sizes.index else ""  # fmt: skip
    ok = within(mb32, CLAIMS[key], CLAIM_STEP[key])
    return Finding(claim, CLAIM_TEXT[key], f"{mb32:.2f} MB (fp32)", source,
                   "yes (the thesis names no precision: fp32, as trained)",
                   CONFIRMED if ok else CONTRADICTED,
                   f"{', '.join(parts)}{other}.")  # fmt: skip


def ap_finding(subset: str, numbers: Mapping[str, Mapping[str, Any]]) -> Finding:
    target = 100 * AP_TARGETS[subset]
    claim = f"AP {subset} on WIDER FACE val reaches {target:.1f} %"
    name = f"ApPhaseThree{name_part(subset)}"
    entry = numbers.get(name)
    source = _source(numbers, name, "phase-3 model")
    if entry is None or entry.get("value") is None:
        return Finding(claim, f"{target:.1f}", "--", source, "--", NOT_MEASURED,
                       f"no number {name} in {NUMBERS_JSON} (notebook 06 writes it).")  # fmt: skip
    value, profile = float(entry["value"]), str(entry.get("profile"))
    measured = f"{value:.1f} %"
    if profile != "full":
        return Finding(claim, f"{target:.1f}", measured, source,
                       f"no: synthetic val set ({profile} run)", NOT_COMPARABLE,
                       f"the target is AP on the real WIDER FACE val set; this {profile} run "
                       f"measures {SYNTHETIC_AP}, whose faces are easier or harder in other "
                       "ways.")  # fmt: skip
    ok = value >= target - 100 * AP_TARGET_STEP / 2
    return Finding(claim, f"{target:.1f}", measured, source, f"yes ({WIDER_AP})",
                   CONFIRMED if ok else CONTRADICTED,
                   f"{WIDER_AP} {subset} {measured} is {'at or above' if ok else 'below'} the "
                   f"target {target:.1f}.")  # fmt: skip


def latency_finding(key: str, device: str, numbers: Mapping[str, Mapping[str, Any]]) -> Finding:
    claim = f"inference takes {CLAIM_TEXT[key]} on {device}"
    cpu = numbers.get("BreakdownEcaCbamFusedVsReference")
    if cpu is not None:
        measured = f"CPU only: {cpu['text']}x RetinaFace-0.25"
        source = _source(numbers, "BreakdownEcaCbamFusedVsReference", "latency breakdown")
        what = (f"this folder times the model on one CPU thread, as a ratio to RetinaFace-"
                f"MobileNet0.25 ({cpu['text']}x, fused)")  # fmt: skip
    else:
        measured, source, what = "--", "--", "this folder holds no timing on that hardware"
    return Finding(claim, CLAIM_TEXT[key], measured, source, f"no: needs {device}",
                   NOT_MEASURABLE, f"{what}; nothing here ran on {device}.")  # fmt: skip


def _diffs(rows: Sequence[Mapping[str, Any]]) -> str:
    return " / ".join(signed(r["mean"]) for r in rows)


def probe_text(numbers: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The probe-loss jumps at switch-on, from the numbers ``register_probe_jumps`` wrote."""
    parts = []
    for pid in SWITCH_ON_PHASES:
        e = numbers.get(f"ProbeSwitchOn{name_part(pid)}")
        peak = numbers.get(f"ProbePeak{name_part(pid)}")
        if e is not None:
            parts.append(f"phase {pid} {e['text']} % at switch-on"
                         + (f", peak {peak['text']} %" if peak is not None else ""))  # fmt: skip
    if not parts:
        return None
    return "probe loss against the end of the previous phase: " + "; ".join(parts)


def progressive_finding(
    table: pd.DataFrame | None, numbers: Mapping[str, Mapping[str, Any]]
) -> Finding:
    claim = STATEMENTS["progressive"]
    groups = {label: comparison_rows(table, label) for label in PHASED_VS_JOINT}
    groups = {k: v for k, v in groups.items() if v}
    probe = probe_text(numbers)
    tail = f" The {probe} (the smoke run)." if probe else ""
    if not groups:
        return Finding(claim, "", probe or "--", "--", "--", NOT_MEASURED,
                       f"{COMPARISONS} holds no phased - joint comparison (make study).{tail}")  # fmt: skip
    verdicts = [r["verdict"] for rows in groups.values() for r in rows]
    higher = any("higher" in v for v in verdicts)
    lower = any("lower" in v for v in verdicts)
    measured = "; ".join(
        f"{label.split('(')[-1].rstrip(')')} {_diffs(rows)}" for label, rows in groups.items()
    )
    measured = f"phased \u2212 joint AP points (easy / medium / hard): {measured}"
    n = len(verdicts)
    if higher and not lower:
        verdict, why = CONFIRMED, "phased training ends significantly higher (Holm)"
    elif lower and not higher:
        verdict, why = CONTRADICTED, "phased training ends significantly lower (Holm)"
    elif higher and lower:
        verdict, why = INCONCLUSIVE, "phased training ends higher on some tests, lower on others"
    else:
        verdict = NOT_SUPPORTED
        why = (f"none of the {n} phased \u2212 joint tests shows a significant difference "
               "(Holm), so the study gives no evidence for the claim")  # fmt: skip
    reason = f"{why}; the study measures final AP over seeds, not instability itself.{tail}"
    return Finding(claim, "", measured, "ablation study (08_ablation_study, study run)",
                   "synthetic data only", verdict, reason)  # fmt: skip


def accuracy_finding(table: pd.DataFrame | None) -> Finding:
    claim = STATEMENTS["accuracy"]
    label, rows = next(
        ((lb, r) for lb in ECA_VS_CBAM if (r := comparison_rows(table, lb))), (None, [])
    )
    if not rows:
        return Finding(claim, "", "--", "--", "--", NOT_MEASURED,
                       f"{COMPARISONS} holds no ECA-CBAM - CBAM comparison (make study).")  # fmt: skip
    measured = (f"ECA-CBAM \u2212 CBAM ({label.split('(')[-1].rstrip(')')}): {_diffs(rows)} AP "
                "points (easy / medium / hard)")  # fmt: skip
    source = "ablation study (08_ablation_study, study run)"
    spread = (f"95 % intervals from {signed(min(r['low'] for r in rows))} to "
              f"{signed(max(r['high'] for r in rows))}")  # fmt: skip
    if any("lower" in r["verdict"] for r in rows):
        worse = [r["subset"] for r in rows if "lower" in r["verdict"]]
        return Finding(claim, "", measured, source, "synthetic data only", CONTRADICTED,
                       f"ECA-CBAM is significantly less accurate on {', '.join(worse)} (Holm); "
                       f"{spread}.")  # fmt: skip
    if all("equivalence_verdict" in r for r in rows):
        shown = [r["subset"] for r in rows if r["equivalence_verdict"].startswith("equivalent")]
        margin = rows[0].get("margin", math.nan)
        within_text = f"\u00b1{margin:g} AP points" if not math.isnan(margin) else "the margin"
        if len(shown) == len(rows):
            return Finding(claim, "", measured, source, "synthetic data only", CONFIRMED,
                           f"equivalent within {within_text} on every subset (two one-sided "
                           f"tests); {spread}.")  # fmt: skip
        missing = [r["subset"] for r in rows if r["subset"] not in shown]
        return Finding(claim, "", measured, source, "synthetic data only", INCONCLUSIVE,
                       f"not shown equivalent within {within_text} on {', '.join(missing)}; "
                       f"{spread}.")  # fmt: skip
    return Finding(claim, "", measured, source, "synthetic data only", INCONCLUSIVE,
                   f"no significant difference on any subset (Holm), {spread}; equivalence was "
                   "not tested in this export, and no difference is not the same as "
                   "equivalence.")  # fmt: skip


# -- the whole table ------------------------------------------------------------------------------
def build_findings(
    figures_dir: str | Path, extra_numbers: Mapping[str, Mapping[str, Any]] | None = None
) -> tuple[Finding, ...]:
    """Every claim of ``ffcore.thesis`` against the files of ``figures_dir``; ``extra_numbers``
    (entries of a ``Numbers`` not written yet) take precedence over ``numbers.json``."""
    out = repo_path(figures_dir)
    numbers = load_numbers(out / NUMBERS_JSON) | dict(extra_numbers or {})
    params = _read_csv(out / PARAM_TABLE)
    sizes = _read_csv(out / MODEL_SIZE)
    table = pd.read_csv(out / COMPARISONS) if (out / COMPARISONS).is_file() else None

    def count(variant: str) -> float | None:
        if params is not None and variant in params and "total" in params.index:
            return float(params.loc["total", variant])
        return None

    param_source = _source(numbers, "ParamsEcaCbam", PARAM_TABLE.removesuffix(".csv"))
    size_source = MODEL_SIZE.removesuffix(".csv") + " (07_ablation_figures)"
    return (
        parameter_finding("eca_cbam_params", "ECA-CBAM", count("eca_cbam"), param_source),
        parameter_finding("cbam_params", "CBAM", count("cbam"), param_source),
        size_finding(sizes, size_source),
        *(ap_finding(s, numbers) for s in SUBSETS),
        latency_finding("latency_a100_ms", "an NVIDIA A100", numbers),
        latency_finding("latency_snapdragon888_ms", "a Snapdragon 888 phone", numbers),
        progressive_finding(table, numbers),
        accuracy_finding(table),
    )


def findings_frame(findings: Sequence[Finding]) -> pd.DataFrame:
    """The findings as a table (index: the claim), for CSV and LaTeX."""
    return pd.DataFrame(
        {
            "thesis": [f.thesis or "--" for f in findings],
            "measured": [f.measured for f in findings],
            "source": [f.source for f in findings],
            "comparable": [f.comparable for f in findings],
            "verdict": [f.verdict for f in findings],
            "why": [f.reason for f in findings],
        },
        index=pd.Index([f.claim for f in findings], name="claim"),
    )


def summary(findings: Sequence[Finding]) -> str:
    """One sentence: how many claims got each verdict, in ``VERDICTS`` order."""
    counts = {v: sum(f.verdict == v for f in findings) for v in VERDICTS}
    parts = [f"{n} {v}" for v, n in counts.items() if n]
    return f"Of the {len(findings)} claims of the thesis checked here: " + ", ".join(parts) + "."


def findings_tex(findings: Sequence[Finding]) -> str:
    """A longtable: claim and its printed value, the measurement and its source, comparable,
    verdict in bold with its reason."""
    from ffcore.report.figures import latex_escape

    def cell(text: str) -> str:
        return latex_escape(text).replace("/", "/\\allowbreak{}")

    rows = []
    for f in findings:
        claim = cell(f.claim) + (rf" \newline (thesis: {cell(f.thesis)})" if f.thesis else "")
        measured = cell(f.measured) + rf" \newline {{\scriptsize {cell(f.source)}}}"
        verdict = rf"\textbf{{{cell(f.verdict)}}}: {cell(f.reason)}"
        rows.append(f"{claim} & {measured} & {cell(f.comparable)} & {verdict} \\\\[2pt]")
    head = r"claim (as printed) & measured (source) & comparable & verdict \\"
    return "\n".join(
        [
            r"\begingroup\footnotesize\setlength{\tabcolsep}{3pt}",
            r"\begin{longtable}{@{}>{\raggedright\arraybackslash}p{0.22\linewidth}"
            r">{\raggedright\arraybackslash}p{0.24\linewidth}"
            r">{\raggedright\arraybackslash}p{0.14\linewidth}"
            r">{\raggedright\arraybackslash}p{0.35\linewidth}@{}}",
            r"\caption[The claims of the thesis beside what this folder measured]"
            r"{The claims of the thesis beside what this folder measured "
            r"(\texttt{ffcore.report.findings})}\label{tab:findings}\\",
            r"\toprule", head, r"\midrule\endfirsthead",
            r"\toprule", head, r"\midrule\endhead",
            *rows,
            r"\bottomrule",
            r"\end{longtable}\endgroup",
        ]
    )  # fmt: skip


# -- the probe-loss numbers -----------------------------------------------------------------------
def probe_jumps(run_dir: str | Path) -> dict[str, tuple[float, float]]:
    """{phase: (switch-on change, peak change)} in % of the previous phase's last probe loss,
    for the phases that switch attention on: the probe loss right after the switch (before
    any step), and the highest probe loss of the phase. From the phases' ``result.json``."""
    from ffcore.schedule import PHASE_ORDER
    from ffcore.training.handover import phase_result

    out = {}
    for pid in SWITCH_ON_PHASES:
        prev = PHASE_ORDER[PHASE_ORDER.index(pid) - 1]
        before = phase_result(run_dir, prev)["probe_losses"]
        probe = phase_result(run_dir, pid)["probe_losses"]
        if not before or not probe:
            continue
        base = float(before[-1])
        out[pid] = (100 * (float(probe[0]) / base - 1), 100 * (max(probe) / base - 1))
    return out


def register_probe_jumps(numbers: Numbers, run_dir: str | Path) -> None:
    """Register ``ProbeSwitchOn<Phase>`` and ``ProbePeak<Phase>`` (``probe_jumps``)."""
    for pid, (jump, peak) in probe_jumps(run_dir).items():
        numbers.add(f"ProbeSwitchOn{name_part(pid)}", jump, "{:+.1f}", "%",
                    f"probe loss right after phase {pid} switches attention on, against the "
                    "end of the previous phase")  # fmt: skip
        numbers.add(
            f"ProbePeak{name_part(pid)}",
            peak,
            "{:+.1f}",
            "%",
            f"highest probe loss of phase {pid}, against the end of the previous phase",
        )
