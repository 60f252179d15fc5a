"""Face detection with a FeatherFace model: one image, a batch, or the WIDER FACE val set to txt.

``detect`` follows RetinaFace's test procedure (``DetectParams``' defaults): priors for the
input's own size, softmax on the class logits, confidence threshold (0.02), the ``top_k`` (5000)
best before NMS, ``torchvision.ops.nms`` at IoU 0.4, the ``keep_top_k`` (750) best after it.
``detect_batch`` runs several images in one forward pass on a common canvas.

Coordinates: the network input is the image placed at the top-left of a canvas whose height and
width are multiples of 32 (the largest stride), the rest filled with the mean colour (0 after
mean subtraction). With ``image_size=None`` the image keeps its original scale, so a pixel of the
canvas is a pixel of the image and boxes need no mapping. With ``image_size=S`` the image is
first resized so that its longer side is S (aspect ratio kept) and boxes and landmarks are mapped
back by dividing x by ``new_w / w`` and y by ``new_h / h``. Boxes are not clipped to the image
(RetinaFace's test code does not either).
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from torchvision.ops import nms

from ffcore.data.preprocess import image_to_tensor
from ffcore.data.progress import progress_bar
from ffcore.detection.box_coder import decode_boxes, decode_landmarks
from ffcore.detection.priors import prior_boxes
from ffcore.models.backbone import MAX_STRIDE
from ffcore.models.fuse import for_inference
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
class DetectParams:
    """What turns network outputs into detections, shared by ``detect``, ``detect_batch`` and
    ``predict_dataset``. Defaults: RetinaFace's test procedure at original scale.

    ``conf_threshold``: keep priors scoring above it; ``top_k``: the best kept before NMS;
    ``nms_iou``: NMS IoU; ``keep_top_k``: the best kept after NMS; ``image_size``: None keeps the
    original scale, S resizes the longer side to S first (see the module docstring).
    """

    conf_threshold: float = 0.02
    nms_iou: float = 0.4
    top_k: int = 5000
    keep_top_k: int = 750
    image_size: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.conf_threshold < 1.0:
            raise ValueError(f"conf_threshold must be in [0, 1), got {self.conf_threshold}")
        if not 0.0 < self.nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in (0, 1], got {self.nms_iou}")
        if self.top_k < 1 or self.keep_top_k < 1:
            raise ValueError(
                f"top_k and keep_top_k must be >= 1, got {self.top_k}, {self.keep_top_k}"
            )
        if self.image_size is not None and self.image_size <= 0:
            raise ValueError(f"image_size must be positive or None, got {self.image_size}")

    @property
    def protocol(self) -> str:
        """The evaluation protocol in words: ``original scale`` or ``long side resized to S``."""
        if self.image_size is None:
            return "original scale"
        return f"long side resized to {self.image_size}"

    def with_overrides(self, **overrides: float | int | None) -> DetectParams:
        """A copy with some fields replaced; an unknown name is a TypeError naming it."""
        return dataclasses.replace(self, **overrides) if overrides else self


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
        nh, nw = _resized_hw(h, w, image_size)
        interp = cv2.INTER_AREA if image_size < max(h, w) else cv2.INTER_LINEAR
        image_bgr = cv2.resize(image_bgr, (nw, nh), interpolation=interp)
    nh, nw = image_bgr.shape[:2]
    ph, pw = input_hw(nh, nw, None)
    tensor = torch.zeros(1, 3, ph, pw)
    tensor[0, :, :nh, :nw] = image_to_tensor(image_bgr)
    return _Prepared(tensor, (nw / w, nh / h))


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _stack_on_canvas(preps: Sequence[_Prepared], canvas: tuple[int, int] | None) -> torch.Tensor:
    """[B, 3, H, W]: each padded input at the top-left of the batch's canvas (0 = mean colour)."""
    ph = max(p.tensor.shape[-2] for p in preps)
    pw = max(p.tensor.shape[-1] for p in preps)
    if canvas is not None:
        if canvas[0] < ph or canvas[1] < pw or canvas[0] % STRIDE or canvas[1] % STRIDE:
            raise ValueError(
                f"canvas {canvas[0]}x{canvas[1]} must be multiples of {STRIDE} holding every "
                f"padded image (largest {ph}x{pw}); resize with image_size first"
            )
        ph, pw = canvas
    batch = torch.zeros(len(preps), 3, ph, pw)
    for k, p in enumerate(preps):
        h, w = p.tensor.shape[-2:]
        batch[k, :, :h, :w] = p.tensor[0]
    return batch


