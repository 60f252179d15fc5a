"""RetinaFace-style training augmentation, every random choice drawn from a numpy ``Generator``.

The pipeline (``train_augment``) follows the RetinaFace reference ``preproc``:

1. ``random_crop``: a square crop whose side is a random fraction (``CROP_SCALES``) of the image's
   short side. A crop is accepted when at least one face lies entirely inside it; it then keeps
   exactly the faces whose box centres fall inside, clips their boxes to the crop, and shifts
   their landmarks (landmarks are not clipped). Up to ``max_tries`` (250) crops are tried; if none
   is accepted the full image is kept (and later padded to a square). An image without faces
   takes its first crop: a crop of pure background is a useful negative sample.
2. ``photometric_distort``: brightness, contrast, saturation and hue, each applied with p=0.5
   (contrast either before or after the HSV steps, as in RetinaFace).
3. ``pad_to_square``: pads right/bottom with the mean colour when the image is not square.
4. ``mirror``: horizontal flip with p=0.5; x -> W - x, and the left/right landmarks swap
   (0 left eye <-> 1 right eye, 3 left mouth corner <-> 4 right mouth corner; 2 nose stays),
   so index 0 is still the eye on the image's left.
5. ``resize``: to ``size`` x ``size`` with a randomly chosen interpolation.

After the resize, faces whose shorter side is below ``MIN_FACE_PX`` (1 px) output pixels are
dropped: they cannot be matched to any anchor and carry no signal. A crop that would leave no
face after this filter is rejected and another one tried.

Coordinates are continuous pixel coordinates: pixel ``i`` covers ``[i, i+1)``, so a flip maps
``x`` to ``W - x`` and a resize by factor ``f`` maps ``x`` to ``x * f`` exactly. Landmarks that are
missing (``landmark_valid`` false) stay ``-1`` through every step. Mean subtraction happens in
``ffcore.data.preprocess.image_to_tensor``, the one pixel convention.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ffcore.data.preprocess import MEAN_BGR

CROP_SCALES: tuple[float, ...] = (0.3, 0.45, 0.6, 0.8, 1.0)
MIN_FACE_PX = 1.0
# Landmark order 0 left eye, 1 right eye, 2 nose, 3 left mouth corner, 4 right mouth corner.
MIRROR_PERMUTATION: tuple[int, ...] = (1, 0, 2, 4, 3)
_INTERPOLATIONS = (
    cv2.INTER_LINEAR,
    cv2.INTER_CUBIC,
    cv2.INTER_AREA,
    cv2.INTER_NEAREST,
    cv2.INTER_LANCZOS4,
)


@dataclass(frozen=True, eq=False)
class Sample:
    """One image with its faces, in pixels of ``image``.

    image: HxWx3 BGR uint8; boxes: [N, 4] float32 x1, y1, x2, y2; landmarks: [N, 10] float32
    (x0, y0, ..., x4, y4; -1 where missing); landmark_valid: [N] bool.
    """

    image: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray
    landmark_valid: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.boxes)
        if self.boxes.shape != (n, 4) or self.landmarks.shape != (n, 10):
            raise ValueError(
                f"boxes must be [N, 4] and landmarks [N, 10], got {self.boxes.shape} and "
                f"{self.landmarks.shape}"
            )
        if self.landmark_valid.shape != (n,):
            raise ValueError(f"landmark_valid must be [N], got {self.landmark_valid.shape}")


def make_sample(
    image: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray, landmark_valid: np.ndarray
) -> Sample:
    """A ``Sample`` with the dtypes fixed and missing landmarks forced to -1."""
    valid = np.asarray(landmark_valid, dtype=bool).reshape(-1)
    lms = np.asarray(landmarks, dtype=np.float32).reshape(-1, 10).copy()
    lms[~valid] = -1.0
    return Sample(image, np.asarray(boxes, dtype=np.float32).reshape(-1, 4), lms, valid)


def _subset(sample: Sample, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return sample.boxes[keep], sample.landmarks[keep], sample.landmark_valid[keep]


def _shift_landmarks(landmarks: np.ndarray, valid: np.ndarray, dx: float, dy: float) -> np.ndarray:
    out = landmarks.copy()
    out[:, 0::2] -= dx
    out[:, 1::2] -= dy
    out[~valid] = -1.0
    return out


def crop_sample(sample: Sample, left: int, top: int, side: int) -> Sample:
    """Crop ``[left, left+side) x [top, top+side)``; keep exactly the faces whose centres are inside.

    Boxes are clipped to the crop; landmarks are shifted but not clipped.
    """
    boxes = sample.boxes
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    keep = (cx >= left) & (cx < left + side) & (cy >= top) & (cy < top + side)
    kb, kl, kv = _subset(sample, keep)
    kb = kb - np.array([left, top, left, top], dtype=np.float32)
    kb = np.clip(kb, 0.0, float(side)).astype(np.float32)
    kl = _shift_landmarks(kl, kv, left, top)
    image = sample.image[top : top + side, left : left + side].copy()
    return Sample(image, kb, kl, kv)


def random_crop(
    sample: Sample,
    rng: np.random.Generator,
    out_size: int,
    scales: tuple[float, ...] = CROP_SCALES,
    max_tries: int = 250,
    min_face_px: float = MIN_FACE_PX,
) -> tuple[Sample, tuple[int, int, int] | None]:
    """A random square crop (see the module docstring).

    Returns the sample and the crop window (left, top, side), or None when no crop was accepted
    and the full image is kept.
    """
    h, w = sample.image.shape[:2]
    short = min(h, w)
    boxes = sample.boxes
    for _ in range(max_tries):
        side = max(1, int(float(rng.choice(scales)) * short))
        left = int(rng.integers(0, w - side + 1))
        top = int(rng.integers(0, h - side + 1))
        if len(boxes) == 0:
            return crop_sample(sample, left, top, side), (left, top, side)
        inside = (
            (boxes[:, 0] >= left)
            & (boxes[:, 1] >= top)
            & (boxes[:, 2] <= left + side)
            & (boxes[:, 3] <= top + side)
        )
        if not inside.any():
            continue
        cropped = crop_sample(sample, left, top, side)
        scale = out_size / side
        bw = (cropped.boxes[:, 2] - cropped.boxes[:, 0]) * scale
        bh = (cropped.boxes[:, 3] - cropped.boxes[:, 1]) * scale
        big = np.minimum(bw, bh) >= min_face_px
        if not big.any():
            continue
        kb, kl, kv = _subset(cropped, big)
        return Sample(cropped.image, kb, kl, kv), (left, top, side)
    return sample, None


def photometric_distort(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, saturation, hue (each p=0.5), as RetinaFace's ``_distort``."""
    img = image.astype(np.float32)

    def convert(alpha: float = 1.0, beta: float = 0.0) -> None:
        np.clip(img * alpha + beta, 0, 255, out=img)

    if rng.random() < 0.5:  # brightness
        convert(beta=float(rng.uniform(-32, 32)))
    contrast_first = rng.random() < 0.5
    if contrast_first and rng.random() < 0.5:
        convert(alpha=float(rng.uniform(0.5, 1.5)))
    hsv = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_BGR2HSV).astype(np.float32)
    if rng.random() < 0.5:  # saturation
        hsv[:, :, 1] = np.clip(hsv[:, :, 1] * float(rng.uniform(0.5, 1.5)), 0, 255)
    if rng.random() < 0.5:  # hue (OpenCV hue is in [0, 180))
        hsv[:, :, 0] = np.mod(hsv[:, :, 0] + float(rng.integers(-18, 19)), 180)
    img = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR).astype(np.float32)
    if not contrast_first and rng.random() < 0.5:
        convert(alpha=float(rng.uniform(0.5, 1.5)))
    return img.astype(np.uint8)


