"""The WIDER FACE validation ground truth in the official ``.mat`` layout (read and write).

The official evaluation (``eval_tools`` of the WIDER FACE release) ships four MATLAB files in
``ground_truth/``:

* ``wider_face_val.mat``: ``event_list`` (cell [n_events, 1] of strings), ``file_list`` (cell
  [n_events, 1] of cells [n_images, 1] of image names without ``.jpg``) and ``face_bbx_list``
  (cell [n_events, 1] of cells [n_images, 1] of double [n_faces, 4] ``x y w h`` boxes);
* ``wider_easy_val.mat``, ``wider_medium_val.mat``, ``wider_hard_val.mat``: ``gt_list`` (cell
  [n_events, 1] of cells [n_images, 1] of 1-based indices of the faces kept in that subset, as
  uint8/uint16 column vectors, empty as (0, 0) or (0, 1)).

Under ``scipy.io.loadmat`` a cell is an object array and a string a 1-element unicode array.
Some boxes of the real file have a width or height of 0 or below; they are kept as they are
(the evaluation must not crash on them, and it does not drop them either: the official code
does not).
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.io

from ffcore.atomic import replacing

SUBSETS: tuple[str, ...] = ("easy", "medium", "hard")
FACE_FILE = "wider_face_val.mat"


def subset_file(subset: str) -> str:
    """``wider_<subset>_val.mat``, the keep-list file of one subset."""
    return f"wider_{subset}_val.mat"


@dataclass(frozen=True)
class GroundTruth:
    """WIDER FACE validation ground truth, event by event, image by image.

    ``images[e][i]`` is an image name without ``.jpg``; ``boxes[e][i]`` a float64 [n, 4] array of
    ``x y w h`` pixels; ``keep[subset][e][i]`` the 1-based int64 indices (into ``boxes[e][i]``)
    of the faces that count for ``subset`` ("easy", "medium", "hard").
    """

    events: list[str]
    images: list[list[str]]
    boxes: list[list[np.ndarray]]
    keep: dict[str, list[list[np.ndarray]]]

    @property
    def num_images(self) -> int:
        return sum(len(names) for names in self.images)

    @property
    def num_faces(self) -> int:
        return sum(len(b) for per_event in self.boxes for b in per_event)


# -- reading ---------------------------------------------------------------------------------
def _load(path: Path) -> dict[str, object]:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: missing; a WIDER FACE ground-truth folder holds {FACE_FILE} and "
            + ", ".join(subset_file(s) for s in SUBSETS)
        )
    try:
        check_mat_structure(path.read_bytes(), path)
        return scipy.io.loadmat(str(path))
    except MatFormatError:
        raise
    except Exception as exc:  # scipy raises several types for a corrupt file
        first = " ".join(str(exc).split())[:200]
        raise MatFormatError(f"{path}: not a readable MATLAB .mat file ({first})") from None


class MatFormatError(ValueError):
    """A ``.mat`` file that cannot be read; the message names the file (and the byte)."""


# MAT v5 data types (MATLAB's "MAT-File Format", table 1-1) and their item sizes: miINT8 ..
# miUTF32 without the unused codes 8, 10, 11; miMATRIX and miCOMPRESSED hold other elements
_MI_SIZES = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8, 16: 1, 17: 2, 18: 4}
_MI_MATRIX, _MI_COMPRESSED = 14, 15
_MX_CELL, _MX_STRUCT, _MX_OBJECT, _MX_CHAR, _MX_SPARSE = 1, 2, 3, 4, 5
_MX_NUMERIC = frozenset(range(6, 16))  # double .. uint64
_COMPLEX = 0x08  # array-flags bit


class _Element(NamedTuple):
    kind: int
    start: int  # of the data, after the tag
    size: int
    at: int  # of the tag (for messages)


def check_mat_structure(data: bytes, path: Path | str) -> None:
    """Check the layout of a MAT v5 file before scipy reads it: every tagged element has a
    known data type and fits in what holds it, and every matrix (into cells, structs and
    compressed elements) has the sub-elements its class and flags announce, with as many
    values as its dimensions; otherwise a ``MatFormatError`` naming the file and the byte.

    scipy's compiled reader trusts these fields: one flipped byte (a char array's ``miUTF8``
    tag, the complex bit of an array's flags) makes ``loadmat`` kill the interpreter with a
    segmentation fault instead of raising. Files that are not MAT v5 (v4, v7.3/HDF5) are left
    to scipy."""
    # the version as scipy reads it (scipy.io.matlab._miobase._get_matfile_version): a zero in
    # the first four bytes is v4; else the major version byte follows the endian indicator
    if len(data) < 128 or 0 in data[:4]:
        return
    if data[125 if data[126] == ord("I") else 124] != 1:
        return
    order = "<" if data[126:128] == b"IM" else ">"  # MatFile5Reader.guess_byte_order
    for el in _elements(data, 128, len(data), order, path):
        if el.kind == _MI_COMPRESSED:
            try:
                inner = zlib.decompressobj().decompress(
                    data[el.start : el.start + el.size], 1 << 28
                )
            except zlib.error as exc:
                raise MatFormatError(
                    f"{path}: corrupt compressed element at byte {el.at} ({exc})"
                ) from None
            for sub in _elements(inner, 0, len(inner), order, path):
                _check_variable(inner, sub, order, path, 0)
        else:
            _check_variable(data, el, order, path, 0)


def _elements(buf: bytes, start: int, stop: int, order: str, path: Path | str) -> list[_Element]:
    """The tagged elements between ``start`` and ``stop`` (small ones included)."""
    out, pos = [], start
    while pos < stop:
        if stop - pos < 8:
            raise MatFormatError(f"{path}: truncated element tag at byte {pos}")
        first, size = struct.unpack_from(order + "II", buf, pos)
        if first >> 16:  # small data element: type and size in the first word, data in 4 bytes
            kind, size = first & 0xFFFF, first >> 16
            if kind not in _MI_SIZES or size > 4:
                raise MatFormatError(
                    f"{path}: invalid small data element (type {kind}, {size} bytes) at byte {pos}"
                )
            out.append(_Element(kind, pos + 4, size, pos))
            pos += 8
            continue
        kind = first
        if kind not in _MI_SIZES and kind not in (_MI_MATRIX, _MI_COMPRESSED):
            raise MatFormatError(f"{path}: unknown MAT data type {kind} at byte {pos}")
        if pos + 8 + size > stop:
            raise MatFormatError(
                f"{path}: element at byte {pos} claims {size} bytes, only {stop - pos - 8} follow"
            )
        out.append(_Element(kind, pos + 8, size, pos))
        pos += 8 + size + (0 if kind == _MI_COMPRESSED else (-size) % 8)
    return out


def _check_variable(buf: bytes, el: _Element, order: str, path: Path | str, depth: int) -> None:
    """One matrix element: flags, dimensions, name, then what its class holds."""
    bad = f"{path}: malformed matrix at byte {el.at}"
    if el.kind != _MI_MATRIX:
        raise MatFormatError(f"{bad}: expected a matrix element, found data type {el.kind}")
    if depth > 32:
        raise MatFormatError(f"{bad}: nested too deep")
    if el.size == 0:
        return  # an empty matrix
    subs = _elements(buf, el.start, el.start + el.size, order, path)
    if len(subs) < 3 or subs[0].kind != 6 or subs[0].size != 8 or subs[1].kind != 5:
        raise MatFormatError(f"{bad}: no array flags, dimensions and name")
    (flags,) = struct.unpack_from(order + "I", buf, subs[0].start)
    mx, is_complex = flags & 0xFF, bool(flags & (_COMPLEX << 8))
    if subs[1].size < 8 or subs[1].size % 4:
        raise MatFormatError(f"{bad}: dimensions of {subs[1].size} bytes")
    dims = struct.unpack_from(f"{order}{subs[1].size // 4}i", buf, subs[1].start)
    if min(dims) < 0:
        raise MatFormatError(f"{bad}: negative dimension in {dims}")
    count = math.prod(dims)
    rest = subs[3:]
    if mx == _MX_CELL:
        expected = count
    elif mx in (_MX_STRUCT, _MX_OBJECT):
        head = 3 if mx == _MX_OBJECT else 2  # class name, field-name length, field names
        if len(rest) < head or rest[head - 2].size == 0:
            raise MatFormatError(f"{bad}: struct without field names")
        (width,) = struct.unpack_from(order + "i", buf, rest[head - 2].start)
        fields = rest[head - 1].size // width if width > 0 else -1
        if fields < 0:
            raise MatFormatError(f"{bad}: field-name length {width}")
        expected = head + fields * count  # the sub-matrices follow the names
    elif mx == _MX_CHAR:
        expected = 1
    elif mx == _MX_SPARSE:
        expected = 3 + is_complex
    elif mx in _MX_NUMERIC:
        expected = 1 + is_complex
        for part in rest[:expected]:
            if (
                part.kind not in _MI_SIZES
                or part.size % _MI_SIZES[part.kind]
                or (part.size // _MI_SIZES[part.kind] != count)
            ):
                raise MatFormatError(f"{bad}: {count} values announced, data element differs")
    else:
        raise MatFormatError(f"{bad}: unknown array class {mx}")
    if mx in (_MX_CHAR, _MX_SPARSE) and any(part.kind not in _MI_SIZES for part in rest):
        raise MatFormatError(
            f"{bad}: a {'char' if mx == _MX_CHAR else 'sparse'} array holds a matrix"
        )
    if mx == _MX_CHAR and rest and rest[0].kind != 16:  # miUTF8 is variable-width
        width = _MI_SIZES[rest[0].kind]
        if rest[0].size % width or rest[0].size // width != count:
            raise MatFormatError(f"{bad}: {count} characters announced, data element differs")
    if len(rest) != expected:
        raise MatFormatError(
            f"{bad}: class {mx} with dimensions {dims} needs {expected} data elements, "
            f"found {len(rest)}"
        )
    if mx in (_MX_CELL, _MX_STRUCT, _MX_OBJECT):
        skip = 0 if mx == _MX_CELL else (3 if mx == _MX_OBJECT else 2)
        for sub in rest[skip:]:
            _check_variable(buf, sub, order, path, depth + 1)


def _cells(value: object, where: str) -> list[object]:
    """A MATLAB cell array (object ndarray of any 1-D-like shape) as a Python list."""
    if not isinstance(value, np.ndarray) or value.dtype != object:
        raise ValueError(f"{where}: expected a cell array, got {type(value).__name__}")
    if value.size and sum(d > 1 for d in value.shape) > 1:
        raise ValueError(f"{where}: expected a cell vector, got shape {value.shape}")
    return list(value.ravel(order="F"))


def _string(value: object, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind == "U" and value.size <= 1:
        return str(value.ravel()[0]) if value.size else ""
    raise ValueError(f"{where}: expected a string, got {_described(value)}")


def _described(value: object) -> str:
    """A value in one short line (an array's repr spans lines)."""
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype} and shape {value.shape}"
    return " ".join(repr(value).split())[:80]


