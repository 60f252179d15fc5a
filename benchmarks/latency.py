"""Side-by-side latency of the FeatherFace variants, eager PyTorch vs onnxruntime, CPU (and GPU).

    python benchmarks/latency.py             # about 1-2 minutes on 2 CPU cores
    python benchmarks/latency.py --quick     # fewer repetitions (about 40 s)
    python benchmarks/latency.py --threads 4 --reps 30

Every comparison runs its candidates alternately (A B C A B C ...) on the same input tensor,
so machine noise hits all of them alike (``ffcore.report.timing.compare_latency``); read the ratios,
not the absolute milliseconds. Models carry their initial weights (seed 0) in eval mode under
``torch.inference_mode``: latency does not depend on the weight values.

Sections:
1. one SSH deformable conv (52 -> 26 channels, 3x3, 80x80 map: the largest one at 640x640):
   ffcore's fast CPU path vs torchvision's CPU kernel, forward and forward+backward;
2. the whole ECA-CBAM model at 640x640 with each of the two kernels;
3. at 640x640 (batch 1) and at a VGA photo (480x640): ECA-CBAM vs CBAM vs no attention, eager
   contiguous and channels_last, and the ECA-CBAM model exported to ONNX run by onnxruntime;
4. with CUDA only: fp32 and fp16 autocast, batch 1 and 32 at 640x640, synchronised.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import pandas as pd
import torch

from ffcore.data.preprocess import image_to_tensor
from ffcore.export import OnnxModel, export_onnx
from ffcore.models import build_model
from ffcore.models.deform import (
    fast_modulated_deform_conv2d,
    set_deform_kernel,
    torchvision_modulated_deform_conv2d,
)
from ffcore.report.timing import compare_latency

VARIANTS = ("eca_cbam", "cbam", "none")
LABELS = {"eca_cbam": "ECA-CBAM", "cbam": "CBAM", "none": "no attention"}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def photo(height: int, width: int) -> torch.Tensor:
    """matplotlib's grace_hopper.jpg resized to height x width, as a network input [1, 3, H, W]."""
    from matplotlib import cbook

    bgr = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    bgr = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)
    return image_to_tensor(bgr).unsqueeze(0).contiguous()


def show(title: str, table: pd.DataFrame) -> None:
    print(f"\n{title}")
    print(table.to_string(float_format=lambda v: f"{v:8.2f}"))


def ratio(table: pd.DataFrame, a: str, b: str) -> float:
    return float(table.loc[a, "median_ms"] / table.loc[b, "median_ms"])


