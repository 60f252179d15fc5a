"""A deterministic synthetic dataset in the full WIDER FACE layout (the embedded default).

Layout written under ``ROOT`` (the same files real WIDER FACE + RetinaFace labels provide)::

    train/label.txt                     '# event/name.jpg' + 20-number face lines (landmarks)
    train/images/<event>/<name>.jpg
    val/label.txt                       the same layout as train (landmarks for the NME)
    val/images/<event>/<name>.jpg
    wider_face_split/wider_face_val.mat          event_list, file_list, face_bbx_list
    wider_face_split/wider_face_val_bbx_gt.txt   official text form (blur, occlusion, ...)
    ground_truth/wider_face_val.mat, wider_{easy,medium,hard}_val.mat
    manifest.json                       parameters; written last (its presence = complete)

Images: the long side is ``image_size`` px, the short side 70-100 % of it. Backgrounds are
textured (smooth noise, gradients, stripes) with random non-face shapes, among them featureless
skin-coloured ellipses as hard negatives. Faces are skin-toned ellipses (aspect 0.72-0.9,
rotated up to 30 degrees, with a small yaw shift of the features) with eyes, eyebrows, nose and
mouth drawn at the five landmarks (0 left eye, 1 right eye, 2 nose tip, 3 left and 4 right mouth
corner, "left" meaning the image's left), optional hair; 0-8 faces per image (5 % of images have
none), heights from 8 px to 80 % of the short side, depending on the event (portrait, group,
crowd, mixed). Faces do not overlap each other. Some are blurred (level 1: 25 %, level 2 heavy:
10 %) and some occluded by a random shape (25 %; level 1 partial <= 35 % of the box, level 2
heavy > 35 %). Boxes are the integer hull of the face ellipse; landmarks are sub-pixel.

Training landmarks are missing (all -1, as in real WIDER) for faces under 10 px high and for
15 % of the others. The landmark flag is 1.0 where an occluder covers the landmark, else 0.0;
the last number is a confidence, 1 - 0.3 * blur level (-1 when landmarks are missing).

Easy / medium / hard (nested, by size and difficulty as WIDER does):

* hard: every face at least ``HARD_MIN_HEIGHT`` (10) px high (smaller ones are ignored by the
  evaluation, like WIDER's tiny faces);
* medium: at least ``MEDIUM_MIN_HEIGHT`` (20) px, not heavily occluded, not heavily blurred;
* easy: at least ``EASY_MIN_HEIGHT`` (40) px, not occluded, not blurred.

Every random choice comes from ``np.random.default_rng([seed, split, index])`` per image, so the
dataset is a pure function of its parameters (file bytes included, except the ``.mat`` headers,
which carry a timestamp written by scipy).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ffcore.atomic import copy_file, write_json, write_text

GENERATOR = "ffcore.data.synthetic"
VERSION = 2  # 2: val/label.txt carries landmarks
DEFAULT_SEED = 0
HARD_MIN_HEIGHT = 10
MEDIUM_MIN_HEIGHT = 20
EASY_MIN_HEIGHT = 40
MIN_FACE_HEIGHT = 8
LANDMARK_MIN_HEIGHT = 10
JPEG_QUALITY = 92
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class EventStyle:
    name: str  # WIDER-style event folder name
    faces: tuple[int, int]  # min, max faces per image (inclusive)
    height: tuple[float, float]  # face height range as a fraction of the short side


EVENTS: tuple[EventStyle, ...] = (
    EventStyle("0--Portrait", (1, 2), (0.25, 0.8)),
    EventStyle("1--Group", (2, 5), (0.1, 0.35)),
    EventStyle("2--Crowd", (4, 8), (0.0, 0.16)),
    EventStyle("3--Mixed", (1, 8), (0.0, 0.8)),
)
# BGR skin tones, light to dark.
SKIN_TONES = np.array(
    [
        [189, 215, 250],
        [160, 190, 235],
        [130, 170, 220],
        [100, 140, 198],
        [70, 105, 160],
        [45, 70, 110],
    ],
    dtype=np.float64,
)
SHIFT = 4  # cv2 sub-pixel bits
_ONE = 1 << SHIFT


@dataclass(frozen=True)
class Face:
    """One drawn face. box: x, y, w, h integers; landmarks: [10] continuous pixels."""

    box: tuple[int, int, int, int]
    landmarks: np.ndarray
    landmark_flags: np.ndarray  # [5] 1.0 where occluded
    blur: int  # 0 clear, 1 normal, 2 heavy
    occlusion: int  # 0 none, 1 partial, 2 heavy

    @property
    def height(self) -> int:
        return self.box[3]


@dataclass(frozen=True)
class SyntheticImage:
    event: str
    name: str  # without .jpg
    image: np.ndarray  # BGR uint8
    faces: list[Face]


# -- drawing ----------------------------------------------------------------------------------
def _pt(x: float, y: float) -> tuple[int, int]:
    """Continuous pixel coordinates -> cv2 fixed-point point (cv2 puts pixel centres at ints)."""
    return round((x - 0.5) * _ONE), round((y - 0.5) * _ONE)


def _ellipse(img, cx, cy, ax, ay, angle, color, thickness=-1) -> None:
    axes = (max(1, round(ax * _ONE)), max(1, round(ay * _ONE)))
    cv2.ellipse(img, _pt(cx, cy), axes, angle, 0, 360, color, thickness, cv2.LINE_AA, SHIFT)


def _color(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, 3))


def _background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    kind = int(rng.integers(3))
    c1 = rng.uniform(0, 255, 3).astype(np.float32)
    c2 = rng.uniform(0, 255, 3).astype(np.float32)
    if kind == 0:  # smooth noise
        coarse = rng.uniform(0, 255, (int(rng.integers(3, 9)), int(rng.integers(3, 9)), 3))
        img = cv2.resize(coarse.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    else:
        theta = rng.uniform(0, math.pi)
        # a linear ramp along direction theta, built from a row and a column (cheap)
        proj = np.arange(w, dtype=np.float32)[None, :] * np.float32(math.cos(theta)) + np.arange(
            h, dtype=np.float32
        )[:, None] * np.float32(math.sin(theta))
        if kind == 1:  # linear gradient
            t = (proj - proj.min()) / max(1e-6, float(np.ptp(proj)))
        else:  # stripes
            period = rng.uniform(6, max(8.0, w / 3))
            t = 0.5 + 0.5 * np.sin(proj * np.float32(2 * math.pi / period))
        img = cv2.merge([c1[k] + (c2[k] - c1[k]) * t for k in range(3)])
    noise = rng.standard_normal((h, w, 3), dtype=np.float32)
    cv2.scaleAdd(noise, float(rng.uniform(2, 12)), img.astype(np.float32), dst=noise)
    img = np.clip(noise, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(3, 13))):  # non-face shapes
        _distractor(img, rng)
    return img


def _distractor(img: np.ndarray, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    x, y = rng.uniform(0, w), rng.uniform(0, h)
    size = rng.uniform(4, max(5.0, 0.35 * min(h, w)))
    kind = int(rng.integers(5))
    color = _color(rng)
    if kind == 0:
        p1, p2 = _pt(x, y), _pt(x + rng.uniform(-size, size), y + rng.uniform(-size, size))
        cv2.rectangle(img, p1, p2, color, -1, cv2.LINE_AA, SHIFT)
    elif kind == 1:
        _ellipse(img, x, y, size / 2, size / 2, 0, color, -1)
    elif kind == 2:
        pts = np.array(
            [_pt(x + rng.uniform(-size, size), y + rng.uniform(-size, size)) for _ in range(5)]
        )
        cv2.fillPoly(img, [pts.reshape(-1, 1, 2)], color, cv2.LINE_AA, SHIFT)
    elif kind == 3:
        p1, p2 = _pt(x, y), _pt(x + rng.uniform(-2, 2) * size, y + rng.uniform(-2, 2) * size)
        cv2.line(img, p1, p2, color, int(rng.integers(1, 4)), cv2.LINE_AA, SHIFT)
    else:  # featureless skin-coloured ellipse: a hard negative
        skin = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))] + rng.normal(0, 8, 3)
        color = tuple(int(c) for c in np.clip(skin, 0, 255))
        _ellipse(img, x, y, size * 0.4, size * 0.5, rng.uniform(-30, 30), color, -1)


def _rotate(u: np.ndarray, v: np.ndarray, angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    t = math.radians(angle_deg)
    c, s = math.cos(t), math.sin(t)
    return u * c - v * s, u * s + v * c


def draw_face(
    img: np.ndarray,
    cx: float,
    cy: float,
    height: float,
    aspect: float,
    angle: float,
    yaw: float,
    rng: np.random.Generator,
) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """Draw one face; return its integer box (x, y, w, h) and its 5 landmarks [10] (pixels)."""
    a, b = height * aspect / 2, height / 2  # semi-axes before rotation

    def at(u: float, v: float) -> tuple[float, float]:
        x, y = _rotate(np.array(u * a), np.array(v * b), angle)
        return cx + float(x), cy + float(y)

    skin = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))] + rng.normal(0, 8, 3)
    skin_c = tuple(int(c) for c in np.clip(skin, 0, 255))
    dark = tuple(int(c) for c in np.clip(skin * 0.55, 0, 255))
    if rng.random() < 0.7:  # hair: a darker ellipse peeking above the forehead
        hair = tuple(int(c) for c in rng.integers(0, 90, 3))
        hx, hy = at(0, -0.22)
        _ellipse(img, hx, hy, a * 1.08, b * 0.88, angle, hair)
    _ellipse(img, cx, cy, a, b, angle, skin_c)
    eye_u, eye_v, mouth_u, mouth_v = 0.38, -0.18, 0.30, 0.48
    lms = [
        at(-eye_u + yaw, eye_v),
        at(eye_u + yaw, eye_v),
        at(1.4 * yaw, 0.14),
        at(-mouth_u + yaw, mouth_v),
        at(mouth_u + yaw, mouth_v),
    ]
    thick = max(1, round(height / 40))
    for sign, (ex, ey) in zip((-1, 1), lms[:2], strict=True):
        bx1, by1 = at(sign * eye_u + yaw - 0.17, eye_v - 0.17)
        bx2, by2 = at(sign * eye_u + yaw + 0.17, eye_v - 0.17)
        cv2.line(img, _pt(bx1, by1), _pt(bx2, by2), dark, thick, cv2.LINE_AA, SHIFT)
        _ellipse(img, ex, ey, a * 0.17, b * 0.075, angle, (235, 235, 235))
        _ellipse(img, ex, ey, a * 0.08, a * 0.08, angle, (40, 25, 20))
    top = at(0.7 * yaw, -0.08)
    cv2.line(img, _pt(*top), _pt(*lms[2]), dark, thick, cv2.LINE_AA, SHIFT)
    _ellipse(img, lms[2][0], lms[2][1], a * 0.1, b * 0.045, angle, dark)
    mx, my = (lms[3][0] + lms[4][0]) / 2, (lms[3][1] + lms[4][1]) / 2
    half = math.hypot(lms[4][0] - lms[3][0], lms[4][1] - lms[3][1]) / 2
    lip = (int(rng.integers(40, 90)), int(rng.integers(40, 80)), int(rng.integers(150, 210)))
    _ellipse(img, mx, my, half, b * (0.05 + 0.06 * rng.random()), angle, lip)
    # Box: the axis-aligned hull of the rotated face ellipse, on integer pixels.
    t = math.radians(angle)
    hw = math.sqrt((a * math.cos(t)) ** 2 + (b * math.sin(t)) ** 2)
    hh = math.sqrt((a * math.sin(t)) ** 2 + (b * math.cos(t)) ** 2)
    x1, y1 = math.floor(cx - hw), math.floor(cy - hh)
    box = (x1, y1, math.ceil(cx + hw) - x1, math.ceil(cy + hh) - y1)
    return box, np.array(lms, dtype=np.float64).reshape(10)


def _occlude(
    img: np.ndarray, box: tuple[int, int, int, int], rng: np.random.Generator
) -> np.ndarray:
    """Cover part of ``box`` with a random shape; return the occluder mask (H x W bool)."""
    x, y, w, h = box
    mask = np.zeros(img.shape[:2], dtype=np.uint8)
    frac = rng.uniform(0.15, 0.6)
    side = int(rng.integers(4))  # left, right, top, bottom
    if side == 0:
        p1, p2 = (x - w, y - h // 4), (x + w * frac, y + h * 1.25)
    elif side == 1:
        p1, p2 = (x + w * (1 - frac), y - h // 4), (x + 2 * w, y + h * 1.25)
    elif side == 2:
        p1, p2 = (x - w // 4, y - h), (x + w * 1.25, y + h * frac)
    else:
        p1, p2 = (x - w // 4, y + h * (1 - frac)), (x + w * 1.25, y + 2 * h)
    if rng.random() < 0.5:
        cv2.rectangle(mask, _pt(*p1), _pt(*p2), 1, -1, cv2.LINE_8, SHIFT)
    else:
        cx, cy = (p1[0] + p2[0]) / 2, (p1[1] + p2[1]) / 2
        _ellipse(mask, cx, cy, abs(p2[0] - p1[0]) / 2, abs(p2[1] - p1[1]) / 2, 0, 1)
    m = mask.astype(bool)
    if rng.random() < 0.5:
        img[m] = _color(rng)
    else:  # textured occluder (a hand, a sign, ...)
        ys, xs = np.nonzero(m)
        if len(ys):
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            tex = _background(int(y1 - y0), int(x1 - x0), rng)
            sub = m[y0:y1, x0:x1]
            img[y0:y1, x0:x1][sub] = tex[sub]
    return m


def _blur_face(img: np.ndarray, box: tuple[int, int, int, int], sigma: float) -> None:
    """Blur the face region, blended through a feathered elliptical mask (no rectangle seams)."""
    x, y, w, h = box
    pad = int(3 * sigma) + 2
    H, W = img.shape[:2]
    x0, y0, x1, y1 = max(0, x - pad), max(0, y - pad), min(W, x + w + pad), min(H, y + h + pad)
    roi = img[y0:y1, x0:x1].astype(np.float32)
    blurred = cv2.GaussianBlur(roi, (0, 0), sigma)
    mask = np.zeros(roi.shape[:2], dtype=np.float32)
    _ellipse(mask, x + w / 2 - x0, y + h / 2 - y0, w / 2 + sigma, h / 2 + sigma, 0, 1.0)
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, sigma))[..., None]
    img[y0:y1, x0:x1] = np.clip(mask * blurred + (1 - mask) * roi, 0, 255).astype(np.uint8)


def _overlaps(
    box: tuple[int, int, int, int], others: list[tuple[int, int, int, int]], margin: float
) -> bool:
    x, y, w, h = box
    m = margin
    return any(
        x < ox + ow + m and ox < x + w + m and y < oy + oh + m and oy < y + h + m
        for ox, oy, ow, oh in others
    )


def render_image(
    event: EventStyle, name: str, image_size: int, rng: np.random.Generator
) -> SyntheticImage:
    """One synthetic image with its faces (deterministic given ``rng``)."""
    long_side, short_side = image_size, max(16, round(image_size * rng.uniform(0.7, 1.0)))
    h, w = (short_side, long_side) if rng.random() < 0.7 else (long_side, short_side)
    img = _background(h, w, rng)
    n_faces = 0 if rng.random() < 0.05 else int(rng.integers(event.faces[0], event.faces[1] + 1))
    lo = max(MIN_FACE_HEIGHT, event.height[0] * short_side)
    hi = max(lo + 1, event.height[1] * short_side)
    faces: list[Face] = []
    boxes: list[tuple[int, int, int, int]] = []
    drawn: list[np.ndarray] = []
    for _ in range(n_faces):
        for _try in range(30):
            height = math.exp(rng.uniform(math.log(lo), math.log(hi)))
            aspect = rng.uniform(0.72, 0.9)
            angle = float(np.clip(rng.normal(0, 12), -30, 30))
            t = math.radians(angle)
            hw = math.hypot(height * aspect / 2 * math.cos(t), height / 2 * math.sin(t))
            hh = math.hypot(height * aspect / 2 * math.sin(t), height / 2 * math.cos(t))
            if 2 * hw + 2 >= w or 2 * hh + 2 >= h:
                continue
            cx = rng.uniform(hw + 1, w - hw - 1)
            cy = rng.uniform(hh + 1, h - hh - 1)
            box = (
                math.floor(cx - hw),
                math.floor(cy - hh),
                math.ceil(cx + hw) - math.floor(cx - hw),
                math.ceil(cy + hh) - math.floor(cy - hh),
            )
            if not _overlaps(box, boxes, margin=2 + 0.12 * height):  # hair reaches ~0.1 h out
                break
        else:
            continue
        yaw = rng.uniform(-0.12, 0.12)
        box, lms = draw_face(img, cx, cy, height, aspect, angle, yaw, rng)
        boxes.append(box)
        drawn.append(lms)
    # Occluders after all faces, so an occluder that reaches a neighbour is counted there too.
    occluded = np.zeros((h, w), dtype=bool)
    for box in boxes:
        if rng.random() < 0.25:
            occluded |= _occlude(img, box, rng)
    for box, lms in zip(boxes, drawn, strict=True):
        bx, by, bw, bh = box
        covered = float(occluded[by : by + bh, bx : bx + bw].mean())
        occlusion = 0 if covered == 0 else (1 if covered <= 0.35 else 2)
        px = np.clip(lms[0::2].astype(int), 0, w - 1)
        py = np.clip(lms[1::2].astype(int), 0, h - 1)
        flags = occluded[py, px].astype(np.float64)
        r = rng.random()
        blur = 2 if r < 0.10 else (1 if r < 0.35 else 0)
        if blur:
            sigma = (0.02 if blur == 1 else 0.06) * bh + (0.6 if blur == 1 else 1.2)
            _blur_face(img, box, sigma)
        faces.append(Face(box, lms, flags, blur, occlusion))
    return SyntheticImage(event.name, name, img, faces)


# -- dataset ----------------------------------------------------------------------------------
def _image_name(event: EventStyle, split: str, index: int) -> str:
    number, label = event.name.split("--", 1)
    return f"{number}_{label}_{split}_{index:05d}"


def image_index(name: str) -> int | None:
    """The generation index of a synthetic image name (``..._val_00042`` -> 42); None for a
    name this generator did not make (real WIDER FACE)."""
    stem, _, digits = name.rpartition("_")
    if not (stem.endswith(("_train", "_val")) and len(digits) == 5 and digits.isdigit()):
        return None
    return int(digits)


def iter_images(split: str, n: int, image_size: int, seed: int) -> Iterator[SyntheticImage]:
    """The images of one split, image ``i`` from ``default_rng([seed, split_code, i])``."""
    code = {"train": 0, "val": 1}[split]
    for i in range(n):
        event = EVENTS[i % len(EVENTS)]
        rng = np.random.default_rng([seed, code, i])
        yield render_image(event, _image_name(event, split, i), image_size, rng)


def subset_keep(faces: list[Face]) -> dict[str, np.ndarray]:
    """1-based indices of the faces in each subset (the rule of the module docstring)."""
    hard = [f.height >= HARD_MIN_HEIGHT for f in faces]
    medium = [f.height >= MEDIUM_MIN_HEIGHT and f.occlusion < 2 and f.blur < 2 for f in faces]
    easy = [f.height >= EASY_MIN_HEIGHT and f.occlusion == 0 and f.blur == 0 for f in faces]
    return {
        k: np.flatnonzero(np.array(v, dtype=bool)).astype(np.int64) + 1
        for k, v in (("easy", easy), ("medium", medium), ("hard", hard))
    }


def _fmt(v: float) -> str:
    return f"{v:.3f}".rstrip("0").rstrip(".") if v != int(v) else f"{int(v)}"


def _train_line(face: Face, missing: bool) -> str:
    x, y, w, h = face.box
    if missing:
        rest = " ".join(["-1"] * 16)
    else:
        triples = [
            f"{_fmt(face.landmarks[2 * k])} {_fmt(face.landmarks[2 * k + 1])} "
            f"{_fmt(face.landmark_flags[k])}"
            for k in range(5)
        ]
        rest = " ".join(triples) + f" {_fmt(1.0 - 0.3 * face.blur)}"
    return f"{x} {y} {w} {h} {rest}"


def _write_jpg(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())  # atomic-ok: in the dataset's temporary folder


def _write_split(out: Path, split: str, n: int, image_size: int, seed: int) -> list:
    lines: list[str] = []
    written = []
    for i, im in enumerate(iter_images(split, n, image_size, seed)):
        _write_jpg(out / split / "images" / im.event / f"{im.name}.jpg", im.image)
        lines.append(f"# {im.event}/{im.name}.jpg")
        rng = np.random.default_rng([seed, 2, i])  # which landmarks go missing
        for face in im.faces:
            # val keeps every face's landmarks: they are the reference of the landmark NME
            missing = split == "train" and (
                face.height < LANDMARK_MIN_HEIGHT or rng.random() < 0.15
            )
            lines.append(_train_line(face, missing))
        written.append(im)
    (out / split).mkdir(parents=True, exist_ok=True)
    write_text(out / split / "label.txt", "\n".join(lines) + "\n")
    return written


def _write_val_ground_truth(out: Path, val: list[SyntheticImage]) -> None:
    from ffcore.data.wider_mat import FACE_FILE, GroundTruth, write_ground_truth

    events = sorted({im.event for im in val})
    per_event = {e: [im for im in val if im.event == e] for e in events}
    gt = GroundTruth(
        events=events,
        images=[[im.name for im in per_event[e]] for e in events],
        boxes=[
            [
                np.array([f.box for f in im.faces], dtype=np.float64).reshape(-1, 4)
                for im in per_event[e]
            ]
            for e in events
        ],
        keep={
            s: [[subset_keep(im.faces)[s] for im in per_event[e]] for e in events]
            for s in ("easy", "medium", "hard")
        },
    )
    write_ground_truth(out / "ground_truth", gt)
    split_dir = out / "wider_face_split"
    split_dir.mkdir(parents=True, exist_ok=True)
    copy_file(out / "ground_truth" / FACE_FILE, split_dir / FACE_FILE)
    # The official text form: name, count, then x y w h blur expression illumination invalid
    # occlusion pose per face (a single zero line for an image without faces).
    lines: list[str] = []
    for e in events:
        for im in per_event[e]:
            lines.append(f"{e}/{im.name}.jpg")
            lines.append(str(len(im.faces)))
            for f in im.faces:
                lines.append(" ".join(str(v) for v in (*f.box, f.blur, 0, 0, 0, f.occlusion, 0)))
            if not im.faces:
                lines.append("0 0 0 0 0 0 0 0 0 0")
    write_text(split_dir / "wider_face_val_bbx_gt.txt", "\n".join(lines) + "\n")


def _parameters(n_train: int, n_val: int, image_size: int, seed: int) -> dict:
    return {
        "generator": GENERATOR,
        "version": VERSION,
        "n_train": n_train,
        "n_val": n_val,
        "image_size": image_size,
        "seed": seed,
    }


def read_manifest(root: Path | str) -> dict | None:
    """The manifest of a generated dataset, or None (missing or unreadable)."""
    path = Path(root) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _matches(manifest: dict | None, params: dict) -> bool:
    return manifest is not None and all(manifest.get(k) == v for k, v in params.items())


def generate_dataset(
    root: Path | str,
    n_train: int,
    n_val: int,
    image_size: int,
    seed: int = DEFAULT_SEED,
    force: bool = False,
) -> Path:
    """Write the dataset to ``root`` (replacing a dataset generated there before) and return it.

    A dataset already generated at ``root`` with the same parameters is kept as it is (the
    output is a pure function of them) unless ``force``. Everything is written to a temporary
    sibling folder and renamed into place, the manifest last, so an interrupted run never leaves
    a folder that looks complete. An existing ``root`` that is neither empty nor a generated
    dataset is refused (never deleted).
    """
    if n_train < 1 or n_val < 1:
        raise ValueError(f"need at least one train and one val image, got {n_train}, {n_val}")
    if image_size < 32:
        raise ValueError(f"image_size must be >= 32 px, got {image_size}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    root = Path(root).expanduser().absolute()
    if root.exists() and (
        not root.is_dir() or (any(root.iterdir()) and read_manifest(root) is None)
    ):
        raise FileExistsError(
            f"{root} exists and is not a generated synthetic dataset (no {MANIFEST}); "
            "choose another output folder or remove it yourself"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    params = _parameters(n_train, n_val, image_size, seed)
    if not force and _matches(read_manifest(root), params):
        return root
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        train = _write_split(tmp, "train", n_train, image_size, seed)
        val = _write_split(tmp, "val", n_val, image_size, seed)
        _write_val_ground_truth(tmp, val)
        manifest = {
            **params,
            "events": [e.name for e in EVENTS],
            "train_faces": sum(len(im.faces) for im in train),
            "val_faces": sum(len(im.faces) for im in val),
            "subset_rule": {
                "hard_min_height": HARD_MIN_HEIGHT,
                "medium_min_height": MEDIUM_MIN_HEIGHT,
                "easy_min_height": EASY_MIN_HEIGHT,
            },
        }
        write_json(tmp / MANIFEST, manifest)
        _swap_into_place(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def _swap_into_place(tmp: Path, root: Path) -> None:
    if root.exists():
        old = root.parent / f".{root.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        root.rename(old)
        try:
            tmp.rename(root)
        finally:
            shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(root)


@contextlib.contextmanager
def _lock(root: Path) -> Iterator[None]:
    """An exclusive lock beside ``root`` so parallel test workers generate the dataset once."""
    root.parent.mkdir(parents=True, exist_ok=True)
    lock_path = root.parent / f".{root.name}.lock"
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename alone still prevents a half dataset
        yield
        return
    with open(lock_path, "w") as fh:  # atomic-ok: an empty lock file
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_dataset(
    root: Path | str | None = None, profile: str = "smoke", seed: int = DEFAULT_SEED
) -> Path:
    """The synthetic dataset of ``profile`` at ``root`` (default
    ``ffcore.paths.DEFAULT_DATA_ROOT / <the profile's dataset name>``, one folder per dataset so
    profiles never regenerate each other's data; ``study_2x`` shares ``study``'s), generated
    only when missing or generated with other parameters."""
    from ffcore.paths import DEFAULT_DATA_ROOT
    from ffcore.profiles import get_profile

    prof = get_profile(profile)
    default = DEFAULT_DATA_ROOT / prof.dataset_name
    root = Path(root).expanduser().absolute() if root is not None else default
    params = _parameters(prof.synthetic_train, prof.synthetic_val, prof.synthetic_image_size, seed)
    if _matches(read_manifest(root), params):
        return root
    with _lock(root):
        if _matches(read_manifest(root), params):  # another process made it meanwhile
            return root
        return generate_dataset(
            root, prof.synthetic_train, prof.synthetic_val, prof.synthetic_image_size, seed
        )
