"""WIDER FACE on disk: RetinaFace-style ``label.txt`` parsing, validation, Dataset, collate.

Label format (RetinaFace ``train/label.txt``)::

    # 0--Parade/0_Parade_marchingband_1_849.jpg
    449 330 122 149 488.906 373.643 0.0 542.089 376.442 0.0 515.031 412.83 0.0 485.955 425.893 0.0 538.357 431.491 0.0 0.82

A ``# relative/path.jpg`` line (optionally followed by the image width and height, as some
RetinaFace copies of the val list do) opens an image; each following line is one face: ``x y w h``
then five landmarks as ``lx ly flag`` triples and a final confidence/blur value (20 numbers), or
just ``x y w h`` (4 numbers, the validation ``label.txt``: landmarks missing). A face's landmarks
are valid when none of its ten landmark coordinates is -1; otherwise all ten are set to -1.
Images live next to the label file: ``<dir of label.txt>/images/<relative path>``.

Boxes become ``x1, y1, x2, y2 = x, y, x + w, y + h`` in continuous pixel coordinates (pixel ``i``
covers ``[i, i+1)``). Boxes with ``w <= 0`` or ``h <= 0`` are dropped with one warning that
counts them. Bad input raises ``WiderFormatError`` naming the file and line.

Validation (``validate_dataset``: ``check-data`` and training's start-up check) is stricter:
a negative width or height is an error naming file and line (an annotation bug, not a
tolerance; zero sizes stay counted drops, as the parser does); a box lying entirely outside its
image is a warning naming file and line (the augmentation's crops drop it, so training still
works, but the label is suspicious); an image is decoded strictly -- a truncated JPEG (no
end-of-image marker after its last scan) or PNG (no IEND chunk), which libjpeg would fill with
grey after a bare "Premature end of JPEG file", is an error naming the file and label line, and
so it is for training and evaluation, which read images through ``read_image``; so is a JPEG
fully decoded but with corrupt scan data (libjpeg's "Corrupt JPEG data" warning, caught on
validation's strict decode only). Label paths are confined to the image folder (an absolute path
or ``..`` above it is an error naming the line) and kept exactly (inner spaces included); a
UTF-8 byte-order mark is dropped.

Orientation: pixels are read as STORED (``cv2.IMREAD_IGNORE_ORIENTATION``), as WIDER FACE's
boxes are; a file with an EXIF rotation tag gets one warning naming it.
"""

from __future__ import annotations

import math
import os
import re
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ffcore.data import augment
from ffcore.data.preprocess import image_to_tensor

FACE_NUMBERS_FULL = 20  # x y w h + 5 * (lx ly flag) + confidence
FACE_NUMBERS_BOX = 4  # x y w h (validation label.txt)
_NO_LANDMARKS = [-1.0] * (FACE_NUMBERS_FULL - FACE_NUMBERS_BOX)
SIZE_BINS: tuple[tuple[str, float, float], ...] = (
    ("<16", 0.0, 16.0),
    ("16-32", 16.0, 32.0),
    ("32-64", 32.0, 64.0),
    ("64-128", 64.0, 128.0),
    ("128-256", 128.0, 256.0),
    (">=256", 256.0, math.inf),
)


