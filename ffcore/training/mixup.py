"""Detection mixup (phase 3)."""

from __future__ import annotations

import numpy as np
import torch

from ffcore.detection.loss import Target


def mixup_batch(
    images: torch.Tensor, targets: list[Target], alpha: float, rng: np.random.Generator
) -> tuple[torch.Tensor, list[Target]]:
    """Detection mixup: image b becomes lam_b * x_b + (1 - lam_b) * x_partner(b), lam ~ Beta(alpha,
    alpha); it keeps both images' faces, weighted lam_b and 1 - lam_b ("weights" in the target),
    so each image's loss terms count by its share. Partners form a random cycle (never itself)."""
    b = images.shape[0]
    if b < 2:
        return images, targets
    order = rng.permutation(b)
    partner = np.empty(b, dtype=np.int64)
    partner[order] = np.roll(order, -1)
    lam = rng.beta(alpha, alpha, size=b).astype(np.float32)
    lam_t = torch.from_numpy(lam).to(images.device).view(b, 1, 1, 1)
    mixed = lam_t * images + (1 - lam_t) * images[torch.from_numpy(partner).to(images.device)]
    out = []
    for i, j in enumerate(partner.tolist()):
        a, o = targets[i], targets[j]
        weights = torch.cat(
            [
                torch.full((len(a["boxes"]),), float(lam[i]), device=a["boxes"].device),
                torch.full((len(o["boxes"]),), 1.0 - float(lam[i]), device=a["boxes"].device),
            ]
        )
        out.append(
            {
                "boxes": torch.cat([a["boxes"], o["boxes"]]),
                "landmarks": torch.cat([a["landmarks"], o["landmarks"]]),
                "landmark_valid": torch.cat([a["landmark_valid"], o["landmark_valid"]]),
                "weights": weights,
            }
        )
    return mixed, out
