"""fp32 / fp16 / int8 ONNX of ECA-CBAM (a phase-3 checkpoint) and of the RetinaFace reference:
file size, AP on a val set through ffcore's own evaluation, agreement with fp32 on real photos,
and onnxruntime CPU latency relative to fp32, measured side by side in one run.

    python -m benchmarks.deploy_precision --checkpoint runs/smoke/weights/phase3/phase3_epoch_N.pth \
        --data-root data/synthetic [--out-dir figures] [--calib-images 16] [--rounds 30]

Writes ``<out-dir>/deploy_precision.{csv,tex}`` (the table) and prints it. Models are exported
with dynamic shapes so that AP is measured at original scale (``DetectParams()``, the protocol of
``python -m ffcore evaluate``); int8 is calibrated on ``--calib-images`` val images of the data
root plus the sample photos (``ffcore.data.photos.sample_photos``), each at original scale.

Agreement on real photos (faces scoring >= 0.5 on matplotlib's grace_hopper.jpg and, with
scikit-image, the astronaut): "same faces" when every fp32 face has one face of the other
precision at IoU >= 0.9 and the counts are equal; ``max_score_diff`` over those pairs. Latency:
the three sessions of a model alternate on the same 640 x 640 input (grace_hopper, long side 640)
with one intra-op thread each; ``latency_ratio`` is the median of the per-round ratio to fp32 and
``latency_iqr`` its interquartile range (``ffcore.report.timing.compare_latency``).
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ffcore.data.photos import sample_photos
from ffcore.evaluation.inference import DetectParams, detect, evaluate_model
from ffcore.export import (
    PRECISIONS,
    OnnxModel,
    calibration_images,
    calibration_input,
    convert_fp16,
    export_onnx,
    format_runtime_precision,
    quantize_int8,
    runtime_precision,
)
from ffcore.report.figures import save_table
from ffcore.report.numbers import Numbers, name_part
from ffcore.report.timing import compare_latency

GOAL_INT8_MB = 0.7
GOAL_AP_POINTS = 1.0
AGREE_IOU = 0.9
PHOTO_THRESHOLD = 0.5
LATENCY_SIZE = 640


@dataclass(frozen=True)
class Agreement:
    same_faces: bool
    faces_fp32: int
    faces_other: int
    max_score_diff: float  # over matched pairs; NaN when nothing matched


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of x1y1x2y2 boxes a [n, 4] and b [m, 4]."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def agreement(reference, other) -> Agreement:
    """fp32 detections ``reference`` against ``other`` (ffcore Detections)."""
    n, m = len(reference), len(other)
    if n == 0 or m == 0:
        return Agreement(n == m, n, m, float("nan"))
    iou = _iou(reference.boxes, other.boxes)
    best = iou.argmax(1)
    matched = iou[np.arange(n), best] >= AGREE_IOU
    diffs = np.abs(reference.scores[matched] - other.scores[best[matched]])
    same = n == m and bool(matched.all()) and len(set(best.tolist())) == n
    return Agreement(same, n, m, float(diffs.max()) if diffs.size else float("nan"))


def _max_or_nan(values: list[float]) -> float:
    """Largest non-NaN value; NaN when no pair matched at all (never a reassuring 0)."""
    finite = [v for v in values if not np.isnan(v)]
    return max(finite) if finite else float("nan")


def _load(which: str, checkpoint: str | None):
    if which == "ECA-CBAM":
        from ffcore.models.checkpoint import load_model

        return load_model(checkpoint, "cpu")[0]
    from ffcore.models.reference import load_reference_model

    return load_reference_model()


def measure_model(
    name: str, model, data_root: Path, work: Path, calib: list[np.ndarray], rounds: int
) -> list[dict]:
    paths, rows = {p: work / f"{name}_{p}.onnx" for p in PRECISIONS}, []
    print(f"[{name}] exporting fp32 (dynamic shapes) ...", flush=True)
    export_onnx(model, paths["fp32"], image_size=256, dynamic=True)
    convert_fp16(paths["fp32"], paths["fp16"])
    quantize_int8(paths["fp32"], paths["int8"], calib)
    for precision, path in paths.items():
        print(f"[{name}] {precision}, {path.stat().st_size / 1e6:.3f} MB:", flush=True)
        print(format_runtime_precision(runtime_precision(path)), flush=True)
    sessions = {p: OnnxModel(path, threads=1) for p, path in paths.items()}
    photos = sample_photos()
    fp32_dets = {
        k: detect(sessions["fp32"], img, conf_threshold=PHOTO_THRESHOLD)
        for k, img in photos.items()
    }
    x = calibration_input(photos["grace_hopper"], LATENCY_SIZE)
    timing = compare_latency({p: (lambda s=s: s.run(x)) for p, s in sessions.items()}, reps=rounds)
    for precision, session in sessions.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a subset may keep no face
            ap = evaluate_model(
                session,
                data_root,
                work / f"pred_{name}_{precision}",
                DetectParams(),
                progress=False,
            ).ap
        agree = [
            agreement(fp32_dets[k], detect(session, img, conf_threshold=PHOTO_THRESHOLD))
            for k, img in photos.items()
        ]
        t = timing.loc[precision]
        rows.append(
            {
                "model": name,
                "precision": precision,
                "file_MB": paths[precision].stat().st_size / 1e6,
                **{f"AP_{s}": 100 * v for s, v in ap.items()},
                "photos_same_faces": f"{sum(a.same_faces for a in agree)}/{len(agree)}",
                "faces_fp32_vs_this": " ".join(f"{a.faces_fp32}:{a.faces_other}" for a in agree),
                "max_score_diff": _max_or_nan([a.max_score_diff for a in agree]),
                "latency_ratio": t["ratio"],
                "latency_iqr": f"{t['ratio_p25']:.2f}-{t['ratio_p75']:.2f}",
                "fp32_ms": timing.loc["fp32", "median_ms"],
            }
        )
    return rows


def add_verdicts(frame: pd.DataFrame) -> pd.DataFrame:
    """AP change against fp32 (points, worst subset) and a plain-words verdict per row."""
    out = frame.copy()
    verdicts, deltas = [], []
    for _, row in out.iterrows():
        ref = out[(out.model == row.model) & (out.precision == "fp32")].iloc[0]
        delta = max(abs(row[f"AP_{s}"] - ref[f"AP_{s}"]) for s in ("easy", "medium", "hard"))
        deltas.append(delta)
        notes = []
        if row.precision != "fp32":
            p25, p75 = (float(v) for v in row.latency_iqr.split("-"))
            if p75 < 1:
                notes.append("faster than fp32")
            elif p25 >= 1:
                notes.append("NOT faster than fp32 (slower)")
            else:
                notes.append("NOT faster than fp32 (no clear difference)")
            notes.append(
                f"AP within {GOAL_AP_POINTS:g} pt" if delta <= GOAL_AP_POINTS else "AP goal missed"
            )
            total = row.photos_same_faces.split("/")
            notes.append("same faces" if total[0] == total[1] else "faces differ")
        if row.precision == "int8":
            notes.append(
                f"<= {GOAL_INT8_MB} MB" if row.file_MB <= GOAL_INT8_MB else "size goal missed"
            )
        verdicts.append("; ".join(notes) or "baseline")
    out.insert(out.columns.get_loc("AP_hard") + 1, "AP_max_change_pt", deltas)
    out["verdict"] = verdicts
    return out


def redo_verdicts(csv: str | Path, out_dir: str | Path) -> pd.DataFrame:
    """Re-derive the verdict columns of a written table (no re-measurement)."""
    frame = pd.read_csv(csv).drop(columns=["AP_max_change_pt", "verdict"])
    frame = add_verdicts(frame).set_index(["model", "precision"])
    save_table(frame, "deploy_precision", out_dir, decimals=3)
    return frame


SOURCE = "benchmarks/deploy_precision.py"
MODEL_WORDS = {"ECA-CBAM": "EcaCbam", "RetinaFace-MNet0.25": "Reference"}


def register_numbers(frame: pd.DataFrame, out_dir: str | Path, profile: str = "smoke") -> Numbers:
    """The table's numbers for the thesis (``ffcore.report.numbers``): per model and precision
    the ONNX file size, the largest AP change against fp32 and the latency ratio with its IQR."""
    numbers = Numbers(SOURCE, profile)
    for (model, precision), row in frame.iterrows():
        base = f"Deploy{MODEL_WORDS.get(model, name_part(model))}{name_part(precision)}"
        numbers.add(
            f"{base}Mb", float(row["file_MB"]), "{:.2f}", "MB", f"{model} {precision} ONNX file"
        )
        if precision != "fp32":
            numbers.add(f"{base}ApChange", float(row["AP_max_change_pt"]), "{:.2f}", "AP points",
                        f"{model} {precision}: largest AP change against fp32")  # fmt: skip
            numbers.add(f"{base}LatencyRatio", float(row["latency_ratio"]), "{:.2f}", "x",
                        f"{model} {precision}: CPU latency / fp32")  # fmt: skip
            numbers.add(f"{base}LatencyIqr", str(row["latency_iqr"]).replace("-", "\u2013"),
                        unit="x", description="its interquartile range")  # fmt: skip
    numbers.write(out_dir)
    return numbers


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="ECA-CBAM phase-3 checkpoint")
    p.add_argument("--data-root", required=True, help="dataset root with val/ and ground_truth/")
    p.add_argument("--out-dir", default="figures")
    p.add_argument("--calib-images", type=int, default=16, help="val images for int8 calibration")
    p.add_argument("--rounds", type=int, default=30, help="latency rounds")
    p.add_argument("--no-reference", action="store_true", help="skip the RetinaFace reference")
    p.add_argument("--profile", default="smoke", help="the run the checkpoint comes from")
    args = p.parse_args(argv)
    from ffcore.report.provenance import RunInfo

    run_info = RunInfo.create(
        SOURCE, {k: v for k, v in vars(args).items()}, args.profile, data_root=args.data_root,
        checkpoints=[args.checkpoint],
    )  # fmt: skip

    calib = [
        calibration_input(img) for img in calibration_images(args.data_root, args.calib_images)
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = ["ECA-CBAM"] + ([] if args.no_reference else ["RetinaFace-MNet0.25"])
        for name in models:
            rows += measure_model(
                name,
                _load(name, args.checkpoint),
                Path(args.data_root),
                Path(tmp),
                calib,
                args.rounds,
            )
    frame = add_verdicts(pd.DataFrame(rows)).set_index(["model", "precision"])
    pd.set_option("display.width", 250)
    print(frame.to_string(float_format=lambda v: f"{v:.3f}"))
    print(
        f"source: checkpoint {args.checkpoint}, data {args.data_root}, {len(calib)} calibration "
        f"images, {args.rounds} latency rounds at {LATENCY_SIZE}x{LATENCY_SIZE}, 1 thread"
    )
    source = f"checkpoint {Path(args.checkpoint).name}, {args.profile} run"  # its own source run
    for path in save_table(frame, "deploy_precision", args.out_dir, decimals=3, source=source,
                           provenance=run_info):  # fmt: skip
        print(f"wrote {path}")
    register_numbers(frame, args.out_dir, args.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