def detect_batch(
    model: nn.Module,
    images_bgr: Sequence[np.ndarray],
    params: DetectParams | None = None,
    *,
    device: str | torch.device | None = None,
    canvas: tuple[int, int] | None = None,
    fuse: bool = True,
    **overrides: float | int | None,
) -> list[Detections]:
    """Detect faces in several HxWx3 uint8 BGR images with one forward pass.

    Each image is prepared as ``detect`` prepares it, then placed at the top-left of a common
    canvas (the largest padded height and width of the batch, or ``canvas`` (H, W) for a model
    with a fixed input size); priors are those of the canvas. Images whose padded size equals the
    canvas get exactly ``detect``'s result; a smaller one differs slightly near its bottom and
    right edges, where it now borders the canvas' mean-colour fill instead of the convolutions'
    zero padding (BatchNorm shifts make the two differ after the first layer).
    ``params`` (default ``DetectParams()``) with ``overrides`` replacing some of its fields.
    ``fuse``: a FeatherFace runs as its inference copy (``ffcore.models.fuse.for_inference``:
    BatchNorm folded, channels-last; the same outputs up to float rounding); False runs the
    model as it is.
    """
    params = (params or DetectParams()).with_overrides(**overrides)
    if len(images_bgr) == 0:
        return []
    preps = [_prepare(image, params.image_size) for image in images_bgr]
    dev = torch.device(device) if device is not None else _device_of(model)
    model = for_inference(model) if fuse else model
    model.to(dev)
    with eval_mode(model), torch.inference_mode():
        return _detect_prepared(model, preps, params, dev, canvas)


def _detect_prepared(
    model: nn.Module,
    preps: Sequence[_Prepared],
    params: DetectParams,
    dev: torch.device,
    canvas: tuple[int, int] | None = None,
) -> list[Detections]:
    """The forward pass and post-processing of ``detect_batch`` for a model already on ``dev``
    and in eval mode (callers with many batches switch it once, not per batch)."""
    batch = _stack_on_canvas(preps, canvas)
    loc, logits, ldm = model(batch.to(dev))
    ph, pw = batch.shape[-2:]
    priors = prior_boxes((ph, pw)).to(dev)
    if loc.shape[1] != priors.shape[0] or loc.shape[0] != len(preps):
        raise ValueError(
            f"the model returns {loc.shape[0]}x{loc.shape[1]} boxes for a {len(preps)}x3x{ph}x{pw}"
            f" input but there are {priors.shape[0]} priors: is it a FeatherFace/RetinaFace model?"
        )
    all_scores = torch.softmax(logits, dim=-1)[..., 1]
    out = []
    for k, prep in enumerate(preps):
        sx, sy = prep.scale_xy
        scale = torch.tensor([pw / sx, ph / sy], device=dev)
        boxes = decode_boxes(loc[k], priors) * scale.repeat(2)
        landmarks = decode_landmarks(ldm[k], priors).reshape(-1, 5, 2) * scale
        scores = all_scores[k]
        keep = torch.nonzero(scores > params.conf_threshold).squeeze(1)
        keep = keep[torch.argsort(scores[keep], descending=True, stable=True)[: params.top_k]]
        kept = nms(boxes[keep].float(), scores[keep].float(), params.nms_iou)[: params.keep_top_k]
        keep = keep[kept]
        out.append(
            Detections(
                boxes=boxes[keep].float().cpu().numpy(),
                scores=scores[keep].float().cpu().numpy(),
                landmarks=landmarks[keep].float().cpu().numpy(),
            )
        )
    return out


