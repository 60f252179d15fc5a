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
traces naming local paths) is stripped; nodes and tensors are named by module instead
(``ort_group_times`` reads onnxruntime's profile per module group), and the BatchNorms after
DeformConv are folded into it (``fold``). The export goes through ``torch.onnx.export(...,
dynamo=True)``: the legacy TorchScript exporter cannot translate ``torchvision::deform_conv2d``.
"""

from __future__ import annotations

import contextlib
import dataclasses
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

from ffcore.atomic import replacing
from ffcore.data.photos import sample_photos
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


def _module_path(node) -> str:
    """The module that emitted ``node`` (``"neck_attention.0.channel.conv"``), from the
    exporter's ``pkg.torch.onnx.name_scopes`` metadata; "" for the wrapper's own nodes."""
    import ast

    meta = {p.key: p.value for p in node.metadata_props}
    try:
        scopes = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))
    except (ValueError, SyntaxError):
        return ""
    modules = [s for s in scopes[:-1] if s.startswith("model.")]  # last scope: the op itself
    return modules[-1].removeprefix("model.") if modules else ""


def _name_nodes_by_module(proto) -> None:
    """Name every node ``<module path>/<op type>_<k>`` (``backbone.stage1.0.0/Conv_3``) and its
    output tensors ``<module path>/<name>``, so that onnxruntime's profile, whose events carry
    node names, maps time to modules (``ort_group_times``): the nodes its layout transformer
    creates are named after their output tensor. The graph's input and outputs keep their names."""
    keep = {i.name for i in proto.graph.input} | {o.name for o in proto.graph.output}
    renamed: dict[str, str] = {}
    for k, node in enumerate(proto.graph.node):
        path = _module_path(node)
        node.name = f"{path}/{node.op_type}_{k}"
        for j, name in enumerate(node.output):
            if name and name not in keep:
                renamed[name] = node.output[j] = f"{path}/{name}"
    for node in proto.graph.node:
        node.input[:] = [renamed.get(n, n) for n in node.input]
    for vi in proto.graph.value_info:
        vi.name = renamed.get(vi.name, vi.name)


def _strip_node_metadata(proto) -> None:
    """Drop the exporter's per-node provenance (FX node text, Python stack traces with this
    machine's paths): a fifth of the file, and nothing a runtime reads."""
    for node in proto.graph.node:
        del node.metadata_props[:]


def _fold_batchnorms(proto) -> int:
    """Fold every inference BatchNormalization that follows a Conv or DeformConv (whose output
    it alone reads) into that node's weight and bias. The exporter folds Conv -> BN itself but
    not DeformConv -> BN, and onnxruntime cannot either (DeformConv is no Conv to its fusions):
    each SSH branch kept a BatchNormalization node, a float tensor for int8 and a pass over
    the map. Returns the number of nodes folded."""
    from onnx import numpy_helper

    inits = {t.name: t for t in proto.graph.initializer}
    producer = {o: n for n in proto.graph.node for o in n.output}
    readers = Counter(i for n in proto.graph.node for i in n.input)
    outputs = {o.name for o in proto.graph.output}
    bias_slot = {"Conv": 2, "DeformConv": 3}
    folded = []
    for bn in proto.graph.node:
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1:
            continue
        conv = producer.get(bn.input[0])
        if (
            conv is None
            or conv.op_type not in bias_slot
            or readers[bn.input[0]] != 1
            or bn.input[0] in outputs
            or not all(name in inits for name in bn.input[1:5])
            or conv.input[1] not in inits
        ):
            continue
        slot = bias_slot[conv.op_type]
        has_bias = len(conv.input) > slot and conv.input[slot] != ""
        if has_bias and conv.input[slot] not in inits:
            continue
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        gamma, beta, mean, var = (numpy_helper.to_array(inits[n]) for n in bn.input[1:5])
        scale = gamma / np.sqrt(var + eps)
        w = numpy_helper.to_array(inits[conv.input[1]])
        b = numpy_helper.to_array(inits[conv.input[slot]]) if has_bias else np.zeros_like(mean)
        new_w = (w * scale.reshape(-1, *[1] * (w.ndim - 1))).astype(w.dtype)
        new_b = ((b - mean) * scale + beta).astype(w.dtype)
        w_name, b_name = conv.input[1] + "_bnfold", conv.input[1] + "_bnfold_bias"
        proto.graph.initializer.extend(
            [numpy_helper.from_array(new_w, w_name), numpy_helper.from_array(new_b, b_name)]
        )
        inputs = list(conv.input) + [""] * max(0, slot + 1 - len(conv.input))
        inputs[1], inputs[slot] = w_name, b_name
        conv.input[:] = inputs
        conv.output[0] = bn.output[0]
        folded.append(bn)
    for bn in folded:
        proto.graph.node.remove(bn)
    _drop_unused_initializers(proto)
    produced = {o for n in proto.graph.node for o in n.output}
    keep_info = [vi for vi in proto.graph.value_info if vi.name in produced]
    del proto.graph.value_info[:]
    proto.graph.value_info.extend(keep_info)
    return len(folded)


def _drop_unused_initializers(proto) -> None:
    used = {i for n in proto.graph.node for i in n.input} | {o.name for o in proto.graph.output}
    keep = [t for t in proto.graph.initializer if t.name in used]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(keep)


def _lean_graph(path: Path, fold: bool) -> None:
    """The post-export passes on the file at ``path``: nodes named by module, metadata
    stripped, and with ``fold`` the BatchNorms after DeformConv folded (``_fold_batchnorms``)."""
    import onnx

    proto = onnx.load(str(path))
    _name_nodes_by_module(proto)
    _strip_node_metadata(proto)
    if fold:
        _fold_batchnorms(proto)
    onnx.save(proto, str(path))  # atomic-ok: ``path`` is the export's temporary file


def export_onnx(
    model: nn.Module,
    out_path: str | Path,
    image_size: int | tuple[int, int] = 640,
    dynamic: bool = False,
    opset: int = OPSET,
    fold: bool = True,
) -> ExportResult:
    """Export ``model`` (in eval mode, on CPU) to ``out_path``.

    ``fold`` (default): BatchNorms folded into the DeformConv before them (``_fold_batchnorms``;
    the exporter already folds those after a Conv); False keeps the graph as exported.

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
    with replacing(out_path) as tmp:  # the file appears only once exported, leaned and checked
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
                program.save(str(tmp), external_data=False)  # atomic-ok: a temporary
        finally:
            model.to(device)
        _lean_graph(tmp, fold)
        ops = op_counts(tmp)
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
    from ffcore.models.checkpoint import load_model

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
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's InvalidProtobuf, Fail, ... (no common base)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"{path}: not a readable ONNX model (truncated or not ONNX?): "
            f"{type(exc).__name__}: {reason[:300]}"
        ) from None


def optimized_op_counts(path: str | Path) -> Counter[str]:
    """Node types of the graph onnxruntime's CPU provider actually runs (its optimized model,
    ``SessionOptions.optimized_model_filepath``, at the default level: fusions included)."""
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opt = Path(tmp) / "optimized.onnx"
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(opt)
        options.log_severity_level = 3
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return op_counts(opt)


def _node_group(name: str, groups: tuple[str, ...]) -> str:
    """Module group of a profiled node name ``<module path>/<op>_<k>[_suffix]`` (see
    ``_name_nodes_by_module``); nodes onnxruntime adds itself (layout reorders) and the
    wrapper's softmax are "other"."""
    if "/" not in name:
        return "other"
    head = name.split("/", 1)[0].split(".", 1)[0]
    return head if head in groups else "other"


