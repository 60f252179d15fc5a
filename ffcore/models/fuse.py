"""An inference copy of a detector: BatchNorm folded into the conv before it, channels-last.

``fuse_for_inference(model)`` returns a new module; the model itself (and so its state-dict keys,
which checkpoints load strictly) is left untouched. In the copy every ``conv -> BatchNorm`` pair
becomes one conv with a bias (the BatchNorm replaced by ``nn.Identity``), using the running
statistics, so it computes what ``model.eval()`` computes up to float rounding:

    y = gamma * (W x + b - mean) / sqrt(var + eps) + beta
      = (s W) x + (s (b - mean) + beta),      s = gamma / sqrt(var + eps)

The pairs are those of the architecture: backbone ``conv_bn`` / ``conv_dw`` and the FPN's
Sequentials, the BiFPN projections and separable convs (pointwise -> BatchNorm), the SSH's
``ConvBN`` (plain or deformable: the deformable conv is linear in its weight, so the same scale
applies, and the bias is added after it), and SAM's 7x7 conv -> BatchNorm.

The copy's parameters and buffers are stored channels-last and its ``channels_last`` flag makes
``FeatherFace.features`` convert the input, so oneDNN runs every conv in NHWC (on one CPU thread
PyTorch routes NCHW 1x1 convs to its slow unfold path, and NCHW max-pooling is ~30x slower).
Attention switches and the head-dropout flag are copied as they are.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ffcore.models.attention import SpatialAttention
from ffcore.models.context import ConvBN
from ffcore.models.deform import ModulatedDeformConv, deform_layer
from ffcore.models.detector import FeatherFace
from ffcore.models.neck import SeparableConv


@torch.no_grad()
def fold_batchnorm(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d
) -> tuple[torch.Tensor, torch.Tensor]:
    """(W', b') such that conv(x; W', b') == bn(conv(x; W, b)) in eval mode; W is [O, ...]."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("fold_batchnorm needs a BatchNorm with running statistics")
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    if bias is not None:
        shift = shift + bias * scale
    return weight * scale.reshape(-1, *([1] * (weight.dim() - 1))), shift


def _fold_conv(conv: nn.Module, bn: nn.BatchNorm2d) -> None:
    """Fold ``bn`` into ``conv`` (an nn.Conv2d or a ModulatedDeformConv) in place."""
    weight, bias = fold_batchnorm(conv.weight, conv.bias, bn)
    conv.weight = nn.Parameter(weight)
    conv.bias = nn.Parameter(bias)


def _fold_sequential(seq: nn.Sequential) -> int:
    count = 0
    for i in range(len(seq) - 1):
        if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
            _fold_conv(seq[i], seq[i + 1])
            seq[i + 1] = nn.Identity()
            count += 1
    return count


class Pointwise(nn.Module):
    """A 1x1 conv (stride 1, one group) as one matrix product over the NHWC view of the input.

    On one CPU thread PyTorch does not hand 1x1 convs to oneDNN (its heuristic wants a batch of
    16, several threads or a larger kernel) but to ``_slow_conv2d_forward``; over a channels-last
    map the conv is exactly ``linear(x_nhwc, W, b)``, whose result is channels-last again."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.weight = nn.Parameter(conv.weight.detach().flatten(1).clone(), requires_grad=False)
        bias = conv.bias.detach().clone() if conv.bias is not None else None
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.linear(x.permute(0, 2, 3, 1), self.weight, self.bias)
        return y.permute(0, 3, 1, 2)


class MergedDeformConv(nn.Module):
    """A ``ModulatedDeformConv`` whose offset (18) and mask (9) predictors, two 3x3 convs of the
    same input, run as one 27-channel conv (half the calls, one pass over the input)."""

    def __init__(self, conv: ModulatedDeformConv) -> None:
        super().__init__()
        cin = conv.offset.in_channels
        self.predictor = nn.Conv2d(cin, 27, 3, padding=1, bias=True)
        with torch.no_grad():
            self.predictor.weight.copy_(torch.cat([conv.offset.weight, conv.mask.weight]))
            self.predictor.bias.copy_(torch.cat([conv.offset.bias, conv.mask.bias]))
        self.weight = conv.weight
        self.bias = conv.bias
        self.kernel = conv.kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        predicted = self.predictor(x)
        # the sigmoid of all 27 channels, then the mask's 9: on a channels-last map, half the
        # time of the sigmoid of the strided 9-channel slice
        offset, mask = predicted[:, :18], torch.sigmoid(predicted)[:, 18:]
        return deform_layer(x, offset, mask, self.weight, self.bias, self.kernel)


def merge_deform_predictors(model: nn.Module) -> int:
    """Replace every ``ModulatedDeformConv`` of ``model`` by a ``MergedDeformConv`` in place."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, ModulatedDeformConv):
                setattr(parent, name, MergedDeformConv(child))
                count += 1
    return count


