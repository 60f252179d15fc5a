"""The ablation of the thesis, built from the files the earlier notebooks wrote (never from
global state): AP per phase, training curves across phases, variant costs, attention maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ffcore.atomic import replacing
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


def probe_timeline(run_dir: str | Path) -> pd.DataFrame:
    """The probe-set loss (clean crops, no mixup) after each epoch of the four phases on the
    same global epoch axis as ``training_timeline``: the one loss comparable across phases."""
    frames, offset = [], 0.0
    for pid in PHASE_ORDER:
        result = phase_result(run_dir, pid)
        if not result.get("epochs_csv"):
            continue
        epochs = pd.read_csv(result["epochs_csv"], dtype={"phase": str})
        epochs["global_epoch"] = offset + epochs["epoch"]
        frames.append(epochs)
        offset += float(result["epochs"])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def switch_ons(probe: pd.DataFrame) -> list[tuple[str, str, float, float, float]]:
    """(phase id, attention it switches on, global epoch, probe total before, probe total
    after) at each phase start that turns an attention part on: the previous phase's last probe
    row and this phase's row 0 (measured with the part on, before the first step)."""
    out = []
    if probe is None or not len(probe) or "phase" not in probe:
        return out
    for prev, pid in zip(PHASE_ORDER, PHASE_ORDER[1:], strict=False):
        before, after = probe[probe["phase"] == prev], probe[probe["phase"] == pid]
        p, q = PHASES[prev], PHASES[pid]
        parts = [name for name, on, was in (("ECA", q.channel_attention, p.channel_attention),
                                            ("SAM", q.spatial_attention, p.spatial_attention))
                 if on and not was]  # fmt: skip
        if not parts or not len(before) or not len(after):
            continue
        first = after.sort_values("global_epoch").iloc[0]
        last = before.sort_values("global_epoch").iloc[-1]
        out.append((pid, " + ".join(parts), float(first["global_epoch"]),
                    float(last["probe_total"]), float(first["probe_total"])))  # fmt: skip
    return out


