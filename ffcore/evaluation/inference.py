"""Face detection with a FeatherFace model: one image, or the whole WIDER FACE val set to txt.

``detect`` follows RetinaFace's test procedure: priors for the input's own size, softmax on the
class logits, confidence threshold (0.02), the ``top_k`` (5000) best before NMS,
``torchvision.ops.nms`` at IoU 0.4, the ``keep_top_k`` (750) best after it.

Coordinates: the network input is the image placed at the top-left of a canvas whose height and
width are multiples of 32 (the largest stride), the rest filled with the mean colour (0 after
mean subtraction). With ``image_size=None`` the image keeps its original scale, so a pixel of the
canvas is a pixel of the image and boxes need no mapping. With ``image_size=S`` the image is
first resized so that its longer side is S (aspect ratio kept) and boxes and landmarks are mapped
back by dividing x by ``new_w / w`` and y by ``new_h / h``. Boxes are not clipped to the image
(RetinaFace's test code does not either).
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from torchvision.ops import nms
from tqdm import tqdm

from ffcore.data.preprocess import image_to_tensor
from ffcore.detection.box_coder import decode_boxes, decode_landmarks
from ffcore.detection.priors import prior_boxes
from ffcore.models.backbone import MAX_STRIDE
from ffcore.models.modes import eval_mode

STRIDE = MAX_STRIDE  # input sides are padded to a multiple of this


@dataclass(frozen=True)
class Detections:
    """Detections of one image in its pixel coordinates, by descending score.

    ``boxes`` float32 [N, 4] x1y1x2y2, ``scores`` float32 [N], ``landmarks`` float32 [N, 5, 2]
    (left eye, right eye, nose, left and right mouth corners).
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def to_wider(self) -> np.ndarray:
        """float64 [N, 5] ``x y w h score`` rows of the official prediction files (w = x2 - x1)."""
        b = self.boxes.astype(np.float64)
        return np.column_stack([b[:, :2], b[:, 2:] - b[:, :2], self.scores.astype(np.float64)])


@dataclass(frozen=True)
class _Prepared:
    tensor: torch.Tensor  # [1, 3, H_pad, W_pad]
    scale_xy: tuple[float, float]  # resized / original, per axis


def _prepare(image_bgr: np.ndarray, image_size: int | None) -> _Prepared:
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError(
            f"expected an HxWx3 uint8 BGR image, got {image_bgr.dtype} {image_bgr.shape}"
        )
    h, w = image_bgr.shape[:2]
    if image_size is not None:
        if image_size <= 0:
            raise ValueError(f"image_size must be positive, got {image_size}")
        scale = image_size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        image_bgr = cv2.resize(image_bgr, (nw, nh), interpolation=interp)
    nh, nw = image_bgr.shape[:2]
    ph, pw = math.ceil(nh / STRIDE) * STRIDE, math.ceil(nw / STRIDE) * STRIDE
    tensor = torch.zeros(1, 3, ph, pw)
    tensor[0, :, :nh, :nw] = image_to_tensor(image_bgr)
    return _Prepared(tensor, (nw / w, nh / h))


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def detect(
    model: nn.Module,
    image_bgr: np.ndarray,
    *,
    conf_threshold: float = 0.02,
    top_k: int = 5000,
    nms_iou: float = 0.4,
    keep_top_k: int = 750,
    image_size: int | None = None,
    device: str | torch.device | None = None,
) -> Detections:
    """Detect faces in an HxWx3 uint8 BGR image (OpenCV order); see the module docstring.

    ``device`` None: the model's device; otherwise the model is moved there. The model runs in
    eval mode (its train/eval mode is restored afterwards).
    """
    prep = _prepare(image_bgr, image_size)
    dev = torch.device(device) if device is not None else _device_of(model)
    model.to(dev)
    with eval_mode(model), torch.inference_mode():
        loc, logits, ldm = model(prep.tensor.to(dev))
    ph, pw = prep.tensor.shape[-2:]
    priors = prior_boxes((ph, pw)).to(dev)
    if loc.shape[1] != priors.shape[0]:
        raise ValueError(
            f"the model returns {loc.shape[1]} boxes for a {ph}x{pw} input but there are "
            f"{priors.shape[0]} priors: is it a FeatherFace/RetinaFace model?"
        )
    sx, sy = prep.scale_xy
    scale = torch.tensor([pw / sx, ph / sy], device=dev)
    boxes = decode_boxes(loc[0], priors) * scale.repeat(2)
    landmarks = decode_landmarks(ldm[0], priors).reshape(-1, 5, 2) * scale
    scores = torch.softmax(logits[0], dim=-1)[:, 1]

    keep = torch.nonzero(scores > conf_threshold).squeeze(1)
    keep = keep[torch.argsort(scores[keep], descending=True, stable=True)[:top_k]]
    kept = nms(boxes[keep].float(), scores[keep].float(), nms_iou)[:keep_top_k]
    keep = keep[kept]
    return Detections(
        boxes=boxes[keep].float().cpu().numpy(),
        scores=scores[keep].float().cpu().numpy(),
        landmarks=landmarks[keep].float().cpu().numpy(),
    )


