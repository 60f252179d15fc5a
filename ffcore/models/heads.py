"""Per-level 1x1 heads: class (2 per anchor), box (4) and five landmarks (10)."""

from __future__ import annotations

import torch
from torch import nn


class DetectionHeads(nn.Module):
    """Outputs, levels concatenated in order and each flattened as (row, col, anchor):
    box [B, P, 4], class logits [B, P, 2], landmarks [B, P, 10]."""

    def __init__(self, channels: int, num_levels: int = 3, num_anchors: int = 2) -> None:
        super().__init__()
        self.num_anchors = num_anchors
        self.cls = nn.ModuleList(nn.Conv2d(channels, num_anchors * 2, 1) for _ in range(num_levels))
        self.box = nn.ModuleList(nn.Conv2d(channels, num_anchors * 4, 1) for _ in range(num_levels))
        self.ldm = nn.ModuleList(
            nn.Conv2d(channels, num_anchors * 10, 1) for _ in range(num_levels)
        )

    @staticmethod
    def _flatten(y: torch.Tensor, width: int) -> torch.Tensor:
        return y.permute(0, 2, 3, 1).reshape(y.shape[0], -1, width)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        box = torch.cat(
            [self._flatten(h(f), 4) for h, f in zip(self.box, feats, strict=True)], dim=1
        )
        cls = torch.cat(
            [self._flatten(h(f), 2) for h, f in zip(self.cls, feats, strict=True)], dim=1
        )
        ldm = torch.cat(
            [self._flatten(h(f), 10) for h, f in zip(self.ldm, feats, strict=True)], dim=1
        )
        return box, cls, ldm
