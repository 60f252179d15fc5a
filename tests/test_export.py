"""ONNX export: DeformConv kept, onnxruntime matches eager on synthetic and real images, and
detections after decoding + NMS agree. One export (through the CLI, from a checkpoint) serves
the parity tests."""

from __future__ import annotations

from collections import Counter

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from ffcore import cli
from ffcore.evaluation.inference import _prepare, detect
from ffcore.export import (
    INPUT_NAME,
    OUTPUT_NAMES,
    OnnxModel,
    export_onnx,
    max_abs_difference,
    op_counts,
)
from ffcore.models import build_model
from ffcore.models.checkpoint import load_model
from ffcore.models.deform import ModulatedDeformConv
from ffcore.training.checkpoint import save_checkpoint

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def _randomise(model: nn.Module) -> None:
    """Non-trivial offsets/masks and BatchNorm statistics, so every path shows in the output."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, ModulatedDeformConv):
                m.offset.weight.normal_(0, 0.05, generator=gen)
                m.mask.weight.normal_(0, 0.05, generator=gen)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1, generator=gen)
                m.running_var.uniform_(0.5, 1.5, generator=gen)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(eager model from the checkpoint, OnnxModel) with a dynamic-shape export by the CLI."""
    tmp = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    model = build_model("eca_cbam")
    _randomise(model)
    ckpt = save_checkpoint(
        tmp / "phase3.pt",
        model=model,
        phase="3",
        epoch=1,
        epochs=1,
    )
    out = tmp / "model.onnx"
    assert cli.main(["export-onnx", "--checkpoint", str(ckpt), "--out", str(out), "--dynamic"]) == 0
    eager, _ = load_model(ckpt)
    return eager, OnnxModel(out, threads=1)


def _photo(longer_side: int) -> np.ndarray:
    from matplotlib import cbook

    bgr = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    scale = longer_side / max(bgr.shape[:2])
    return cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


@pytest.mark.slow
def test_graph_keeps_every_deformable_conv_with_named_io(exported):
    eager, onnx_model = exported
    ops = op_counts(onnx_model.path)
    assert (
        ops["DeformConv"] == 15 == sum(isinstance(m, ModulatedDeformConv) for m in eager.modules())
    )
    session = onnx_model.session
    assert [i.name for i in session.get_inputs()] == [INPUT_NAME]
    assert [o.name for o in session.get_outputs()] == list(OUTPUT_NAMES)
    import onnx

    proto = onnx.load(str(onnx_model.path))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 19
    assert not any(n.metadata_props for n in proto.graph.node)  # no local stack traces


@pytest.mark.slow
def test_parity_on_synthetic_batch_at_another_size(exported):
    eager, onnx_model = exported
    x = torch.randn(2, 3, 96, 160) * 50
    diffs = max_abs_difference(eager, onnx_model, x)
    print("max |onnxruntime - eager| (synthetic):", diffs)
    assert set(diffs) == set(OUTPUT_NAMES)
    assert max(diffs.values()) < 1e-4
    loc, conf, ldm = (onnx_model.run(x)[k] for k in OUTPUT_NAMES)
    assert loc.shape == (2, 2 * (12 * 20 + 6 * 10 + 3 * 5), 4)  # priors of 96x160, 2 per cell
    np.testing.assert_allclose(conf.sum(-1), 1.0, atol=1e-5)  # conf is a softmax


@pytest.mark.slow
def test_parity_and_detections_on_a_real_photo(exported):
    eager, onnx_model = exported
    image = _photo(160)
    x = _prepare(image, None).tensor
    assert x.shape[-2:] == (160, 160)  # 160x137 padded to multiples of 32
    diffs = max_abs_difference(eager, onnx_model, x)
    print("max |onnxruntime - eager| (grace_hopper 160 px):", diffs)
    assert max(diffs.values()) < 1e-4

    # Random weights: keep the 20-60 best priors, cut at the widest score gap there so that
    # float noise cannot move a prior across the threshold; NMS then sees the same boxes.
    with torch.inference_mode():
        scores = torch.softmax(eager(x)[1][0], -1)[:, 1].sort(descending=True).values[:61]
    gaps = scores[19:60] - scores[20:61]
    cut = int(gaps.argmax()) + 19
    assert gaps.max() > 1e-4
    threshold = float(scores[cut] + scores[cut + 1]) / 2
    ours = detect(eager, image, conf_threshold=threshold)
    theirs = detect(onnx_model, image, conf_threshold=threshold)
    assert 0 < len(ours) == len(theirs) <= cut + 1
    np.testing.assert_allclose(theirs.boxes, ours.boxes, atol=1e-3)
    np.testing.assert_allclose(theirs.scores, ours.scores, atol=1e-5)
    np.testing.assert_allclose(theirs.landmarks, ours.landmarks, atol=1e-3)


def test_bad_sizes_and_opset_are_refused(tmp_path):
    model = build_model("none")
    with pytest.raises(ValueError, match="multiples of 32"):
        export_onnx(model, tmp_path / "m.onnx", image_size=100)
    with pytest.raises(ValueError, match="DeformConv"):
        export_onnx(model, tmp_path / "m.onnx", image_size=64, opset=17)


def test_cli_errors_name_the_file(tmp_path, capsys):
    missing = tmp_path / "nope.pt"
    assert cli.main(["export-onnx", "--checkpoint", str(missing), "--out", "x.onnx"]) == 2
    assert str(missing) in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(
            ["export-onnx", "--checkpoint", "a", "--out", "b", "--image-size", "64", "--dynamic"]
        )


class _SkipsItsDeformConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dcn = ModulatedDeformConv(3, 3)
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        y = self.conv(x).flatten(2).transpose(1, 2)  # [B, P, 3]
        return y, y[..., :2], y


@pytest.mark.slow
def test_a_dropped_deformable_conv_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="1 deformable convs but the ONNX graph has 0"):
        export_onnx(_SkipsItsDeformConv(), tmp_path / "m.onnx", image_size=32)


def test_op_counts_reads_a_hand_built_graph(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["a"], ["b"]), helper.make_node("Relu", ["b"], ["c"])],
        "g",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph), str(tmp_path / "g.onnx"))
    assert op_counts(tmp_path / "g.onnx") == Counter({"Relu": 2})
