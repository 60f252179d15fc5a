"""SSH context module (RetinaFace) and the parameter-free channel shuffle."""

from __future__ import annotations

import torch
from torch import nn

from ffcore.models.deform import ModulatedDeformConv


class ConvBN(nn.Module):
    """3x3 conv (deformable or plain, no bias) -> BatchNorm -> optional LeakyReLU."""

    def __init__(self, cin: int, cout: int, deformable: bool, leaky: float | None) -> None:
        super().__init__()
        self.conv = (
            ModulatedDeformConv(cin, cout)
            if deformable
            else nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        )
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.LeakyReLU(leaky, inplace=True) if leaky is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SSH(nn.Module):
    """Three receptive fields (3x3, 5x5 = two 3x3, 7x7 = three 3x3) concatenated, then ReLU.

    branch1: C -> C/2;  shared: C -> C/4 (+LeakyReLU) feeding
    branch2: C/4 -> C/4  and  branch3: C/4 -> C/4 (+LeakyReLU) -> C/4.
    """

    def __init__(self, channels: int, deformable: bool = True, leaky: float = 0.1) -> None:
        super().__init__()
        if channels % 4:
            raise ValueError(f"SSH needs channels divisible by 4, got {channels}")
        half, quarter = channels // 2, channels // 4
        self.branch1 = ConvBN(channels, half, deformable, None)
        self.shared = ConvBN(channels, quarter, deformable, leaky)
        self.branch2 = ConvBN(quarter, quarter, deformable, None)
        self.branch3a = ConvBN(quarter, quarter, deformable, leaky)
        self.branch3b = ConvBN(quarter, quarter, deformable, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shared = self.shared(x)
        out = torch.cat(
            [self.branch1(x), self.branch2(shared), self.branch3b(self.branch3a(shared))], dim=1
        )
        return torch.relu(out)


class ChannelShuffle(nn.Module):
    """ShuffleNet channel shuffle: [B, g*n, H, W] -> view [B, g, n] -> transpose -> flatten."""

    def __init__(self, groups: int = 2) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return x.view(b, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(b, c, h, w)