def predict_dataset(
    model: nn.Module,
    data_root: str | Path,
    out_dir: str | Path,
    *,
    image_size: int | None = None,
    conf_threshold: float = 0.02,
    top_k: int = 5000,
    nms_iou: float = 0.4,
    keep_top_k: int = 750,
    device: str | torch.device | None = None,
    progress: bool = True,
    on_image: Callable[[Any, Detections], None] | None = None,
) -> Path:
    """Detect faces in every val image of ``data_root`` and write ``<out_dir>/<event>/<name>.txt``
    in the official layout. Returns ``out_dir``. ``on_image(val_image, detections)`` is called
    for every image (e.g. to score landmarks, which the official files do not hold)."""
    from ffcore.data.widerface import iter_val_images, read_image
    from ffcore.evaluation.wider_ap import write_prediction_file

    out = Path(out_dir)
    images = list(iter_val_images(data_root))
    if not images:
        raise FileNotFoundError(f"{data_root}: no validation images")
    for item in tqdm(images, desc="predict", unit="img", disable=not progress):
        dets = detect(
            model,
            read_image(item.path),
            conf_threshold=conf_threshold,
            top_k=top_k,
            nms_iou=nms_iou,
            keep_top_k=keep_top_k,
            image_size=image_size,
            device=device,
        )
        write_prediction_file(out / item.event / f"{item.name}.txt", item.name, dets.to_wider())
        if on_image is not None:
            on_image(item, dets)
    return out


def ground_truth_dir(data_root: str | Path) -> Path:
    """``<data_root>/ground_truth``, where the official ``.mat`` files live."""
    return Path(data_root) / "ground_truth"


def evaluate_model(model: nn.Module, data_root: str | Path, out_dir: str | Path, **kwargs):
    """``predict_dataset`` then ``ffcore.evaluation.evaluate_folder``; returns a WiderResult.
    Where ``<data_root>/val/label.txt`` holds landmarks (the synthetic set; a held-out part of
    WIDER train laid out as val), the result also carries their NME (``result.landmarks``).

    The ground truth is read and every val image decoded before the first prediction; the
    predictions are written to a temporary sibling folder and moved into ``out_dir`` only once
    scored, so a failure leaves ``out_dir`` as it was."""
    import dataclasses

    from ffcore.data.wider_mat import read_ground_truth
    from ffcore.data.widerface import check_val_images
    from ffcore.evaluation.landmarks import LandmarkAccumulator
    from ffcore.evaluation.wider_ap import evaluate_folder

    gt_dir = ground_truth_dir(data_root)
    read_ground_truth(gt_dir)  # missing or bad .mat files: an error before any work
    check_val_images(data_root)
    truth = val_landmarks(data_root)
    acc = LandmarkAccumulator()

    def score(item: Any, dets: Detections) -> None:
        gt = truth.get((item.event, item.name))
        if gt is not None:
            acc.add(dets.boxes, dets.scores, dets.landmarks, *gt)

    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        predict_dataset(model, data_root, tmp, on_image=score if truth else None, **kwargs)
        result = evaluate_folder(tmp, gt_dir)
        _move_into(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dataclasses.replace(result, landmarks=acc.result()) if truth else result


def _move_into(src: Path, dst: Path) -> None:
    """Move the files of ``src`` into ``dst`` (created when missing), replacing same names."""
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        return
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)


