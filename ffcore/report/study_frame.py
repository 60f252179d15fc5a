"""The per-seed frame of the ablation study: read, validate, sort and write it.

One row per (profile, configuration, phase3_variant, phase, seed, subset), in the columns of
``PER_SEED_COLUMNS``. ``profile`` names the schedule ("study": 1x, "study_2x": 2x); ``phase``
is "1", "2a", "2b" or "3"; ``phase3_variant`` is "as_specified" for every row of the main phase
chain and "no_mixup" / "no_dropout" / "no_regularisers" for phase-3 runs restarted from the
same cell's phase-2b checkpoint with one regulariser (or all three) switched off. Rows of phases
1-2b carry ``ap_half_a`` (a fixed half of val) and no ``ap``; phase-3 rows carry both. A CSV of
the older layout (no phase, phase3_variant, cpu_capability) reads as phase "3", "as_specified".

``read_per_seed`` refuses a CSV with a problem and names each one with the file and its CSV
line (``PerSeedError``, one line): a duplicated or missing row, a configuration whose seeds
differ from the others', an AP that is not a number, not finite or outside [0, 1].
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ffcore.atomic import replacing
from ffcore.cpu_kernels import check_same_kernels
from ffcore.data.wider_mat import SUBSETS
from ffcore.paths import FIGURES_DIR, repo_path
from ffcore.profiles import PROFILES
from ffcore.schedule import AS_SPECIFIED, FINAL_PHASE, PHASE_ORDER
from ffcore.schedule import PHASE3_VARIANTS as _VARIANT_PHASES
from ffcore.study import CONFIGURATIONS, RESULT_FILE, CellResult

PHASE3_VARIANTS: tuple[str, ...] = tuple(_VARIANT_PHASES)  # as_specified first
# how tables and sentences name a phase-3 variant (what it leaves out of phase 3)
PHASE3_VARIANT_LABELS: dict[str, str] = {
    AS_SPECIFIED: "as specified",
    "no_mixup": "no mixup",
    "no_dropout": "no head dropout",
    "no_regularisers": "no regularisers",  # no mixup, no head dropout, no clipping
}
TWO_X = "_2x"  # a profile "<p>_2x" runs the schedule of "<p>" with every phase twice as long
KEY: tuple[str, ...] = ("profile", "configuration", "phase3_variant", "phase", "seed", "subset")
PER_SEED_COLUMNS: tuple[str, ...] = (
    "profile", "configuration", "phase3_variant", "phase", "seed", "subset",
    "ap", "ap_half_a", "ap_half_b", "ap_first96", "nme",
    "train_seconds", "train_cpu_seconds", "eval_seconds", "eval_cpu_seconds",
    "torch_threads", "cpu_capability",
)  # fmt: skip
# the layout before phases and phase-3 variants (final rows only)
OLD_COLUMNS: tuple[str, ...] = (
    "configuration", "seed", "subset", "ap", "ap_half_a", "ap_half_b", "ap_first96", "nme",
    "train_seconds", "train_cpu_seconds", "eval_seconds", "profile", "torch_threads",
    "eval_cpu_seconds",
)  # fmt: skip
DEFAULTS: dict[str, str] = {
    "phase": FINAL_PHASE,
    "phase3_variant": AS_SPECIFIED,
    "cpu_capability": "",
}
TEXT_COLUMNS: tuple[str, ...] = ("profile", "configuration", "phase3_variant", "phase", "subset",
                                 "cpu_capability")  # fmt: skip
AP_COLUMNS: tuple[str, ...] = ("ap", "ap_half_a", "ap_half_b", "ap_first96")
PER_SEED_FILE = "ablation_per_seed.csv"
MAX_PROBLEMS = 8  # problems named in one error line (then "and N more")


class PerSeedError(ValueError):
    """A per-seed CSV that cannot be the source of the study's statistics."""


