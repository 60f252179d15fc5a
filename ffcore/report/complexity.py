"""Parameter tables and MAC counts (fvcore, with a rule for torchvision's deform_conv2d)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn

from ffcore.models.detector import MODULE_GROUPS
from ffcore.models.modes import eval_mode


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameter_table(model: nn.Module) -> dict[str, int]:
    """Parameters per module group (the thesis' table) plus ``total``."""
    table = {group: count_parameters(getattr(model, group)) for group in MODULE_GROUPS}
    total = count_parameters(model)
    if sum(table.values()) != total:
        raise RuntimeError("module groups do not cover every parameter of the model")
    table["total"] = total
    return table


def _deform_conv_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """MACs of torchvision::deform_conv2d: one multiply-add per weight tap per output element,
    plus the bilinear sampling (4 taps) and the mask product of every sampled column entry."""
    from fvcore.nn.jit_handles import get_shape

    weight_shape = get_shape(inputs[1])  # [O, I/g, kh, kw]
    out_shape = get_shape(outputs[0])  # [B, O, H, W]
    b, o, h, w = out_shape
    cin_per_group, kh, kw = weight_shape[1], weight_shape[2], weight_shape[3]
    conv = b * o * h * w * cin_per_group * kh * kw
    groups_in = get_shape(inputs[0])[1]
    sampling = b * h * w * groups_in * kh * kw * 5
    return int(conv + sampling)


def count_macs(model: nn.Module, image_size: int | tuple[int, int] = 640) -> int:
    """Multiply-accumulates of one forward pass at ``image_size`` (batch 1), by fvcore."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # fvcore imports torch.jit.script
        from fvcore.nn import FlopCountAnalysis

    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    device = next(model.parameters()).device
    with eval_mode(model), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = FlopCountAnalysis(model, torch.zeros(1, 3, h, w, device=device))
        analysis.set_op_handle("torchvision::deform_conv2d", _deform_conv_macs)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return int(analysis.total())  # fvcore counts one fused multiply-add as one "flop"


def human(n: float) -> str:
    if n == 0:
        return "0"
    k = min(int(math.log10(abs(n)) // 3), 4)
    return f"{n / 10 ** (3 * k):.2f}{['', 'K', 'M', 'G', 'T'][k]}"