def detect(
    model: nn.Module,
    image_bgr: np.ndarray,
    params: DetectParams | None = None,
    *,
    device: str | torch.device | None = None,
    fuse: bool = True,
    **overrides: float | int | None,
) -> Detections:
    """Detect faces in an HxWx3 uint8 BGR image (OpenCV order); see the module docstring.

    ``params`` (default ``DetectParams()``) with ``overrides`` replacing some of its fields, e.g.
    ``detect(model, image, conf_threshold=0.5)``. ``device`` None: the model's device; otherwise
    the model is moved there. The model runs in eval mode (its mode is restored afterwards),
    as its inference copy unless ``fuse`` is False (see ``detect_batch``).
    """
    return detect_batch(model, [image_bgr], params, device=device, fuse=fuse, **overrides)[0]


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def image_paths(specs: Sequence[str | Path]) -> list[Path]:
    """Image files named by ``specs``: files as given, folders' images (sorted, not recursive),
    glob patterns expanded (sorted); duplicates dropped, order kept. A spec that names nothing is
    a FileNotFoundError naming it."""
    import glob

    found: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            hits = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            hits = [path]
        elif glob.has_magic(str(spec)):
            hits = sorted(Path(p) for p in glob.glob(str(spec)) if not Path(p).is_dir())
        else:
            hits = []
        if not hits:
            raise FileNotFoundError(f"{spec}: no image file, folder of images or matching glob")
        found += hits
    return list(dict.fromkeys(found))


MAX_BATCH_PIXELS = 8 * 1024 * 1024  # network-input pixels per forward pass (8 x 1024 x 1024)
MAX_IMAGE_PIXELS = 64 * 1024 * 1024  # one image's network input (an 8192 x 8192 canvas)


def input_hw(h: int, w: int, image_size: int | None) -> tuple[int, int]:
    """The padded network input (H, W) of an h x w image (``_prepare``'s rule, without work)."""
    if image_size is not None:
        h, w = _resized_hw(h, w, image_size)
    return math.ceil(h / STRIDE) * STRIDE, math.ceil(w / STRIDE) * STRIDE


def _resized_hw(h: int, w: int, image_size: int) -> tuple[int, int]:
    """An h x w image resized so that its longer side is ``image_size`` (aspect kept)."""
    scale = image_size / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def detect_files(
    model: nn.Module,
    paths: Sequence[str | Path],
    params: DetectParams | None = None,
    *,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    canvas: tuple[int, int] | None = None,
    progress: bool = True,
    on_error: Callable[[Path, Exception], None] | None = None,
    max_batch_pixels: int = MAX_BATCH_PIXELS,
    max_image_pixels: int = MAX_IMAGE_PIXELS,
    fuse: bool = True,
) -> Iterator[tuple[Path, Detections]]:
    """(path, detections) for each image file, in order, up to ``batch_size`` images per forward
    pass (``detect_batch``); a progress bar over the images on stderr when ``progress`` (``ffcore.data.progress``: live on a terminal, one line elsewhere).

    Memory guard: a batch is also closed before its canvas (largest padded height x largest
    padded width x images) would pass ``max_batch_pixels`` (8 Mpx: 8 images of 1024 x 1024, a
    few GB of activations), so large images run in smaller batches, the largest alone; an image
    whose own input passes ``max_image_pixels`` (64 Mpx) is refused (resize it with
    ``image_size``). A file that cannot be read (or is refused) raises, or, with ``on_error``,
    is handed to ``on_error(path, exception)`` and skipped: one bad file never sinks a batch.
    ``fuse``: as in ``detect_batch`` (the inference copy is made once)."""
    from ffcore.data.widerface import read_image

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    params = params or DetectParams()
    model = for_inference(model) if fuse else model
    paths = [Path(p) for p in paths]
    batch: list[tuple[Path, np.ndarray]] = []
    batch_hw = (0, 0)

    def run() -> list[tuple[Path, Detections]]:
        images = [im for _, im in batch]
        dets = detect_batch(model, images, params, device=device, canvas=canvas, fuse=False)
        return list(zip([p for p, _ in batch], dets, strict=True))

    with progress_bar(len(paths), desc="detect", unit="img", disable=not progress) as bar:
        for path in paths:
            try:
                image = read_image(path)
                ph, pw = canvas or input_hw(*image.shape[:2], params.image_size)
                if ph * pw > max_image_pixels:
                    h, w = image.shape[:2]
                    raise ValueError(
                        f"{path}: a {w}x{h} image is too large to detect at this scale (network"
                        f" input {pw}x{ph} > {max_image_pixels:,} pixels); resize it first"
                        " (image_size)"
                    )
            except (FileNotFoundError, ValueError) as exc:
                if on_error is None:
                    raise
                on_error(path, exc)
                bar.update(1)
                continue
            hw = (max(batch_hw[0], ph), max(batch_hw[1], pw))
            if batch and (
                len(batch) == batch_size or hw[0] * hw[1] * (len(batch) + 1) > max_batch_pixels
            ):
                yield from run()
                bar.update(len(batch))
                batch, hw = [], (ph, pw)
            batch.append((path, image))
            batch_hw = hw
        if batch:
            yield from run()
            bar.update(len(batch))