def plot_timeline(
    timeline: pd.DataFrame,
    smooth: int = 5,
    source: str | None = None,
    probe: pd.DataFrame | None = None,
):
    """Losses by name on a log axis (top; with the probe-set total when ``probe`` is given), the
    total loss of phases 2a-3 on a linear axis of their own (middle: phase 1's first loss of
    ~26 would flatten the jumps where ECA and SAM switch on, which it marks with the probe loss
    before and after) and the learning rate with its restarts drawn as jumps (bottom), phases
    marked; the mixup-weighted phase is shaded and labelled so its lower step loss is not read
    as learning."""
    from ffcore.report.training_curves import break_at_restarts

    fig, (ax_loss, ax_zoom, ax_lr) = figures.new_figure(
        "full", 1.0, nrows=3, gridspec_kw={"height_ratios": [1.2, 1, 0.8]}
    )
    ax_lr.sharex(ax_loss)
    terms = [c for c in LOSS_COLUMNS if c in timeline]
    smoothed = {t: timeline[t].rolling(smooth, min_periods=1).mean() for t in terms}
    for term in terms:
        ax_loss.plot(timeline["global_epoch"], smoothed[term],
                     label=f"{term} (step, running mean)", lw=1)  # fmt: skip
    has_probe = probe is not None and len(probe) > 0
    if has_probe:
        ax_loss.plot(
            probe["global_epoch"], probe["probe_total"], "o", color="black", ms=2.5,
            label="total on the probe set\n(clean crops, comparable\nacross phases)",
        )  # fmt: skip
    ax_loss.set_yscale("log")  # phase 1 starts an order of magnitude above where it ends
    ax_loss.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax_loss.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.5 1 2 5 10 20
    ax_loss.yaxis.set_minor_formatter(NullFormatter())
    ax_loss.set_ylabel("loss (log scale)")
    bounds = phase_boundaries(timeline)
    end = float(np.ceil(timeline["global_epoch"].max()))
    # the zoom: the phases after the first, where attention switches on
    later = [b for b in bounds if b[0] != PHASE_ORDER[0]]
    zoom_from = later[0][1] if later else (bounds[0][1] if bounds else 0.0)
    inside = timeline["global_epoch"] >= zoom_from
    total = "total" if "total" in smoothed else (terms[-1] if terms else None)
    values = []
    if total is not None:
        ax_zoom.plot(timeline["global_epoch"][inside], smoothed[total][inside], lw=1,
                     color=ax_loss.get_lines()[terms.index(total)].get_color())  # fmt: skip
        values.append(smoothed[total][inside].to_numpy(dtype=float))
    if has_probe:
        near = probe[probe["global_epoch"] >= zoom_from]
        ax_zoom.plot(near["global_epoch"], near["probe_total"], "o", color="black", ms=2.5)
        values.append(near["probe_total"].to_numpy(dtype=float))
    jumps = [j for j in switch_ons(probe) if j[2] >= zoom_from] if has_probe else []
    for _pid, parts, x, before, after in jumps:
        ax_zoom.annotate("", xy=(x, after), xytext=(x, before),
                         arrowprops={"arrowstyle": "->", "color": "black", "lw": 0.8})  # fmt: skip
        ax_zoom.annotate(f"{parts} on: probe\n{before:.2f} \u2192 {after:.2f}", xy=(x, after),
                         xytext=(4, 0), textcoords="offset points", va="top",
                         fontsize=figures.MIN_FONT_PT)  # fmt: skip
        values.append(np.array([before, after]))
    finite = np.concatenate(values) if values else np.array([])
    finite = finite[np.isfinite(finite)]
    if finite.size:
        low, high = float(finite.min()), float(finite.max())
        pad = 0.08 * max(high - low, 1e-6)
        ax_zoom.set_ylim(low - pad, high + pad)
    ax_zoom.set_xlim(zoom_from - 0.02 * (end - zoom_from), end)  # the first jump off the edge
    ax_zoom.set_ylabel(f"{total or 'loss'} (linear)")
    if later:
        ax_zoom.set_title(f"phases {later[0][0]}\u2013{later[-1][0]} on a linear axis: "
                          f"{total or 'total'} step loss (running mean) and probe total",
                          loc="left")  # fmt: skip
    ax_lr.plot(*break_at_restarts(timeline["global_epoch"], timeline["lr"]), color="black", lw=1)
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("epoch (all phases)")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    span = max(end - (bounds[0][1] if bounds else 0.0), 1e-9)
    for k, (pid, start) in enumerate(bounds):
        stop = bounds[k + 1][1] if k + 1 < len(bounds) else end
        for ax in (ax_loss, ax_lr) + ((ax_zoom,) if start >= zoom_from else ()):
            ax.axvline(start, color=figures.PHASE_COLORS[pid], ls="--", lw=0.8)
        # "phase 2a" where the phase is wide enough for it, else only "2a" (labels never meet)
        text = f"phase {pid}" if (stop - start) / span >= 0.14 else pid
        ax_loss.text(
            start, 1.02, text, transform=ax_loss.get_xaxis_transform(),
            fontsize=figures.MIN_FONT_PT, color=figures.PHASE_COLORS[pid],
        )  # fmt: skip
        if PHASES[pid].mixup_alpha is not None:  # said in the legend: the span may be narrow
            ax_loss.axvspan(start, stop, color="0.9", zorder=0,
                            label=f"phase {pid}: mixup-weighted\nstep loss, lower by\nconstruction")  # fmt: skip
            if start >= zoom_from:
                ax_zoom.axvspan(start, stop, color="0.9", zorder=0)
    figures.legend_outside(ax_loss)
    figures.add_source(fig, source)
    return fig


def evaluate_phases(
    run_dir: str | Path,
    data_root: str | Path,
    out_dir: str | Path,
    known: dict | None = None,
    profile: str | None = None,
    **detect_kwargs,
) -> pd.DataFrame:
    """AP easy/medium/hard of every phase's final checkpoint (phase order), written to
    ``<out_dir>/ap_by_phase.csv``. ``known``: phase id -> WiderResult already computed. A phase
    whose notebook has not run is left out (with a note); the ablation then says it is missing.
    Each phase's model card is written again with its AP, the protocol and its detections on
    the sample photos (``ffcore.chain.model_card``); ``profile``: the run's, for the card."""
    from ffcore.chain.model_card import write_model_card
    from ffcore.evaluation.inference import DetectParams, evaluate_model
    from ffcore.models.checkpoint import load_model

    out = Path(out_dir)
    protocol = DetectParams(image_size=detect_kwargs.get("image_size")).protocol
    rows = {}
    for pid in PHASE_ORDER:
        try:
            checkpoint = phase_result(run_dir, pid)["checkpoint"]
        except FileNotFoundError as exc:
            print(f"phase {pid} skipped: {exc}")
            continue
        model, _ = load_model(checkpoint, detect_kwargs.get("device") or "cpu")
        result = (known or {}).get(pid)
        if result is None:
            result = evaluate_model(
                model, data_root, out / f"predictions_phase{pid}", **detect_kwargs
            )
        write_model_card(checkpoint, profile=profile, metrics=result.ap, protocol=protocol,
                         model=model)  # fmt: skip
        rows[pid] = result.ap
    frame = pd.DataFrame.from_dict(rows, orient="index")[["easy", "medium", "hard"]].rename_axis(
        "phase"
    )
    out.mkdir(parents=True, exist_ok=True)
    with replacing(out / "ap_by_phase.csv") as tmp:
        frame.to_csv(tmp)
    return frame