def deform_layer_section(reps: int) -> dict[str, float]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 52, 80, 80, generator=gen)
    offset = torch.randn(1, 18, 80, 80, generator=gen)
    mask = torch.rand(1, 9, 80, 80, generator=gen)
    weight = torch.randn(26, 52, 3, 3, generator=gen) * 0.05
    plain = torch.nn.Conv2d(52, 26, 3, padding=1, bias=False)
    with torch.inference_mode():
        fwd = compare_latency(
            {
                "fast (ffcore)": lambda: fast_modulated_deform_conv2d(x, offset, mask, weight),
                "torchvision": lambda: torchvision_modulated_deform_conv2d(x, offset, mask, weight),
                "plain 3x3 conv": lambda: plain(x),
            },
            reps=reps,
        )
    show("1. one deformable conv 52->26, 3x3, 80x80 map, forward", fwd)

    leaves = [t.clone().requires_grad_() for t in (x, offset, mask, weight)]

    def step(conv: Callable[..., torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            conv(*leaves).sum().backward()

        return run

    train = compare_latency(
        {
            "fast (ffcore)": step(fast_modulated_deform_conv2d),
            "torchvision": step(torchvision_modulated_deform_conv2d),
        },
        reps=max(3, reps // 3),
        warmup=1,
    )
    show("   forward + backward (training)", train)
    return {
        "layer_forward_speedup": ratio(fwd, "torchvision", "fast (ffcore)"),
        "layer_train_speedup": ratio(train, "torchvision", "fast (ffcore)"),
    }


def whole_model_section(x: torch.Tensor, reps: int) -> dict[str, float]:
    fast = build_model("eca_cbam").eval()
    slow = build_model("eca_cbam").eval()
    slow.load_state_dict(fast.state_dict())
    set_deform_kernel(slow, "torchvision")
    with torch.inference_mode():
        table = compare_latency(
            {"fast deform (ffcore)": lambda: fast(x), "torchvision deform": lambda: slow(x)},
            reps=reps,
            warmup=1,
        )
    show(f"2. whole ECA-CBAM model, {tuple(x.shape[-2:])}, deformable-conv kernel", table)
    return {"model_speedup": ratio(table, "torchvision deform", "fast deform (ffcore)")}


def variants_section(
    name: str, x: torch.Tensor, reps: int, threads: int, onnx_dir: Path
) -> dict[str, float]:
    torch.manual_seed(0)
    models = {v: build_model(v).eval() for v in VARIANTS}
    cl_models = {v: build_model(v).eval() for v in VARIANTS}
    for v in VARIANTS:
        cl_models[v].load_state_dict(models[v].state_dict())
        cl_models[v].to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    t0 = time.perf_counter()
    h, w = x.shape[-2:]
    onnx_path = onnx_dir / f"eca_cbam_{h}x{w}.onnx"
    export_onnx(models["eca_cbam"], onnx_path, image_size=(h, w))
    ort_model = OnnxModel(onnx_path, threads=threads)
    array = x.numpy()
    print(f"\n(exported ECA-CBAM to ONNX at {h}x{w} in {time.perf_counter() - t0:.1f} s)")

    candidates: dict[str, Callable[[], object]] = {}
    for v in VARIANTS:
        candidates[f"{LABELS[v]} eager"] = lambda m=models[v]: m(x)
    for v in VARIANTS:
        candidates[f"{LABELS[v]} eager channels_last"] = lambda m=cl_models[v]: m(x_cl)
    candidates["ECA-CBAM onnxruntime"] = lambda: ort_model.run(array)
    with torch.inference_mode():
        table = compare_latency(candidates, reps=reps)
    show(f"3. {name}: batch 1, input {h}x{w}", table)
    results = {
        "ECA-CBAM / CBAM (eager)": ratio(table, "ECA-CBAM eager", "CBAM eager"),
        "ECA-CBAM / no attention (eager)": ratio(table, "ECA-CBAM eager", "no attention eager"),
        "ECA-CBAM / CBAM (channels_last)": ratio(
            table, "ECA-CBAM eager channels_last", "CBAM eager channels_last"
        ),
        "ECA-CBAM channels_last / contiguous": ratio(
            table, "ECA-CBAM eager channels_last", "ECA-CBAM eager"
        ),
        "ECA-CBAM ONNX / eager": ratio(table, "ECA-CBAM onnxruntime", "ECA-CBAM eager"),
    }
    print("   ratios (median / median; < 1 means the first is faster):")
    for key, value in results.items():
        print(f"     {key:<38} {value:6.3f}")
    return results


def gpu_section(reps: int) -> None:
    device = torch.device("cuda")
    print(f"\n4. GPU: {torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}")
    torch.backends.cudnn.benchmark = True
    models = {v: build_model(v).eval().to(device) for v in VARIANTS}
    for batch in (1, 32):
        x = torch.randn(batch, 3, 640, 640, device=device)
        for precision in ("fp32", "fp16 autocast"):
            amp = precision != "fp32"

            def run(model: torch.nn.Module, amp: bool = amp, x: torch.Tensor = x) -> None:
                with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                    model(x)
                torch.cuda.synchronize()

            with torch.inference_mode():
                table = compare_latency(
                    {LABELS[v]: (lambda m=m: run(m)) for v, m in models.items()},
                    reps=reps,
                    warmup=10,
                )
            table["images_per_s"] = batch * 1e3 / table["median_ms"]
            show(f"   batch {batch}, 640x640, {precision}", table)
            print(f"   ECA-CBAM / CBAM: {ratio(table, 'ECA-CBAM', 'CBAM'):.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per comparison")
    parser.add_argument("--quick", action="store_true", help="5 repetitions (a smoke run)")
    parser.add_argument("--no-gpu", action="store_true", help="skip the CUDA section")
    args = parser.parse_args(argv)
    reps = args.reps or (5 if args.quick else 15)
    if reps < 1 or args.threads < 1:
        parser.error("--reps and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    import onnxruntime

    print(
        f"CPU: {cpu_model()} | torch {torch.__version__} | onnxruntime {onnxruntime.__version__}"
        f" | threads {args.threads} (torch and onnxruntime) | {reps} repetitions"
    )
    print("Columns: median and quartiles in ms; ratio = median / median of the first row.")
    summary: dict[str, float] = {}
    summary |= deform_layer_section(reps * 2)
    square = photo(640, 640)
    summary |= whole_model_section(square, max(3, reps // 3))
    with tempfile.TemporaryDirectory() as tmp:
        for name, x in (("640x640", square), ("VGA photo", photo(480, 640))):
            for key, value in variants_section(name, x, reps, args.threads, Path(tmp)).items():
                summary[f"{name}: {key}"] = value

    print("\nSummary")
    print(
        f"  deformable conv layer, fast / torchvision speed-up (forward): "
        f"{summary['layer_forward_speedup']:.2f}x"
    )
    print(
        f"  deformable conv layer, speed-up forward+backward:            "
        f"{summary['layer_train_speedup']:.2f}x"
    )
    print(
        f"  whole ECA-CBAM model at 640x640, speed-up:                   "
        f"{summary['model_speedup']:.2f}x"
    )
    for key, value in summary.items():
        if ":" in key:
            print(f"  {key:<58} {value:.3f}")
    if torch.cuda.is_available() and not args.no_gpu:
        gpu_section(max(reps, 20))
    else:
        print("\n4. GPU: CUDA is not available here; GPU section skipped.")
    print(f"\n(total {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
