"""Attention blocks with runtime switches.

Every block is always built; switching a part off makes it the identity while keeping its
parameters, so state-dict keys never change between training phases.

    CBAM     : X -> ChannelAttention(X) -> SAM(.)     (Woo et al., 2018)
    ECA-CBAM : X -> ECA(X)              -> SAM(.)     (the thesis)
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from ffcore.models.init_streams import StreamFactory


def eca_kernel_size(channels: int, gamma: int = 2, beta: int = 1) -> int:
    """k = |log2(C)/gamma + beta/gamma| rounded down to an odd number (at least 3)."""
    t = int(abs(math.log2(channels) / gamma + beta / gamma))
    return max(t if t % 2 else t + 1, 3)


class ECA(nn.Module):
    """Efficient Channel Attention: GAP -> 1-D conv across channels (no bias) -> sigmoid -> scale."""

    def __init__(self, channels: int, gamma: int = 2, beta: int = 1) -> None:
        super().__init__()
        self.kernel_size = eca_kernel_size(channels, gamma, beta)
        self.conv = nn.Conv1d(1, 1, self.kernel_size, padding=self.kernel_size // 2, bias=False)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Channel weights in (0, 1), shape [B, C]."""
        y = x.mean(dim=(2, 3)).unsqueeze(1)  # [B, 1, C]
        return torch.sigmoid(self.conv(y)).squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)[:, :, None, None]


class ChannelAttention(nn.Module):
    """CBAM channel attention: shared MLP (with biases) on avg- and max-pooled vectors."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=True)

    def _mlp(self, v: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(v)))

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        avg = self._mlp(x.mean(dim=(2, 3), keepdim=True))
        mx = self._mlp(x.amax(dim=(2, 3), keepdim=True))
        return torch.sigmoid(avg + mx).flatten(1)  # [B, C]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)[:, :, None, None]


class SpatialAttention(nn.Module):
    """CBAM's SAM: [channel-max, channel-mean] -> 7x7 conv (no bias) -> BatchNorm -> sigmoid."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Spatial map in (0, 1), shape [B, 1, H, W]."""
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.bn(self.conv(pooled)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)


class AttentionBlock(nn.Module):
    """Channel part then spatial part, each with an on/off switch (off = identity)."""

    def __init__(self, channel: nn.Module, spatial: SpatialAttention) -> None:
        super().__init__()
        self.channel = channel
        self.spatial = spatial
        self.channel_on = True
        self.spatial_on = True

    def set_switches(self, channel: bool, spatial: bool) -> None:
        self.channel_on = bool(channel)
        self.spatial_on = bool(spatial)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channel_on:
            x = self.channel(x)
        if self.spatial_on:
            x = self.spatial(x)
        return x

    def extra_repr(self) -> str:
        return f"channel_on={self.channel_on}, spatial_on={self.spatial_on}"


def CBAM(channels: int, reduction: int = 16, sam_kernel: int = 7) -> AttentionBlock:  # noqa: N802
    return AttentionBlock(ChannelAttention(channels, reduction), SpatialAttention(sam_kernel))


def ECACBAM(channels: int, gamma: int = 2, beta: int = 1, sam_kernel: int = 7) -> AttentionBlock:  # noqa: N802
    return AttentionBlock(ECA(channels, gamma, beta), SpatialAttention(sam_kernel))


def create_attention(
    name: str,
    channels: int,
    *,
    reduction: int = 16,
    gamma: int = 2,
    beta: int = 1,
    sam_kernel: int = 7,
    init: StreamFactory | None = None,
) -> nn.Module:
    """An attention block by name (as timm's ``create_attn``): "eca_cbam", "cbam" or "none"
    (the identity). Each argument is used by the blocks that have it. ``init`` (see
    ``ffcore.models.init_streams``) gives the channel and the spatial part their own weight
    streams, so CBAM and ECA-CBAM built from one seed share their SAM weights exactly."""
    stream = init or (lambda _name: contextlib.nullcontext())
    if name == "none":
        return nn.Identity()
    if name not in ("eca_cbam", "cbam"):
        raise ValueError(f"unknown attention {name!r}; choose from eca_cbam, cbam, none")
    with stream("channel"):
        channel = (
            ECA(channels, gamma, beta)
            if name == "eca_cbam"
            else ChannelAttention(channels, reduction)
        )
    with stream("spatial"):
        spatial = SpatialAttention(sam_kernel)
    return AttentionBlock(channel, spatial)
