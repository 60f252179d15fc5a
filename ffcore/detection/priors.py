"""RetinaFace anchors ("priors"): two square anchors per cell on three levels.

Level k has stride ``STEPS[k]`` and anchor sizes ``MIN_SIZES[k]`` (pixels). Priors are
normalised (cx, cy, w, h) and ordered level, row, col, anchor size -- the same order in which
``ffcore.models.heads.DetectionHeads`` flattens its outputs (row, col, anchor).
"""

from __future__ import annotations

import math

import torch

from ffcore.config import STAGE_STRIDES

MIN_SIZES: tuple[tuple[int, ...], ...] = ((16, 32), (64, 128), (256, 512))
STEPS: tuple[int, ...] = STAGE_STRIDES  # one prior level per backbone stage


def feature_map_sizes(image_size: tuple[int, int]) -> list[tuple[int, int]]:
    """(rows, cols) of each level for an (height, width) input."""
    height, width = image_size
    return [(math.ceil(height / s), math.ceil(width / s)) for s in STEPS]


def prior_boxes(image_size: tuple[int, int]) -> torch.Tensor:
    """Anchors for an (height, width) input: [P, 4] normalised (cx, cy, w, h), float32.

    Centres are ((j + 0.5) * step / W, (i + 0.5) * step / H); 16,800 priors for 640 x 640.
    """
    height, width = (int(v) for v in image_size)
    if height <= 0 or width <= 0:
        raise ValueError(f"image_size must be positive (height, width), got {image_size}")
    levels = []
    for (rows, cols), step, sizes in zip(
        feature_map_sizes((height, width)), STEPS, MIN_SIZES, strict=True
    ):
        cy = (torch.arange(rows, dtype=torch.float64) + 0.5) * step / height  # [rows]
        cx = (torch.arange(cols, dtype=torch.float64) + 0.5) * step / width  # [cols]
        sz = torch.tensor(sizes, dtype=torch.float64)  # [A]
        a = len(sizes)
        grid = torch.stack(
            [
                cx.view(1, cols, 1).expand(rows, cols, a),
                cy.view(rows, 1, 1).expand(rows, cols, a),
                (sz / width).view(1, 1, a).expand(rows, cols, a),
                (sz / height).view(1, 1, a).expand(rows, cols, a),
            ],
            dim=-1,
        )  # [rows, cols, A, 4]
        levels.append(grid.reshape(-1, 4))
    return torch.cat(levels).to(torch.float32)


def num_priors(image_size: tuple[int, int]) -> int:
    per_cell = [len(s) for s in MIN_SIZES]
    return sum(r * c * a for (r, c), a in zip(feature_map_sizes(image_size), per_cell, strict=True))
