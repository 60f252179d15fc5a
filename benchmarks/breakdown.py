"""Latency per module group and per MAC: ECA-CBAM, CBAM, no attention, RetinaFace-MobileNet0.25.

    python -m benchmarks.breakdown              # 640x640, one thread, about 1 minute
    python -m benchmarks.breakdown --reps 5 --out-dir /tmp/figs

Each model runs eager (as built) and as ``ffcore.models.fuse.fuse_for_inference``'s copy
(BatchNorm folded, channels-last, 1x1 convs as matmuls), all alternately on one input, with
random weights (seed 0; latency does not depend on the values). Writes
``latency_breakdown.{csv,tex}`` (ms median and IQR, GMACs, ms per GMAC per group) and
``latency_breakdown.{pdf,png}`` (stacked ms per group) into figures/, and the eager and
onnxruntime ratios to RetinaFace-0.25 into figures/numbers.json. The ``onnx_ms`` column is
onnxruntime's own profile of each model's fixed-size fp32 export per group
(``ffcore.export.ort_group_times``; eager rows only, ``--no-onnx`` skips it).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from ffcore.models import build_model
from ffcore.models.fuse import fuse_for_inference
from ffcore.report.breakdown import (
    GROUPS,
    NETWORK,
    breakdown_table,
    group_macs,
    group_rounds,
    round_ratio,
    summarise_rounds,
)
from ffcore.report.figures import add_source, legend_outside, new_figure, save_figure, save_table

SOURCE = "benchmarks/breakdown.py"
VARIANTS = {
    "eca_cbam": "ECA-CBAM",
    "cbam": "CBAM",
    "none": "no attention",
    "retinaface_mnet025": "RetinaFace-0.25",
}
GROUP_LABELS = {
    "backbone": "backbone",
    "backbone_attention": "backbone attention",
    "neck": "BiFPN / FPN",
    "neck_attention": "BiFPN attention",
    "context": "SSH (deformable in FeatherFace)",
    "shuffle": "shuffle",
    "heads": "heads",
    "postprocess": "post-processing",
    "other": "other",
    "network": "network (no post-processing)",
    "total": "total",
}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "CPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--out-dir", default=None, help="default: figures/")
    parser.add_argument("--no-onnx", action="store_true", help="skip the onnxruntime column")
    args = parser.parse_args(argv)
    from ffcore.report.numbers import Numbers
    from ffcore.report.provenance import RunInfo

    run_info = RunInfo.create(SOURCE, vars(args), "random weights")
    torch.set_num_threads(args.threads)
    hw = (args.size, args.size)
    models, macs = {}, {}
    for variant, label in VARIANTS.items():
        model = build_model(variant, init_seed=0).eval()
        macs[label] = group_macs(model, hw)
        models[f"{label} (eager)"] = model
        models[f"{label} (fused)"] = fuse_for_inference(model)
    x = torch.randn(1, 3, *hw, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    rounds = group_rounds(models, x, reps=args.reps)
    times = summarise_rounds(rounds)
    onnx_ms = None if args.no_onnx else ort_times(models, hw, args.threads, args.reps)
    table = breakdown_table(times, macs, onnx_ms)
    print(f"(timed in {time.perf_counter() - t0:.0f} s)")
    table["group"] = table["group"].map(GROUP_LABELS)
    print(table.to_string(float_format=lambda v: f"{v:8.2f}"))
    source = (
        f"random weights (seed 0), {args.threads} thread(s), {args.size}x{args.size} batch 1,"
        f"\n{cpu_name()}, PyTorch {torch.__version__} eager, median of {args.reps} alternating"
        " rounds"
        + ("" if args.no_onnx else ";\nonnx_ms: onnxruntime's profile of the fp32 export")
        + ";\npost-processing: random weights put every prior near 0.5, far above a trained model"
    )
    # every model and group (the data of the figure) as CSV; the printed table compares
    # ECA-CBAM with RetinaFace-0.25 (88 rows would not print at a readable size)
    save_table(table.set_index(["model", "group"]), "latency_breakdown_all", args.out_dir,
               source=source, provenance=run_info, latex=False)  # fmt: skip
    save_table(compact_table(table), "latency_breakdown", args.out_dir, decimals=2,
               source=source, provenance=run_info)  # fmt: skip
    fig = plot_breakdown(table, [*models], source)
    save_figure(fig, "latency_breakdown", args.out_dir, provenance=run_info)
    # Ratios of the network time (the forward pass; with random weights every prior scores
    # about 0.5, so post-processing is far heavier than with trained weights), per round
    numbers = Numbers(SOURCE, "random weights")
    pairs = {
        "EagerVsReference": ("ECA-CBAM (eager)", "RetinaFace-0.25 (eager)"),
        "FusedVsReference": ("ECA-CBAM (fused)", "RetinaFace-0.25 (eager)"),
        "FusedVsReferenceFused": ("ECA-CBAM (fused)", "RetinaFace-0.25 (fused)"),
    }
    for key, (a, b) in pairs.items():
        ratio, low, high = round_ratio(rounds, a, b, NETWORK)
        print(f"  network {a} / {b}: {ratio:.2f}x (IQR {low:.2f}-{high:.2f})")
        numbers.add(f"BreakdownEcaCbam{key}", ratio, "{:.2f}", "x",
                    f"{a} / {b}, network ms per round (median), one thread")  # fmt: skip
        numbers.add(f"BreakdownEcaCbam{key}Iqr", f"{low:.2f}\u2013{high:.2f}", unit="x",
                    description=f"IQR of the per-round ratio {a} / {b}")  # fmt: skip
    if onnx_ms is not None:
        ratio = (
            onnx_ms[("ECA-CBAM (eager)", "total")] / onnx_ms[("RetinaFace-0.25 (eager)", "total")]
        )
        print(f"  onnxruntime: ECA-CBAM / RetinaFace-0.25 = {ratio:.2f}x")
        numbers.add("BreakdownEcaCbamOnnxVsReference", ratio, "{:.2f}", "x",
                    "ECA-CBAM / RetinaFace-0.25 in onnxruntime, profiled kernel time")  # fmt: skip
    numbers.write(args.out_dir)
    return 0


def compact_table(table: pd.DataFrame) -> pd.DataFrame:
    """The comparison the thesis prints: ECA-CBAM and RetinaFace-0.25 (rows: model, group; SSH:
    deformable in FeatherFace, plain in RetinaFace; network: without post-processing) with
    GMACs, median ms eager and fused, onnxruntime (ORT) ms and fused ms per GMAC."""
    order = [GROUP_LABELS[g] for g in (*GROUPS[:-1], "other", NETWORK, GROUPS[-1], "total")]
    short = {GROUP_LABELS["context"]: "SSH", GROUP_LABELS[NETWORK]: "network"}  # fits the text
    parts = {}
    for name in ("ECA-CBAM", "RetinaFace-0.25"):
        eager = table[table["model"] == f"{name} (eager)"].set_index("group")
        fused = table[table["model"] == f"{name} (fused)"].set_index("group")
        part = pd.DataFrame(
            {
                "GMACs": eager["gmacs"],
                "eager ms": eager["median_ms"],
                "fused ms": fused["median_ms"],
                "ORT ms": eager["onnx_ms"] if "onnx_ms" in eager else float("nan"),
                "fused ms per GMAC": fused["ms_per_gmac"],
            }
        )
        parts[name] = part.reindex([g for g in order if g in part.index]).rename(index=short)
    return pd.concat(parts, names=["model", "group"])


def plot_breakdown(table, models: list[str], source: str):
    """Stacked ms per group for each model (rows in ``models`` order), legend on the right."""
    wide = table.pivot(index="model", columns="group", values="median_ms")
    order = [GROUP_LABELS[g] for g in (*GROUPS, "other")]  # not network and total: sums
    wide = wide.reindex(index=models, columns=[c for c in order if c in wide.columns])
    fig, ax = new_figure("full", aspect=0.55)
    wide.plot.barh(stacked=True, ax=ax, width=0.75, legend=False)
    ax.invert_yaxis()
    ax.grid(axis="y", visible=False)  # horizontal lines beside the bars read as whiskers
    ax.set_xlabel("ms per image (median)")
    ax.set_ylabel("")
    legend_outside(ax)
    add_source(fig, source)
    return fig


def ort_times(
    models: dict, hw: tuple[int, int], threads: int, rounds: int
) -> dict[tuple[str, str], float]:
    """onnxruntime ms per (model, group) for the eager models (their fixed-size fp32 export)."""
    from ffcore.export import export_onnx, ort_group_times

    found = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models.items():
            if not name.endswith("(eager)"):
                continue
            path = Path(tmp) / "model.onnx"
            export_onnx(model, path, image_size=hw)
            for group, ms in ort_group_times(path, hw, rounds=rounds, threads=threads).items():
                found[(name, group)] = ms
            found[(name, NETWORK)] = found[(name, "total")]  # no post-processing in the graph
    return found


if __name__ == "__main__":
    raise SystemExit(main())