def is_pointwise(module: nn.Module) -> bool:
    return (
        type(module) is nn.Conv2d
        and module.kernel_size == (1, 1)
        and module.stride == (1, 1)
        and module.padding == (0, 0)
        and module.dilation == (1, 1)
        and module.groups == 1
    )


def replace_pointwise(model: nn.Module) -> int:
    """Replace every 1x1 conv of ``model`` by a ``Pointwise`` in place; returns how many."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if is_pointwise(child):
                setattr(parent, name, Pointwise(child))
                count += 1
    return count


def fold_all_batchnorms(model: nn.Module) -> int:
    """Fold every conv -> BatchNorm pair of ``model`` in place; returns how many were folded.
    Use on a copy in eval mode (``fuse_for_inference`` does both)."""
    count = 0
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            count += _fold_sequential(module)
        elif isinstance(module, SeparableConv):
            _fold_conv(module.pointwise, module.bn)
            module.bn = nn.Identity()
            count += 1
        elif (
            isinstance(module, (ConvBN, SpatialAttention))
            and isinstance(module.conv, (nn.Conv2d, ModulatedDeformConv))
            and isinstance(module.bn, nn.BatchNorm2d)
        ):
            _fold_conv(module.conv, module.bn)
            module.bn = nn.Identity()
            count += 1
    return count


def fuse_for_inference(
    model: nn.Module,
    channels_last: bool = True,
    *,
    pointwise: bool = True,
    merge_predictors: bool = True,
) -> nn.Module:
    """A folded, eval-mode copy of ``model`` for inference (see the module docstring).

    ``channels_last``: store the copy NHWC and have it convert its input (the fastest layout
    for oneDNN on CPU; harmless on CUDA). ``pointwise``: with ``channels_last``, run the 1x1 convs
    as ``Pointwise`` matrix products. ``merge_predictors``: each deformable conv's offset and
    mask predictors as one conv (``MergedDeformConv``). The copy is for inference only: it has
    no BatchNorm left to train."""
    fused = copy.deepcopy(model).eval()
    fold_all_batchnorms(fused)
    left = [m for m in fused.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise ValueError(f"fuse_for_inference: {len(left)} BatchNorm layers without a conv before")
    for p in fused.parameters():
        p.requires_grad_(False)
    if merge_predictors:
        merge_deform_predictors(fused)
    if channels_last and pointwise:
        replace_pointwise(fused)
    if channels_last:
        fused.to(memory_format=torch.channels_last)
        if hasattr(fused, "channels_last"):
            fused.channels_last = True
    fused.is_inference_copy = True
    return fused


def for_inference(model: nn.Module) -> nn.Module:
    """What detection and evaluation run: a FeatherFace's ``fuse_for_inference`` copy (outputs
    equal to the model's up to float rounding, about 1e-5); an inference copy already, or any
    other module, as it is."""
    if isinstance(model, FeatherFace) and not getattr(model, "is_inference_copy", False):
        return fuse_for_inference(model)
    return model
