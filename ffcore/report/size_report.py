"""How big the detectors are: parameters per module, bytes on disk (fp32 and fp16), MACs.

``size_table()`` returns one column per variant (ECA-CBAM, CBAM, no attention, and the
RetinaFace-MobileNet0.25 reference) and these rows:

- parameters per module group and ``total`` (``ffcore.report.complexity.parameter_table``);
- ``tensor MB fp32`` / ``tensor MB fp16``: raw bytes of every tensor of the state dict
  (parameters plus BatchNorm statistics), i.e. numel x 4 or x 2 (integer counters kept);
- ``state dict MB fp32`` / ``fp16``: the size of the file ``torch.save(state_dict)`` writes;
- ``ONNX MB fp32``: the file ``ffcore.export.export_onnx`` writes (640x640, opset 19);
  ``ONNX MB fp16 weights``: the same graph with its float initializers stored as fp16 and a
  Cast back to fp32 (``onnx_with_fp16_weights``), runnable as it is by onnxruntime;
- ``GMACs @ 640``: multiply-accumulates of one 640x640 forward pass (fvcore, with the
  deformable-conv rule of ``ffcore.report.complexity``).

MB here means 10^6 bytes.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ffcore.models import build_model
from ffcore.report.complexity import count_macs, parameter_table

VARIANTS: tuple[str, ...] = ("eca_cbam", "cbam", "none", "retinaface_mnet025")
TABLE_NAME = "model_size"
MB = 1e6


def _cast_state_dict(model: nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {
        k: v.detach().to(dtype) if v.is_floating_point() else v.detach()
        for k, v in model.state_dict().items()
    }


def tensor_bytes(model: nn.Module, dtype: torch.dtype = torch.float32) -> int:
    """Raw bytes of the state dict's tensors with floats stored as ``dtype``."""
    return sum(v.numel() * v.element_size() for v in _cast_state_dict(model, dtype).values())


def state_dict_bytes(model: nn.Module, dtype: torch.dtype = torch.float32) -> int:
    """Bytes of ``torch.save(state_dict)`` with floats stored as ``dtype`` (zip container
    overhead included: per-tensor records, 64-byte alignment, the pickled key list)."""
    buffer = io.BytesIO()
    torch.save(_cast_state_dict(model, dtype), buffer)  # atomic-ok: into memory
    return buffer.getbuffer().nbytes


def onnx_with_fp16_weights(model_proto):
    """A copy of an ONNX model whose float32 initializers are stored as float16, each followed
    by a ``Cast`` to float32 (so the graph computes as before, from rounded weights)."""
    import onnx
    from onnx import helper, numpy_helper

    proto = onnx.ModelProto()
    proto.CopyFrom(model_proto)
    graph = proto.graph
    kept, casts = [], []
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            kept.append(init)
            continue
        half = numpy_helper.from_array(
            numpy_helper.to_array(init).astype(np.float16), init.name + "__fp16"
        )
        kept.append(half)
        casts.append(
            helper.make_node(
                "Cast",
                [half.name],
                [init.name],
                to=onnx.TensorProto.FLOAT,
                name=init.name + "__cast",
            )
        )
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return proto


def onnx_bytes(model: nn.Module, image_size: int = 640) -> tuple[int, int]:
    """(fp32 ONNX file bytes, fp16-weights ONNX bytes) of ``model`` exported at ``image_size``."""
    import onnx

    from ffcore.export import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        result = export_onnx(model, path, image_size=image_size)
        half = onnx_with_fp16_weights(onnx.load(str(path)))
        return result.file_bytes, len(half.SerializeToString())


def size_column(variant: str, image_size: int = 640, include_onnx: bool = True) -> pd.Series:
    """The rows of ``size_table`` for one variant (random weights: sizes do not depend on them)."""
    torch.manual_seed(0)
    model = build_model(variant).eval()
    column: dict[str, int | float] = dict(parameter_table(model))
    column["tensor MB fp32"] = tensor_bytes(model, torch.float32) / MB
    column["tensor MB fp16"] = tensor_bytes(model, torch.float16) / MB
    column["state dict MB fp32"] = state_dict_bytes(model, torch.float32) / MB
    column["state dict MB fp16"] = state_dict_bytes(model, torch.float16) / MB
    if include_onnx:
        fp32, fp16 = onnx_bytes(model, image_size)
        column["ONNX MB fp32"] = fp32 / MB
        column["ONNX MB fp16 weights"] = fp16 / MB
    column[f"GMACs @ {image_size}"] = count_macs(model, image_size) / 1e9
    return pd.Series(column, dtype=object, name=variant)


def size_table(
    variants: tuple[str, ...] = VARIANTS, image_size: int = 640, include_onnx: bool = True
) -> pd.DataFrame:
    """Rows: parameters per module group, total, sizes (MB) and GMACs; one column per variant.

    ``include_onnx`` exports every variant to ONNX (about 10-30 s each on a laptop CPU)."""
    return pd.concat([size_column(v, image_size, include_onnx) for v in variants], axis=1)


def write_size_table(
    out_dir: str | Path | None = None,
    image_size: int = 640,
    include_onnx: bool = True,
    variants: tuple[str, ...] = VARIANTS,
    provenance=None,
) -> tuple[pd.DataFrame, list[Path]]:
    """``size_table()`` saved as ``figures/model_size.csv`` and ``.tex`` (ffcore.report.figures);
    ``provenance``: the run's ``ffcore.report.provenance.RunInfo``, recorded for both files."""
    from ffcore.report.figures import save_table

    table = size_table(variants, image_size=image_size, include_onnx=include_onnx)
    return table, save_table(table, TABLE_NAME, out_dir, provenance=provenance)
