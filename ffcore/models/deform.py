"""Modulated deformable 3x3 convolution (DCNv2) built on ``torchvision.ops.deform_conv2d``."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import deform_conv2d


def modulated_deform_conv2d(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    padding: int = 1,
) -> torch.Tensor:
    """y = DCNv2(x; offset [B, 2*9, H, W] as (dy, dx) pairs, mask [B, 9, H, W], weight [O, I, 3, 3])."""
    return deform_conv2d(x, offset, weight, padding=(padding, padding), mask=mask)


class ModulatedDeformConv(nn.Module):
    """3x3 DCNv2: offsets (18 ch) and masks (9 ch) predicted by 3x3 convs with bias.

    Both predictors are zero-initialised, so at start the offsets are 0 and every mask is
    sigmoid(0) = 0.5: the module is a plain 3x3 conv scaled by 0.5, which the BatchNorm that
    follows it absorbs.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.offset = nn.Conv2d(cin, 18, 3, padding=1, bias=True)
        self.mask = nn.Conv2d(cin, 9, 3, padding=1, bias=True)
        self.weight = nn.Parameter(torch.empty(cout, cin, 3, 3))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # nn.Conv2d's default
        for predictor in (self.offset, self.mask):
            nn.init.zeros_(predictor.weight)
            nn.init.zeros_(predictor.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return modulated_deform_conv2d(x, self.offset(x), torch.sigmoid(self.mask(x)), self.weight)
