"""The file parsers fuzzed with Hypothesis: any input ends in a result or in one error line, a
``ValueError`` naming the file (and the line where the format has lines), never another
exception or a traceback. Inputs are grammar-shaped (the tokens each format uses, the values it
must refuse) or random bytes, and for the ``.mat`` reader bytes of valid files mutated in place.

Deterministic and bounded for CI: ``derandomize=True``, no example database, a fixed number of
examples per parser (a few seconds in all). Crashes found so far, fixed: scipy's compiled .mat
reader segfaulted on a flipped type byte or complex flag (``wider_mat.check_mat_structure`` now
walks the file first); a prediction file or per-seed CSV that is not UTF-8, a cut quote, an empty
CSV or a non-integer seed raised without naming the file, a 25-digit seed an OverflowError; a
.mat string field holding an array gave a message of several lines."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.io
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ffcore.data.wider_mat import (
    FACE_FILE,
    SUBSETS,
    GroundTruth,
    read_ground_truth,
    subset_file,
    write_ground_truth,
)
from ffcore.data.widerface import parse_label_file
from ffcore.evaluation.wider_ap import read_prediction_file, read_predictions
from ffcore.report.study_frame import PER_SEED_COLUMNS, read_per_seed

FUZZ = settings(
    # FFCORE_FUZZ_EXAMPLES=5000 for a deeper search by hand; CI runs the fixed default
    max_examples=int(os.environ.get("FFCORE_FUZZ_EXAMPLES", "80")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _outcome(call: Callable[[], Any], *names: str) -> Any:
    """``call()``'s result, or None after a ``ValueError`` that is one line naming ``names``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # warnings (dropped boxes, overflow) are allowed
            return call()
    except ValueError as exc:
        message = str(exc)
        assert "\n" not in message.strip(), message
        for name in names:
            assert name in message, (name, message)
        return None


# -- shared pieces -------------------------------------------------------------------------
NUMBERS = ["0", "1", "-1", "2.5", "-0.0", "1e3", "1e400", "-1e400", "nan", "inf", "-inf",
           "1_0", "0x10", "１２", "+3", ".5", "5.", "1e-400", "9" * 30]  # fmt: skip
ODD = ["", " ", "\t", "x", "#", "\x00", "\ufeff", "\x85", "\u2028", "\r", "\x0c", "é", "😀"]
TOKEN = st.one_of(st.sampled_from(NUMBERS + ODD), st.text(max_size=6))


def _line(tokens: st.SearchStrategy[str], max_size: int) -> st.SearchStrategy[str]:
    return st.lists(tokens, max_size=max_size).map(" ".join)


def _file(lines: st.SearchStrategy[str], max_lines: int = 10) -> st.SearchStrategy[bytes]:
    text = st.lists(lines, max_size=max_lines).map("\n".join)
    as_bytes = text.map(lambda s: s.encode("utf-8", "surrogatepass"))
    return st.one_of(as_bytes, as_bytes, st.binary(max_size=120))


# -- the WIDER label parser ------------------------------------------------------------------
PATH_LINE = st.one_of(
    st.sampled_from(
        [
            "# a.jpg",
            "# 0--x/b c.jpg",
            "# a.jpg 640 480",
            "# ../up.jpg",
            "# /abs.jpg",
            "#",
            "#   ",
            "# C:/x.jpg",
            "# a/../../b.jpg",
        ]
    ),  # fmt: skip
    st.text(max_size=10).map(lambda s: "# " + s),
)
FACE_LINE = st.one_of(
    st.lists(st.sampled_from(NUMBERS), min_size=20, max_size=20).map(" ".join),
    st.lists(st.sampled_from(NUMBERS), min_size=4, max_size=4).map(" ".join),
    st.lists(st.floats(width=64), min_size=4, max_size=4).map(lambda v: " ".join(map(repr, v))),
    _line(TOKEN, 22),
)
LABEL_FILE = _file(st.one_of(PATH_LINE, FACE_LINE, FACE_LINE), max_lines=12)


@FUZZ
@given(data=LABEL_FILE, require_faces=st.booleans())
def test_label_parser(tmp_path: Path, data: bytes, require_faces: bool) -> None:
    path = tmp_path / "label.txt"
    path.write_bytes(data)
    parsed = _outcome(lambda: parse_label_file(path, require_faces=require_faces), str(path))
    if parsed is not None:
        for rec in parsed.records:
            assert rec.boxes.shape == (len(rec.face_lines), 4)
            assert rec.landmarks.shape == (len(rec.face_lines), 10)


# -- prediction files of wider-eval -----------------------------------------------------------
ROW = st.one_of(
    st.lists(st.sampled_from(NUMBERS), min_size=5, max_size=5).map(" ".join),
    st.lists(st.floats(width=64), min_size=5, max_size=5).map(lambda v: " ".join(map(repr, v))),
    _line(TOKEN, 6),
)
PREDICTION_FILE = st.one_of(
    st.tuples(
        st.sampled_from(["img", "", "#", "😀"]),
        st.sampled_from(["0", "1", "2", "3", "-1", " 2 ", "x", "", "1e3", "2.0", "99999999999"]),
        st.lists(ROW, max_size=4),
        st.sampled_from(["", "\n", "\n\n  \n"]),
    ).map(lambda t: "\n".join([t[0], t[1], *t[2]]).encode() + t[3].encode()),
    _file(ROW, max_lines=6),
)


