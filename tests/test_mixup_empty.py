"""Phase 3's mixup with images that have no face (real WIDER FACE has some): the loss of every
such batch is finite, whatever number of the batch's images are faceless."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ffcore.detection.loss import MultiBoxLoss
from ffcore.detection.priors import prior_boxes
from ffcore.schedule import get_phase
from ffcore.training.mixup import mixup_batch

SIZE = 64


def _target(faces: int) -> dict[str, torch.Tensor]:
    boxes = torch.tensor([[0.1, 0.1, 0.5, 0.6]]).repeat(faces, 1)
    return {
        "boxes": boxes,
        "landmarks": torch.full((faces, 10), 0.3),
        "landmark_valid": torch.ones(faces, dtype=torch.bool),
    }


@pytest.mark.parametrize("faces", [(0, 0), (0, 0, 0, 0), (0, 1), (1, 0, 0), (2, 0, 1, 0)])
def test_mixup_with_faceless_images_gives_a_finite_loss(faces: tuple[int, ...]) -> None:
    b = len(faces)
    images = torch.randn(b, 3, SIZE, SIZE)
    mixed, targets = mixup_batch(images, [_target(n) for n in faces], 0.2, np.random.default_rng(0))
    assert mixed.shape == images.shape
    assert [len(t["weights"]) for t in targets] == [len(t["boxes"]) for t in targets]
    priors = prior_boxes((SIZE, SIZE))
    p = priors.shape[0]
    predictions = (torch.randn(b, p, 4), torch.randn(b, p, 2), torch.randn(b, p, 10))
    losses = MultiBoxLoss.from_phase(get_phase("3"))(predictions, targets, priors)
    assert all(torch.isfinite(v) for v in losses.values()), losses
    if not any(faces):
        assert losses["box"] == 0 and losses["landmark"] == 0