# -- order -----------------------------------------------------------------------------------
def _order(values: Iterable[str]) -> dict[str, int]:
    return {v: i for i, v in enumerate(values)}


_SORT_KEYS: dict[str, dict[str, int]] = {
    "configuration": _order(CONFIGURATIONS),
    "phase3_variant": _order(PHASE3_VARIANTS),
    "phase": _order(PHASE_ORDER),
    "subset": _order(SUBSETS),
}


def with_defaults(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the columns of the older layout filled in (phase "3", "as_specified",
    no cpu_capability, profile "study" when absent): a frame of final rows reads as before."""
    out = frame.copy()
    for column, value in (DEFAULTS | {"profile": "study"}).items():
        if column not in out.columns:
            out[column] = value
    return out


def sort_per_seed(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows by profile, then configuration (``CONFIGURATIONS`` order), phase-3 variant, phase,
    seed and subset (easy first)."""
    frame = with_defaults(frame)

    def key(col: pd.Series) -> pd.Series:
        order = _SORT_KEYS.get(str(col.name))
        return col if order is None else col.map(lambda v: order.get(v, len(order)))

    out = frame.sort_values(list(KEY), key=key, kind="stable")
    return out.reset_index(drop=True)


def profiles(frame: pd.DataFrame) -> list[str]:
    """The profiles of ``frame``, each 1x profile before its 2x (``<p>_2x``)."""
    return sorted(set(with_defaults(frame)["profile"].astype(str)))


def final_rows(frame: pd.DataFrame, profile: str | None = None) -> pd.DataFrame:
    """The rows of the main chain's phase-3 model (phase "3", "as_specified"), of ``profile``
    when given: the rows every comparison between configurations reads."""
    f = with_defaults(frame)
    keep = (f["phase"].astype(str) == FINAL_PHASE) & (f["phase3_variant"] == AS_SPECIFIED)
    if profile is not None:
        keep &= f["profile"] == profile
    return f[keep]


def has_phase_rows(frame: pd.DataFrame) -> bool:
    """Whether ``frame`` holds rows of phases 1-2b (the phase trajectory)."""
    return bool((with_defaults(frame)["phase"].astype(str) != FINAL_PHASE).any())


def has_variant_rows(frame: pd.DataFrame) -> bool:
    """Whether ``frame`` holds phase-3 variant rows (other than "as_specified")."""
    return bool((with_defaults(frame)["phase3_variant"] != AS_SPECIFIED).any())


def two_x_pairs(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """(1x profile, 2x profile) for each profile of ``frame`` whose 2x is present too."""
    present = set(profiles(frame))
    return [(p, p + TWO_X) for p in sorted(present) if p + TWO_X in present]


# -- the cells' results ----------------------------------------------------------------------
def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _cell_rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of one cell's result.json (``ffcore.study.CellResult``; an older record reads
    as its phase-3 model): one per (phase result, subset)."""
    cell = CellResult.from_dict(r)
    if cell.final is None:  # a cell still running (or killed): not part of the grid yet
        return []
    rows = []
    for p in cell.phases:
        ap = p.ap or {}
        lm = ap.get("landmarks") or {}
        train, train_cpu = cell.train_seconds(p.phase, p.phase3_variant)
        for subset in SUBSETS:
            row: dict[str, Any] = {
                "profile": cell.profile, "configuration": cell.configuration,
                "phase3_variant": p.phase3_variant, "phase": p.phase, "seed": int(cell.seed),
                "subset": subset, "ap": _number(ap.get(subset)),
            }  # fmt: skip
            for split in ("half_a", "half_b", "first96"):
                row[f"ap_{split}"] = _number((p.ap_splits.get(split) or {}).get(subset))
            row |= {
                "nme": _number(lm.get("nme")),
                "train_seconds": train,
                "train_cpu_seconds": train_cpu,
                "eval_seconds": _number(p.eval_seconds),
                "eval_cpu_seconds": _number(p.eval_cpu_seconds),
                "torch_threads": _number(cell.torch_threads),
                "cpu_capability": cell.cpu_capability or "",
            }
            rows.append(row)
    return rows


def ordered_configurations(names: Iterable[str]) -> list[str]:
    """The configurations among ``names`` in the grid's order (``ffcore.study.CONFIGURATIONS``)."""
    present = set(names)
    return [c for c in CONFIGURATIONS if c in present]


def read_cells(out_dir: str | os.PathLike[str]) -> list[tuple[Path, dict[str, Any]]]:
    """(path, record) of every cell's result file under ``out_dir`` (``result_files``), each
    read once: what ``load_results`` and ``cell_environments`` both describe."""
    return [(path, json.loads(path.read_text())) for path in result_files(out_dir)]


def load_results(
    out_dir: str | os.PathLike[str],
    allow_mixed_kernels: bool = False,
    cells: list[tuple[Path, dict[str, Any]]] | None = None,
) -> pd.DataFrame:
    """The per-seed frame (``PER_SEED_COLUMNS``) of every cell under ``out_dir``: a study
    folder (``<out_dir>/<cell>/result.json``) or a folder of study folders, one per schedule
    (``<out_dir>/study/<cell>/result.json`` beside ``<out_dir>/study_2x/...``). AP as
    fractions (``ap`` on the whole val set, ``ap_half_a`` / ``_b`` on its even / odd images,
    ``ap_first96`` on its first 96), NaN where an older result lacks a key. Two cells of the
    same profile, configuration and seed are an error naming both; cells that recorded
    different CPU kernel levels (``cpu_capability``) are a ``MixedKernels`` error unless
    ``allow_mixed_kernels``. ``cells``: the records ``read_cells(out_dir)`` already read."""
    rows, kernels, seen = [], {}, {}
    for path, record in read_cells(out_dir) if cells is None else cells:
        cell_rows = _cell_rows(record)
        if cell_rows:
            kernels[str(path)] = cell_rows[0]["cpu_capability"] or None
            key = tuple(cell_rows[0][k] for k in ("profile", "configuration", "seed"))
            if key in seen:
                raise ValueError(
                    f"two results of {key[0]} {key[1]} seed {key[2]}: {seen[key]} and {path}"
                )
            seen[key] = path
        rows += cell_rows
    if not rows:
        raise FileNotFoundError(f"no study results (*/{RESULT_FILE}) under {out_dir}")
    check_same_kernels(kernels, allow_mixed_kernels, what=f"the study cells of {out_dir}")
    frame = pd.DataFrame(rows, columns=list(PER_SEED_COLUMNS))
    frame["cpu_capability"] = frame["cpu_capability"].fillna("").astype(str)
    return sort_per_seed(frame.astype({"seed": int, "phase": str}))


def result_files(out_dir: str | os.PathLike[str]) -> list[Path]:
    """The cells' result files of a study folder, or of a folder of study folders."""
    root = Path(out_dir)
    return sorted({*root.glob(f"*/{RESULT_FILE}"), *root.glob(f"*/*/{RESULT_FILE}")})


def has_results(out_dir: str | os.PathLike[str]) -> bool:
    return bool(result_files(out_dir))


def write_per_seed(
    results: pd.DataFrame, out_dir: str | os.PathLike[str] | None, allow_mixed_kernels: bool = False
) -> Path:
    """``<out_dir>/ablation_per_seed.csv`` (default figures/): the long layout, full precision.
    Rows of different CPU kernel levels (``cpu_capability``; empty: not recorded) are a
    ``MixedKernels`` error naming the cells unless ``allow_mixed_kernels``."""
    if "cpu_capability" in results:
        levels = [None if pd.isna(v) or v == "" else str(v) for v in results["cpu_capability"]]
        names = (results["profile"].astype(str) + " " + results["configuration"].astype(str)
                 + " seed " + results["seed"].astype(str))  # fmt: skip
        check_same_kernels(dict(zip(names, levels, strict=True)), allow_mixed_kernels, "cells")
    out = repo_path(out_dir) if out_dir is not None else FIGURES_DIR
    out.mkdir(parents=True, exist_ok=True)
    path = out / PER_SEED_FILE
    with replacing(path) as tmp:
        sort_per_seed(with_defaults(results)[list(PER_SEED_COLUMNS)]).to_csv(tmp, index=False)
    return path


# -- reading and validating the CSV ----------------------------------------------------------
def _raise(path: Path, problems: list[str]) -> None:
    if problems:
        more = len(problems) - MAX_PROBLEMS
        shown = problems[:MAX_PROBLEMS] + ([f"and {more} more"] if more > 0 else [])
        raise PerSeedError(f"{path}: " + "; ".join(shown))


def _lines(lines: Iterable[int]) -> str:
    """CSV line numbers as "line 5" / "lines 5, 9" / "lines 2-25"."""
    ls = sorted(set(lines))
    if len(ls) == 1:
        return f"line {ls[0]}"
    if ls == list(range(ls[0], ls[-1] + 1)):
        return f"lines {ls[0]}-{ls[-1]}"
    return "lines " + ", ".join(map(str, ls[:6])) + (", ..." if len(ls) > 6 else "")


def _records(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """(header, rows, the CSV line of each row) of ``path``; a row whose field count differs
    from the header's, a quote left open or bytes that are not text are errors naming the line."""
    rows, lines, problems = [], [], []
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise PerSeedError(f"{path}: empty file (no header, no rows)")
            for record in reader:
                if not record:
                    continue  # a blank line
                if len(record) != len(header):
                    problems.append(f"line {reader.line_num}: {len(record)} fields, the header "
                                    f"has {len(header)}")  # fmt: skip
                    continue
                rows.append(record)
                lines.append(reader.line_num)
    except csv.Error as exc:
        raise PerSeedError(f"{path}: not a per-seed CSV (line {reader.line_num}: {exc})") from None
    except UnicodeDecodeError as exc:
        raise PerSeedError(f"{path}: not a per-seed CSV (not UTF-8 text: {exc.reason} at byte "
                           f"{exc.start})") from None  # fmt: skip
    _raise(path, problems)
    return header, rows, lines


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"no per-seed study results at {path}")
    header, rows, lines = _records(path)
    columns = [c.strip() for c in header]
    if set(columns) == set(OLD_COLUMNS) and len(columns) == len(OLD_COLUMNS):
        frame = pd.DataFrame(rows, columns=columns, index=lines, dtype=str)
        for column, value in DEFAULTS.items():
            frame[column] = value
    elif set(columns) == set(PER_SEED_COLUMNS) and len(columns) == len(PER_SEED_COLUMNS):
        frame = pd.DataFrame(rows, columns=columns, index=lines, dtype=str)
    else:
        missing = [c for c in PER_SEED_COLUMNS if c not in columns]
        extra = [c for c in columns if c not in PER_SEED_COLUMNS]
        raise PerSeedError(
            f"{path}: not a per-seed study table; expected columns {list(PER_SEED_COLUMNS)}"
            + (f" (missing {missing})" if missing else "")
            + (f" (unexpected {extra})" if extra else "")
        )
    if frame.empty:
        raise PerSeedError(f"{path}: a header and no rows")
    return frame  # indexed by CSV line (line 1: the header)


def _parse(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Numbers parsed; each text value outside its known set and each value that is not a
    number named with its line."""
    problems: list[str] = []
    known = {
        "profile": tuple(PROFILES), "configuration": tuple(CONFIGURATIONS),
        "phase3_variant": PHASE3_VARIANTS, "phase": PHASE_ORDER, "subset": SUBSETS,
    }  # fmt: skip
    for column, allowed in known.items():
        for line, value in frame[column].items():
            if value not in allowed:
                problems.append(f"line {line}: {column} {value!r} is not one of {list(allowed)}")
    out = frame.copy()
    for column in [c for c in PER_SEED_COLUMNS if c not in TEXT_COLUMNS]:
        text = frame[column].str.strip()
        numbers = pd.to_numeric(text, errors="coerce")
        bad = numbers.isna() & ~text.str.lower().isin(("", "nan"))
        for line, value in text[bad].items():
            problems.append(f"line {line}: {column} {value!r} is not a number")
        out[column] = numbers.astype(float)
    seeds = out["seed"]
    for line in seeds[seeds.notna() & (seeds != seeds.round())].index:
        problems.append(f"line {line}: seed {frame.at[line, 'seed']!r} is not a whole number")
    _raise(path, problems)
    return out


def _check_values(frame: pd.DataFrame, path: Path) -> list[str]:
    """AP where it is required: ``ap`` on every phase-3 row, ``ap_half_a`` on every row of
    phases 1-2b (the trajectory); every AP present within [0, 1]."""
    problems = [f"line {line}: seed missing" for line in frame.index[frame["seed"].isna()]]
    final = frame["phase"] == FINAL_PHASE
    required = [("ap", final), ("ap_half_a", ~final)]
    for column, rows in required:
        values = frame.loc[rows, column]
        for line, value in values[~values.apply(math.isfinite)].items():
            what = f"{value} (not finite)" if not math.isnan(value) else "missing (empty or NaN)"
            problems.append(f"line {line}: {column} {what}")
    for column in AP_COLUMNS:
        values = frame[column]
        outside = values[values.apply(math.isfinite) & ((values < 0) | (values > 1))]
        for line, value in outside.items():
            problems.append(f"line {line}: {column} {value:g} outside [0, 1] (AP as a fraction)")
    return problems


def _check_grid(frame: pd.DataFrame) -> list[str]:
    """Every key once; each (profile, variant, phase) group a full grid: every configuration
    with the same seeds, every (configuration, seed) with the three subsets; variants other
    than "as_specified" only in phase 3."""
    problems = []
    key = list(KEY)
    dup = frame[frame.duplicated(key, keep=False)]
    for values, rows in dup.groupby(key, sort=False):
        what = ", ".join(f"{k} {v}" for k, v in zip(KEY, values, strict=True))
        problems.append(f"{_lines(rows.index)}: the same row twice ({what})")
    wrong = frame[(frame["phase3_variant"] != AS_SPECIFIED) & (frame["phase"] != FINAL_PHASE)]
    if len(wrong):
        problems.append(f"{_lines(wrong.index)}: a phase-3 variant other than {AS_SPECIFIED} "
                        "in a phase other than 3")  # fmt: skip
    for (profile, variant, phase), group in frame.groupby(["profile", "phase3_variant", "phase"]):
        where = f"profile {profile}, {variant}, phase {phase}"
        seeds = {c: set(g["seed"].astype(int)) for c, g in group.groupby("configuration")}
        every = set().union(*seeds.values())
        for conf, have in seeds.items():
            if have != every:
                rows = group[group["configuration"] == conf]
                missing = ", ".join(map(str, sorted(every - have)))
                problems.append(f"{_lines(rows.index)}: {conf} ({where}) lacks seed(s) "
                                f"{missing} that other configurations have")  # fmt: skip
        for (conf, seed), cell in group.groupby(["configuration", "seed"]):
            lacking = [s for s in SUBSETS if s not in set(cell["subset"])]
            if lacking:
                problems.append(f"{_lines(cell.index)}: {conf} seed {int(seed)} ({where}) lacks "
                                f"subset(s) {', '.join(lacking)}")  # fmt: skip
    return problems


def validate_per_seed(frame: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Raise ``PerSeedError`` naming ``path`` and the CSV line of each problem of ``frame``
    (indexed by CSV line, numbers parsed): missing or non-finite AP where required, AP outside
    [0, 1], a duplicated row, a configuration lacking seeds the others have, a cell lacking a
    subset."""
    _raise(Path(path), _check_values(frame, Path(path)) + _check_grid(frame))


def read_per_seed(csv_path: str | os.PathLike[str]) -> pd.DataFrame:
    """The per-seed frame back from ``write_per_seed``'s CSV (or one of the older layout),
    validated (``validate_per_seed``): a problem is a ``PerSeedError`` naming the file and row."""
    path = Path(csv_path)
    frame = _parse(_read_csv(path), path)
    validate_per_seed(frame, path)
    frame = frame.astype({"seed": int})
    return sort_per_seed(frame[list(PER_SEED_COLUMNS)])


def cell_environments(
    out_dir: str | os.PathLike[str], cells: list[tuple[Path, dict[str, Any]]] | None = None
) -> list[str]:
    """One line per profile and recorded environment of the finished cells under ``out_dir``
    (the ``environment`` of ``ffcore.study.CellResult``): how many cells, the git commit (``+``
    when the tree had uncommitted changes) and the package versions; cells that recorded
    none are counted as such, cells still running not at all. ``cells``: the records
    ``read_cells(out_dir)`` already read."""
    groups: dict[tuple[str, str], int] = {}
    for _, data in read_cells(out_dir) if cells is None else cells:
        if CellResult.from_dict(data).final is None:  # still running (or killed)
            continue
        env = data.get("environment") or {}
        if env:
            commit = str(env.get("git_commit") or "unknown")[:7] + (
                "+" if env.get("git_dirty") else ""
            )
            versions = ", ".join(f"{k} {v}" for k, v in (env.get("versions") or {}).items())
            what = f"at commit {commit} ({versions})"
            if env.get("cpu"):
                what += f" on {env['cpu']}"
        else:
            what = "without a recorded environment (commit and package versions)"
        key = (str(data.get("profile")), what)
        groups[key] = groups.get(key, 0) + 1
    return [
        f"{profile}: {n} cell(s) trained {what}" for (profile, what), n in sorted(groups.items())
    ]


def whole_seeds(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """(the rows of whole seeds, what was left out): per profile, a seed is kept when every
    configuration has it in every (phase-3 variant, phase) group the profile has, so a study
    read while cells are still running (or after one was killed) is a valid grid of fewer
    seeds, never one with holes. The second item names each profile's seeds left out."""
    kept, notes = [], []
    for profile, rows in frame.groupby("profile", sort=False):
        seeds = set(rows["seed"].astype(int))
        for _, group in rows.groupby(["phase3_variant", "phase"]):
            for _, conf in group.groupby("configuration"):
                seeds &= set(conf["seed"].astype(int))
        left_out = sorted(set(rows["seed"].astype(int)) - seeds)
        if left_out:
            notes.append(f"{profile}: seed(s) {', '.join(map(str, left_out))} left out "
                         "(not every cell of them is complete yet)")  # fmt: skip
        kept.append(rows[rows["seed"].astype(int).isin(seeds)])
    return pd.concat(kept).reset_index(drop=True) if kept else frame, notes


# what must be the same for two sets of rows of one profile to be one grid
SAME_SETUP: tuple[str, ...] = ("torch_threads", "cpu_capability")
MEASURED: tuple[str, ...] = (*AP_COLUMNS, "nme")  # what a re-trained seed must reproduce


def _setup(rows: pd.DataFrame) -> dict[str, Any]:
    """What a profile's rows say of their grid: its (configuration, variant, phase) groups and
    the thread count and kernel level they ran with."""
    groups = rows[["configuration", "phase3_variant", "phase"]].drop_duplicates()
    out: dict[str, Any] = {"groups": set(map(tuple, groups.astype(str).to_numpy()))}
    for column in SAME_SETUP:
        out[column] = set(rows[column].astype(str))
    return out


def _seeds(seeds: Iterable[int]) -> str:
    return ", ".join(map(str, sorted(set(map(int, seeds)))))


def _reproduced(base: pd.DataFrame, rows: pd.DataFrame, base_name: str) -> tuple[list[str], float]:
    """(cells of ``rows`` whose numbers differ from ``base``'s, the largest difference): each
    row of ``rows`` must be a row of ``base``'s grid (else a ``ValueError``)."""
    key = list(KEY)
    joined = rows.merge(base, on=key, how="left", suffixes=("", "_csv"), indicator=True)
    outside = joined[joined["_merge"] == "left_only"]
    if len(outside):
        first = outside.iloc[0]
        raise ValueError(
            f"{first['profile']} {first['configuration']} seed {first['seed']} "
            f"({first['phase3_variant']}, phase {first['phase']}) is not in {base_name}'s grid"
        )
    new = joined[list(MEASURED)].to_numpy(float)
    old = joined[[f"{c}_csv" for c in MEASURED]].to_numpy(float)
    same = (new == old) | (np.isnan(new) & np.isnan(old))
    differ = joined[~same.all(axis=1)]
    cells = sorted(
        {f"{c} seed {int(s)}" for c, s in zip(differ.configuration, differ.seed, strict=True)}
    )
    gap = float(np.nanmax(np.abs(new - old))) if len(differ) else 0.0
    return cells, gap


def extend_per_seed(
    base: pd.DataFrame,
    added: pd.DataFrame,
    base_name: str,
    added_name: str,
    allow_other_machine: bool = False,
) -> tuple[pd.DataFrame, list[str]]:
    """(``base`` with the whole seeds of ``added`` that it lacks, notes): how a grid grows
    across machines that keep nothing but the committed CSV (``base``): the cells of ``study
    --first-seed`` (``added``, every complete cell) add their seeds to it.

    A profile in both must be the same grid: the whole seeds ``added`` brings have the
    configurations, phase-3 variants and phases of ``base``, and every row the torch threads
    and CPU kernel level of ``base``, else a ``ValueError`` naming what differs. A cell of a
    seed ``base`` already holds is a reproduction check (``base``'s rows are kept): its AP and
    NME must equal ``base``'s to the last digit, else a ``ValueError`` naming the cells and
    the largest difference -- unless ``allow_other_machine``, for a machine known not to train
    the CSV's numbers bit for bit: its seeds are then added as whole seeds of their own (every
    configuration of a seed trained on it, so each paired difference stays on one machine) and
    a note says what differed. Without such a cell a note says the check was not made. A
    profile only in ``added`` joins with its whole seeds."""
    notes: list[str] = []
    parts = [base]
    for profile, rows in added.groupby("profile", sort=False):
        have = base[base["profile"] == profile]
        whole, left_out = whole_seeds(rows[~rows["seed"].isin(set(have["seed"]))])
        notes += left_out
        if have.empty:
            parts.append(whole)
            notes.append(f"{profile}: seed(s) {_seeds(whole['seed'])} from {added_name}, none "
                         f"in {base_name}")  # fmt: skip
            continue
        mine = _setup(have)  # the new seeds' groups; threads and kernels of every cell
        theirs = _setup(whole if len(whole) else have) | {
            k: set(rows[k].astype(str)) for k in SAME_SETUP
        }
        differ = [k for k in mine if mine[k] != theirs[k]]
        if differ:
            what = "; ".join(
                f"{k}: {sorted(mine[k])[:4]} in {base_name}, {sorted(theirs[k])[:4]} in "
                f"{added_name}" for k in differ
            )  # fmt: skip
            raise ValueError(f"{profile}: {added_name} is not the grid of {base_name} ({what})")
        check = rows[rows["seed"].isin(set(have["seed"]))]
        if check.empty:
            notes.append(f"{profile}: no cell of {added_name} re-trains a seed of {base_name}, "
                         "so whether it trains the same numbers is not checked")  # fmt: skip
        else:
            cells, gap = _reproduced(have, check, base_name)
            n = check[["configuration", "seed"]].drop_duplicates().shape[0]
            if not cells:
                notes.append(f"{profile}: {n} cell(s) of {added_name} re-train seed(s) "
                             f"{_seeds(check['seed'])} of {base_name} to the last digit")  # fmt: skip
            elif not allow_other_machine:
                raise ValueError(
                    f"{profile}: {', '.join(cells)} of {added_name} differ from {base_name} "
                    f"(largest AP/NME difference {gap:.3g}): not the same training; on a "
                    "machine known not to train the CSV's numbers bit for bit, allow it "
                    "explicitly (allow_other_machine)"
                )
            else:
                notes.append(
                    f"{profile}: {', '.join(cells)} of {added_name} differ from {base_name} "
                    f"(largest AP/NME difference {gap:.3g}): another machine's training; its "
                    "seeds join as whole seeds of their own (every configuration of a seed on "
                    "one machine)"
                )
        if len(whole):
            parts.append(whole)
            notes.append(f"{profile}: seed(s) {_seeds(whole['seed'])} from {added_name} added "
                         f"to the {have['seed'].nunique()} of {base_name}")  # fmt: skip
    frame = sort_per_seed(pd.concat(parts, ignore_index=True))
    return frame.astype({"seed": int}), notes


def study_frame(
    run_dir: str | os.PathLike[str],
    per_seed_csv: str | os.PathLike[str] | None,
    fallback: Any,
    report: Callable[[str], Any] = print,
    extends: str | os.PathLike[str] | None = None,
    allow_other_machine: bool = False,
) -> tuple[pd.DataFrame, str]:
    """(per-seed frame, where it came from): ``per_seed_csv`` when given, else the whole seeds
    of the cells of ``run_dir`` when there are any (their environments and what
    ``whole_seeds`` leaves out are passed to ``report``) -- added to the CSV ``extends`` when
    given (``extend_per_seed``, with ``allow_other_machine``) --, else the CSV ``extends`` or
    ``fallback`` (e.g. the committed one)."""
    if per_seed_csv is not None and extends is not None:
        raise ValueError("per_seed_csv reports a CSV alone, extends adds the cells of run_dir "
                         "to one: give one of them")  # fmt: skip
    if per_seed_csv is None and has_results(run_dir):
        cells = read_cells(run_dir)
        loaded = load_results(run_dir, cells=cells)
        for note in cell_environments(run_dir, cells):
            report(note)
        if extends is None:
            frame, notes = whole_seeds(loaded)
            origin = str(run_dir)
        else:
            frame, notes = extend_per_seed(read_per_seed(extends), loaded, str(extends),
                                           str(run_dir), allow_other_machine)  # fmt: skip
            origin = f"{extends} and the cells of {run_dir}"
        for note in notes:
            report(note)
        if frame.empty:
            raise ValueError(f"no whole seed under {run_dir} yet: {'; '.join(notes)}")
        return frame, origin
    path = Path(per_seed_csv if per_seed_csv is not None else extends or fallback)
    return read_per_seed(path), str(path)


def study_source(results: pd.DataFrame, data_root: str | os.PathLike[str] | None) -> str:
    """The ``source`` line of the study's figures: the profile(s) of the per-seed frame and the
    data (``data_root`` None: the synthetic set), e.g. "study profile, synthetic data"."""
    names = "/".join(profiles(results))
    data = "synthetic data" if data_root is None else f"data {Path(data_root).name}"
    return f"{names} profile, {data}"


def profile_source(source: str, results: pd.DataFrame, profile: str) -> str:
    """``source`` (the ``study_source`` of ``results``) for a figure of ``profile`` alone, e.g.
    "study_2x profile, synthetic data" for the 2x forest plot of a frame of both schedules."""
    return source.replace(f"{'/'.join(profiles(results))} profile", f"{profile} profile", 1)