def ort_group_times(
    onnx_path: str | Path,
    image_size: int | tuple[int, int] = 640,
    rounds: int = 10,
    threads: int = 1,
    groups: tuple[str, ...] | None = None,
) -> dict[str, float]:
    """Milliseconds per run that onnxruntime spends in each module group of an ``export_onnx``
    file (``ffcore.models.detector.MODULE_GROUPS``, plus "other" for the nodes onnxruntime
    inserts, e.g. layout reorders, and the final softmax), from its profiler: the kernel time of
    every node, summed per group, over ``rounds`` runs after one warm-up run on a random input
    of ``image_size`` (ignored when the file has a fixed size). A fused node counts for the
    module of the node it was named after. "total" is the sum of the groups."""
    import json

    import onnxruntime as ort

    from ffcore.models.detector import MODULE_GROUPS

    groups = tuple(MODULE_GROUPS if groups is None else groups)
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    path = Path(onnx_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ONNX file not found")
    session = onnx_session(path, threads)  # checks the file; the profiled session follows
    shape = session.get_inputs()[0].shape
    h, w = _size_hw(image_size)
    dims = [
        d if isinstance(d, int) and d > 0 else default
        for d, default in zip(shape, (1, 3, h, w), strict=True)
    ]
    x = np.random.default_rng(0).standard_normal(dims).astype(np.float32)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        session.run(None, {INPUT_NAME: x})  # warm-up, not profiled
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(rounds + 1):
            session.run(None, {INPUT_NAME: x})
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = [e for e in events if e.get("name") == "model_run"]
    first_end = runs[0]["ts"] + runs[0]["dur"] if runs else 0  # the first run warms caches
    out = dict.fromkeys((*groups, "other"), 0.0)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= first_end:
            out[_node_group(e["name"].removesuffix("_kernel_time"), groups)] += e["dur"] / 1e3
    out = {k: v / rounds for k, v in out.items()}
    out["total"] = sum(out.values())
    return out


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
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != [INPUT_NAME] or not set(OUTPUT_NAMES) <= set(outputs):
            raise ValueError(
                f"{self.path}: not a FeatherFace/RetinaFace export: expects input {INPUT_NAME!r}"
                f" and outputs {', '.join(OUTPUT_NAMES)}; the model has inputs"
                f" {', '.join(inputs) or 'none'} and outputs {', '.join(outputs) or 'none'}"
            )
        if len(self.session.get_inputs()[0].shape) != 4:
            raise ValueError(
                f"{self.path}: not a FeatherFace/RetinaFace export: input {INPUT_NAME!r} has"
                f" shape {self.session.get_inputs()[0].shape}, expected [B, 3, H, W]"
            )

    @property
    def fixed_input(self) -> tuple[int | None, int | None, int | None]:
        """(batch, height, width) of the input, None for a dynamic dimension."""
        shape = self.session.get_inputs()[0].shape
        b, _, h, w = (d if isinstance(d, int) and d > 0 else None for d in shape)
        return b, h, w

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


# -- precisions: fp16 and int8 ------------------------------------------------------------------
PRECISIONS = ("fp32", "fp16", "int8")
_KEEP_FLOAT = ("DeformConv",)  # onnxruntime has no quantized (and no CPU fp16) DeformConv
_ONNX_DTYPES = {
    1: "float32",
    10: "float16",
    2: "uint8",
    3: "int8",
    7: "int64",
    6: "int32",
    9: "bool",
}


def calibration_input(image_bgr: np.ndarray, size: int | None = None) -> np.ndarray:
    """float32 [1, 3, H, W], the detector's view of the image (ffcore's pixel convention):
    ``size`` None keeps the original scale on a canvas padded to multiples of 32 (the evaluation
    protocol); ``size`` S resizes the longer side to S on an S x S canvas (a fixed-size export)."""
    import cv2

    from ffcore.data.preprocess import image_to_tensor

    if size is not None and (size <= 0 or size % STRIDE):
        raise ValueError(f"calibration size must be a positive multiple of {STRIDE}, got {size}")
    h, w = image_bgr.shape[:2]
    if size is not None:
        scale = size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        image_bgr = cv2.resize(image_bgr, (nw, nh), interpolation=interp)
        ch = cw = size
    else:
        nh, nw = h, w
        ch, cw = -(-h // STRIDE) * STRIDE, -(-w // STRIDE) * STRIDE
    out = np.zeros((1, 3, ch, cw), np.float32)
    out[0, :, :nh, :nw] = image_to_tensor(image_bgr).numpy()
    return out


def calibration_images(
    data_root: str | Path | None, count: int, seed: int = 0, photos: bool = True
) -> list[np.ndarray]:
    """``count`` val images of ``data_root`` drawn at random (``seed``; all of them if fewer),
    plus the sample photos (``sample_photos``) when ``photos``; BGR uint8."""
    from ffcore.data.widerface import iter_val_images, read_image

    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    images: list[np.ndarray] = []
    if data_root is not None and count > 0:
        items = list(iter_val_images(data_root))
        if not items:
            raise FileNotFoundError(f"{data_root}: no validation images to calibrate on")
        pick = np.random.default_rng(seed).permutation(len(items))[:count]
        images += [read_image(items[int(k)].path) for k in sorted(pick)]
    if photos:
        images += list(sample_photos().values())
    if not images:
        raise ValueError("no calibration images: give data_root with count > 0, or photos=True")
    return images


def _shorten_names(proto) -> None:
    """Rename every internal tensor and node to a short id (inputs, outputs kept): the quantizer's
    long derived names (``<weight>_quantized_scale``...) are a sixth of a small int8 file."""
    keep = {i.name for i in proto.graph.input} | {o.name for o in proto.graph.output}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return names.setdefault(name, f"t{len(names):x}")

    for t in proto.graph.initializer:
        t.name = short(t.name)
    for k, node in enumerate(proto.graph.node):
        node.name = f"n{k:x}"
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    for vi in proto.graph.value_info:
        vi.name = short(vi.name)


def _int8_weights_for_float_nodes(proto, op_types: tuple[str, ...]) -> int:
    """Store the float weight (input 1) of ``op_types`` nodes as int8, per output channel,
    symmetric, behind a DequantizeLinear: the node still computes in float, the file shrinks.
    Returns the number of weights converted."""
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in proto.graph.initializer}
    new_nodes, converted = [], 0
    for node in proto.graph.node:
        if node.op_type in op_types and len(node.input) > 1 and node.input[1] in inits:
            w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
            scale = np.abs(w.reshape(w.shape[0], -1)).max(1) / 127.0
            scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
            q = np.clip(np.rint(w / scale.reshape(-1, *[1] * (w.ndim - 1))), -127, 127)
            base = node.input[1]
            proto.graph.initializer.remove(inits.pop(base))
            proto.graph.initializer.extend(
                [
                    numpy_helper.from_array(q.astype(np.int8), f"{base}_q"),
                    numpy_helper.from_array(scale, f"{base}_s"),
                    numpy_helper.from_array(np.zeros_like(scale, np.int8), f"{base}_z"),
                ]
            )
            new_nodes.append(
                helper.make_node(
                    "DequantizeLinear", [f"{base}_q", f"{base}_s", f"{base}_z"], [base], axis=0
                )
            )
            converted += 1
        new_nodes.append(node)
    del proto.graph.node[:]
    proto.graph.node.extend(new_nodes)
    return converted


class _Reader:
    """onnxruntime CalibrationDataReader over a list of input arrays."""

    def __init__(self, inputs: list[np.ndarray]) -> None:
        self._it = iter(inputs)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {INPUT_NAME: x}

    def rewind(self) -> None:  # pragma: no cover - not used by MinMax calibration
        pass


def quantize_int8(src: str | Path, dst: str | Path, calibration: list[np.ndarray]) -> Path:
    """Static QDQ int8 quantization of the fp32 ONNX file ``src`` into ``dst``: per-channel int8
    weights, uint8 activations with MinMax ranges from ``calibration`` (float32 [1, 3, H, W]
    inputs, e.g. ``calibration_input`` of ``calibration_images``). Every node type but
    ``DeformConv`` is offered to the quantizer; DeformConv computes in float (onnxruntime has no
    quantized kernel) with its weights stored int8 behind a DequantizeLinear."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    src, dst = Path(src), Path(dst)
    if not calibration:
        raise ValueError("quantize_int8 needs at least one calibration input")
    op_types = sorted(set(op_counts(src)) - set(_KEEP_FLOAT))
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.stem + ".qdq.tmp.onnx")
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs advice and per-weight warnings at WARNING
    try:
        quantize_static(
            str(src),
            str(tmp),
            _Reader(list(calibration)),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=op_types,
        )
        proto = onnx.load(str(tmp))
    finally:
        root.setLevel(previous)
        tmp.unlink(missing_ok=True)
    _int8_weights_for_float_nodes(proto, _KEEP_FLOAT)
    del proto.graph.value_info[:]  # intermediate shapes: 10 KB that onnxruntime infers itself
    _shorten_names(proto)
    with replacing(dst) as out:
        onnx.save(proto, str(out))  # atomic-ok: a temporary
    return dst


def convert_fp16(src: str | Path, dst: str | Path) -> Path:
    """fp16 weights and activations (onnxruntime.transformers' float16 conversion), input and
    outputs kept float32 (``keep_io_types``). On CPU, onnxruntime runs the nodes it has no fp16
    kernel for in float32 behind Cast nodes it inserts; ``runtime_precision`` shows which."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    src, dst = Path(src), Path(dst)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    _shorten_names(proto)
    with replacing(dst) as out:
        onnx.save(proto, str(out))  # atomic-ok: a temporary
    return dst


def runtime_precision(path: str | Path) -> dict[str, Counter[str]]:
    """What onnxruntime's CPU provider actually runs: for each node type of the session's
    optimized graph (``QLinearConv`` counted as ``Conv``), how many nodes compute in int8,
    float16 or float32. Cast, QuantizeLinear and DequantizeLinear nodes are counted under
    ``"(conversions)"``."""
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opt = Path(tmp) / "optimized.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(opt)
        options.log_severity_level = 3
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        proto = onnx.load(str(opt))
    dtype: dict[str, str] = {i.name: "float32" for i in proto.graph.input}
    for t in proto.graph.initializer:
        dtype[t.name] = _ONNX_DTYPES.get(t.data_type, str(t.data_type))
    out: dict[str, Counter[str]] = {}
    for node in proto.graph.node:
        op = node.op_type
        attrs = {a.name: a for a in node.attribute}
        if op == "Cast":
            result = _ONNX_DTYPES.get(attrs["to"].i, "other")
        elif op == "QuantizeLinear":
            result = "int8"
        elif op == "DequantizeLinear":
            result = "float32"
        elif op.startswith("QLinear") or op.startswith("QGemm"):
            result = "int8"
        else:
            result = dtype.get(node.input[0], "float32") if node.input else "float32"
        for name in node.output:
            dtype[name] = result if op not in ("Shape",) else "int64"
        if op in ("Cast", "QuantizeLinear", "DequantizeLinear"):
            out.setdefault("(conversions)", Counter())[op] += 1
            continue
        if op in ("Shape", "Unsqueeze", "Squeeze", "Reshape", "Concat") and result == "int64":
            continue  # shape arithmetic
        name = op.removeprefix("QLinear") if op.startswith("QLinear") else op
        out.setdefault(name, Counter())["int8" if result in ("int8", "uint8") else result] += 1
    return out


def format_runtime_precision(report: dict[str, Counter[str]]) -> str:
    """Lines ``int8: Conv x107, ...`` / ``float16: ...`` / ``float32: ...`` / ``conversions``."""
    by_dtype: dict[str, list[str]] = {}
    for op, counts in sorted(report.items()):
        if op == "(conversions)":
            continue
        for dt, n in counts.items():
            by_dtype.setdefault(dt, []).append(f"{op} x{n}")
    by_dtype.pop("int64", None)  # shape arithmetic
    lines = [f"  {dt:<8} {', '.join(ops)}" for dt, ops in sorted(by_dtype.items())]
    conv = report.get("(conversions)")
    if conv:
        lines.append("  conversions " + ", ".join(f"{k} x{v}" for k, v in sorted(conv.items())))
    return "\n".join(lines)


def export_precision(
    model: nn.Module,
    out_path: str | Path,
    precision: str,
    image_size: int | tuple[int, int] = 640,
    dynamic: bool = False,
    calibration: list[np.ndarray] | None = None,
) -> ExportResult:
    """``export_onnx`` at ``precision`` ("fp32", "fp16" or "int8"; see ``convert_fp16`` and
    ``quantize_int8``, which needs ``calibration`` inputs). The returned ``file_bytes`` is the
    final file's; ``deform_convs`` is counted in the fp32 graph before conversion."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "int8" and not calibration:
        raise ValueError("precision 'int8' needs calibration inputs (calibration=[...])")
    out_path = Path(out_path)
    if precision == "fp32":
        return export_onnx(model, out_path, image_size=image_size, dynamic=dynamic)
    fp32 = out_path.with_name(out_path.stem + ".fp32.tmp.onnx")
    try:
        result = export_onnx(model, fp32, image_size=image_size, dynamic=dynamic)
        if precision == "fp16":
            convert_fp16(fp32, out_path)
        else:
            quantize_int8(fp32, out_path, list(calibration or []))
    finally:
        fp32.unlink(missing_ok=True)
    return dataclasses.replace(
        result,
        path=out_path,
        nodes=sum(op_counts(out_path).values()),
        file_bytes=out_path.stat().st_size,
    )
