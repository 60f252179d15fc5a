"""Latency per module group and per MAC: ECA-CBAM, CBAM, no attention, RetinaFace-MobileNet0.25.

    python -m benchmarks.breakdown              # 640x640, one thread, about 1 minute
    python -m benchmarks.breakdown --reps 5 --out-dir /tmp/figs

Each model runs eager (as built) and as ``ffcore.models.fuse.fuse_for_inference``'s copy
(BatchNorm folded, channels-last, 1x1 convs as matmuls), all alternately on one input, with
random weights (seed 0; latency does not depend on the values). Writes
``latency_breakdown.{csv,tex}`` (ms median and IQR, GMACs, ms per GMAC per group) and
``latency_breakdown.{pdf,png}`` (stacked ms per group) into figures/. No ONNX Runtime column:
``ffcore.export`` has no per-group ORT timing (``breakdown_table(onnx_ms=...)`` takes one).
"""

from __future__ import annotations

import argparse
import time

import torch

from ffcore.models import build_model
from ffcore.models.fuse import fuse_for_inference
from ffcore.report.breakdown import GROUPS, breakdown_table, group_macs, group_times
from ffcore.report.figures import add_source, new_figure, save_figure, save_table

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
    "context": "SSH (deformable)",
    "shuffle": "shuffle",
    "heads": "heads",
    "postprocess": "post-processing",
    "other": "other",
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
    args = parser.parse_args(argv)
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
    table = breakdown_table(group_times(models, x, reps=args.reps), macs)
    print(f"(timed in {time.perf_counter() - t0:.0f} s)")
    table["group"] = table["group"].map(GROUP_LABELS)
    print(table.to_string(float_format=lambda v: f"{v:8.2f}"))
    source = (
        f"random weights (seed 0), {cpu_name()}, {args.threads} thread(s), "
        f"{args.size}x{args.size} batch 1, PyTorch {torch.__version__} eager, "
        f"median of {args.reps} alternating rounds"
    )
    save_table(
        table.set_index(["model", "group"]),
        "latency_breakdown",
        args.out_dir,
        decimals=2,
        source=source,
    )
    wide = table.pivot(index="model", columns="group", values="median_ms")
    order = [GROUP_LABELS[g] for g in (*GROUPS, "other")]
    wide = wide.reindex(index=list(models), columns=order)
    fig, ax = new_figure("full", aspect=0.45)
    wide.plot.barh(stacked=True, ax=ax, width=0.75)
    ax.invert_yaxis()
    ax.set_xlabel("ms per image (median)")
    ax.set_ylabel("")
    ax.legend(fontsize=6, ncols=5, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    add_source(fig, source)
    save_figure(fig, "latency_breakdown", args.out_dir)
    totals = table[table["group"] == "total"].set_index("model")["median_ms"]
    ref = totals["RetinaFace-0.25 (eager)"]
    for name, ms in totals.items():
        print(f"  {name:<26} {ms:8.1f} ms  {ms / ref:5.2f}x RetinaFace-0.25 eager")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