def predict_dataset(
    model: nn.Module,
    data_root: str | Path,
    out_dir: str | Path,
    params: DetectParams | None = None,
    *,
    device: str | torch.device | None = None,
    progress: bool = True,
    on_image: Callable[[Any, Detections], None] | None = None,
    batch_size: int = 1,
    fuse: bool = True,
    keep: Callable[[str, str], bool] | None = None,
    **overrides: float | int | None,
) -> Path:
    """Detect faces in every val image of ``data_root`` and write ``<out_dir>/<event>/<name>.txt``
    in the official layout. Returns ``out_dir``. ``on_image(val_image, detections)`` is called
    for every image, in val order (e.g. to score landmarks, which the official files do not
    hold).

    ``batch_size=1`` (default) runs one image per forward pass, exactly ``detect``.
    ``batch_size=N`` runs up to N consecutive images *of the same padded size* in one pass: the
    same inputs, no canvas fill, but oneDNN sums in another order for a batch, so outputs differ
    from ``detect``'s in the last bits (about 2e-6 on the logits of the study's models); it
    costs about 40 % less CPU time on small images (the ablation study uses it). ``fuse``: as
    in ``detect_batch``. ``keep(event, name)``: only the val images for which it holds (a part
    of the val set, e.g. one half); None: all."""
    from ffcore.data.widerface import iter_val_images, read_image
    from ffcore.evaluation.wider_ap import write_prediction_file

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    params = (params or DetectParams()).with_overrides(**overrides)
    out = Path(out_dir)
    images = [i for i in iter_val_images(data_root) if keep is None or keep(i.event, i.name)]
    if not images:
        raise FileNotFoundError(f"{data_root}: no validation images" + (" kept" if keep else ""))
    dev = torch.device(device) if device is not None else _device_of(model)
    model = for_inference(model) if fuse else model
    model.to(dev)
    with (
        eval_mode(model),
        torch.inference_mode(),
        progress_bar(len(images), desc="predict", unit="img", disable=not progress) as bar,
    ):
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            preps = [_prepare(read_image(item.path), params.image_size) for item in chunk]
            found: dict[int, Detections] = {}
            for idx in _same_size_groups(preps):
                dets = _detect_prepared(model, [preps[i] for i in idx], params, dev)
                found.update(zip(idx, dets, strict=True))
            for i, item in enumerate(chunk):
                write_prediction_file(
                    out / item.event / f"{item.name}.txt", item.name, found[i].to_wider()
                )
                if on_image is not None:
                    on_image(item, found[i])
            bar.update(len(chunk))
    return out


def _same_size_groups(preps: Sequence[_Prepared]) -> list[list[int]]:
    """Indices of ``preps`` grouped by padded input size (first appearance order)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, p in enumerate(preps):
        groups.setdefault(tuple(p.tensor.shape), []).append(i)
    return list(groups.values())


def ground_truth_dir(data_root: str | Path) -> Path:
    """``<data_root>/ground_truth``, where the official ``.mat`` files live."""
    return Path(data_root) / "ground_truth"


def evaluate_model(model: nn.Module, data_root: str | Path, out_dir: str | Path, *args, **kwargs):
    """``predict_dataset`` (same arguments) then ``ffcore.evaluation.evaluate_folder``; returns a
    WiderResult.
    Where ``<data_root>/val/label.txt`` holds landmarks (the synthetic set; a held-out part of
    WIDER train laid out as val), the result also carries their NME (``result.landmarks``).

    The ground truth is read and every val image decoded before the first prediction; the
    predictions are written to a temporary sibling folder and moved into ``out_dir`` only once
    scored, so a failure leaves ``out_dir`` as it was."""
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
        predict_dataset(model, data_root, tmp, *args, on_image=score if truth else None, **kwargs)
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