@FUZZ
@given(data=PREDICTION_FILE)
def test_prediction_file_parser(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "img.txt"
    path.write_bytes(data)
    rows = _outcome(lambda: read_prediction_file(path), str(path))
    if rows is not None:
        assert rows.dtype == np.float64 and rows.ndim == 2 and rows.shape[1] == 5
        assert np.isfinite(rows).all()


@FUZZ
@given(data=PREDICTION_FILE)
def test_prediction_folder_reader(tmp_path: Path, data: bytes) -> None:
    gt = GroundTruth(
        events=["0--a"], images=[["img"]], boxes=[[np.zeros((1, 4))]],
        keep={s: [[np.array([1])]] for s in SUBSETS},
    )  # fmt: skip
    path = tmp_path / "pred" / "0--a" / "img.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    preds = _outcome(lambda: read_predictions(tmp_path / "pred", gt), str(path))
    if preds is not None:
        assert len(preds) == 1 and len(preds[0]) == 1


# -- the .mat ground truth ---------------------------------------------------------------------
def _valid_gt() -> GroundTruth:
    boxes = [np.array([[10, 20, 30, 40], [1, 2, 0, 5]], float), np.zeros((0, 4))]
    keep = {"easy": [[np.array([1]), np.zeros(0)]], "medium": [[np.array([1, 2]), np.zeros(0)]]}
    keep["hard"] = keep["medium"]
    return GroundTruth(["0--Parade"], [["a", "b"]], [boxes], keep)


@pytest.fixture(scope="module")
def mat_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("gt")
    write_ground_truth(folder, _valid_gt())
    names = [FACE_FILE, *(subset_file(s) for s in SUBSETS)]
    return {name: (folder / name).read_bytes() for name in names}


def test_the_valid_mat_files_read_back(mat_files: dict[str, bytes], tmp_path: Path) -> None:
    for name, data in mat_files.items():
        (tmp_path / name).write_bytes(data)
    gt = read_ground_truth(tmp_path)
    assert gt.images == [["a", "b"]] and gt.keep["medium"][0][0].tolist() == [1, 2]


MUTATION = st.tuples(
    st.integers(0, 3),  # which file
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6),
    st.one_of(st.none(), st.integers(0, 10**6)),  # truncate at (modulo the length)
)


@FUZZ
@given(mutation=MUTATION)
def test_mat_reader_on_mutated_bytes(
    tmp_path: Path, mat_files: dict[str, bytes], mutation: tuple
) -> None:
    which, edits, cut = mutation
    names = list(mat_files)
    for i, name in enumerate(names):
        data = bytearray(mat_files[name])
        if i == which:
            for pos, value in edits:
                data[pos % len(data)] = value
            if cut is not None:
                data = data[: cut % len(data)]
        (tmp_path / name).write_bytes(bytes(data))
    gt = _outcome(lambda: read_ground_truth(tmp_path), str(tmp_path))
    if gt is not None:
        assert len(gt.images) == len(gt.boxes) == len(gt.events)


def _cell(items: list[Any], shape: str = "column") -> np.ndarray:
    out = np.empty((len(items), 1) if shape == "column" else (1, len(items)), dtype=object)
    for i, item in enumerate(items):
        out.flat[i] = item
    return out


LEAF = st.one_of(
    st.text(max_size=4).map(lambda s: np.array([s])),
    st.sampled_from(
        [
            np.array([[1.0, 2.0, 3.0, 4.0]]), np.zeros((0, 0)), np.zeros((2, 3)),
            np.array([[np.nan, 1.0, 1.0, np.inf]]), np.array([1, 2], dtype=np.uint8),
            np.array([[0.5]]), np.array([[300]], dtype=np.uint16), np.array([[True]]),
            np.zeros((2, 2, 2)), np.array([[1 + 2j]]), np.array([[-1]]), np.array([[np.nan]]),
            np.array([[1e300]]), np.array(["ab", "cd"]), np.array([[2**40]], dtype=np.int64),
        ]
    ),
)  # fmt: skip
VALUE = st.recursive(
    LEAF,
    lambda inner: st.tuples(st.lists(inner, max_size=3), st.sampled_from(["column", "row"])).map(
        lambda t: _cell(*t)
    ),
    max_leaves=8,
)