def ap_by_phase_frame(path: str | Path) -> pd.DataFrame:
    """AP easy/medium/hard per phase (rows in phase order) from the evaluation notebook's CSV."""
    frame = pd.read_csv(path, dtype={"phase": str}).set_index("phase")
    missing = [p for p in PHASE_ORDER if p not in frame.index]
    if missing:
        raise ValueError(f"{path}: no AP for phase(s) {', '.join(missing)}")
    return frame.loc[list(PHASE_ORDER), ["easy", "medium", "hard"]]


TARGET_LABEL = "thesis target, real WIDER FACE val\n(not comparable with these bars)"


def plot_ap_by_phase(ap: pd.DataFrame, source: str | None = None):
    """Grouped bars (subset groups, one bar per phase, values written on the bars) on an axis
    scaled to the data. The thesis targets were measured on real WIDER FACE val, not on the
    run's data: they are drawn apart, as a black diamond right of each group with a legend
    entry that says so (when they fall within twice the largest bar; else the legend lists
    them as off the scale), never as a line across the bars."""
    fig, ax = figures.new_figure("full", 0.45)
    subsets = list(ap.columns)
    width = 0.7 / len(ap.index)
    x = np.arange(len(subsets))
    values = 100 * ap.to_numpy(dtype=float)
    top = float(np.nanmax(values)) if np.isfinite(values).any() else 1.0
    targets = np.array([100 * AP_TARGETS[s] for s in subsets])
    show_targets = bool(targets.max() <= 2 * top)
    upright = len(ap.index) > 2  # "99.6" is wider than a bar of four: labels run upwards
    for i, pid in enumerate(ap.index):
        bars = ax.bar(x - 0.1 + (i - (len(ap.index) - 1) / 2) * width, values[i], width,
                      label=f"phase {pid} ({PHASES[pid].attention_label})",
                      color=figures.PHASE_COLORS[pid])  # fmt: skip
        # one decimal, as in the table: 99.6 and 99.9 are not "100" (a whole-number label
        # rounded them up), and nothing below 100 reads "100.0"
        ax.bar_label(bars, labels=[figures.percent_text(v) for v in values[i]],
                     fontsize=figures.MIN_FONT_PT, padding=1.5,
                     rotation=90 if upright else 0)  # fmt: skip
    limit = max(top, targets.max() if show_targets else 0.0)
    if show_targets:
        ax.plot(x + 0.38, targets, "D", color="black", ms=5, ls="none", label=TARGET_LABEL)
    else:  # a legend line, not a text under the axes (which squeezed the layout)
        note = " / ".join(f"{t:.1f}" for t in targets)
        ax.plot([], [], ls="none", label=f"{TARGET_LABEL}: {note}, off this scale")
    ax.set_xticks(x - 0.1, subsets)  # under the bars of each group
    ax.set_ylabel("AP (%)")
    ax.set_ylim(0, min(100.0, limit * 1.15) if limit > 0 else 1.0)
    if min(100.0, limit * 1.15) >= 100.0:
        ax.set_ylim(0, 122 if upright else 108)  # room for the labels of bars near 100
        ax.set_yticks(np.arange(0, 101, 20))  # no AP tick above 100
    figures.legend_outside(ax)
    figures.add_source(fig, source)
    return fig


def block_label(name: str) -> str:
    """A human title for an attention block: ``neck_attention.0`` -> ``BiFPN level P3``,
    ``backbone_attention.1`` -> ``backbone stage 2 (stride 16)``."""
    group, _, idx = name.rpartition(".")
    if not idx.isdigit():
        return name
    k = int(idx)
    if group == "neck_attention":
        return f"BiFPN level P{k + 3}"
    if group == "backbone_attention":
        return f"backbone stage {k + 1} (stride {2 ** (k + 3)})"
    return name


def attention_frame(maps_by_phase: dict[str, list[BlockAttention]]) -> pd.DataFrame:
    """Summary statistics of the attention each phase applies (mean/std of weights per block)."""
    rows = []
    for pid, maps in maps_by_phase.items():
        for m in maps:
            rows.append({
                "phase": pid, "block": block_label(m.name),
                "ECA mean": np.nan if m.channel is None else float(m.channel.mean()),
                "ECA std": np.nan if m.channel is None else float(m.channel.std()),
                "SAM mean": np.nan if m.spatial is None else float(m.spatial.mean()),
                "SAM std": np.nan if m.spatial is None else float(m.spatial.std()),
            })  # fmt: skip
    return pd.DataFrame(rows)


