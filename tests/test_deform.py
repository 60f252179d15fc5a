"""The fast CPU modulated deformable conv against torchvision's kernel (the reference)."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F
from torchvision.ops import deform_conv2d

from ffcore.models import deform
from ffcore.models.context import SSH
from ffcore.models.deform import (
    ModulatedDeformConv,
    fast_modulated_deform_conv2d,
    modulated_deform_conv2d,
)
from ffcore.report.complexity import count_macs


def _inputs(b, c, o, h, w, padding, offset_scale, dtype=torch.float64):
    ho, wo = h + 2 * padding - 2, w + 2 * padding - 2
    x = torch.randn(b, c, h, w, dtype=dtype)
    offset = torch.randn(b, 18, ho, wo, dtype=dtype) * offset_scale
    mask = torch.rand(b, 9, ho, wo, dtype=dtype)
    weight = torch.randn(o, c, 3, 3, dtype=dtype)
    return [t.requires_grad_() for t in (x, offset, mask, weight)]


@pytest.mark.parametrize(
    ("b", "c", "o", "h", "w", "padding", "offset_scale"),
    [
        (2, 5, 4, 7, 9, 1, 1.5),  # odd, non-square, batch 2
        (3, 4, 6, 5, 4, 1, 10.0),  # large offsets: most samples fall outside the map
        (1, 3, 2, 1, 1, 1, 0.7),  # a 1x1 map: every corner but one is outside
        (2, 3, 5, 6, 5, 0, 2.0),  # no padding: output smaller than the input
        (1, 6, 3, 4, 7, 2, 2.0),  # padding 2: output larger than the input
    ],
)
def test_forward_and_backward_match_torchvision(b, c, o, h, w, padding, offset_scale):
    x, offset, mask, weight = _inputs(b, c, o, h, w, padding, offset_scale)
    ref = deform_conv2d(x, offset, weight, padding=(padding, padding), mask=mask)
    got = fast_modulated_deform_conv2d(x, offset, mask, weight, padding)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    grad_out = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, (x, offset, mask, weight), grad_out)
    got_grads = torch.autograd.grad(got, (x, offset, mask, weight), grad_out)
    for name, g, r in zip(("x", "offset", "mask", "weight"), got_grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-9, msg=f"grad of {name}")


def test_gradcheck_numerical():
    inputs = _inputs(1, 2, 2, 3, 4, 1, 2.0)
    assert torch.autograd.gradcheck(fast_modulated_deform_conv2d, tuple(inputs), fast_mode=True)


def test_zero_offsets_are_a_masked_plain_conv_including_offset_grads():
    """At the initial state (offsets 0: every sample exactly on a pixel), the layer is
    conv2d(x * 1) scaled by the mask; the offset gradient there (one-sided, from the floor
    corner) must be torchvision's too."""
    x, _, _, weight = _inputs(2, 4, 3, 6, 5, 1, 0.0)
    offset = torch.zeros(2, 18, 6, 5, dtype=torch.float64, requires_grad=True)
    mask = torch.full((2, 9, 6, 5), 0.5, dtype=torch.float64, requires_grad=True)
    got = fast_modulated_deform_conv2d(x, offset, mask, weight)
    torch.testing.assert_close(got, 0.5 * F.conv2d(x, weight, padding=1))
    ref = deform_conv2d(x, offset, weight, padding=(1, 1), mask=mask)
    g_got = torch.autograd.grad(got.square().sum(), offset)[0]
    g_ref = torch.autograd.grad(ref.square().sum(), offset)[0]
    torch.testing.assert_close(g_got, g_ref)


def test_float32_at_the_ssh_layer_size():
    x, offset, mask, weight = (
        t.detach().float() for t in _inputs(1, 52, 26, 20, 20, 1, 3.0, torch.float32)
    )
    ref = deform_conv2d(x, offset, weight, padding=(1, 1), mask=mask)
    got = fast_modulated_deform_conv2d(x, offset, mask, weight)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_channels_last_input_gives_the_same_result_in_channels_last():
    x, offset, mask, weight = (t.detach() for t in _inputs(2, 4, 3, 5, 7, 1, 2.0))
    ref = fast_modulated_deform_conv2d(x, offset, mask, weight)
    got = fast_modulated_deform_conv2d(
        x.contiguous(memory_format=torch.channels_last), offset, mask, weight
    )
    torch.testing.assert_close(got, ref)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert ref.is_contiguous()


def test_cpu_eager_uses_the_fast_path_and_tracing_uses_torchvision(monkeypatch):
    layer = ModulatedDeformConv(3, 4)
    x = torch.randn(1, 3, 6, 5)

    def refuse(*args, **kwargs):
        raise AssertionError("torchvision's kernel called on the CPU eager path")

    monkeypatch.setattr(deform, "deform_conv2d", refuse)
    layer(x)  # fast path: torchvision is not called
    monkeypatch.undo()
    traced = torch.jit.trace(layer, (x,))
    assert "torchvision::deform_conv2d" in str(traced.graph)


def test_mac_count_still_sees_the_deformable_conv():
    """fvcore traces the model: the traced op must be torchvision's, counted by its rule."""
    layer = ModulatedDeformConv(3, 4)
    h, w, c, o = 6, 5, 3, 4
    pixels = h * w
    expected = (
        pixels * 18 * c * 9  # offset predictor
        + pixels * 9 * c * 9  # mask predictor
        + pixels * o * c * 9  # the deformable conv's weight taps
        + pixels * c * 9 * 5  # bilinear sampling (4) and mask product (1) per column entry
    )
    assert count_macs(layer, (h, w)) == expected


