"""The lean export: BatchNorms after DeformConv folded (same outputs as the graph as exported),
nodes named by module, and onnxruntime's profile read back per module group."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ffcore.export import (
    _node_group,
    export_onnx,
    onnx_session,
    op_counts,
    optimized_op_counts,
    ort_group_times,
)
from ffcore.models.deform import ModulatedDeformConv

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


class _Context(nn.Module):
    """DeformConv -> BN -> LeakyReLU, like the SSH's ConvBN."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = ModulatedDeformConv(8, 6)
        self.bn = nn.BatchNorm2d(6)

    def forward(self, x):
        return nn.functional.leaky_relu(self.bn(self.conv(x)), 0.1)


class TinyGroups(nn.Module):
    """backbone (conv, BN) -> context (deformable) -> heads; (loc, logits, landmarks)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.BatchNorm2d(8))
        self.context = _Context()
        self.heads = nn.Conv2d(6, 16, 1)

    def forward(self, x):
        y = self.heads(self.context(self.backbone(x))).flatten(2).transpose(1, 2)
        return y[..., :4], y[..., 4:6], y[..., 6:16]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lean")
    torch.manual_seed(0)
    model = TinyGroups().eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-trivial offsets, masks and BN statistics: a wrong fold shows
        model.context.conv.offset.weight.normal_(0, 0.1, generator=gen)
        model.context.conv.mask.weight.normal_(0, 0.1, generator=gen)
        for bn in (model.backbone[1], model.context.bn):
            bn.running_mean.uniform_(-0.5, 0.5, generator=gen)
            bn.running_var.uniform_(0.3, 2.0, generator=gen)
            bn.weight.uniform_(0.5, 1.5, generator=gen)
            bn.bias.uniform_(-0.5, 0.5, generator=gen)
    raw = export_onnx(model, tmp / "raw.onnx", image_size=96, dynamic=True, fold=False).path
    lean = export_onnx(model, tmp / "lean.onnx", image_size=96, dynamic=True).path
    return model, raw, lean


@pytest.mark.slow
def test_fold_removes_the_batchnorm_after_deformconv_and_keeps_the_outputs(tiny):
    model, raw, lean = tiny
    assert op_counts(raw)["BatchNormalization"] == 1  # the exporter folds only Conv -> BN
    assert op_counts(lean)["BatchNormalization"] == 0
    assert op_counts(lean)["DeformConv"] == 1
    assert "BatchNormalization" not in optimized_op_counts(lean)
    x = torch.randn(2, 3, 96, 128) * 50
    with torch.inference_mode():
        eager = model(x)
    got_raw = onnx_session(raw).run(None, {"input": x.numpy()})
    got_lean = onnx_session(lean).run(None, {"input": x.numpy()})
    for e, r, le in zip(
        eager[:1] + eager[2:], got_raw[:1] + got_raw[2:], got_lean[:1] + got_lean[2:], strict=True
    ):
        assert np.abs(le - r).max() < 1e-4
        assert np.abs(le - e.numpy()).max() < 1e-4 * np.abs(e.numpy()).max()  # float noise
    assert np.abs(got_lean[1] - got_raw[1]).max() < 1e-4
    np.testing.assert_allclose(got_lean[1], torch.softmax(eager[1], -1).numpy(), atol=1e-4)


@pytest.mark.slow
def test_ort_group_times_attributes_time_to_module_groups(tiny):
    _, _, lean = tiny
    groups = ("backbone", "neck", "context", "heads")
    times = ort_group_times(lean, image_size=96, rounds=2, groups=groups)
    assert set(times) == {*groups, "other", "total"}
    assert times["neck"] == 0.0  # no such module in the model
    assert times["backbone"] > 0 and times["context"] > 0 and times["heads"] > 0
    assert times["total"] == pytest.approx(sum(v for k, v in times.items() if k != "total"))


def test_node_group_reads_module_paths():
    groups = ("backbone", "context", "heads")
    assert _node_group("backbone.stage1.0.0/Conv_3", groups) == "backbone"
    assert _node_group("context.2.branch1.conv/leaky_relu_nchwc", groups) == "context"
    assert _node_group("ReorderOutput_token_12", groups) == "other"
    assert _node_group("/Softmax_300", groups) == "other"
    assert _node_group("neck.lateral/Conv_9", groups) == "other"  # not a listed group