@FUZZ
@given(
    face=st.fixed_dictionaries(
        {},
        optional={"event_list": VALUE, "file_list": VALUE, "face_bbx_list": VALUE, "x": VALUE},
    ),
    keeps=st.lists(VALUE, min_size=3, max_size=3),
)
@example(  # an event name that is a cell: its repr spanned lines in the message
    face={
        "event_list": _cell([_cell([np.array([""]), np.array([""])])]),
        "file_list": _cell([np.array([""])]),
        "face_bbx_list": _cell([np.array([""])]),
    },
    keeps=[np.array([""])] * 3,
)
def test_mat_reader_on_odd_contents(tmp_path: Path, face: dict, keeps: list) -> None:
    """Valid .mat files holding the wrong things: other types, shapes, NaN, out-of-range."""
    scipy.io.savemat(str(tmp_path / FACE_FILE), face or {"y": np.zeros(1)})
    for subset, value in zip(SUBSETS, keeps, strict=True):
        scipy.io.savemat(str(tmp_path / subset_file(subset)), {"gt_list": value})
    gt = _outcome(lambda: read_ground_truth(tmp_path), str(tmp_path))
    if gt is not None:
        for subset in SUBSETS:
            for per_event, boxes in zip(gt.keep[subset], gt.boxes, strict=True):
                for idx, b in zip(per_event, boxes, strict=True):
                    assert idx.dtype == np.int64 and ((idx >= 1) & (idx <= len(b))).all()


# -- the per-seed CSV ----------------------------------------------------------------------------
def _template_value(column: str, row: int) -> Any:
    text = {"configuration": "none", "subset": ("easy", "medium", "hard")[row % 3], "profile": "ci"}
    if column in text:
        return text[column]
    if column == "seed":
        return row // 3
    return 0.5 + row / 100


@pytest.fixture(scope="module")
def per_seed_csv() -> str:
    frame = pd.DataFrame({c: [_template_value(c, r) for r in range(6)] for c in PER_SEED_COLUMNS})
    return frame.to_csv(index=False)


CSV_VALUE = st.one_of(
    st.sampled_from(
        [
            "",
            "nan",
            "inf",
            "-1",
            "1.5",
            "x",
            '"',
            '""',
            ",",
            "none",
            "easy",
            "eca_cbam_phased",
            "1e400",
            "9" * 25,
            "\x00",
            "😀",
        ]
    ),  # fmt: skip
    st.text(max_size=5),
)


@FUZZ
@example(edits=[(1, 1, "9" * 25)], raw=None, cut=None)  # overflowed int64 (OverflowError)
@example(edits=[(1, 1, "medium")], raw=None, cut=None)  # a seed that is not an integer
@example(edits=[], raw=b"\x80", cut=None)  # not UTF-8
@example(edits=[(1, 0, '"')], raw=None, cut=None)  # a quote never closed
@given(
    edits=st.lists(st.tuples(st.integers(0, 20), st.integers(0, 30), CSV_VALUE), max_size=5),
    raw=st.one_of(st.none(), st.binary(max_size=80)),
    cut=st.one_of(st.none(), st.integers(0, 2000)),
)
def test_per_seed_reader(
    tmp_path: Path, per_seed_csv: str, edits: list, raw: bytes | None, cut: int | None
) -> None:
    if raw is not None:
        data = raw
    else:
        lines = [line.split(",") for line in per_seed_csv.splitlines()]
        for row, col, value in edits:
            cells = lines[row % len(lines)]
            cells[col % len(cells)] = value
        text = "\n".join(",".join(cells) for cells in lines) + "\n"
        data = text.encode("utf-8", "surrogatepass")
        if cut is not None:
            data = data[: cut % (len(data) + 1)]
    path = tmp_path / "ablation_per_seed.csv"
    path.write_bytes(data)
    frame = _outcome(lambda: read_per_seed(path), str(path))
    if frame is not None:
        assert list(frame.columns) == list(PER_SEED_COLUMNS) and len(frame) >= 1
        assert all(isinstance(s, int | np.integer) for s in frame["seed"])
        assert not any(isinstance(s, float) and math.isnan(s) for s in frame["seed"])


@pytest.mark.parametrize(
    ("name", "pattern", "offset", "value", "said"),
    [
        # event_list's char array: its miUTF8 (16) tag becomes an unknown type 250
        (FACE_FILE, b"\x10\x00\x00\x00\x09\x00\x00\x00", 0, 250, "unknown MAT data type 250"),
        # a uint8 keep list's array flags gain the complex bit: no imaginary part follows
        (subset_file("easy"), b"\x06\x00\x00\x00\x08\x00\x00\x00\x09\x00", 9, 8, "2 data elem"),
    ],
)
def test_mat_bytes_that_crashed_scipy_are_refused(
    tmp_path: Path, mat_files: dict[str, bytes], name, pattern, offset, value, said
) -> None:
    """Both single-byte edits made ``scipy.io.loadmat`` die with a segmentation fault (found by
    the fuzz test above); the layout check refuses them first, naming the file and byte."""
    for other, data in mat_files.items():
        (tmp_path / other).write_bytes(data)
    data = bytearray(mat_files[name])
    at = data.index(pattern) + offset
    data[at] = value
    (tmp_path / name).write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{tmp_path / name}: .*{said}.*"):
        read_ground_truth(tmp_path)
