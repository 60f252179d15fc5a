"""Sentences that report a run's results, generated from its files: every number and every
direction ("raised", "lowered", "left unchanged") a notebook states about its own run comes
from here, never from typed Markdown (``tests/test_prose.py`` lints the typed prose).

A single run has no spread: its sentences give the direction and the size of a change and say
that one run has no interval; only the study (many seeds, ``ffcore.report.study``) reports
intervals and significance. The functions return ``Prose``, a ``str`` that a notebook cell
displays as Markdown.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from ffcore.paths import repo_path
from ffcore.pipeline import COMMITTED_PER_SEED_CSV
from ffcore.schedule import PHASE_ORDER

SUBSETS = ("easy", "medium", "hard")
AP_TOLERANCE = 0.05  # AP points: a change below this prints as 0.0 and is "left unchanged"
LOSS_TOLERANCE = 0.005  # relative: a probe loss within 0.5 % is "left unchanged"


class Prose(str):
    """Generated Markdown: a plain ``str`` that a notebook displays as Markdown when it is the
    value of a cell (``_repr_markdown_``), so a cell needs no IPython import to show it."""

    def _repr_markdown_(self) -> str:
        return str(self)


ONE_RUN = "one run has no interval: this is the size and direction of the change in this run, not a measured effect"  # fmt: skip


def direction(before: float, after: float, tolerance: float, *, words: tuple[str, str, str] = (
    "raised", "lowered", "left unchanged")) -> str:  # fmt: skip
    """``words[0]`` when ``after`` exceeds ``before`` by more than ``tolerance``, ``words[1]``
    when it is lower by more, else ``words[2]``; NaN on either side is "not measured"."""
    if math.isnan(before) or math.isnan(after):
        return "not measured"
    if after - before > tolerance:
        return words[0]
    if before - after > tolerance:
        return words[1]
    return words[2]


def _points(before: float, after: float) -> str:
    return f"{100 * before:.1f} → {100 * after:.1f} ({100 * (after - before):+.1f} points)"


def phase_change_sentence(
    phase: str, before_ap: Mapping[str, float], after_ap: Mapping[str, float], *,
    before_label: str | None = None,
) -> Prose:  # fmt: skip
    """How phase ``phase`` moved AP (fractions by subset, the previous phase's and its own), e.g.
    "Phase 3 lowered AP on every subset: easy 99.4 → 97.7 (-1.7 points), ...". The verb follows
    the numbers: a phase whose AP fell is never said to improve it."""
    subsets = [s for s in SUBSETS if s in before_ap and s in after_ap]
    if not subsets:
        raise ValueError(f"no common AP subsets for phase {phase}: {sorted(before_ap)} vs {sorted(after_ap)}")  # fmt: skip
    words = {s: direction(100 * before_ap[s], 100 * after_ap[s], AP_TOLERANCE) for s in subsets}
    parts = [f"{s} {_points(before_ap[s], after_ap[s])}" for s in subsets]
    since = f" (against {before_label})" if before_label else ""
    kinds = set(words.values())
    if len(kinds) == 1:
        verb = next(iter(kinds))
        scope = "every subset" if len(subsets) > 1 else subsets[0]
        return Prose(f"Phase {phase} {verb} AP on {scope}{since}: {', '.join(parts)}.")
    clauses = [
        (w, " and ".join(s for s in subsets if words[s] == w))
        for w in ("raised", "lowered", "left unchanged", "not measured")
        if w in kinds
    ]
    verbs = {"left unchanged": "left {} unchanged", "not measured": "did not measure {}"}
    by_word = "; ".join(
        verbs.get(w, w + " {}").format("AP" if i == 0 else "it") + f" on {where}"
        for i, (w, where) in enumerate(clauses)
    )
    return Prose(f"Phase {phase} {by_word}{since}: {', '.join(parts)}.")


def ap_by_phase_markdown(ap: pd.DataFrame, epochs: Mapping[str, int] | None = None) -> Prose:
    """One sentence per phase after the first (AP fractions, rows = phases in order, columns
    easy/medium/hard), the phase-3 AP against phase 1's, and what one run cannot separate."""
    phases = [p for p in PHASE_ORDER if p in ap.index]
    if len(phases) < 2:
        return Prose(
            "Fewer than two phases were evaluated: there is no change between phases to report."
        )
    lines = [
        "- " + phase_change_sentence(cur, ap.loc[prev].to_dict(), ap.loc[cur].to_dict(),
                                     before_label=f"phase {prev}")
        for prev, cur in zip(phases, phases[1:], strict=False)
    ]  # fmt: skip
    first, last = phases[0], phases[-1]
    overall = phase_change_sentence(
        f"{phases[1]}–{last} together",
        ap.loc[first].to_dict(),
        ap.loc[last].to_dict(),
        before_label=f"phase {first}",
    ).replace("Phase ", "Phases ", 1)
    lines.append("- " + overall)
    text = "\n".join(lines)
    if epochs:
        counts = " / ".join(str(int(epochs[p])) for p in phases if p in epochs)
        text += (
            f"\n\nEach phase continues the previous one with more epochs ({counts} for phases "
            f"{' / '.join(p for p in phases if p in epochs)} in this run), so a change after a "
            "phase mixes the attention it switches on with the extra training; one run cannot "
            "separate the two. Notebook 08 compares configurations trained on the same schedule."
        )
    return Prose(f"{text}\n\nFrom this run's evaluation; {ONE_RUN}.")


def probe_change_sentence(
    epochs_csv: str | os.PathLike[str], *, one_run_note: bool = True
) -> Prose:
    """The probe-set loss (the same clean crops every epoch) before the phase's first step and
    after its last epoch, from the phase's ``epochs.csv`` (row 0: before the first step);
    ``one_run_note``: end with the reminder that one run has no interval."""
    rows = pd.read_csv(epochs_csv, dtype={"phase": str}).sort_values("epoch")
    if "probe_total" not in rows or rows["probe_total"].dropna().empty:
        return Prose(f"{Path(epochs_csv).name} has no probe-set loss: nothing to report.")
    phase = str(rows["phase"].iloc[0])
    probe = rows.dropna(subset=["probe_total"])
    before, after = float(probe["probe_total"].iloc[0]), float(probe["probe_total"].iloc[-1])
    first, last = int(probe["epoch"].iloc[0]), int(probe["epoch"].iloc[-1])
    verb = direction(before, after, LOSS_TOLERANCE * abs(before),
                     words=("rose", "fell", "stayed the same"))  # fmt: skip
    change = f"{100 * (after - before) / before:+.1f} %" if before else "n/a"
    where = "before the first step" if first == 0 else f"after epoch {first}"
    return Prose(
        f"Over phase {phase} the probe-set loss {verb}: {before:.3f} {where} → {after:.3f} after "
        f"epoch {last} ({change})" + (f"; {ONE_RUN}." if one_run_note else ".")
    )


def study_verdict_markdown(
    figures_dir: str | os.PathLike[str], comparisons: tuple[str, ...] = (
        "ECA-CBAM phased - none", "phased - joint (ECA-CBAM)"),
    fallback: str | os.PathLike[str] | None = COMMITTED_PER_SEED_CSV,
) -> Prose:  # fmt: skip
    """What the ablation study found for the phased-training hypothesis, from its per-seed CSV in
    ``figures_dir`` (or that CSV itself), else from ``fallback`` (the committed one): paired
    differences over seeds, Holm over the declared family (``report.study_stats``; the 1x
    schedule when the CSV holds several). No CSV at all says so and points at notebook 08."""
    from ffcore.report import study_frame, study_stats

    path = repo_path(figures_dir)
    path = path / study_frame.PER_SEED_FILE if path.is_dir() or not path.suffix else path
    if not path.is_file() and fallback is not None and repo_path(fallback).is_file():
        path = repo_path(fallback)
    if not path.is_file():
        return Prose(f"No study results at `{path}`: notebook 08 (`make study`) reports the study.")
    diffs = study_stats.paired_differences(study_frame.read_per_seed(path))
    if not diffs.empty:
        diffs = diffs[diffs["profile"] == diffs["profile"].iloc[0]]
    if diffs.empty:
        return Prose(f"`{path}` holds no comparison of the study's family: see notebook 08.")
    rows = diffs[diffs["comparison"].isin(comparisons)]
    lines = [f"- {s}" for s in study_stats.sentences(rows)]
    n = int(diffs["n"].max())
    return Prose(
        f"The ablation study (notebook 08, `{path.name}`, {n} seeds, paired by seed, Holm over "
        f"{len(diffs)} tests) on this hypothesis (A - B in AP points, 95 % interval):\n\n"
        + "\n".join(lines)
    )


def phase_epochs(results: Mapping[str, Mapping[str, object]]) -> dict[str, int]:
    """Epochs per phase from the phase notebooks' ``result.json`` contents."""
    return {pid: int(r["epochs"]) for pid, r in results.items() if r.get("epochs") is not None}


__all__ = [
    "Prose",
    "ap_by_phase_markdown",
    "direction",
    "phase_change_sentence",
    "phase_epochs",
    "probe_change_sentence",
    "study_verdict_markdown",
]
