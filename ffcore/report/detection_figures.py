"""Figures of the evaluation: precision-recall curves and detections drawn on images."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np
from matplotlib import patches

from ffcore.report import figures

MAX_LABELLED = 12  # boxes per image that get a score label (the rest: box only)
SCORE_LABEL = "score-label"  # the gid of a box's score label (``keep_labels_inside``)
MIN_PANEL_IN = 2.0  # the least long side of an image panel as printed (0.5 in hid the boxes)


DISPLAY_PX = 640  # long side of a photo as drawn in a figure


def interpolated_pr(precision: np.ndarray, recall: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The PR points where detections exist (thresholds passed by no detection dropped), by
    increasing recall, with the precision made monotone (the envelope the VOC AP integrates)."""
    precision, recall = np.asarray(precision, float), np.asarray(recall, float)
    keep = np.isfinite(precision) & np.isfinite(recall)
    p, r = precision[keep], recall[keep]
    order = np.argsort(r, kind="stable")
    p, r = p[order], r[order]
    return np.maximum.accumulate(p[::-1])[::-1], r


def plot_pr_curves(
    pr: Mapping[str, tuple[np.ndarray, np.ndarray]],
    ap: Mapping[str, float],
    source: str | None = None,
):
    """Step-style PR curves (interpolated precision, so the area under each is its AP), each
    starting at its first measured point; the legend inside the axes where the curves leave
    room (beside them it took half of a column-wide figure)."""
    fig, ax = figures.new_figure("column", aspect=0.85)
    for subset, (precision, recall) in pr.items():
        p, r = interpolated_pr(precision, recall)
        if len(r) == 0:
            continue
        (line,) = ax.step(
            r, p, where="post", lw=1.2, label=f"{subset} (AP {100 * ap[subset]:.1f}%)"
        )
        ax.plot(r[:1], p[:1], "o", ms=2.5, color=line.get_color())  # where the data starts
    ax.set(xlabel="recall", ylabel="precision (interpolated)", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(title="subset", title_fontsize=figures.MIN_FONT_PT, loc="best", framealpha=0.9)
    figures.add_source(fig, source)
    return fig


def draw_detections(
    ax,
    image_rgb: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    landmarks: np.ndarray | None = None,
    min_score: float = 0.5,
    max_labels: int = MAX_LABELLED,
    color: str = "#00ff7f",
) -> int:
    """Draw ``image_rgb`` and the detections scoring >= ``min_score`` on ``ax``: boxes clipped
    to the image, the score of the ``max_labels`` best in a readable label, landmarks as dots.
    Returns the number of boxes drawn."""
    h, w = image_rgb.shape[:2]
    # shown at most DISPLAY_PX on its long side (keeps the exported PDF small); the extent keeps
    # the axes in the image's own pixels, so boxes need no mapping
    scale = min(1.0, DISPLAY_PX / max(h, w))
    shown = (
        image_rgb
        if scale == 1.0
        else cv2.resize(
            image_rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA
        )
    )
    ax.imshow(shown, extent=(0, w, h, 0), interpolation="none")  # PDF embeds the pixels as they are
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.axis("off")
    keep = np.flatnonzero(np.asarray(scores) >= min_score)
    keep = keep[np.argsort(-np.asarray(scores)[keep], kind="stable")]
    lw = max(0.6, min(w, h) / 400)
    for rank, i in enumerate(keep):
        x1, y1, x2, y2 = np.clip(boxes[i], [0, 0, 0, 0], [w - 1, h - 1, w - 1, h - 1])
        if x2 <= x1 or y2 <= y1:
            continue
        ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=color, lw=lw))
        if rank < max_labels:
            ax.text(
                x1, max(y1, 0), f"{scores[i]:.2f}", fontsize=figures.MIN_FONT_PT, color="black", va="bottom",
                bbox={"boxstyle": "square,pad=0.1", "fc": color, "ec": "none", "alpha": 0.85},
                gid=SCORE_LABEL, clip_on=False,
            )  # fmt: skip
        if landmarks is not None:
            pts = np.asarray(landmarks[i]).reshape(-1, 2)
            inside = (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
            ax.plot(pts[inside, 0], pts[inside, 1], ".", ms=1.5, color="#ff3030")
    return len(keep)


def keep_labels_inside(fig) -> int:
    """Move every score label that would stick out above its image (a box at the top edge) to
    just inside the box's top edge, so no label runs into the panel title. Lays the figure out
    first; returns how many labels moved."""
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    moved = 0
    for ax in fig.axes:
        top = ax.get_window_extent(renderer).y1
        for text in ax.texts:
            if text.get_gid() == SCORE_LABEL and text.get_window_extent(renderer).y1 > top + 0.5:
                text.set_va("top")  # the image's y axis points down: "top" hangs below y
                moved += 1
    return moved


def plot_detection_panels(
    panels: Sequence[tuple[str, np.ndarray, object]],
    min_score: float = 0.5,
    source: str | None = None,
    aspect: float | None = None,
    ncols: int | None = None,
):
    """One panel per ``(title, image_rgb, detections)``, ``ncols`` to a row (default: two, so
    a panel is half the text width and its boxes are visible in print); each title ends with
    how many faces were found at ``min_score`` ("1 face", "3 faces"). Score labels stay inside
    their image (``keep_labels_inside``)."""
    n = len(panels)
    ncols = min(n, 2) if ncols is None else max(1, min(n, ncols))
    nrows = -(-n // ncols)
    if aspect is None:
        h, w = panels[0][1].shape[:2]
        aspect = min(1.0, nrows * 1.15 * h / (w * ncols) + 0.08 * nrows)  # at most a square
    fig, axes = figures.new_figure("full", aspect=aspect, ncols=ncols, nrows=nrows, squeeze=False)
    flat = axes.ravel()
    for ax in flat[n:]:
        ax.axis("off")
    for ax, (title, image, dets) in zip(flat, panels, strict=False):
        drawn = draw_detections(ax, image, dets.boxes, dets.scores, dets.landmarks, min_score)
        ax.set_title(f"{title}\n{figures.plural(drawn, 'face')} at score \u2265 {min_score:g}",
                     fontsize=figures.MIN_FONT_PT)  # fmt: skip
    figures.add_source(fig, source)
    keep_labels_inside(fig)
    return fig


def plot_failure_gallery(
    rows: Sequence[tuple[str, Sequence]], source: str | None = None, ncols: int | None = None
):
    """The failure gallery: one row per ``(label, failures)`` (``ffcore.evaluation.failures``
    ``Failure``: its ``crop()`` with the box drawn, ``face_height``, ``score``), ``ncols``
    crops to a row (default: as many as the longest row has). The row's label is written once, left of it; each crop's title gives the
    face height and, for a false positive, its score (no label inside a crop, where it covered
    the face or ran into the title above)."""
    if ncols is None:
        ncols = max((len(items) for _, items in rows), default=1) or 1
    rows = [(label, list(items)[:ncols]) for label, items in rows]
    fig, axes = figures.new_figure("full", aspect=0.2 * len(rows) + 0.06, ncols=ncols,
                                   nrows=len(rows), squeeze=False)  # fmt: skip
    for (label, items), row in zip(rows, axes, strict=True):
        for k, ax in enumerate(row):
            if k >= len(items):
                ax.axis("off")
                continue
            item = items[k]
            ax.imshow(cv2.cvtColor(item.crop(), cv2.COLOR_BGR2RGB))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_frame_on(False)
            score = "" if np.isnan(item.score) else f"\nscore {item.score:.2f}"
            ax.set_title(f"h={item.face_height:.0f} px{score}", fontsize=figures.MIN_FONT_PT)
        row[0].set_ylabel(label.replace(" ", "\n"), fontsize=figures.MIN_FONT_PT)
        if not items:
            row[0].text(0, 0.5, f"no {label}", transform=row[0].transAxes, va="center",
                        fontsize=figures.MIN_FONT_PT)  # fmt: skip
    figures.add_source(fig, source)
    return fig
