"""The per-seed CSV is validated before anything is computed from it: each problem is named with
the file and its CSV line, in one line (the CLI prints it without a traceback)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from errorline import one_error_line

from ffcore.cli import main
from ffcore.paths import FIGURES_DIR
from ffcore.report.study_frame import (
    KEY,
    OLD_COLUMNS,
    PER_SEED_COLUMNS,
    PerSeedError,
    read_per_seed,
)

COMMITTED = FIGURES_DIR / "ablation_per_seed.csv"
# the grid committed before issue 28 (8 seeds x 5 configurations x 3 subsets = 120 rows of
# final AP, the layout before phases and variants), kept as a fixture of the older layout
OLD_GRID = Path(__file__).parent / "data" / "per_seed_old_layout.csv"


@pytest.fixture()
def good(tmp_path: Path) -> Path:
    """The old grid in the long layout."""
    path = tmp_path / "good.csv"
    read_per_seed(OLD_GRID).to_csv(path, index=False)
    return path


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(lines))
    return path


def _plan_error(path: Path, capsys) -> str:
    assert main(["study", "--plan", "--per-seed", str(path)]) == 2
    return one_error_line(capsys.readouterr().err, str(path))


def test_the_committed_grid_is_valid_and_in_the_long_layout() -> None:
    frame = read_per_seed(COMMITTED)  # validated: every row once, whole seeds, finite AP
    assert tuple(pd.read_csv(COMMITTED, nrows=1).columns) == PER_SEED_COLUMNS
    assert {"1", "2a", "2b", "3"} <= set(frame.phase)
    assert set(frame.cpu_capability) == {"AVX2"} and set(frame.torch_threads) == {1}


def test_the_old_grid_reads_in_both_layouts(good: Path) -> None:
    old = pd.read_csv(OLD_GRID)
    assert tuple(old.columns) == OLD_COLUMNS  # the layout before phases and variants
    frame = read_per_seed(OLD_GRID)
    assert tuple(frame.columns) == PER_SEED_COLUMNS and len(frame) == 120
    assert set(frame.phase) == {"3"} and set(frame.phase3_variant) == {"as_specified"}
    assert (frame.cpu_capability == "").all()
    pd.testing.assert_frame_equal(read_per_seed(good), frame)  # the long layout round-trips
    assert not frame.duplicated(list(KEY)).any()


def test_incomplete_grid_names_what_is_missing(good: Path, tmp_path: Path, capsys) -> None:
    lines = _lines(good)
    cut = _write(tmp_path / "cut.csv", lines[:-17])  # 17 of 120 rows gone: eca_cbam_joint
    with pytest.raises(PerSeedError) as info:
        read_per_seed(cut)
    text = str(info.value)
    assert str(cut) in text and "\n" not in text
    # the 103 kept rows end in the middle of eca_cbam_joint seed 2 (line 104: its easy row)
    assert "eca_cbam_joint" in text and "lacks seed(s) 3, 4, 5, 6, 7" in text
    assert "line 104: eca_cbam_joint seed 2" in text and "medium, hard" in text
    assert "lines 98-104" in _plan_error(cut, capsys)


def test_non_numeric_ap_is_named_with_its_line(good: Path, tmp_path: Path, capsys) -> None:
    lines = _lines(good)
    header = lines[0].rstrip("\n").split(",")
    row = lines[5].rstrip("\n").split(",")
    row[header.index("ap")] = "n/a?"
    lines[5] = ",".join(row) + "\n"
    bad = _write(tmp_path / "text.csv", lines)
    with pytest.raises(PerSeedError, match=r"text\.csv: line 6: ap 'n/a\?' is not a number"):
        read_per_seed(bad)
    assert "line 6" in _plan_error(bad, capsys)


@pytest.mark.parametrize("value", ["nan", "", "inf"])
def test_missing_or_infinite_ap_is_named_with_its_line(
    good: Path, tmp_path: Path, value: str, capsys
) -> None:
    lines = _lines(good)
    header = lines[0].rstrip("\n").split(",")
    row = lines[9].rstrip("\n").split(",")
    row[header.index("ap")] = value
    lines[9] = ",".join(row) + "\n"
    bad = _write(tmp_path / "nan.csv", lines)
    with pytest.raises(PerSeedError, match=r"nan\.csv: line 10: ap "):
        read_per_seed(bad)
    assert "line 10: ap" in _plan_error(bad, capsys)


def test_ap_in_percent_is_refused(good: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(good, keep_default_na=False)
    frame.loc[3, "ap"] = 97.5
    frame.to_csv(tmp_path / "pct.csv", index=False)
    with pytest.raises(PerSeedError, match=r"line 5: ap 97.5 outside \[0, 1\]"):
        read_per_seed(tmp_path / "pct.csv")


def test_duplicated_row_is_named_with_both_lines(good: Path, tmp_path: Path, capsys) -> None:
    lines = _lines(good)
    lines.insert(30, lines[2])  # line 3 again as line 31
    bad = _write(tmp_path / "dup.csv", lines)
    with pytest.raises(PerSeedError, match=r"lines 3, 31: the same row twice"):
        read_per_seed(bad)
    assert "the same row twice" in _plan_error(bad, capsys)


def test_unknown_names_are_named_with_their_line(good: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(good, keep_default_na=False, dtype=str)
    frame.loc[0, "configuration"] = "eca"
    frame.loc[7, "phase"] = "4"
    frame.to_csv(tmp_path / "names.csv", index=False)
    with pytest.raises(PerSeedError) as info:
        read_per_seed(tmp_path / "names.csv")
    assert "line 2: configuration 'eca'" in str(info.value)
    assert "line 9: phase '4'" in str(info.value)


def test_empty_garbled_and_foreign_files(tmp_path: Path, capsys) -> None:
    empty = _write(tmp_path / "empty.csv", [])
    with pytest.raises(PerSeedError, match=r"empty\.csv: empty file"):
        read_per_seed(empty)
    assert "empty file" in _plan_error(empty, capsys)
    header_only = _write(tmp_path / "header.csv", [",".join(PER_SEED_COLUMNS) + "\n"])
    with pytest.raises(PerSeedError, match=r"header\.csv: a header and no rows"):
        read_per_seed(header_only)
    header = ",".join(PER_SEED_COLUMNS) + "\n"
    garbled = _write(tmp_path / "garbled.csv", [header, "study,none\n", ",,\n"])
    with pytest.raises(PerSeedError, match=r"garbled\.csv: line 2: 2 fields, the header has 17; "
                       r"line 3: 3 fields"):  # fmt: skip
        read_per_seed(garbled)
    assert "line 2: 2 fields" in _plan_error(garbled, capsys)
    quote = _write(tmp_path / "quote.csv", [header, 'study,"none\n'])
    with pytest.raises(PerSeedError, match=r"quote\.csv: "):
        read_per_seed(quote)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage\n")
    with pytest.raises(PerSeedError, match=r"binary\.csv: not a per-seed CSV"):
        read_per_seed(binary)
    assert "not a per-seed CSV" in _plan_error(binary, capsys)
    foreign = _write(tmp_path / "foreign.csv", ["configuration,seed\n", "none,0\n"])
    with pytest.raises(PerSeedError, match=r"foreign\.csv: not a per-seed study table.*missing"):
        read_per_seed(foreign)
    with pytest.raises(FileNotFoundError, match="nothere"):
        read_per_seed(tmp_path / "nothere.csv")


def test_missing_column_is_named(good: Path, tmp_path: Path) -> None:
    pd.read_csv(good).drop(columns="ap_first96").to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(PerSeedError, match=r"bad\.csv.*missing \['ap_first96'\]"):
        read_per_seed(tmp_path / "bad.csv")


def test_phase_rows_need_ap_half_a_not_ap(good: Path, tmp_path: Path) -> None:
    frame = read_per_seed(good)
    chain = frame.assign(phase="2b", ap=float("nan"))
    both = pd.concat([frame, chain], ignore_index=True)
    both.to_csv(tmp_path / "phases.csv", index=False)
    assert len(read_per_seed(tmp_path / "phases.csv")) == 240  # ap empty on phase 2b: fine
    both.loc[len(frame) + 4, "ap_half_a"] = float("nan")
    both.to_csv(tmp_path / "phases.csv", index=False)
    with pytest.raises(PerSeedError, match=r"line \d+: ap_half_a missing"):
        read_per_seed(tmp_path / "phases.csv")
    variant = frame.assign(phase="2b", phase3_variant="no_mixup")
    pd.concat([frame, variant]).to_csv(tmp_path / "variant.csv", index=False)
    with pytest.raises(PerSeedError, match="a phase-3 variant other than as_specified"):
        read_per_seed(tmp_path / "variant.csv")


def test_a_figure_of_one_profile_names_that_profile_alone() -> None:
    from ffcore.report.study_frame import profile_source, study_source

    frame = pd.DataFrame({"profile": ["study_2x", "study", "study"]})
    source = study_source(frame, None)
    assert source == "study/study_2x profile, synthetic data"
    assert profile_source(source, frame, "study_2x") == "study_2x profile, synthetic data"
    assert profile_source(source, frame, "study") == "study profile, synthetic data"
    one = frame[frame.profile == "study"]
    assert profile_source(study_source(one, "/d/WIDER"), one, "study") == (
        "study profile, data WIDER"
    )


# -- a grid grown across machines: the committed CSV and the cells of study --first-seed ------
def _split(frame: pd.DataFrame, profile: str, seeds: set[int]) -> pd.DataFrame:
    return frame[(frame.profile == profile) & frame.seed.isin(seeds)]


def test_cells_add_the_seeds_the_csv_lacks_and_reproduce_those_it_has() -> None:
    from ffcore.report.study_frame import extend_per_seed, sort_per_seed

    full = read_per_seed(COMMITTED)
    seeds = sorted(set(full[full.profile == "study_2x"].seed))
    assert len(seeds) >= 4
    old, new = set(seeds[:-2]), set(seeds[-4:])  # two seeds in both, two only in the cells
    base = full[(full.profile != "study_2x") | full.seed.isin(old)]
    added = _split(full, "study_2x", new)
    added = added.assign(train_seconds=added.train_seconds + 1.0)  # timings differ, AP does not
    frame, notes = extend_per_seed(base, added, "base.csv", "cells")
    kept = pd.concat([base, _split(added, "study_2x", new - old)])
    pd.testing.assert_frame_equal(frame, sort_per_seed(kept).astype({"seed": int}))
    assert set(frame[frame.profile == "study_2x"].seed) == set(seeds)
    both, only = sorted(old & new), sorted(new - old)
    assert notes == [
        f"study_2x: {len(both) * 4} cell(s) of cells re-train seed(s) "
        f"{', '.join(map(str, both))} of base.csv to the last digit",
        f"study_2x: seed(s) {', '.join(map(str, only))} from cells added to the {len(old)} of "
        "base.csv",
    ]
    # a profile only in the cells joins as it is
    frame, notes = extend_per_seed(full[full.profile == "study"], added, "a.csv", "cells")
    assert set(frame.profile) == {"study", "study_2x"} and len(frame) == len(
        full[full.profile == "study"]
    ) + len(added)
    assert notes == [
        f"study_2x: seed(s) {', '.join(map(str, sorted(new)))} from cells, none in a.csv"
    ]


def test_cells_that_are_not_the_csv_s_grid_are_refused() -> None:
    from ffcore.report.study_frame import extend_per_seed

    full = read_per_seed(COMMITTED)
    seeds = sorted(set(full[full.profile == "study_2x"].seed))
    base = full[(full.profile != "study_2x") | full.seed.isin(seeds[:-1])]
    added = _split(full, "study_2x", set(seeds[-2:]))
    # an AP that differs in the seed both hold: another training, not a reproduction
    moved = added.copy()
    row = moved.index[(moved.seed == seeds[-2]) & (moved.phase == "2a")][0]
    moved.loc[row, "ap_half_a"] += 0.0125
    conf = moved.loc[row, "configuration"]
    with pytest.raises(ValueError, match=rf"study_2x: {conf} seed {seeds[-2]} of cells differ from "
                       r"base.csv \(largest AP/NME difference 0.0125\)"):  # fmt: skip
        extend_per_seed(base, moved, "base.csv", "cells")
    frame, notes = extend_per_seed(base, moved, "base.csv", "cells", allow_other_machine=True)
    assert notes[0].endswith("another machine's training; its seeds join as whole seeds of "
                             "their own (every configuration of a seed on one machine)")  # fmt: skip
    pd.testing.assert_frame_equal(frame, full)
    # two threads instead of one; a configuration the CSV's grid lacks
    with pytest.raises(
        ValueError, match=r"torch_threads: \['1.0'\] in base.csv, \['2.0'\] in cells"
    ):
        extend_per_seed(base, added.assign(torch_threads=2.0), "base.csv", "cells")
    short = base[~((base.profile == "study_2x") & (base.configuration == "eca_cbam_joint"))]
    with pytest.raises(ValueError, match=r"study_2x: cells is not the grid of base.csv \(groups: "):
        extend_per_seed(short, added, "base.csv", "cells")