MAP_PERCENTILES = (2.0, 98.0)  # a SAM map's colour scale: its own range, less stray pixels


def map_range(spatial: np.ndarray) -> tuple[float, float, int]:
    """(low, high, decimals) of a SAM map's colour scale: its own 2nd and 98th percentiles (a
    trained map spans a few hundredths of the 0-1 scale, which drawn on 0-1 is one flat tint;
    the percentiles keep a few border pixels from taking the whole scale), and the decimals
    that tell the map's min and max apart. A flat map gets a tiny span."""
    low, high = (float(v) for v in np.percentile(spatial, MAP_PERCENTILES))
    if not high > low:
        low, high = float(np.min(spatial)), float(np.max(spatial))
    if not high > low:
        return low, low + 1e-6, 3
    span = float(np.max(spatial) - np.min(spatial))
    return low, high, int(min(6, max(2, np.ceil(0.5 - np.log10(span)))))


def plot_attention(
    image_rgb: np.ndarray,
    maps_by_phase: dict[str, list[BlockAttention]],
    block: str = "neck_attention.0",
    source: str | None = None,
):
    """One column per phase: the SAM spatial map of ``block`` over the photo (in grey) with its
    own colour bar (top; a note where SAM is off) and the ECA channel weights of the same block
    (bottom). Each SAM map's colours span that map's own range (``map_range``: its 2nd-98th
    percentile), so its structure shows; the colour bar under it is in true weights and its
    label says what the colours span and the map's full min-max."""
    phases = list(maps_by_phase)
    fig, axes = figures.new_figure(
        "full", 0.72, nrows=2, ncols=len(phases), squeeze=False,
        gridspec_kw={"height_ratios": [1.7, 1]},
    )  # fmt: skip
    h, w = image_rgb.shape[:2]
    grey = image_rgb[..., :3].astype(float) @ np.array([0.299, 0.587, 0.114])
    where = block_label(block)
    for col, pid in enumerate(phases):
        m = next((m for m in maps_by_phase[pid] if m.name == block), None)
        if m is None:
            raise ValueError(f"no attention block named {block!r}")
        top, bottom = axes[0, col], axes[1, col]
        top.axis("off")
        if m.spatial is not None:
            low, high, decimals = map_range(m.spatial)
            top.imshow(grey, cmap="gray", vmin=0, vmax=255)
            image = top.imshow(m.spatial, cmap="magma", alpha=0.65, extent=(0, w, h, 0),
                               vmin=low, vmax=high)  # fmt: skip
            p_low, p_high = MAP_PERCENTILES  # the colours: this map's own range
            top.set_title(f"phase {pid}: SAM map\n(colours: its middle {p_high - p_low:g} %)")
            lo, hi = float(m.spatial.min()), float(m.spatial.max())
            extend = {(False, False): "neither", (True, False): "min", (False, True): "max",
                      (True, True): "both"}[(lo < low, hi > high)]  # fmt: skip
            bar = fig.colorbar(image, ax=top, location="bottom", shrink=0.9, pad=0.03,
                               ticks=[low, high], format=f"%.{decimals}f", extend=extend)  # fmt: skip
            bar.set_label(f"SAM weight\n(all: {lo:.{decimals}f}\u2013{hi:.{decimals}f})")
        else:
            top.imshow(image_rgb, alpha=0.25)
            top.text(0.5, 0.5, f"SAM off in phase {pid}:\nonly ECA re-weights channels\n(below)",
                     transform=top.transAxes, ha="center", va="center", fontsize=figures.MIN_FONT_PT)  # fmt: skip
            top.set_title(f"phase {pid}: SAM off")
        if m.channel is not None:
            bottom.bar(np.arange(len(m.channel)), m.channel, width=1.0,
                       color=figures.PHASE_COLORS[pid])  # fmt: skip
            bottom.set_ylim(0, 1)
            # fixed ticks: the automatic ones changed with the axis height after the layout
            # was made ("1.0" -> "1.00"), which pushed the y label off the page
            bottom.set_yticks([0, 0.5, 1])
            bottom.set_title(f"phase {pid}: ECA weights")
        else:
            bottom.text(0.5, 0.5, "ECA off", transform=bottom.transAxes, ha="center")
            bottom.set_title(f"phase {pid}: ECA off")
        bottom.set_xlabel("channel")  # the block is named in the title
        bottom.set_ylabel("ECA weight" if col == 0 else "")
    figures.add_source(fig, source, title=f"Attention at {where}")
    return fig
