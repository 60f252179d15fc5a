"""Draw boxes and landmarks on images, to look at a batch (notebooks) or check a sample."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from ffcore.data.preprocess import tensor_to_image

BOX_COLOR = (0, 255, 0)  # BGR
# One colour per landmark (BGR): left eye red, right eye blue, nose yellow, left mouth magenta,
# right mouth cyan, so a wrong left/right swap shows at a glance.
LANDMARK_COLORS: tuple[tuple[int, int, int], ...] = (
    (0, 0, 255),
    (255, 0, 0),
    (0, 255, 255),
    (255, 0, 255),
    (255, 255, 0),
)


def draw_faces(
    image_bgr: np.ndarray,
    boxes: np.ndarray,
    landmarks: np.ndarray | None = None,
    landmark_valid: np.ndarray | None = None,
) -> np.ndarray:
    """A copy of ``image_bgr`` with boxes [N, 4] (x1y1x2y2 px) and landmarks [N, 10] (px)."""
    out = np.ascontiguousarray(image_bgr.copy())
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    for x1, y1, x2, y2 in boxes:
        p1 = (int(np.floor(x1)), int(np.floor(y1)))
        p2 = (int(np.ceil(x2)) - 1, int(np.ceil(y2)) - 1)
        cv2.rectangle(out, p1, p2, BOX_COLOR, 1)
    if landmarks is not None:
        lms = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
        valid = (
            np.ones(len(lms), dtype=bool)
            if landmark_valid is None
            else np.asarray(landmark_valid, bool)
        )
        for face, ok in zip(lms, valid, strict=True):
            if not ok:
                continue
            for (x, y), color in zip(face, LANDMARK_COLORS, strict=True):
                cv2.circle(out, (int(np.floor(x)), int(np.floor(y))), 2, color, -1)
    return out


def show_batch(
    images: torch.Tensor | Sequence[torch.Tensor],
    targets: Sequence[dict[str, torch.Tensor]],
    ncols: int = 4,
    pad: int = 4,
) -> np.ndarray:
    """A grid (RGB uint8, for ``plt.imshow``) of a collated batch with its targets drawn.

    ``images``: [B, 3, S, S] as made by ``image_to_tensor``; targets: dicts with normalised
    "boxes" [N, 4] and "landmarks" [N, 10] and "landmark_valid" [N], as ``WiderFaceDataset``
    returns them.
    """
    tiles = []
    for img, tgt in zip(images, targets, strict=True):
        bgr = tensor_to_image(img)
        h, w = bgr.shape[:2]
        scale = np.array([w, h] * 5, dtype=np.float64)
        boxes = tgt["boxes"].numpy().astype(np.float64) * scale[:4]
        lms = tgt["landmarks"].numpy().astype(np.float64) * scale
        tiles.append(draw_faces(bgr, boxes, lms, tgt["landmark_valid"].numpy()))
    if not tiles:
        raise ValueError("show_batch: empty batch")
    h, w = tiles[0].shape[:2]
    ncols = max(1, min(ncols, len(tiles)))
    nrows = -(-len(tiles) // ncols)
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, ncols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
    return cv2.cvtColor(grid, cv2.COLOR_BGR2RGB)
