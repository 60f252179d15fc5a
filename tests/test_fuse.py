"""The inference copy (BatchNorm folded, channels-last) computes what the model computes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ffcore.models import build_model
from ffcore.models.deform import ModulatedDeformConv
from ffcore.models.fuse import MergedDeformConv, fold_batchnorm, fuse_for_inference


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, and deformable offsets/masks that
    are not zero (the initial predictors are), so the folding and the deformable bias matter."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
            if isinstance(m, ModulatedDeformConv):
                for p in (m.offset.weight, m.mask.weight):
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.eval()


def test_fold_batchnorm_matches_conv_then_bn_by_hand() -> None:
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=True)
    bn = randomise(nn.Sequential(nn.BatchNorm2d(4)))[0]
    w, b = fold_batchnorm(conv.weight, conv.bias, bn)
    x = torch.randn(2, 3, 9, 7)
    # by hand: (conv(x) - mean) / sqrt(var + eps) * gamma + beta, channel by channel
    y = conv(x)
    expected = (y - bn.running_mean[:, None, None]) / torch.sqrt(
        bn.running_var[:, None, None] + bn.eps
    ) * bn.weight[:, None, None] + bn.bias[:, None, None]
    got = torch.nn.functional.conv2d(x, w, b, padding=1)
    assert torch.allclose(got, expected.detach(), atol=1e-5)


@pytest.mark.parametrize("variant", ["eca_cbam", "cbam", "none", "retinaface_mnet025"])
def test_fused_copy_matches_the_model(variant: str) -> None:
    torch.manual_seed(0)
    model = randomise(build_model(variant))
    keys = list(model.state_dict())
    fused = fuse_for_inference(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert list(model.state_dict()) == keys  # the real model is untouched
    build_model(variant).load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 3, 128, 96)
    with torch.no_grad():
        for got, expected in zip(fused(x), model(x), strict=True):
            assert got.shape == expected.shape
            assert (got - expected).abs().max() <= 1e-4
            assert expected.abs().max() > 1e-2  # not a trivially small output


def test_fused_copy_keeps_the_attention_switches() -> None:
    torch.manual_seed(1)
    model = randomise(build_model("eca_cbam"))
    model.set_attention(True, False)  # phase 2a
    fused = fuse_for_inference(model)
    assert fused.attention_state() == (True, False)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        diff = max((a - b).abs().max() for a, b in zip(fused(x), model(x), strict=True))
    assert diff <= 1e-4


@pytest.mark.parametrize(
    ("channels_last", "pointwise", "merge"),
    [(False, False, True), (True, False, True), (True, True, False)],
)
def test_fused_copy_options_match_the_model(
    channels_last: bool, pointwise: bool, merge: bool
) -> None:
    torch.manual_seed(2)
    model = randomise(build_model("eca_cbam"))
    fused = fuse_for_inference(model, channels_last, pointwise=pointwise, merge_predictors=merge)
    merged = [m for m in fused.modules() if isinstance(m, MergedDeformConv)]
    assert len(merged) == (15 if merge else 0)
    assert fused.channels_last is channels_last
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        diff = max((a - b).abs().max() for a, b in zip(fused(x), model(x), strict=True))
    assert diff <= 1e-4


def test_merged_predictors_compute_offset_and_mask_of_the_two_convs() -> None:
    """One 27-channel conv: channels 0-17 are the offset conv's, 18-26 the mask conv's."""
    torch.manual_seed(3)
    conv = randomise(nn.Sequential(ModulatedDeformConv(5, 4)))[0]
    with torch.no_grad():
        conv.offset.bias.normal_()
        conv.mask.bias.normal_()
    merged = MergedDeformConv(conv)
    x = torch.randn(2, 5, 7, 6)
    with torch.no_grad():
        predicted = merged.predictor(x)
        assert torch.allclose(predicted[:, :18], conv.offset(x), atol=1e-6)
        assert torch.allclose(predicted[:, 18:], conv.mask(x), atol=1e-6)
        assert torch.allclose(merged(x), conv(x), atol=1e-5)


def test_fused_copy_with_torchvision_kernel_matches_the_model() -> None:
    """The copy's deformable convs with torchvision's kernel (CUDA's path, here on the CPU):
    the merged predictors' offset and mask views feed it as they feed the fast path."""
    from ffcore.models.deform import set_deform_kernel

    torch.manual_seed(4)
    model = randomise(build_model("eca_cbam"))
    fused = fuse_for_inference(model)
    assert set_deform_kernel(fused, "torchvision") == 15
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        diff = max((a - b).abs().max() for a, b in zip(fused(x), model(x), strict=True))
    assert diff <= 1e-4
