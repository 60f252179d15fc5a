"""Failure gallery data: the missed faces and false positives of a prediction folder, labelled as
the official evaluation labels them, with a crop of each for drawing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ffcore.evaluation.inference import ground_truth_dir


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