def val_landmarks(data_root: str | Path) -> dict[tuple[str, str], tuple[np.ndarray, ...]]:
    """(event, name) -> (boxes xyxy, landmarks [N, 10], valid [N]) from ``val/label.txt`` where
    any face there has landmarks; empty otherwise (official WIDER val has none)."""
    from ffcore.data.widerface import parse_label_file

    label = Path(data_root) / "val" / "label.txt"
    if not label.is_file():
        return {}
    records = parse_label_file(label).records
    if not any(r.landmark_valid.any() for r in records):
        return {}
    return {
        (r.path.parent.name, r.path.stem): (r.boxes, r.landmarks, r.landmark_valid) for r in records
    }


def draw_detections(
    image_bgr: np.ndarray,
    detections: Detections,
    *,
    min_score: float = 0.5,
    color: tuple[int, int, int] = (0, 255, 0),
    thickness: int | None = None,
) -> np.ndarray:
    """A copy of the image with the boxes (and scores, landmarks) scoring >= ``min_score``."""
    out = image_bgr.copy()
    t = thickness or max(1, round(max(out.shape[:2]) / 400))
    point_colors = [(255, 0, 0), (0, 0, 255), (0, 255, 255), (255, 0, 255), (255, 255, 0)]
    for box, score, pts in zip(
        detections.boxes, detections.scores, detections.landmarks, strict=True
    ):
        if score < min_score:
            continue
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, t)
        cv2.putText(
            out, f"{score:.2f}", (x1, max(0, y1 - 2)), cv2.FONT_HERSHEY_SIMPLEX, 0.3 * t, color, t
        )
        for (px, py), pc in zip(pts, point_colors, strict=True):
            cv2.circle(out, (int(round(float(px))), int(round(float(py)))), t + 1, pc, -1)
    return out


def default_prediction_dir(checkpoint: str | Path) -> Path:
    """``<checkpoint without suffix>_widerface_val/``: where ``evaluate`` writes by default."""
    path = Path(checkpoint)
    return path.with_name(f"{path.stem}_widerface_val")


@dataclass(frozen=True)
class Failure:
    """One failure of the official evaluation: a missed kept face or a false positive."""

    image_path: Path
    box: np.ndarray  # x y w h pixels
    score: float  # the detection's score; NaN for a missed face
    face_height: float  # of the missed face; of the detection for a false positive

    def crop(self, margin: float = 0.5, min_side: int = 24) -> np.ndarray:
        """The BGR region around the box (``margin`` x its size on each side)."""
        from ffcore.data.widerface import read_image

        image = read_image(self.image_path)
        x, y, w, h = (float(v) for v in self.box)
        side = max(w, h, min_side) * (1 + 2 * margin)
        cx, cy = x + w / 2, y + h / 2
        x1, y1 = max(0, int(cx - side / 2)), max(0, int(cy - side / 2))
        x2, y2 = min(image.shape[1], int(cx + side / 2)), min(image.shape[0], int(cy + side / 2))
        out = image[y1:y2, x1:x2].copy()
        color = (0, 0, 255) if np.isnan(self.score) else (0, 165, 255)
        cv2.rectangle(out, (int(x - x1), int(y - y1)), (int(x + w - x1), int(y + h - y1)), color, 1)
        return out


def find_failures(
    pred_dir: str | Path, data_root: str | Path, *, subset: str = "hard", min_score: float = 0.5
) -> tuple[list[Failure], list[Failure]]:
    """(missed kept faces, false positives) of ``subset`` for the detections scoring at least
    ``min_score`` in ``pred_dir``, labelled as the official evaluation does; false positives by
    descending score, missed faces by descending height."""
    from ffcore.data.wider_mat import read_ground_truth
    from ffcore.evaluation.wider_ap import label_detections, read_predictions

    gt = read_ground_truth(ground_truth_dir(data_root))
    preds = read_predictions(pred_dir, gt)
    missed: list[Failure] = []
    false_pos: list[Failure] = []
    for e, event in enumerate(gt.events):
        for i, name in enumerate(gt.images[e]):
            path = Path(data_root) / "val" / "images" / event / f"{name}.jpg"
            dets = preds[e][i][preds[e][i][:, 4] >= min_score]
            faces = gt.boxes[e][i]
            out = label_detections(dets, faces, gt.keep[subset][e][i])
            missed += [
                Failure(path, faces[k], float("nan"), float(faces[k, 3]))
                for k in np.flatnonzero(out.missed)
            ]
            false_pos += [Failure(path, d[:4], float(d[4]), float(d[3])) for d in dets[out.fp]]
    missed.sort(key=lambda f: -f.face_height)
    false_pos.sort(key=lambda f: -f.score)
    return missed, false_pos
