"""ONNX export of a detector, and onnxruntime inference that plugs into ``ffcore.evaluation.inference``.

The exported graph (opset 19, one self-contained file) has one input and three outputs:

    input      float32 [B, 3, H, W]  BGR minus the mean (ffcore.data.preprocess), H, W % 32 == 0
    loc        float32 [B, P, 4]     box regression (decode with ffcore.detection.box_coder and the priors)
    conf       float32 [B, P, 2]     softmax of the class logits (background, face), as in
                                     RetinaFace's ONNX files
    landmarks  float32 [B, P, 10]    landmark regression

The SSH's modulated deformable convs become ONNX ``DeformConv`` nodes (mask input = DCNv2);
``export_onnx`` counts them and fails if any deformable conv of the model is missing from the
graph, so none is ever dropped silently. The exporter's per-node provenance metadata (stack
traces naming local paths) is stripped. The export goes through ``torch.onnx.export(...,
dynamo=True)``: the legacy TorchScript exporter cannot translate ``torchvision::deform_conv2d``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ffcore.models.backbone import MAX_STRIDE as STRIDE
from ffcore.models.deform import ModulatedDeformConv
from ffcore.models.modes import eval_mode

OPSET = 19  # DeformConv appears in opset 19
INPUT_NAME = "input"
OUTPUT_NAMES = ("loc", "conf", "landmarks")


@dataclass(frozen=True)
class ExportResult:
    path: Path
    opset: int
    dynamic: bool
    example_size: tuple[int, int]  # (H, W) of the example input (the fixed size if not dynamic)
    deform_convs: int  # DeformConv nodes in the graph (== deformable convs of the model)
    nodes: int
    file_bytes: int


class _Deployable(nn.Module):
    """The detector with softmax on the class logits: (loc, conf, landmarks)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        loc, logits, landmarks = self.model(x)
        return loc, torch.softmax(logits, dim=-1), landmarks


def _size_hw(image_size: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if h <= 0 or w <= 0 or h % STRIDE or w % STRIDE:
        raise ValueError(
            f"image size must be positive multiples of {STRIDE} (the largest stride), got {h}x{w}"
        )
    return int(h), int(w)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The dynamo exporter prints progress lines and warnings; keep the caller's output clean."""
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        previous = logging.getLogger("torch.onnx").level
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        try:
            yield
        finally:
            logging.getLogger("torch.onnx").setLevel(previous)


def op_counts(path: str | Path) -> Counter[str]:
    """Node types of an ONNX file (``Counter({"Conv": 107, "DeformConv": 15, ...})``)."""
    import onnx

    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def _strip_node_metadata(path: Path) -> None:
    """Drop the exporter's per-node provenance (FX node text, Python stack traces with this
    machine's paths): a fifth of the file, and nothing a runtime reads."""
    import onnx

    proto = onnx.load(str(path))
    for node in proto.graph.node:
        del node.metadata_props[:]
    onnx.save(proto, str(path))


def export_onnx(
    model: nn.Module,
    out_path: str | Path,
    image_size: int | tuple[int, int] = 640,
    dynamic: bool = False,
    opset: int = OPSET,
) -> ExportResult:
    """Export ``model`` (in eval mode, on CPU) to ``out_path``.

    ``dynamic=False``: the input is fixed at ``image_size`` with batch 1. ``dynamic=True``: batch,
    height and width are free (height and width multiples of 32); ``image_size`` is only the
    example traced. The model's train/eval mode and device are restored afterwards.
    """
    if opset < OPSET:
        raise ValueError(f"opset {opset} has no DeformConv; use opset >= {OPSET}")
    h, w = _size_hw(image_size)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    expected = sum(isinstance(m, ModulatedDeformConv) for m in model.modules())
    device = next(model.parameters()).device
    # A batch of 2 for a dynamic export: torch.export specialises a dimension of size 1.
    example = torch.zeros(2 if dynamic else 1, 3, h, w)
    dynamic_shapes = None
    if dynamic:
        from torch.export import Dim

        dynamic_shapes = {
            "x": {
                0: Dim("batch", min=1),
                2: STRIDE * Dim("height_div32", min=1),
                3: STRIDE * Dim("width_div32", min=1),
            }
        }
    try:
        with eval_mode(model.cpu()), _quiet_exporter():
            program = torch.onnx.export(
                _Deployable(model),
                (example,),
                dynamo=True,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_shapes=dynamic_shapes,
                verbose=False,
            )
            program.save(str(out_path), external_data=False)
    finally:
        model.to(device)
    _strip_node_metadata(out_path)
    ops = op_counts(out_path)
    if ops["DeformConv"] != expected:
        raise RuntimeError(
            f"{out_path}: the model has {expected} deformable convs but the ONNX graph has "
            f"{ops['DeformConv']} DeformConv nodes; refusing a graph that changed the model"
        )
    return ExportResult(
        path=out_path,
        opset=opset,
        dynamic=dynamic,
        example_size=(h, w),
        deform_convs=ops["DeformConv"],
        nodes=sum(ops.values()),
        file_bytes=out_path.stat().st_size,
    )


def export_checkpoint(
    checkpoint: str | Path,
    out_path: str | Path,
    image_size: int | tuple[int, int] = 640,
    dynamic: bool = False,
) -> ExportResult:
    """Export the model of an ffcore checkpoint (with the switches of its phase)."""
    from ffcore.training.checkpoint import load_model

    model, _info = load_model(checkpoint, map_location="cpu")
    return export_onnx(model, out_path, image_size=image_size, dynamic=dynamic)


def onnx_session(path: str | Path, threads: int | None = None):
    """An onnxruntime CPU session; ``threads`` pins intra-op threads (None: ORT's default)."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ONNX file not found")
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxModel(nn.Module):
    """An exported detector run by onnxruntime, with the eager model's interface.

    ``forward(x)`` returns (loc, class logits, landmarks) as CPU tensors, the logits being
    ``log(conf)`` (softmax of which is ``conf`` again), so ``ffcore.evaluation.inference.detect`` and every
    other caller of the eager model work unchanged. ``run(x)`` gives the raw named outputs.
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.session = onnx_session(self.path, threads)

    def run(self, x: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
        array = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x
        outputs = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(array)})
        return dict(zip(OUTPUT_NAMES, outputs, strict=True))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.run(x)
        logits = torch.from_numpy(out["conf"]).clamp_min(torch.finfo(torch.float32).tiny).log()
        return torch.from_numpy(out["loc"]), logits, torch.from_numpy(out["landmarks"])


def max_abs_difference(
    model: nn.Module, onnx_model: OnnxModel, x: torch.Tensor
) -> dict[str, float]:
    """Largest |onnxruntime - eager| per output (conf compared with the eager softmax)."""
    with eval_mode(model), torch.inference_mode():
        loc, logits, landmarks = model(x)
    eager = {"loc": loc, "conf": torch.softmax(logits, -1), "landmarks": landmarks}
    got = onnx_model.run(x)
    return {name: float(np.abs(got[name] - eager[name].numpy()).max()) for name in OUTPUT_NAMES}