def _field(mat: dict[str, object], key: str, path: Path) -> object:
    if key not in mat:
        raise ValueError(
            f"{path}: no variable {key!r} (has {sorted(k for k in mat if k[0] != '_')})"
        )
    return mat[key]


def _boxes(value: object, where: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == object or arr.dtype.kind not in "iuf":
        raise ValueError(f"{where}: expected a numeric [n, 4] box array, got dtype {arr.dtype}")
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{where}: expected [n, 4] boxes (x y w h), got shape {arr.shape}")
    return arr.astype(np.float64)


def _keep(value: object, n_faces: int, where: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == object or arr.dtype.kind not in "iuf":
        raise ValueError(f"{where}: expected a numeric keep list, got dtype {arr.dtype}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if sum(d > 1 for d in arr.shape) > 1:
        raise ValueError(f"{where}: expected a keep-list vector, got shape {arr.shape}")
    flat = arr.ravel()
    idx = flat.astype(np.int64)
    if not np.array_equal(idx, flat) or idx.min() < 1 or idx.max() > n_faces:
        raise ValueError(
            f"{where}: keep indices must be integers in 1..{n_faces} (the image's face count), "
            f"got {flat.tolist()}"
        )
    return idx


def read_ground_truth(gt_dir: str | Path) -> GroundTruth:
    """Read the four official ground-truth ``.mat`` files from ``gt_dir``.

    Raises FileNotFoundError for a missing file and ValueError (file, event and image named) for
    a malformed one.
    """
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise FileNotFoundError(f"{gt_dir}: ground-truth folder not found")
    face_path = gt_dir / FACE_FILE
    mat = _load(face_path)
    raw_events = _cells(_field(mat, "event_list", face_path), f"{face_path}: event_list")
    raw_files = _cells(_field(mat, "file_list", face_path), f"{face_path}: file_list")
    raw_boxes = _cells(_field(mat, "face_bbx_list", face_path), f"{face_path}: face_bbx_list")
    if not len(raw_events) == len(raw_files) == len(raw_boxes):
        raise ValueError(
            f"{face_path}: event_list, file_list and face_bbx_list differ in length "
            f"({len(raw_events)}, {len(raw_files)}, {len(raw_boxes)})"
        )
    events = [_string(v, f"{face_path}: event_list[{e}]") for e, v in enumerate(raw_events)]
    images: list[list[str]] = []
    boxes: list[list[np.ndarray]] = []
    for e, event in enumerate(events):
        where = f"{face_path}: event {event!r}"
        names = [
            _string(v, f"{where} file_list[{i}]") for i, v in enumerate(_cells(raw_files[e], where))
        ]
        event_boxes = _cells(raw_boxes[e], f"{where} face_bbx_list")
        if len(event_boxes) != len(names):
            raise ValueError(f"{where}: {len(names)} images but {len(event_boxes)} box arrays")
        images.append(names)
        boxes.append(
            [_boxes(b, f"{where} image {n!r}") for n, b in zip(names, event_boxes, strict=True)]
        )

    keep: dict[str, list[list[np.ndarray]]] = {}
    for subset in SUBSETS:
        path = gt_dir / subset_file(subset)
        raw = _cells(_field(_load(path), "gt_list", path), f"{path}: gt_list")
        if len(raw) != len(events):
            raise ValueError(
                f"{path}: gt_list has {len(raw)} events, {FACE_FILE} has {len(events)}"
            )
        per_event: list[list[np.ndarray]] = []
        for e, event in enumerate(events):
            where = f"{path}: event {event!r}"
            lists = _cells(raw[e], where)
            if len(lists) != len(images[e]):
                raise ValueError(f"{where}: {len(lists)} keep lists but {len(images[e])} images")
            per_event.append(
                [
                    _keep(k, len(b), f"{where} image {n!r}")
                    for k, b, n in zip(lists, boxes[e], images[e], strict=True)
                ]
            )
        keep[subset] = per_event
    return GroundTruth(events=events, images=images, boxes=boxes, keep=keep)


# -- writing ---------------------------------------------------------------------------------
def _cell(items: list[object]) -> np.ndarray:
    """A MATLAB cell column [n, 1] (assigned element by element so numpy never stacks arrays)."""
    out = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        out[i, 0] = item
    return out


def _keep_column(idx: np.ndarray) -> np.ndarray:
    idx = np.asarray(idx, dtype=np.int64).ravel()
    dtype = np.uint8 if idx.size == 0 or idx.max() <= np.iinfo(np.uint8).max else np.uint16
    return idx.astype(dtype).reshape(-1, 1)


def write_ground_truth(gt_dir: str | Path, gt: GroundTruth) -> None:
    """Write ``gt`` as the four official ``.mat`` files in ``gt_dir`` (created if needed).

    Keep lists are written as uint8 column vectors (uint16 when an index exceeds 255), empty ones
    as (0, 1), like the official files; the subset files also carry ``event_list`` and
    ``file_list``.
    """
    gt_dir = Path(gt_dir)
    gt_dir.mkdir(parents=True, exist_ok=True)
    event_list = _cell([np.array([e]) for e in gt.events])
    file_list = _cell([_cell([np.array([n]) for n in names]) for names in gt.images])
    face_bbx_list = _cell(
        [
            _cell([np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in per_event])
            for per_event in gt.boxes
        ]
    )
    with replacing(gt_dir / FACE_FILE) as tmp:
        scipy.io.savemat(
            str(tmp),
            {"event_list": event_list, "file_list": file_list, "face_bbx_list": face_bbx_list},
        )
    for subset in SUBSETS:
        gt_list = _cell(
            [_cell([_keep_column(k) for k in per_event]) for per_event in gt.keep[subset]]
        )
        with replacing(gt_dir / subset_file(subset)) as tmp:
            scipy.io.savemat(
                str(tmp),
                {"event_list": event_list, "file_list": file_list, "gt_list": gt_list},
            )