def test_whole_ssh_forward_and_parameter_grads_match_torchvision(monkeypatch):
    ssh = SSH(16).double()
    for m in ssh.modules():  # non-trivial offsets and masks
        if isinstance(m, ModulatedDeformConv):
            torch.nn.init.normal_(m.offset.weight, std=0.3)
            torch.nn.init.normal_(m.mask.weight, std=0.3)
    x = torch.randn(2, 16, 9, 11, dtype=torch.float64)

    def run():
        ssh.zero_grad()
        y = ssh(x)
        (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
        return y.detach(), {n: p.grad.clone() for n, p in ssh.named_parameters()}

    y_fast, g_fast = run()
    monkeypatch.setattr(deform, "_must_use_torchvision", lambda x: True)
    y_ref, g_ref = run()
    torch.testing.assert_close(y_fast, y_ref)
    for name in g_ref:
        torch.testing.assert_close(g_fast[name], g_ref[name], msg=name)


def test_public_function_dispatches_and_checks_shapes():
    x, offset, mask, weight = (t.detach() for t in _inputs(1, 3, 2, 4, 4, 1, 1.0))
    torch.testing.assert_close(
        modulated_deform_conv2d(x, offset, mask, weight),
        deform_conv2d(x, offset, weight, padding=(1, 1), mask=mask),
    )
    with pytest.raises(ValueError, match="offset"):
        fast_modulated_deform_conv2d(x, offset[:, :9], mask, weight)
    with pytest.raises(ValueError, match="input channels"):
        fast_modulated_deform_conv2d(x, offset, mask, weight[:, :2])


def test_set_deform_kernel_forces_torchvision(monkeypatch):
    ssh = SSH(8)
    assert deform.set_deform_kernel(ssh, "torchvision") == 5
    calls = []
    monkeypatch.setattr(
        deform, "deform_conv2d", lambda *a, **k: calls.append(1) or deform_conv2d(*a, **k)
    )
    ssh(torch.randn(1, 8, 5, 5))
    assert len(calls) == 5
    deform.set_deform_kernel(ssh, "auto")
    ssh(torch.randn(1, 8, 5, 5))
    assert len(calls) == 5
    assert "kernel" not in str(list(ssh.state_dict()))
    with pytest.raises(ValueError, match="kernel must be"):
        deform.set_deform_kernel(ssh, "cuda")


@pytest.mark.parametrize(
    ("b", "c", "o", "h", "w", "padding", "offset_scale"),
    [(2, 5, 4, 7, 9, 1, 1.5), (3, 4, 6, 5, 4, 1, 10.0), (2, 3, 5, 6, 5, 0, 2.0)],
)
def test_inference_path_matches_torchvision(b, c, o, h, w, padding, offset_scale):
    """Without autograd the product S @ z is a weighted gather-sum (embedding_bag), not the CSR
    product: the same numbers, float64 and float32 (where z is oneDNN's 1x1 conv)."""
    x, offset, mask, weight = (t.detach() for t in _inputs(b, c, o, h, w, padding, offset_scale))
    ref = deform_conv2d(x, offset, weight, padding=(padding, padding), mask=mask)
    with torch.no_grad():
        got = fast_modulated_deform_conv2d(x, offset, mask, weight, padding)
        got32 = fast_modulated_deform_conv2d(
            *(t.float() for t in (x, offset, mask, weight)), padding
        )
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got32, ref.float(), rtol=1e-4, atol=1e-4)


def test_sampling_with_int64_indices_is_the_int32_sampling():
    """z beyond 2**31 rows switches the indices to int64; the sampling is the same."""
    _, offset, mask, _ = (t.detach() for t in _inputs(2, 3, 3, 6, 7, 1, 3.0))
    i32, c32 = deform._sampling(offset, mask, 6, 7, 3, 1, torch.int32)
    i64, c64 = deform._sampling(offset, mask, 6, 7, 3, 1, torch.int64)
    assert i32.dtype == torch.int32 and i64.dtype == torch.int64
    assert torch.equal(i32.long(), i64) and torch.equal(c32, c64)
    # every index is a row of z (B * (H+2) * (W+2) * K rows), zero-weighted where clamped
    assert int(i64.min()) >= 0 and int(i64.max()) < 2 * 8 * 9 * 9


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 1e30])
def test_non_finite_offsets_never_read_outside_z(bad):
    """A diverging run feeds NaN/inf offsets: every index must stay a row of z (an index out of
    range would read past the buffer; torchvision's CPU kernel itself crashes on NaN). Only the
    output pixel of the bad offsets may change."""
    x, offset, mask, weight = (t.detach() for t in _inputs(1, 3, 2, 5, 6, 1, 1.0))
    good = offset.clone()
    good[0, :, 1, 2] = 0.0
    offset[0, :, 1, 2] = bad
    index, _ = deform._sampling(offset, mask, 5, 6, 3, 1, torch.int32)
    assert int(index.min()) >= 0 and int(index.max()) < 7 * 8 * 9
    ref = deform_conv2d(x, good, weight, padding=(1, 1), mask=mask)
    others = torch.ones_like(ref, dtype=torch.bool)
    others[0, :, 1, 2] = False
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            y = fast_modulated_deform_conv2d(x, offset.clone().requires_grad_(grad), mask, weight)
        torch.testing.assert_close(y.detach()[others], ref[others])
