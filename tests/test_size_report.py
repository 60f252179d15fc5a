"""Model size report: byte counts against hand computations, fp16 ONNX weights that still run."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from ffcore.report.size_report import (
    onnx_with_fp16_weights,
    size_column,
    state_dict_bytes,
    tensor_bytes,
    write_size_table,
)


def _conv_bn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


def test_tensor_bytes_by_hand():
    # conv 4*3*3*3 + 4 bias, BN weight/bias 4+4 and running mean/var 4+4: 128 floats;
    # num_batches_tracked: one int64 that stays 8 bytes in fp16
    assert tensor_bytes(_conv_bn(), torch.float32) == 128 * 4 + 8
    assert tensor_bytes(_conv_bn(), torch.float16) == 128 * 2 + 8


def test_state_dict_bytes_is_the_saved_file_and_round_trips():
    model = _conv_bn()
    for dtype in (torch.float32, torch.float16):
        size = state_dict_bytes(model, dtype)
        buffer = io.BytesIO()
        torch.save(
            {k: v.to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()},
            buffer,
        )
        assert size == buffer.getbuffer().nbytes
        assert size > tensor_bytes(model, dtype)  # zip records and alignment on top
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=True)
        assert loaded["0.weight"].dtype == dtype
    assert state_dict_bytes(model, torch.float16) < state_dict_bytes(model, torch.float32)


def test_fp16_onnx_weights_halve_the_weight_bytes_and_still_run():
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 5, 5])],
        [numpy_helper.from_array(weight, "w")],
    )
    full = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    half = onnx_with_fp16_weights(full)
    onnx.checker.check_model(half)
    saved = len(full.SerializeToString()) - len(half.SerializeToString())
    assert weight.size * 2 - 200 < saved <= weight.size * 2  # a Cast node costs a few bytes

    x = rng.standard_normal((1, 8, 5, 5)).astype(np.float32)
    run = ort.InferenceSession(half.SerializeToString(), providers=["CPUExecutionProvider"]).run
    got = run(None, {"x": x})[0]
    rounded = torch.from_numpy(weight.astype(np.float16).astype(np.float32))
    expected = torch.nn.functional.conv2d(torch.from_numpy(x), rounded, padding=1).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_size_column_without_onnx_small_image():
    from ffcore.models import build_model

    column = size_column("cbam", image_size=64, include_onnx=False)
    model = build_model("cbam")
    params = sum(p.numel() for p in model.parameters())
    bn_stats = sum(b.numel() for b in model.buffers() if b.is_floating_point())
    bn_layers = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert column["total"] == params
    assert column["tensor MB fp32"] * 1e6 == pytest.approx(4 * (params + bn_stats) + 8 * bn_layers)
    assert column["tensor MB fp16"] * 1e6 == pytest.approx(2 * (params + bn_stats) + 8 * bn_layers)
    assert column["GMACs @ 64"] > 0
    assert "ONNX MB fp32" not in column.index


@pytest.mark.slow
def test_write_size_table_csv_and_tex(tmp_path):
    table, paths = write_size_table(
        out_dir=tmp_path, image_size=64, include_onnx=False, variants=("eca_cbam", "cbam")
    )
    assert [p.name for p in paths] == ["model_size.csv", "model_size.tex"]
    back = pd.read_csv(paths[0], index_col=0)
    assert list(back.columns) == ["eca_cbam", "cbam"]
    assert back.loc["total", "eca_cbam"] == table.loc["total", "eca_cbam"]
    # ECA-CBAM is the smaller of the two attention variants
    assert back.loc["total", "eca_cbam"] < back.loc["total", "cbam"]
    assert "toprule" in paths[1].read_text()
