"""The ablation of the thesis, built from the files the earlier notebooks wrote (never from
global state): AP per phase, training curves across phases, variant costs, attention maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ffcore.detection.loss import LOSS_TERMS
from ffcore.report import figures
from ffcore.report.attention_maps import BlockAttention
from ffcore.schedule import PHASE_ORDER, PHASES
from ffcore.thesis import AP_TARGETS
from ffcore.training.handover import phase_result

LOSS_COLUMNS = LOSS_TERMS


def training_timeline(run_dir: str | Path) -> pd.DataFrame:
    """Every logged iteration of the four phases on one axis: ``global_epoch`` is the schedule
    position of the step plus the epochs of the phases before it."""
    frames, offset = [], 0.0
    for pid in PHASE_ORDER:
        result = phase_result(run_dir, pid)
        history = pd.read_csv(result["history_csv"], dtype={"phase": str})
        history["global_epoch"] = offset + history["epoch_float"]
        frames.append(history)
        offset += float(result["epochs"])
    return pd.concat(frames, ignore_index=True)


def phase_boundaries(timeline: pd.DataFrame) -> list[tuple[str, float]]:
    """(phase id, global epoch where it starts) for each phase."""
    starts = timeline.groupby("phase", sort=False)["global_epoch"].min()
    return [(pid, float(np.floor(starts[pid]))) for pid in PHASE_ORDER if pid in starts]


def plot_timeline(timeline: pd.DataFrame, smooth: int = 5):
    """Losses by name (top) and learning rate with its restarts (bottom), phases marked."""
    fig, (ax_loss, ax_lr) = figures.new_figure("full", 0.55, nrows=2, sharex=True)
    terms = [c for c in LOSS_COLUMNS if c in timeline]
    for term in terms:
        ax_loss.plot(
            timeline["global_epoch"],
            timeline[term].rolling(smooth, min_periods=1).mean(),
            label=term,
            lw=1,
        )
    ax_loss.set_ylabel("loss (running mean)")
    ax_loss.legend(ncol=len(terms), loc="upper right")
    ax_lr.plot(timeline["global_epoch"], timeline["lr"], color="black", lw=1)
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("epoch (all phases)")
    for pid, start in phase_boundaries(timeline):
        for ax in (ax_loss, ax_lr):
            ax.axvline(start, color=figures.PHASE_COLORS[pid], ls="--", lw=0.8)
        ax_loss.text(
            start,
            1.02,
            f"phase {pid}",
            transform=ax_loss.get_xaxis_transform(),
            fontsize=7,
            color=figures.PHASE_COLORS[pid],
        )
    return fig


def evaluate_phases(
    run_dir: str | Path,
    data_root: str | Path,
    out_dir: str | Path,
    known: dict | None = None,
    **detect_kwargs,
) -> pd.DataFrame:
    """AP easy/medium/hard of every phase's final checkpoint (phase order), written to
    ``<out_dir>/ap_by_phase.csv``. ``known``: phase id -> WiderResult already computed. A phase
    whose notebook has not run is left out (with a note); the ablation then says it is missing."""
    from ffcore.evaluation.inference import evaluate_model
    from ffcore.training.checkpoint import load_model

    out = Path(out_dir)
    rows = {}
    for pid in PHASE_ORDER:
        result = (known or {}).get(pid)
        if result is None:
            try:
                checkpoint = phase_result(run_dir, pid)["checkpoint"]
            except FileNotFoundError as exc:
                print(f"phase {pid} skipped: {exc}")
                continue
            model, _ = load_model(checkpoint, detect_kwargs.get("device") or "cpu")
            result = evaluate_model(
                model, data_root, out / f"predictions_phase{pid}", **detect_kwargs
            )
        rows[pid] = result.ap
    frame = pd.DataFrame.from_dict(rows, orient="index")[["easy", "medium", "hard"]].rename_axis(
        "phase"
    )
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "ap_by_phase.csv")
    return frame


def ap_by_phase_frame(path: str | Path) -> pd.DataFrame:
    """AP easy/medium/hard per phase (rows in phase order) from the evaluation notebook's CSV."""
    frame = pd.read_csv(path, dtype={"phase": str}).set_index("phase")
    missing = [p for p in PHASE_ORDER if p not in frame.index]
    if missing:
        raise ValueError(f"{path}: no AP for phase(s) {', '.join(missing)}")
    return frame.loc[list(PHASE_ORDER), ["easy", "medium", "hard"]]


def plot_ap_by_phase(ap: pd.DataFrame):
    """Grouped bars (subset groups, one bar per phase) with the thesis targets as labelled ticks."""
    fig, ax = figures.new_figure("column", 0.75)
    subsets = list(ap.columns)
    width = 0.8 / len(ap.index)
    x = np.arange(len(subsets))
    for i, pid in enumerate(ap.index):
        ax.bar(x + (i - (len(ap.index) - 1) / 2) * width, 100 * ap.loc[pid].to_numpy(dtype=float), width,
               label=f"phase {pid} ({PHASES[pid].attention_label})", color=figures.PHASE_COLORS[pid])  # fmt: skip
    for j, subset in enumerate(subsets):
        ax.hlines(100 * AP_TARGETS[subset], j - 0.45, j + 0.45, colors="black", linestyles="--", lw=1,
                  label="thesis target" if j == 0 else None)  # fmt: skip
    ax.set_xticks(x, subsets)
    ax.set_ylabel("AP (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=6, loc="lower left")
    return fig


def attention_frame(maps_by_phase: dict[str, list[BlockAttention]]) -> pd.DataFrame:
    """Summary statistics of the attention each phase applies (mean/std of weights per block)."""
    rows = []
    for pid, maps in maps_by_phase.items():
        for m in maps:
            rows.append({
                "phase": pid, "block": m.name,
                "eca_mean": np.nan if m.channel is None else float(m.channel.mean()),
                "eca_std": np.nan if m.channel is None else float(m.channel.std()),
                "sam_mean": np.nan if m.spatial is None else float(m.spatial.mean()),
                "sam_std": np.nan if m.spatial is None else float(m.spatial.std()),
            })  # fmt: skip
    return pd.DataFrame(rows)


def plot_attention(
    image_rgb: np.ndarray,
    maps_by_phase: dict[str, list[BlockAttention]],
    block: str = "neck_attention.0",
):
    """Per phase: the SAM map of ``block`` over the photo (left) and the ECA channel weights (right)."""
    phases = list(maps_by_phase)
    fig, axes = figures.new_figure(
        "full", 0.32 * len(phases), nrows=len(phases), ncols=2, squeeze=False
    )
    h, w = image_rgb.shape[:2]
    for row, pid in zip(axes, phases, strict=True):
        m = next((m for m in maps_by_phase[pid] if m.name == block), None)
        if m is None:
            raise ValueError(f"no attention block named {block!r}")
        row[0].imshow(image_rgb)
        if m.spatial is not None:
            row[0].imshow(m.spatial, cmap="magma", alpha=0.55, extent=(0, w, h, 0), vmin=0, vmax=1)
        row[0].set_title(
            f"phase {pid}: SAM ({block})" if m.spatial is not None else f"phase {pid}: SAM off"
        )
        row[0].axis("off")
        if m.channel is not None:
            row[1].bar(
                np.arange(len(m.channel)), m.channel, width=1.0, color=figures.PHASE_COLORS[pid]
            )
            row[1].set_ylim(0, 1)
        row[1].set_title(
            f"phase {pid}: ECA channel weights"
            if m.channel is not None
            else f"phase {pid}: ECA off"
        )
        row[1].set_xlabel("channel")
    return fig
