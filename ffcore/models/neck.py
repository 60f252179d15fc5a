"""Necks over the backbone's P3-P5 maps.

* ``BiFPN`` (FeatherFace): EfficientDet-style bidirectional pyramid with fast normalised fusion.
* ``FPN`` (the RetinaFace-MobileNet0.25 reference): lateral 1x1 + top-down merge 3x3.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ffcore.models.backbone import conv_bn

FUSION_EPS = 1e-4


class SeparableConv(nn.Module):
    """Depthwise 3x3 (no bias) -> pointwise 1x1 (bias) -> BatchNorm."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=True)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pointwise(self.depthwise(x)))


def projection(cin: int, cout: int) -> nn.Sequential:
    """1x1 conv with bias + BatchNorm: brings a backbone stage to the BiFPN width."""
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=True), nn.BatchNorm2d(cout))


class FusionNode(nn.Module):
    """out = SeparableConv(swish(sum_i w_i x_i / (sum_i w_i + eps))), w = ReLU(weights).

    ``num_weights`` may exceed the number of inputs: the P5 output node keeps EfficientDet's
    3-weight vector but fuses only two maps, using the first two weights.
    """

    def __init__(self, channels: int, num_weights: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.ones(num_weights))
        self.conv = SeparableConv(channels)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        w = torch.relu(self.weights[: len(inputs)])
        w = w / (w.sum() + FUSION_EPS)
        fused = sum(wi * xi for wi, xi in zip(w, inputs, strict=True))
        return self.conv(F.silu(fused))


def upsample_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=ref.shape[-2:], mode="nearest")


def downsample_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
    if x.shape[-2:] != ref.shape[-2:]:  # only for odd sizes; inputs divisible by 32 never hit this
        x = F.interpolate(x, size=ref.shape[-2:], mode="nearest")
    return x


class BiFPNCell(nn.Module):
    """One BiFPN repetition over three levels. ``in_channels`` set only for the first cell."""

    def __init__(self, channels: int, in_channels: tuple[int, int, int] | None = None) -> None:
        super().__init__()
        self.first = in_channels is not None
        if in_channels is not None:
            c3, c4, c5 = in_channels
            self.p3_proj = projection(c3, channels)
            self.p4_proj = projection(c4, channels)
            self.p5_proj = projection(c5, channels)
            self.p4_proj2 = projection(c4, channels)  # second projections feed the bottom-up path
            self.p5_proj2 = projection(c5, channels)
        self.p4_td = FusionNode(channels, 2)
        self.p3_out = FusionNode(channels, 2)
        self.p4_out = FusionNode(channels, 3)
        self.p5_out = FusionNode(channels, 3)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        p3, p4, p5 = feats
        if self.first:
            p3_in, p4_in, p5_in = self.p3_proj(p3), self.p4_proj(p4), self.p5_proj(p5)
            p4_in2, p5_in2 = self.p4_proj2(p4), self.p5_proj2(p5)
        else:
            p3_in, p4_in, p5_in = p3, p4, p5
            p4_in2, p5_in2 = p4, p5
        p4_td = self.p4_td([p4_in, upsample_to(p5_in, p4_in)])
        p3_out = self.p3_out([p3_in, upsample_to(p4_td, p3_in)])
        p4_out = self.p4_out([p4_in2, p4_td, downsample_to(p3_out, p4_td)])
        p5_out = self.p5_out([p5_in2, downsample_to(p4_out, p5_in2)])
        return [p3_out, p4_out, p5_out]


class BiFPN(nn.Module):
    def __init__(self, in_channels: tuple[int, int, int], channels: int, repeats: int = 3) -> None:
        super().__init__()
        self.cells = nn.ModuleList(
            [BiFPNCell(channels, in_channels if i == 0 else None) for i in range(repeats)]
        )

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        for cell in self.cells:
            feats = cell(feats)
        return feats


class FPN(nn.Module):
    """RetinaFace's FPN: 1x1 conv-BN-LeakyReLU laterals, nearest upsampling, 3x3 merges."""

    def __init__(
        self, in_channels: tuple[int, int, int], channels: int, leaky: float = 0.1
    ) -> None:
        super().__init__()
        self.output1 = conv_bn1x1(in_channels[0], channels, leaky)
        self.output2 = conv_bn1x1(in_channels[1], channels, leaky)
        self.output3 = conv_bn1x1(in_channels[2], channels, leaky)
        self.merge1 = conv_bn(channels, channels, 1, leaky)
        self.merge2 = conv_bn(channels, channels, 1, leaky)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        o1, o2, o3 = self.output1(feats[0]), self.output2(feats[1]), self.output3(feats[2])
        o2 = self.merge2(o2 + upsample_to(o3, o2))
        o1 = self.merge1(o1 + upsample_to(o2, o1))
        return [o1, o2, o3]


def conv_bn1x1(cin: int, cout: int, leaky: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )
