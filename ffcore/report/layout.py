"""Where each file of ``figures/`` goes in the companion PDF: the declared layout.

The sections follow the notebooks (``ffcore.pipeline.NOTEBOOKS``: the model, the four training
phases, evaluation, ablation figures, ablation study), then deployment and speed (the files of
``benchmarks/``). Each section lists its ``Item`` s in reading order; an item is a figure with
the table of its numbers beside it, a figure alone or a table alone. ``NOT_SHOWN`` names every
file that is deliberately left out of the floats, and why. ``placements`` maps every file of a
folder to where it is placed, so a test can require each to be placed exactly once.

Each section opens with typed prose on the method (``method``) and then sentences reporting its
results, generated from ``numbers.json`` and the exported tables (``results``): a sentence whose
numbers are missing is left out, never typed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ffcore.report.labels import ap_label_of_profile
from ffcore.report.numbers import name_part
from ffcore.report.study_story import STORY_PARTS

Numbers = Mapping[str, Mapping[str, Any]]  # the entries of numbers.json


@dataclass(frozen=True)
class Item:
    figure: str | None = None  # stem of a figure (<stem>.pdf, its <stem>.png twin)
    # stem of a table (<stem>.tex, its <stem>.csv); with a figure: the table of its numbers
    table: str | None = None
    optional: bool = False  # shown when present; its absence is not a missing input


@dataclass(frozen=True)
class Section:
    title: str
    made_by: str  # the notebooks or scripts that write its files
    method: str  # typed prose: what was done (LaTeX)
    items: tuple[Item, ...]
    results: Callable[[Numbers, Path], list[str]]  # generated sentences (plain text)


PARAGRAPH = ""  # among a section's result sentences: a new paragraph begins


def _text(numbers: Numbers, *names: str) -> list[str] | None:
    """The printed texts of ``names`` (None when any is missing: the sentence is left out)."""
    found = [numbers.get(n, {}).get("text") for n in names]
    return None if any(t in (None, "", "--") for t in found) else [str(t) for t in found]


def _subset_names(base: str) -> list[str]:
    return [f"{base}{name_part(s)}" for s in ("easy", "medium", "hard")]


def model_results(numbers: Numbers, _folder: Path) -> list[str]:
    out = []
    if t := _text(numbers, "ParamsEcaCbam", "ParamsCbam", "ParamsDifference"):
        out.append(f"ECA-CBAM has {t[0]} parameters and CBAM {t[1]}: a difference of {t[2]}.")
    if t := _text(numbers, "GmacsEcaCbam"):
        out.append(f"At 640 px ECA-CBAM computes {t[0]} GMAC per image.")
    if t := _text(numbers, "LatencyRatioEcaCbamVsCbam", "LatencyRatioEcaCbamVsCbamIqr"):
        out.append(f"On the run's CPU ECA-CBAM takes {t[0]}x the time of CBAM (IQR {t[1]}).")
    return out


def training_results(numbers: Numbers, _folder: Path) -> list[str]:
    out = []
    for pid, what in (("2a", "ECA"), ("2b", "SAM")):
        if t := _text(numbers, f"ProbeSwitchOn{name_part(pid)}", f"ProbePeak{name_part(pid)}"):
            out.append(
                f"Switching {what} on (phase {pid}) changed the probe loss by {t[0]} % before "
                f"any step; its highest value in the phase was {t[1]} % against the end of "
                "the previous phase."
            )
    return out


def evaluation_results(numbers: Numbers, _folder: Path) -> list[str]:
    out = []
    if t := _text(numbers, *_subset_names("ApPhaseThree")):
        profile = str(numbers["ApPhaseThreeEasy"].get("profile"))
        out.append(
            f"The phase-3 model reaches {t[0]} / {t[1]} / {t[2]} % (easy / medium / hard), "
            f"{ap_label_of_profile(profile)} ({profile} run)."
        )
    if t := _text(numbers, "NmePhaseThree", "NmeBelowTenthPhaseThree"):
        out.append(f"Its landmark NME is {t[0]}; {t[1]} % of matched faces are below 0.1.")
    return out


def ablation_figure_results(numbers: Numbers, _folder: Path) -> list[str]:
    out = []
    phases = [p for p in ("One", "TwoA", "TwoB", "Three") if _text(numbers, f"ApPhase{p}Hard")]
    if len(phases) > 1:
        hard = [numbers[f"ApPhase{p}Hard"]["text"] for p in phases]
        names = {"One": "1", "TwoA": "2a", "TwoB": "2b", "Three": "3"}
        profile = str(numbers[f"ApPhase{phases[0]}Hard"].get("profile"))
        out.append(
            f"Hard AP after phases {', '.join(names[p] for p in phases)}: "
            f"{' / '.join(hard)} % ({ap_label_of_profile(profile)})."
        )
    for v, what in (("Cbam", "CBAM"), ("None", "the model without attention")):
        if t := _text(numbers, f"LatencyRatio{v}VsEcaCbam", f"LatencyRatio{v}VsEcaCbamIqr"):
            out.append(f"On the CPU {what} takes {t[0]}x the time of ECA-CBAM (IQR {t[1]}).")
    return out


def study_results(numbers: Numbers, folder: Path) -> list[str]:
    out = []
    if t := _text(numbers, "StudySeeds", "StudyConfigurations"):
        out.append(f"The grid ran {t[1]} configurations with {t[0]} seeds each.")
    if t := _text(numbers, *_subset_names("StudyMdeEighty")):
        out.append(
            f"With these seeds a difference of {t[0]} / {t[1]} / {t[2]} AP points (easy / "
            "medium / hard) would have been found with 80 % power."
        )
    # the story in short (ffcore.report.study_story.headlines), a paragraph each, when registered
    told = [t[0] for part in STORY_PARTS if (t := _text(numbers, f"StudyHeadline{part}"))]
    for line in told:
        out += [PARAGRAPH, line]
    path = folder / "ablation_comparisons.csv"
    if path.is_file() and not told:
        table = pd.read_csv(path)
        if "profile" in table and table["profile"].nunique() > 1:  # the main grid, not its 2x
            table = table[table["profile"] == table["profile"].iloc[0]]
        if {"comparison", "subset", "verdict"} <= set(table.columns):
            sig = table[table["verdict"].str.startswith("significantly")]
            n = len(table)
            if sig.empty:
                out.append(f"None of the {n} paired comparisons differs significantly (Holm).")
            else:
                groups = sig.groupby(["comparison", "verdict"], sort=False)["subset"]
                parts = [f"{c}: {v} on {', '.join(s)}" for (c, v), s in groups]
                out.append(
                    f"{len(sig)} of the {n} paired comparisons differ significantly (Holm): "
                    + "; ".join(parts)
                    + "; the others are not significant after the Holm adjustment."
                )
    return out


def deployment_results(numbers: Numbers, _folder: Path) -> list[str]:
    out = []
    if t := _text(
        numbers, "BreakdownEcaCbamFusedVsReference", "BreakdownEcaCbamFusedVsReferenceIqr"
    ):
        out.append(
            f"On one CPU thread the fused ECA-CBAM takes {t[0]}x the time of the eager "
            f"RetinaFace-MobileNet0.25 (IQR {t[1]})."
        )
    names = ("DeployEcaCbamIntEightLatencyRatio", "DeployEcaCbamIntEightLatencyIqr",
             "DeployEcaCbamIntEightMb", "DeployEcaCbamIntEightApChange")  # fmt: skip
    if t := _text(numbers, *names):
        out.append(
            f"As int8 ONNX it takes {t[0]}x the fp32 time (IQR {t[1]}) in {t[2]} MB, with AP "
            f"changing by at most {t[3]} points."
        )
    return out


SECTIONS: tuple[Section, ...] = (
    Section(
        "The model",
        "01\\_model",
        "FeatherFace is a MobileNet-style backbone, a BiFPN neck, SSH context modules with "
        "deformable convolutions and three heads (scores, boxes, five landmarks). The thesis "
        "replaces CBAM's channel attention by ECA (a 1-D convolution across channels whose "
        "kernel follows from the channel count) and keeps CBAM's spatial attention (SAM). The "
        "parameters are counted module by module from the built networks.",
        (
            Item(table="param_table"),
            Item("param_width_sweep", "param_width_sweep"),
            Item("augmented_batch"),
        ),
        model_results,
    ),
    Section(
        "Training in four phases",
        "02\\_phase1 to 05\\_phase3, and 07\\_ablation\\_figures for the timeline",
        "Training switches attention on progressively: phase 1 trains with attention off, "
        "phase 2a switches ECA on, phase 2b adds SAM, phase 3 fine-tunes with mixup. Each "
        "phase starts from the previous phase's final checkpoint with its own cosine learning "
        "rate. After every epoch the loss of a fixed probe set of clean crops is recorded: "
        "unlike the step loss (mixup-weighted in phase 3) it is comparable across phases.",
        (
            Item("training_phase1"),
            Item("training_phase2a"),
            Item("training_phase2b"),
            Item("training_phase3"),
            Item("training_timeline"),
        ),
        training_results,
    ),
    Section(
        "Evaluation",
        "06\\_evaluation",
        "The phase-3 model predicts every validation image with RetinaFace's test procedure, "
        "and the predictions are scored exactly as the official WIDER FACE evaluation scores "
        "them (easy, medium and hard subsets, VOC all-point AP).",
        (
            Item("pr_curves", "ap_phase3"),
            Item("val_detections"),
            Item("failure_gallery"),
            Item("real_photo_reference_vs_phase3"),
        ),
        evaluation_results,
    ),
    Section(
        "Ablation figures",
        "07\\_ablation\\_figures",
        "The same run seen across phases and variants: AP after each phase, the size and CPU "
        "latency of ECA-CBAM, CBAM and the model without attention (timed side by side, as "
        "ratios), and what the attention modules respond to on a real photo.",
        (
            Item("ap_by_phase", "ap_by_phase"),
            Item("attention_maps", "attention_stats"),
            Item(table="model_size"),
            Item(table="variant_comparison"),
        ),
        ablation_figure_results,
    ),
    Section(
        "Ablation study",
        "08\\_ablation\\_study (make study)",
        "The grid trains no attention, CBAM and ECA-CBAM, the latter two phased and joint "
        "(attention on from the start), over several seeds on the synthetic set. Each "
        "comparison is a paired difference over seeds with its 95~\\% interval and a p-value "
        "adjusted with Holm over the declared family of tests.",
        (
            Item("ablation_study", "ablation_study"),
            Item("ablation_forest", "ablation_comparisons"),
            Item(table="ablation_equivalence", optional=True),
            Item("ablation_phases", "ablation_phases", optional=True),
            Item(table="ablation_phase3", optional=True),
            Item(table="ablation_phase3_variants", optional=True),
            Item(table="ablation_variance"),
            Item(table="ablation_costs"),
            # the grid with every phase twice as long (profile study_2x), when it ran
            Item("ablation_forest_study_2x", "ablation_comparisons_study_2x", optional=True),
            Item("ablation_phases_study_2x", optional=True),
            Item(table="ablation_schedules", optional=True),
        ),
        study_results,
    ),
    Section(
        "Deployment and speed",
        "benchmarks/breakdown.py, benchmarks/deploy\\_precision.py",
        "Timings are ratios measured side by side on the CPU, with their interquartile range: "
        "the time per module group of each model on one thread, eager and as the fused "
        "inference copy, and the fp32, fp16 and int8 ONNX files in onnxruntime.",
        (Item("latency_breakdown", "latency_breakdown"), Item(table="deploy_precision")),
        deployment_results,
    ),
)

FINDINGS_TABLE = "thesis_claims_vs_measured"
NUMBERS_TABLE = "numbers_table.tex"
PROVENANCE = "provenance.json"
# files placed outside the sections' floats: the Findings, Numbers and Provenance sections
PLACED_ELSEWHERE: dict[str, str] = {
    NUMBERS_TABLE: "the section Numbers",
    PROVENANCE: "the section Provenance",
}
# files deliberately not shown, and why
NOT_SHOWN: dict[str, str] = {
    f"{FINDINGS_TABLE}.csv": "the Findings table, recomputed from this folder at build time",
    f"{FINDINGS_TABLE}.tex": "the Findings table, recomputed from this folder at build time",
    "ablation_per_seed.csv": "the per-seed source of every study table (too long to print)",
    "latency_breakdown_all.csv": "every model and group of the latency figure (too long to print)",
    "numbers.json": "the source of the Numbers section",
    "numbers.tex": "the macros of the numbers (inputs of the preamble)",
    "preamble.tex": "the LaTeX packages (input by the document)",
    "all_figures.tex": "the folder's index for the thesis (this document has its own order)",
    "README.md": "the descriptions the captions come from",
    "companion.pdf": "this document",
    "companion.tex": "this document's source",
}


def expected_files(section: Section) -> list[str]:
    """The files of ``section``: a figure's PDF (included) and PNG, a table's .tex (included)
    and CSV (an optional item's files are not expected)."""
    out = []
    for item in (i for i in section.items if not i.optional):
        out += [f"{item.figure}.pdf", f"{item.figure}.png"] if item.figure else []
        out += [f"{item.table}.tex", f"{item.table}.csv"] if item.table else []
    return out


def placements(names: Iterable[str]) -> dict[str, list[str]]:
    """{file name: where it is placed} for the files ``names`` of a folder: a figure's PDF and
    PNG with the figure, a table's .tex and .csv with the table, the rest by ``PLACED_ELSEWHERE``
    and ``NOT_SHOWN``. A file with no place has an empty list; with two, a double placement."""
    where: dict[str, list[str]] = {}
    for section in SECTIONS:
        for item in section.items:
            if item.figure:
                for suffix in (".pdf", ".png"):
                    where.setdefault(item.figure + suffix, []).append(f"{section.title}: figure")
            if item.table:
                for suffix in (".tex", ".csv"):
                    where.setdefault(item.table + suffix, []).append(f"{section.title}: table")
    for name, place in {**PLACED_ELSEWHERE, **NOT_SHOWN}.items():
        where.setdefault(name, []).append(place)
    return {name: where.get(name, []) for name in names}


def undeclared(names: Iterable[str]) -> list[str]:
    """The stems of figures (.pdf) and tables (.tex) that no section declares: the companion
    shows them under "Other figures and tables" so nothing is dropped."""
    found = placements(names)
    stems = {Path(n).stem for n, p in found.items() if not p and Path(n).suffix in (".pdf", ".tex")}
    return sorted(stems)
