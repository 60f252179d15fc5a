"""What the attention blocks do on an image: ECA channel weights and SAM spatial maps."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ffcore.data.preprocess import image_to_tensor
from ffcore.models.attention import AttentionBlock
from ffcore.models.backbone import MAX_STRIDE
from ffcore.models.modes import eval_mode


@dataclass(frozen=True)
class BlockAttention:
    name: str  # e.g. "backbone_attention.0"
    channel: np.ndarray | None  # [C] weights in (0, 1), None when the channel part is off
    spatial: np.ndarray | None  # [H, W] map in (0, 1), None when the spatial part is off


def resize_to_stride(image: np.ndarray, stride: int = MAX_STRIDE) -> np.ndarray:
    """Resize to the nearest height and width that are multiples of ``stride`` (at least one)."""
    h, w = image.shape[:2]
    nh, nw = (max(stride, round(v / stride) * stride) for v in (h, w))
    return (
        image if (nh, nw) == (h, w) else cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    )


@torch.no_grad()
def attention_maps(model: torch.nn.Module, image_bgr: np.ndarray) -> list[BlockAttention]:
    """Run ``model`` on one BGR image (H, W divisible by 32) and record, for every attention
    block, the channel weights it applied and the spatial map it applied (as switched now)."""
    names = {m: n for n, m in model.named_modules() if isinstance(m, AttentionBlock)}
    if not names:
        raise ValueError("this model has no attention blocks")
    records: list[BlockAttention] = []

    def hook(
        block: AttentionBlock, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor
    ) -> None:
        x = inputs[0]
        channel = spatial = None
        if block.channel_on:
            channel = block.channel.weights(x)[0].cpu().numpy()
            x = block.channel(x)
        if block.spatial_on:
            spatial = block.spatial.weights(x)[0, 0].cpu().numpy()
        records.append(BlockAttention(names[block], channel, spatial))

    handles = [block.register_forward_hook(hook) for block in names]
    try:
        with eval_mode(model):
            device = next(model.parameters()).device
            model(image_to_tensor(image_bgr)[None].to(device))
    finally:
        for h in handles:
            h.remove()
    return records