def pad_to_square(sample: Sample) -> Sample:
    """Pad right/bottom with the mean colour; coordinates are unchanged."""
    h, w = sample.image.shape[:2]
    if h == w:
        return sample
    side = max(h, w)
    canvas = np.empty((side, side, 3), dtype=np.uint8)
    canvas[:] = np.asarray(MEAN_BGR, dtype=np.uint8)
    canvas[:h, :w] = sample.image
    return Sample(canvas, sample.boxes, sample.landmarks, sample.landmark_valid)


def mirror_sample(sample: Sample) -> Sample:
    """Flip horizontally: x -> W - x, boxes re-ordered, left/right landmarks swapped."""
    w = sample.image.shape[1]
    image = np.ascontiguousarray(sample.image[:, ::-1])
    boxes = sample.boxes.copy()
    boxes[:, 0] = w - sample.boxes[:, 2]
    boxes[:, 2] = w - sample.boxes[:, 0]
    lms = sample.landmarks.reshape(-1, 5, 2).copy()
    lms[:, :, 0] = w - lms[:, :, 0]
    lms = lms[:, list(MIRROR_PERMUTATION), :].reshape(-1, 10)
    lms[~sample.landmark_valid] = -1.0
    return Sample(image, boxes, np.ascontiguousarray(lms, dtype=np.float32), sample.landmark_valid)


def random_mirror(sample: Sample, rng: np.random.Generator, p: float = 0.5) -> Sample:
    return mirror_sample(sample) if rng.random() < p else sample


def resize_sample(sample: Sample, size: int, interpolation: int = cv2.INTER_LINEAR) -> Sample:
    """Resize to ``size`` x ``size``; coordinates scale by size / width and size / height."""
    h, w = sample.image.shape[:2]
    sx, sy = size / w, size / h
    image = cv2.resize(sample.image, (size, size), interpolation=interpolation)
    scale = np.array([sx, sy, sx, sy], dtype=np.float32)
    boxes = (sample.boxes * scale).astype(np.float32)
    lms = (sample.landmarks * np.tile(np.array([sx, sy], dtype=np.float32), 5)).astype(np.float32)
    lms[~sample.landmark_valid] = -1.0
    return Sample(image, boxes, lms, sample.landmark_valid)


def train_augment(
    sample: Sample,
    size: int,
    rng: np.random.Generator,
    distort: bool = True,
    min_face_px: float = MIN_FACE_PX,
) -> Sample:
    """The full RetinaFace training pipeline: crop, distort, pad, mirror, resize."""
    cropped, _ = random_crop(sample, rng, size, min_face_px=min_face_px)
    if distort:
        cropped = Sample(
            photometric_distort(cropped.image, rng),
            cropped.boxes,
            cropped.landmarks,
            cropped.landmark_valid,
        )
    out = random_mirror(pad_to_square(cropped), rng)
    interpolation = _INTERPOLATIONS[int(rng.integers(len(_INTERPOLATIONS)))]
    out = resize_sample(out, size, interpolation)
    bw = out.boxes[:, 2] - out.boxes[:, 0]
    bh = out.boxes[:, 3] - out.boxes[:, 1]
    keep = np.minimum(bw, bh) >= min_face_px
    if not keep.all():
        kb, kl, kv = _subset(out, keep)
        out = Sample(out.image, kb, kl, kv)
    return out
