"""Modulated deformable 3x3 convolution (DCNv2) with a fast CPU path.

``modulated_deform_conv2d`` computes exactly what ``torchvision.ops.deform_conv2d`` computes
(offsets as (dy, dx) pairs per kernel tap, a mask per tap, zero padding outside the map). On
CUDA, and whenever the graph is being traced, compiled or exported (fvcore's MAC count, ONNX
export to ``DeformConv``), it calls torchvision's operator. On CPU it uses a faster formulation
built from dense and sparse matrix products, because torchvision's CPU kernel is a slow scalar
loop (about 25x a plain conv on the SSH maps).

The fast path rests on one identity. Bilinear sampling is linear in the sampled map and uses
the same coordinates for every channel, so the weight can be applied first:

    z[b, q, k, :] = W[:, :, k] @ x[b, :, q]          one 1x1 conv with K*O output channels
    y[b, :, p]    = sum_k m_k(p) * bilinear(z[b, :, k, :], p + t_k + offset_k(p))

z is computed on x with a zero border of one pixel, so every bilinear corner of a point that
torchvision samples is a row of z (the border rows are zero). The second line is a sparse
matrix S (4 bilinear corners x K taps = 36 non-zeros per output pixel) times z. With O <= C
(every SSH conv) this gathers O instead of C values per corner. Without autograd, S @ z is one
weighted gather-sum per output pixel (``embedding_bag``) and z a oneDNN 1x1 conv. With autograd
S is a CSR matrix: z and W get their gradients by ordinary autograd; S^T @ grad_y for z (the
same indices read as a CSC matrix); grad_y @ z^T sampled at S's non-zeros for the coefficients
(``torch.sparse.sampled_addmm``), from which autograd reaches the offsets and the mask.
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import deform_conv2d

DeformKernel = Literal["auto", "torchvision"]
DEFORM_KERNELS: tuple[str, ...] = ("auto", "torchvision")


def _must_use_torchvision(x: torch.Tensor) -> bool:
    """torchvision's op on CUDA, for reduced precision, and while tracing/compiling/exporting
    (so fvcore counts it and the ONNX exporter emits DeformConv); the fast path otherwise."""
    return (
        x.device.type != "cpu"
        or x.dtype not in (torch.float32, torch.float64)
        or torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.compiler.is_compiling()
        or torch.onnx.is_in_onnx_export()
    )


def modulated_deform_conv2d(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    padding: int = 1,
) -> torch.Tensor:
    """y = DCNv2(x; offset [B, 2*9, H, W] as (dy, dx) pairs, mask [B, 9, H, W], weight [O, I, 3, 3]).

    Stride 1, dilation 1, one offset group, no bias (the only form the model uses); the fast CPU
    path is chosen automatically.
    """
    if _must_use_torchvision(x):
        return torchvision_modulated_deform_conv2d(x, offset, mask, weight, padding)
    return fast_modulated_deform_conv2d(x, offset, mask, weight, padding)


def torchvision_modulated_deform_conv2d(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    padding: int = 1,
) -> torch.Tensor:
    """torchvision's kernel with this module's argument order (the reference; benchmarks)."""
    return deform_conv2d(x, offset, weight, padding=(padding, padding), mask=mask)


def _csr(
    crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta": known, and tested here
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, size=size)


class _SparseRows(torch.autograd.Function):
    """y = S @ z with S given as CSR (crow, col, values); differentiable in values and z."""

    @staticmethod
    def forward(ctx, values, crow, col, z):  # type: ignore[override]
        n = crow.numel() - 1
        ctx.save_for_backward(values, crow, col, z)
        return _csr(crow, col, values, (n, z.shape[0])) @ z

    @staticmethod
    def backward(ctx, grad_y):  # type: ignore[override]
        values, crow, col, z = ctx.saved_tensors
        n, m = crow.numel() - 1, z.shape[0]
        grad_values = grad_z = None
        grad_y = grad_y.contiguous()
        if ctx.needs_input_grad[0]:
            # d y[n] / d S[n, j] = z[j]: grad_y @ z^T read only at S's non-zeros
            pattern = _csr(crow, col, torch.zeros_like(values), (n, m))
            grad_values = torch.sparse.sampled_addmm(pattern, grad_y, z.t(), beta=0.0).values()
        if ctx.needs_input_grad[3]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                s_t = torch.sparse_csc_tensor(crow, col, values, size=(m, n))  # = S^T
            grad_z = s_t @ grad_y
        return grad_values, None, None, grad_z


def _taps_by_pixel(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """z [B*(H+2)*(W+2)*K, O]: every tap's weight applied to every pixel of x with a zero
    border of one pixel (rows ordered pixel, then tap), so any bilinear corner of a sampling
    point inside (-1, H) x (-1, W) is a row of z, the border rows being zero."""
    o, c, kh, kw = weight.shape
    xp = F.pad(x, (1, 1, 1, 1)).contiguous(memory_format=torch.channels_last)
    w_kc = weight.permute(2, 3, 0, 1).reshape(kh * kw * o, c)
    if (
        xp.device.type == "cpu"
        and xp.dtype == torch.float32
        and not (xp.requires_grad or weight.requires_grad)
    ):
        # Inference: the product as a 1x1 conv handed to oneDNN directly. (PyTorch's own 1x1
        # dispatch picks its unfold path on one thread, and the BLAS matmul runs at half
        # oneDNN's speed on the AMD CPUs measured; its backward is slower, so training keeps it.)
        w1 = w_kc[:, :, None, None].contiguous(memory_format=torch.channels_last)
        z = torch.mkldnn_convolution(xp, w1, None, [0, 0], [1, 1], [1, 1], 1)
        return z.permute(0, 2, 3, 1).reshape(-1, o)
    return (xp.permute(0, 2, 3, 1).reshape(-1, c) @ w_kc.t()).reshape(-1, o)


def _sampling(
    offset: torch.Tensor,
    mask: torch.Tensor,
    h: int,
    w: int,
    kw: int,
    padding: int,
    itype: torch.dtype = torch.int32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The sparse sampling matrix S of ``y = S @ z``: per output pixel 4 corners x K taps,
    as (index into z's rows, coefficient = bilinear weight x mask), both [B, Ho, Wo, 4, K]
    (corners (0,0), (0,1), (1,0), (1,1)). Laid out pixel-major, these are S's CSR non-zeros.

    A point outside (-1, H) x (-1, W) reads nothing (torchvision's rule): its corners are put
    on the border and weigh 0. No row of S holds a column twice (the corners of a
    tap differ, and z has one row per tap). Indices are ``itype`` (int32 unless z has 2**31
    rows or more: a third less time here and in the gather)."""
    b, k, ho, wo = mask.shape
    dev, dt = offset.device, offset.dtype
    wp = w + 2
    taps = torch.arange(k, device=dev, dtype=itype)
    rows = torch.arange(ho, device=dev, dtype=dt) - padding
    cols = torch.arange(wo, device=dev, dtype=dt) - padding
    off = offset.permute(0, 2, 3, 1).reshape(b, ho, wo, k, 2)  # (dy, dx) pairs per tap
    py = off[..., 0] + (rows[:, None, None] + (taps // kw).to(dt))  # [B, Ho, Wo, K]
    px = off[..., 1] + (cols[:, None] + (taps % kw).to(dt))
    y0, x0 = py.detach().floor(), px.detach().floor()
    ly, lx = py - y0, px - x0  # differentiable fractional parts
    inside = (y0 >= -1) & (y0 <= h - 1) & (x0 >= -1) & (x0 <= w - 1)
    m = mask.permute(0, 2, 3, 1) * inside
    # a point outside (or not a number) reads the border corner (-1, -1) with weight 0, so
    # every index is a row of z whatever the offsets hold
    y0, x0 = torch.where(inside, y0, -1.0).to(itype), torch.where(inside, x0, -1.0).to(itype)
    first_row = torch.arange(b, device=dev, dtype=itype) * (h + 2)  # of each image in z
    i00 = ((first_row[:, None, None, None] + y0 + 1) * wp + x0 + 1) * k + taps
    index = torch.stack([i00, i00 + k, i00 + wp * k, i00 + (wp + 1) * k], dim=-2)
    top, bottom, right = m - ly * m, ly * m, 1 - lx
    coef = torch.stack([top * right, top * lx, bottom * right, bottom * lx], dim=-2)
    return index, coef


def fast_modulated_deform_conv2d(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    padding: int = 1,
) -> torch.Tensor:
    """The CPU formulation (see the module docstring); same contract as torchvision's op."""
    b, c, h, w = x.shape
    o, c_w, kh, kw = weight.shape
    k = kh * kw
    ho, wo = h + 2 * padding - kh + 1, w + 2 * padding - kw + 1
    if c_w != c:
        raise ValueError(f"weight expects {c_w} input channels, x has {c}")
    if offset.shape != (b, 2 * k, ho, wo) or mask.shape != (b, k, ho, wo):
        raise ValueError(
            f"offset {tuple(offset.shape)} / mask {tuple(mask.shape)} do not match "
            f"[{b}, {2 * k}|{k}, {ho}, {wo}] (one offset group, stride 1)"
        )
    z = _taps_by_pixel(x, weight)  # [B*(H+2)*(W+2)*K, O]
    nnz_per_row = 4 * k
    itype = torch.int32 if max(z.shape[0], b * ho * wo * nnz_per_row) < 2**31 else torch.int64
    index, coef = _sampling(offset, mask, h, w, kw, padding, itype)
    rows_end = torch.arange(
        0, b * ho * wo * nnz_per_row + 1, nnz_per_row, device=x.device, dtype=itype
    )
    if torch.is_grad_enabled() and (coef.requires_grad or z.requires_grad):
        y = _SparseRows.apply(coef.reshape(-1), rows_end, index.reshape(-1), z)
    else:
        # S @ z as one weighted gather-sum per output pixel (FBGEMM's kernel; no CSR build)
        y = F.embedding_bag(
            index.reshape(-1), z, rows_end[:-1], mode="sum", per_sample_weights=coef.reshape(-1)
        )
    y = y.reshape(b, ho, wo, o).permute(0, 3, 1, 2)  # [B, O, Ho, Wo], channels_last memory
    if x.is_contiguous(memory_format=torch.channels_last):
        return y
    return y.contiguous()


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
        self.kernel: DeformKernel = "auto"  # see set_deform_kernel; not part of the state dict
        # None (no state-dict key); ffcore.models.fuse sets it when it folds the BatchNorm in
        self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return deform_layer(
            x, self.offset(x), torch.sigmoid(self.mask(x)), self.weight, self.bias, self.kernel
        )


def deform_layer(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    kernel: DeformKernel,
) -> torch.Tensor:
    """A deformable layer's output: the conv with ``kernel`` (see ``set_deform_kernel``), plus
    ``bias`` (None: none) per output channel."""
    conv = (
        torchvision_modulated_deform_conv2d if kernel == "torchvision" else modulated_deform_conv2d
    )
    y = conv(x, offset, mask, weight)
    return y if bias is None else y + bias[:, None, None]


def set_deform_kernel(model: nn.Module, kernel: DeformKernel) -> int:
    """Choose the kernel of every deformable conv in ``model`` (a ModulatedDeformConv, or the
    inference copy's MergedDeformConv): "auto" (fast path on CPU, torchvision elsewhere) or
    "torchvision" (always; for benchmarks and checks, and what CUDA runs). Returns how many
    layers were set."""
    if kernel not in DEFORM_KERNELS:
        raise ValueError(f"kernel must be one of {DEFORM_KERNELS}, got {kernel!r}")
    # ModulatedDeformConv and the inference copy's MergedDeformConv (ffcore.models.fuse)
    layers = [m for m in model.modules() if getattr(m, "kernel", None) in DEFORM_KERNELS]
    for layer in layers:
        layer.kernel = kernel
    return len(layers)
