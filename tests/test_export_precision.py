"""fp16 and int8 ONNX: a tiny detector-shaped model with a deformable conv, exported at each
precision; onnxruntime runs all three, int8 keeps DeformConv float, fp16 keeps float32 I/O."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ffcore.export import (
    OnnxModel,
    calibration_input,
    export_precision,
    format_runtime_precision,
    runtime_precision,
)
from ffcore.models.deform import ModulatedDeformConv

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


class TinyDetector(nn.Module):
    """conv -> BN -> LeakyReLU -> modulated deformable conv -> heads; (loc, logits, landmarks)
    shaped [B, P, 4 | 2 | 10] like the detector's."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.BatchNorm2d(8), nn.LeakyReLU(0.1)
        )
        self.dcn = ModulatedDeformConv(8, 8)
        self.head = nn.Conv2d(8, 16, 1)

    def forward(self, x):
        y = self.head(torch.relu(self.dcn(self.stem(x)))).flatten(2).transpose(1, 2)
        return y[..., :4], y[..., 4:6], y[..., 6:16]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("precision")
    torch.manual_seed(0)
    model = TinyDetector().eval()
    gen = torch.Generator().manual_seed(1)
    calib = [
        calibration_input(np.random.default_rng(k).integers(0, 255, (96, 80, 3), np.uint8))
        for k in range(4)
    ]
    assert calib[0].shape == (1, 3, 96, 96)  # original scale, padded to multiples of 32
    del gen
    paths = {
        p: export_precision(
            model, tmp / f"{p}.onnx", p, image_size=96, dynamic=True, calibration=calib
        ).path
        for p in ("fp32", "fp16", "int8")
    }
    return model, paths, calib


@pytest.mark.slow
def test_every_precision_runs_with_float32_io_close_to_fp32(exported):
    _model, paths, calib = exported
    x = calib[1]
    ref = OnnxModel(paths["fp32"]).run(x)
    for precision, tol in (("fp16", 0.05), ("int8", 0.5)):
        onnx_model = OnnxModel(paths[precision])
        session = onnx_model.session
        assert session.get_inputs()[0].type == "tensor(float)"
        assert all(o.type == "tensor(float)" for o in session.get_outputs())
        got = onnx_model.run(x)
        for name, value in ref.items():
            assert got[name].dtype == np.float32 and got[name].shape == value.shape
            scale = np.abs(value).max()
            err = np.abs(got[name] - value).max() / scale
            print(precision, name, f"max relative error {err:.4f}")
            assert err < tol, (precision, name, err)
    assert paths["int8"].stat().st_size < paths["fp32"].stat().st_size


@pytest.mark.slow
def test_int8_quantizes_convs_and_keeps_deformconv_float(exported):
    _model, paths, _ = exported
    report = runtime_precision(paths["int8"])
    print(format_runtime_precision(report))
    convs = sum(isinstance(m, nn.Conv2d) for m in _model.modules())  # stem, head, offset, mask
    assert report["Conv"]["int8"] == convs == 4 and "float32" not in report["Conv"]
    assert report["DeformConv"] == {"float32": 1}
    assert report["(conversions)"]["DequantizeLinear"] > 0
    fp32 = runtime_precision(paths["fp32"])
    assert "int8" not in {k for c in fp32.values() for k in c}


def test_precision_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="precision must be one of"):
        export_precision(TinyDetector(), tmp_path / "m.onnx", "int4", image_size=96)
    with pytest.raises(ValueError, match="calibration"):
        export_precision(TinyDetector(), tmp_path / "m.onnx", "int8", image_size=96)
    with pytest.raises(ValueError, match="multiple of 32"):
        calibration_input(np.zeros((10, 10, 3), np.uint8), 100)
