"""MobileNetV1 x0.25 (LeakyReLU 0.1) as used by RetinaFace: three stages at strides 8/16/32."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ffcore.config import STAGE_STRIDES

STAGE_CHANNELS: tuple[int, int, int] = (64, 128, 256)
MAX_STRIDE = STAGE_STRIDES[-1]  # input sides must be multiples of this


def conv_bn(cin: int, cout: int, stride: int, leaky: float = 0.1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


def conv_dw(cin: int, cout: int, stride: int, leaky: float = 0.1) -> nn.Sequential:
    """Depthwise 3x3 + pointwise 1x1, each followed by BatchNorm and LeakyReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
        nn.Conv2d(cin, cout, 1, 1, 0, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


class MobileNetV1(nn.Module):
    """Returns the feature maps of the three stages: [64 @ /8, 128 @ /16, 256 @ /32]."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            conv_bn(3, 8, 2),
            conv_dw(8, 16, 1),
            conv_dw(16, 32, 2),
            conv_dw(32, 32, 1),
            conv_dw(32, 64, 2),
            conv_dw(64, 64, 1),
        )
        self.stage2 = nn.Sequential(conv_dw(64, 128, 2), *[conv_dw(128, 128, 1) for _ in range(5)])
        self.stage3 = nn.Sequential(conv_dw(128, 256, 2), conv_dw(256, 256, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c3 = self.stage1(x)
        c4 = self.stage2(c3)
        c5 = self.stage3(c4)
        return [c3, c4, c5]


def load_backbone_weights(backbone: MobileNetV1, path: str | Path) -> None:
    """Load backbone weights from a file holding a state dict (optionally under 'state_dict').

    Keys may carry a 'body.' / 'backbone.' / 'module.' prefix (common in RetinaFace checkpoints).
    Loading is strict: a missing, unexpected or mis-shaped tensor raises one clear error.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"{path}: not a readable PyTorch weights file ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    cleaned = {}
    for key, value in state.items():
        for prefix in ("module.", "body.", "backbone."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        cleaned[key] = value
    try:
        backbone.load_state_dict(cleaned, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: does not match the MobileNetV1-0.25 backbone: {exc}") from exc