class WiderFormatError(ValueError):
    """A label file that cannot be read as WIDER; the message starts with ``file:line:``."""

    def __init__(self, path: Path | str, line: int | None, message: str) -> None:
        self.path = Path(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else f"{self.path}"
        super().__init__(f"{where}: {message}")


class DataError(ValueError):
    """A dataset that failed validation; the message lists every error found."""


@dataclass(frozen=True, eq=False)
class ImageRecord:
    """One image of a label file. Coordinates in pixels of the original image.

    boxes: [N, 4] float32 x1, y1, x2, y2; landmarks: [N, 10] float32 (x0, y0, ..., x4, y4), -1
    where missing; landmark_valid: [N] bool. ``line`` is the 1-based line of the ``#`` path line.
    """

    path: Path
    boxes: np.ndarray
    landmarks: np.ndarray
    landmark_valid: np.ndarray
    line: int = 0
    label_file: Path | None = None
    face_lines: tuple[int, ...] = ()  # 1-based line of each kept box (empty: not from a file)

    @property
    def where(self) -> str:
        """``label.txt:LINE`` for messages about this image."""
        return f"{self.label_file}:{self.line}" if self.label_file else str(self.path)


@dataclass(frozen=True)
class ParsedLabels:
    label_file: Path
    records: list[ImageRecord]
    dropped_degenerate: int
    faces: int  # faces kept (degenerate boxes excluded)


def _empty_record(path: Path, line: int, label_file: Path) -> dict:
    return {"path": path, "line": line, "label_file": label_file, "faces": [], "lines": []}


def resolve_label_file(label_path: Path | str) -> Path:
    """``label.txt`` itself or the folder holding it -> the absolute label file path."""
    path = Path(label_path).expanduser()
    if path.is_dir():
        if (path / "label.txt").is_file():
            return (path / "label.txt").absolute()
        raise FileNotFoundError(
            f"{path} is a folder without label.txt (expected a WIDER label.txt)"
        )
    if not path.exists():
        raise FileNotFoundError(f"label file not found: {path}")
    if not path.is_file():
        raise WiderFormatError(path, None, "is not a file (expected a WIDER label.txt)")
    return path.absolute()


def _escapes_folder(rel: str) -> str | None:
    """Why a label file's image path leaves the image folder (None: it stays inside).

    Paths are confined to ``images/``: an absolute path or ``..`` reaching above it could read
    any file (``/dev/zero`` without end)."""
    if rel.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", rel):
        return "is absolute: image paths are relative to the image folder"
    depth = 0
    for part in re.split(r"[/\\]", rel):
        if part == "..":
            depth -= 1
        elif part not in ("", "."):
            depth += 1
        if depth < 0:
            return "reaches outside (..) the image folder"
    return None


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


class _Parsed(NamedTuple):
    records: list[ImageRecord]
    dropped: int  # degenerate boxes (w <= 0 or h <= 0) dropped
    negative: list[str]  # ``file:line: ...`` of each box with a negative width or height


def _parse(label_path: Path, require_faces: bool, errors: list[str] | None) -> _Parsed:
    """Parse ``label_path``. With ``errors`` None the first problem raises; otherwise problems
    are appended to ``errors`` (as ``file:line: message``) and parsing goes on where it can."""

    def fail(line: int | None, message: str) -> None:
        err = WiderFormatError(label_path, line, message)
        if errors is None:
            raise err
        errors.append(str(err))

    try:
        text = label_path.read_text(encoding="utf-8-sig")  # a BOM is dropped
    except UnicodeDecodeError as exc:
        fail(None, f"not a WIDER label file: not UTF-8 text ({exc.reason} at byte {exc.start})")
        return _Parsed([], 0, [])
    except OSError as exc:
        fail(None, f"cannot read label file: {exc.strerror or exc}")
        return _Parsed([], 0, [])

    images_dir = label_path.parent / "images"
    negative: list[str] = []
    pending: list[dict] = []
    current: dict | None = None
    seen_any = False

    def close(rec: dict | None) -> None:
        if rec is not None and require_faces and not rec["faces"]:
            fail(rec["line"], f"image {rec['rel']!r} has no face lines (faces are required)")

    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            close(current)
            tokens = line[1:].split()
            if not tokens:
                fail(lineno, "path line '#' without an image path")
                current = None
                continue
            if len(tokens) == 3 and tokens[1].isdigit() and tokens[2].isdigit():
                rel = tokens[0]  # '# path width height'
            else:
                rel = line[1:].strip()  # the exact name (inner spaces kept)
            current = _empty_record(images_dir / rel, lineno, label_path)
            current["rel"] = rel
            seen_any = True
            escape = _escapes_folder(rel)
            if escape:
                fail(lineno, f"image path {rel!r} {escape} {images_dir}")
                continue  # its face lines go to a record that is dropped
            pending.append(current)
            continue
        tokens = line.split()
        if not seen_any:
            if all(_is_number(t) for t in tokens):
                fail(lineno, "face line before any '# relative/path.jpg' line")
                if errors is not None:
                    continue
            hint = ""
            if line.lower().endswith((".jpg", ".jpeg", ".png")):
                hint = (
                    " (this looks like the official wider_face_*_bbx_gt.txt; use the"
                    " RetinaFace-style label.txt with '# path' lines)"
                )
            fail(
                lineno,
                "not a WIDER label file: expected '# relative/path.jpg' lines followed by"
                f" face lines, found {line[:60]!r}{hint}",
            )
            return _Parsed([], 0, [])  # collecting mode: one error is enough for a foreign file
        try:
            numbers = list(map(float, tokens))
        except ValueError:
            col, tok = next((i + 1, t) for i, t in enumerate(tokens) if not _is_number(t))
            fail(lineno, f"non-numeric field {tok!r} (number {col} of the face line)")
            continue
        if len(tokens) not in (FACE_NUMBERS_FULL, FACE_NUMBERS_BOX):
            fail(
                lineno,
                f"face line has {len(tokens)} numbers; expected {FACE_NUMBERS_FULL} (x y w h,"
                f" 5 x (lx ly flag), confidence) or {FACE_NUMBERS_BOX} (x y w h)",
            )
            continue
        if not all(map(math.isfinite, numbers)):
            fail(lineno, "face line has a non-finite number (nan or inf)")
            continue
        if len(numbers) == FACE_NUMBERS_BOX:
            numbers += _NO_LANDMARKS
        assert current is not None  # seen_any guarantees a path line
        current["faces"].append(numbers)
        current["lines"].append(lineno)
        if numbers[2] < 0 or numbers[3] < 0:
            negative.append(
                f"{label_path}:{lineno}: box has a negative width or height "
                f"(w={numbers[2]:g}, h={numbers[3]:g})"
            )
    close(current)
    if not seen_any and (errors is None or not errors):
        fail(None, "not a WIDER label file: no '# relative/path.jpg' lines (empty file?)")
    records = [_to_record(rec) for rec in pending]
    return _Parsed([r for r, _ in records], sum(d for _, d in records), negative)


def _to_record(rec: dict) -> tuple[ImageRecord, int]:
    """Vectorised conversion of one image's face lines; returns (record, degenerate dropped)."""
    arr = np.array(rec["faces"], dtype=np.float64).reshape(-1, FACE_NUMBERS_FULL)
    keep = (arr[:, 2] > 0) & (arr[:, 3] > 0)
    arr = arr[keep]
    lines = tuple(int(n) for n, k in zip(rec["lines"], keep, strict=True) if k)
    boxes = np.concatenate([arr[:, :2], arr[:, :2] + arr[:, 2:4]], axis=1).astype(np.float32)
    coords = arr[:, 4:19].reshape(-1, 5, 3)[:, :, :2].reshape(-1, 10)
    valid = ~(coords == -1.0).any(axis=1)
    lms = np.where(valid[:, None], coords, -1.0).astype(np.float32)
    record = ImageRecord(rec["path"], boxes, lms, valid, rec["line"], rec["label_file"], lines)
    return record, int((~keep).sum())


def parse_label_file(label_path: Path | str, require_faces: bool = False) -> ParsedLabels:
    """Read a RetinaFace-style ``label.txt``; raises ``WiderFormatError`` naming file and line.

    ``label_path`` may also be the folder that holds ``label.txt``. Images without faces are
    allowed unless ``require_faces``. Degenerate boxes are dropped with one warning.
    """
    path = resolve_label_file(label_path)
    records, dropped, _ = _parse(path, require_faces, errors=None)
    if dropped:
        warnings.warn(
            f"{path}: dropped {dropped} degenerate box(es) with w <= 0 or h <= 0",
            stacklevel=2,
        )
    return ParsedLabels(path, records, dropped, sum(len(r.boxes) for r in records))


# -- validation -------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataReport:
    """What ``validate_dataset`` found. ``errors`` name file and line; empty means usable."""

    label_file: Path
    images: int = 0
    faces: int = 0
    faces_with_landmarks: int = 0
    empty_images: int = 0
    size_histogram: dict[str, int] = field(default_factory=dict)  # face height bins (px)
    dropped_degenerate: int = 0
    boxes_outside_image: int = 0  # boxes lying entirely outside their image (suspicious)
    val_root: Path | None = None
    val_images: int = 0
    val_faces: int = 0
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # ``file:line: ...``: usable, but worth a look

    @property
    def ok(self) -> bool:
        return not self.errors

    def format(self, max_errors: int = 50, with_errors: bool = True) -> str:
        lines = [
            f"training labels: {self.label_file}",
            f"  images               {self.images:>8,}  ({self.empty_images:,} without faces)",
            f"  faces                {self.faces:>8,}",
            f"  faces with landmarks {self.faces_with_landmarks:>8,}",
            f"  dropped degenerate   {self.dropped_degenerate:>8,}  (w <= 0 or h <= 0)",
            f"  boxes outside image  {self.boxes_outside_image:>8,}",
            "  face height histogram (px):",
        ]
        lines += [f"    {k:>8}  {v:>8,}" for k, v in self.size_histogram.items()]
        if self.val_root is not None:
            lines.append(f"validation: {self.val_root}")
            lines.append(f"  images               {self.val_images:>8,}")
            lines.append(f"  faces                {self.val_faces:>8,}")
        if self.warnings:
            lines.append(f"{len(self.warnings)} warning(s):")
            lines += [f"  {w}" for w in self.warnings[:max_errors]]
            if len(self.warnings) > max_errors:
                lines.append(f"  ... and {len(self.warnings) - max_errors} more")
        if not with_errors:
            pass
        elif self.errors:
            lines.append(f"{len(self.errors)} error(s):")
            lines += [f"  {e}" for e in self.errors[:max_errors]]
            if len(self.errors) > max_errors:
                lines.append(f"  ... and {len(self.errors) - max_errors} more")
        else:
            lines.append("no errors")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()

    def raise_if_errors(self) -> None:
        if self.errors:  # one line: the first errors, each naming file and line
            shown = "; ".join(self.errors[:3])
            more = f" (and {len(self.errors) - 3} more)" if len(self.errors) > 3 else ""
            raise DataError(
                f"dataset {self.label_file}: {len(self.errors)} error(s): {shown}{more}"
            )


def size_histogram(heights: np.ndarray) -> dict[str, int]:
    """Counts of face heights (px) per ``SIZE_BINS`` bin."""
    return {
        name: int(np.count_nonzero((heights >= lo) & (heights < hi))) for name, lo, hi in SIZE_BINS
    }


def _check_images(
    records: Sequence[ImageRecord],
    errors: list[str],
    workers: int = 4,
    progress: bool = False,
    warnings_out: list[str] | None = None,
) -> int:
    """Decode every image strictly like training does; append errors (and, to ``warnings_out``,
    each box lying entirely outside its image, by label line); return the number of such boxes."""

    def check(rec: ImageRecord) -> tuple[str | None, list[str]]:
        try:
            image = read_image(rec.path, rec.where, strict=True)
        except (FileNotFoundError, ValueError) as exc:
            return str(exc), []
        h, w = image.shape[:2]
        b = rec.boxes
        outside = (b[:, 0] >= w) | (b[:, 1] >= h) | (b[:, 2] <= 0) | (b[:, 3] <= 0)
        where = [
            f"{rec.label_file}:{rec.face_lines[i]}" if rec.face_lines else rec.where
            for i in np.flatnonzero(outside)
        ]
        return None, [
            f"{loc}: box {', '.join(f'{v:g}' for v in b[i])} (x1, y1, x2, y2) lies outside the "
            f"{w}x{h} image {rec.path.name}"
            for loc, i in zip(where, np.flatnonzero(outside), strict=True)
        ]

    outside = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(check, records)
        if progress:
            from tqdm import tqdm

            results = tqdm(results, total=len(records), desc="checking images", unit="img")
        for err, out_msgs in results:
            outside += len(out_msgs)
            if warnings_out is not None:
                warnings_out.extend(out_msgs)
            if err:
                errors.append(err)
    return outside


def _val_folder(val_root: Path) -> Path:
    """Accept the val folder itself (``images/`` inside) or the dataset root (``val/`` inside)."""
    if (val_root / "images").is_dir():
        return val_root
    if (val_root / "val" / "images").is_dir():
        return val_root / "val"
    return val_root


def no_face_problem(label_file: Path | str, images: int, faces: int) -> str | None:
    """Why a training set cannot be trained on for want of faces (None: it has one). Without a
    single face every loss term is 0 and nothing is learned: training refuses it and
    ``validate_dataset`` reports it as an error (one rule, one wording)."""
    if faces > 0:
        return None
    return f"{label_file}: none of its {images} images has a face; there is nothing to train on"


def validate_dataset(
    label_file: Path | str,
    val_root: Path | str | None = None,
    require_faces: bool = False,
    progress: bool = False,
) -> DataReport:
    """Read the dataset the way training will (every image opened) and report all problems.

    ``val_root`` is the validation folder (``val/`` with ``images/`` and optionally
    ``label.txt``) or the dataset root holding it; with a ``label.txt`` every listed image is
    opened, otherwise every ``images/<event>/*.jpg``. A training set without a single face
    is an error (``no_face_problem``: training refuses it).
    """
    errors: list[str] = []
    found_warnings: list[str] = []
    try:
        path = resolve_label_file(label_file)
    except (FileNotFoundError, WiderFormatError) as exc:
        return DataReport(Path(label_file), errors=(str(exc),))
    records, dropped, negative = _parse(path, require_faces, errors)
    errors.extend(negative)
    outside = _check_images(records, errors, progress=progress, warnings_out=found_warnings)
    faceless = no_face_problem(path, len(records), int(sum(len(r.boxes) for r in records)))
    if faceless is not None:
        errors.append(faceless)
    heights = np.concatenate([r.boxes[:, 3] - r.boxes[:, 1] for r in records] or [np.zeros(0)])
    report = {
        "images": len(records),
        "faces": int(sum(len(r.boxes) for r in records)),
        "faces_with_landmarks": int(sum(int(r.landmark_valid.sum()) for r in records)),
        "empty_images": sum(1 for r in records if len(r.boxes) == 0),
        "size_histogram": size_histogram(heights),
        "dropped_degenerate": dropped,
        "boxes_outside_image": outside,
    }
    val_dir = None
    if val_root is not None:
        val_dir = _val_folder(Path(val_root).expanduser().absolute())
        val_records: list[ImageRecord] = []
        if (val_dir / "label.txt").is_file():
            val_records, _, val_negative = _parse(val_dir / "label.txt", False, errors)
            errors.extend(val_negative)
        elif (val_dir / "images").is_dir():
            val_records = [
                ImageRecord(
                    p,
                    np.zeros((0, 4), np.float32),
                    np.zeros((0, 10), np.float32),
                    np.zeros(0, bool),
                )
                for p in sorted((val_dir / "images").glob("*/*.jpg"))
            ]
            if not val_records:
                errors.append(f"{val_dir / 'images'}: no images/<event>/*.jpg found")
        else:
            errors.append(f"{val_dir}: no validation images (expected images/<event>/*.jpg)")
        _check_images(val_records, errors, progress=progress)
        # Every image of the official ground truth must be on disk.
        if val_dir.name == "val" and _ground_truth_dir(val_dir.parent) is not None:
            try:
                for _ in iter_val_images(val_dir.parent):
                    pass
            except (FileNotFoundError, ValueError) as exc:
                errors.append(str(exc))
        report["val_images"] = len(val_records)
        report["val_faces"] = int(sum(len(r.boxes) for r in val_records))
    return DataReport(
        path, val_root=val_dir, errors=tuple(errors), warnings=tuple(found_warnings), **report
    )


# -- training dataset -------------------------------------------------------------------------
def truncation_problem(data: bytes) -> str | None:
    """Why a JPEG or PNG file's bytes are cut short (None: complete, or another format).

    JPEG: an end-of-image marker (FF D9) must follow the last start-of-scan (FF DA); inside scan
    data FF is always followed by 00 or a restart marker, so the EOI cannot be mistaken, an
    embedded EXIF thumbnail's EOI lies before the main scan, and bytes after the EOI are allowed.
    PNG: the IEND chunk must be there."""
    if data[:2] == b"\xff\xd8":
        sos = data.rfind(b"\xff\xda")
        if sos < 0:
            return "JPEG without image data (no start-of-scan marker)"
        if data.find(b"\xff\xd9", sos + 2) < 0:
            return "JPEG cut short: no end-of-image marker after its last scan"
    elif data[:8] == b"\x89PNG\r\n\x1a\n" and data.rfind(b"IEND") < 0:
        return "PNG cut short: no IEND chunk"
    return None


EXIF_ORIENTATION_TAG = 0x0112
_DECODE_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION  # the stored pixels


def exif_orientation(data: bytes) -> int | None:
    """The EXIF orientation tag (1-8) of a JPEG's bytes; None when it has none.

    Reads the APP1 ``Exif`` segments before the first scan: TIFF header, IFD0, tag 0x0112."""
    if data[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker in (0xDA, 0xD9):  # start of scan / end of image: no more metadata
            return None
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        segment = data[pos + 4 : pos + 2 + length]
        if marker == 0xE1 and segment[:6] == b"Exif\x00\x00":
            found = _tiff_orientation(segment[6:])
            if found is not None:
                return found
        pos += 2 + length
    return None


def _tiff_orientation(tiff: bytes) -> int | None:
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return None

    def num(at: int, size: int) -> int:
        return int.from_bytes(tiff[at : at + size], order)  # type: ignore[arg-type]

    ifd = num(4, 4)
    if ifd + 2 > len(tiff):
        return None
    for k in range(num(ifd, 2)):
        entry = ifd + 2 + 12 * k
        if entry + 12 > len(tiff):
            return None
        if num(entry, 2) == EXIF_ORIENTATION_TAG:
            return num(entry + 8, 2)
    return None


_STDERR_LOCK = threading.Lock()
# libjpeg's warnings about damaged data: it decodes on, filling in garbage
_LIBJPEG_CORRUPT = (
    "Corrupt JPEG data",
    "Premature end of JPEG",
    "Invalid SOS parameters",
    "Inconsistent progression",
    "Huffman",
)


def _decode_watching_stderr(buf: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """``cv2.imdecode`` with the C library's stderr (fd 2) captured: (image, the first libjpeg
    warning about corrupt data, or None). Other text written meanwhile is passed on. One decode
    at a time (fd 2 is the process'); used by the strict checks only, never on the fast path."""
    with _STDERR_LOCK, tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            image = cv2.imdecode(buf, _DECODE_FLAGS)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode("utf-8", errors="replace")
    corrupt = [line for line in text.splitlines() if line.startswith(_LIBJPEG_CORRUPT)]
    rest = "".join(
        line for line in text.splitlines(keepends=True) if not line.startswith(_LIBJPEG_CORRUPT)
    )
    if rest:
        os.write(2, rest.encode())
    return image, (corrupt[0].strip() if corrupt else None)


def read_image(path: Path, where: str = "", strict: bool = False) -> np.ndarray:
    """Decode an image's stored pixels, with errors naming it (and the label line): missing, not
    a regular file, truncated (``truncation_problem``; libjpeg would only warn and fill the rest
    with grey) or not decodable.

    Orientation: the STORED pixels, as WIDER FACE's boxes are given (an EXIF orientation tag is
    ignored, with one warning per file that carries a rotation). ``strict`` (validation,
    ``check-data``, evaluation's start-up check) also turns libjpeg's warnings about corrupt
    scan data (a fully decoded image with garbage in it) into an error; it decodes one image at
    a time, so the training fast path leaves it off and relies on the start-up validation."""
    prefix = f"{where}: " if where else ""
    try:
        if not Path(path).is_file() and Path(path).exists():  # a device, fifo, folder
            raise ValueError(f"{prefix}image is not a regular file: {path}")
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{prefix}image not found: {path}") from None
    except OSError as exc:
        raise ValueError(f"{prefix}image cannot be read ({exc.strerror or exc}): {path}") from None
    problem = truncation_problem(data)
    if problem is not None:
        raise ValueError(f"{prefix}image is truncated ({problem}): {path}")
    buf = np.frombuffer(data, np.uint8)
    if strict and data[:2] == b"\xff\xd8":
        image, corrupt = _decode_watching_stderr(buf)
        if image is not None and corrupt:
            raise ValueError(f"{prefix}image data is corrupt (libjpeg: {corrupt}): {path}")
    else:
        image = cv2.imdecode(buf, _DECODE_FLAGS) if len(data) else None
    if image is None:
        raise ValueError(f"{prefix}image cannot be read (not a decodable image): {path}")
    orientation = exif_orientation(data)
    if orientation not in (None, 1):
        h, w = image.shape[:2]
        warnings.warn(
            f"{prefix}{path}: EXIF orientation {orientation} ignored: boxes refer to the stored"
            f" {w}x{h} pixels (as WIDER FACE's do), not the rotated view",
            stacklevel=2,
        )
    return image


class WiderFaceDataset(Dataset):
    """Training images with normalised targets.

    ``__getitem__(i) -> (image [3, S, S] float32, target)`` with target = {"boxes": [N, 4]
    x1y1x2y2 in [0, 1] (divided by S), "landmarks": [N, 10] in [0, 1] (-1 where missing),
    "landmark_valid": [N] bool}.

    With ``augment=True`` the RetinaFace pipeline of ``ffcore.data.augment`` runs with
    ``np.random.default_rng([seed, epoch, index])``: the sample depends only on (seed, epoch,
    index), never on worker count or order, so runs and resumed runs are exactly reproducible.
    Call ``set_epoch(epoch)`` before iterating each epoch (with ``persistent_workers=False``, the
    default, each epoch's workers receive the updated dataset).

    With ``augment=False`` the image is plainly resized to S x S (aspect not kept): the network
    is trained on square crops, and a plain resize keeps every face and is the cheapest exact
    mapping of coordinates; evaluation at original scale goes through ``iter_val_images``.
    """

    def __init__(
        self,
        label_file: Path | str,
        image_size: int,
        augment: bool = True,
        seed: int = 0,
        require_faces: bool = False,
    ) -> None:
        if image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {image_size}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        parsed = parse_label_file(label_file, require_faces=require_faces)
        self.label_file = parsed.label_file
        self.records = parsed.records
        self.image_size = image_size
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def sample(self, index: int) -> augment.Sample:
        """The augmented (or resized) sample in output pixels, before tensor conversion."""
        rec = self.records[index]
        image = read_image(rec.path, rec.where)
        sample = augment.make_sample(image, rec.boxes, rec.landmarks, rec.landmark_valid)
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            return augment.train_augment(sample, self.image_size, rng)
        return augment.resize_sample(sample, self.image_size)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not 0 <= index < len(self.records):
            raise IndexError(f"index {index} out of range for {len(self.records)} images")
        s = self.sample(index)
        size = float(self.image_size)
        lms = s.landmarks / size
        lms[~s.landmark_valid] = -1.0
        target = {
            "boxes": torch.from_numpy(np.ascontiguousarray(s.boxes / size, dtype=np.float32)),
            "landmarks": torch.from_numpy(np.ascontiguousarray(lms, dtype=np.float32)),
            "landmark_valid": torch.from_numpy(s.landmark_valid.copy()),
        }
        return image_to_tensor(s.image), target


def collate(
    batch: Sequence[tuple[torch.Tensor, dict[str, torch.Tensor]]],
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Stack images [B, 3, S, S]; keep targets as a list (face counts differ per image)."""
    if not batch:
        raise ValueError("collate: empty batch")
    images = torch.stack([img for img, _ in batch])
    return images, [t for _, t in batch]


# -- validation images ------------------------------------------------------------------------
class ValImage(NamedTuple):
    event: str
    name: str  # file name without .jpg (as in the ground truth and the prediction files)
    path: Path


def _ground_truth_dir(data_root: Path) -> Path | None:
    """The folder with all four official ground-truth files, if the dataset has one."""
    from ffcore.data.wider_mat import FACE_FILE, SUBSETS, subset_file

    names = [FACE_FILE, *(subset_file(s) for s in SUBSETS)]
    for sub in ("ground_truth", "wider_face_split"):
        if all((data_root / sub / n).is_file() for n in names):
            return data_root / sub
    return None


def iter_val_images(data_root: Path | str) -> Iterator[ValImage]:
    """``data_root/val/images/<event>/<name>.jpg`` in ground-truth order (sorted without one).

    The order comes from ``ground_truth/wider_face_val.mat`` (read with
    ``ffcore.data.wider_mat.read_ground_truth``); an image listed there but missing on disk
    raises ``FileNotFoundError`` naming both.
    """
    root = Path(data_root).expanduser()
    images_dir = root / "val" / "images"
    if not images_dir.is_dir():
        raise FileNotFoundError(f"no validation images folder: {images_dir}")
    gt_dir = _ground_truth_dir(root)
    if gt_dir is None:
        for event_dir in sorted(p for p in images_dir.iterdir() if p.is_dir()):
            for path in sorted(event_dir.glob("*.jpg")):
                yield ValImage(event_dir.name, path.stem, path.absolute())
        return
    from ffcore.data.wider_mat import read_ground_truth

    gt = read_ground_truth(gt_dir)
    for event, names in zip(gt.events, gt.images, strict=True):
        for name in names:
            path = images_dir / event / f"{name}.jpg"
            if not path.is_file():
                raise FileNotFoundError(
                    f"{gt_dir / 'wider_face_val.mat'} lists {event}/{name} but the image is"
                    f" missing: {path}"
                )
            yield ValImage(event, name, path.absolute())


def check_val_images(data_root: Path | str) -> int:
    """Decode every val image of ``data_root`` strictly (``read_image``) before predicting;
    raises ``DataError`` naming the first bad image (and how many more); returns the count."""
    images = list(iter_val_images(data_root))
    if not images:
        raise FileNotFoundError(f"{Path(data_root) / 'val' / 'images'}: no validation images")
    records = [
        ImageRecord(v.path, np.zeros((0, 4), np.float32), np.zeros((0, 10), np.float32),
                    np.zeros(0, bool))
        for v in images
    ]  # fmt: skip
    errors: list[str] = []
    _check_images(records, errors)
    if errors:
        more = f" (and {len(errors) - 1} more bad image(s))" if len(errors) > 1 else ""
        raise DataError(f"{errors[0]}{more}")
    return len(images)
