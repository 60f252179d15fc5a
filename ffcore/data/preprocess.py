"""Pixel convention shared by training, inference and export: BGR uint8 minus the mean.

This is RetinaFace's convention (no scaling by a std), which keeps the RetinaFace-MobileNet0.25
reference weights usable as they are.
"""

from __future__ import annotations

import numpy as np
import torch

MEAN_BGR: tuple[float, float, float] = (104.0, 117.0, 123.0)


def image_to_tensor(image_bgr: np.ndarray) -> torch.Tensor:
    """HxWx3 BGR uint8 (OpenCV order) -> float32 tensor [3, H, W] with the mean subtracted."""
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 BGR image, got shape {image_bgr.shape}")
    arr = image_bgr.astype(np.float32) - np.asarray(MEAN_BGR, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def tensor_to_image(tensor: torch.Tensor) -> np.ndarray:
    """Inverse of ``image_to_tensor``: [3, H, W] -> HxWx3 BGR uint8 (for drawing)."""
    arr = tensor.detach().cpu().numpy().transpose(1, 2, 0) + np.asarray(MEAN_BGR, dtype=np.float32)
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)
