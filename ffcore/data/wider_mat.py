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

from dataclasses import dataclass
from pathlib import Path

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
        return scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several types for a corrupt file
        raise ValueError(f"{path}: not a readable MATLAB .mat file ({exc})") from exc


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
    raise ValueError(f"{where}: expected a string, got {value!r}")


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
