"""The ablation the thesis is about: ECA-CBAM vs CBAM vs no attention, phased vs joint attention
training, over seeds. Each (configuration, seed) is one independent, resumable cell.

    none             no attention (phased and joint are the same model)
    cbam_phased      CBAM, the phase table's switches (1: off, 2a: channel, 2b/3: both)
    eca_cbam_phased  ECA-CBAM, the phase table's switches (the thesis)
    cbam_joint       CBAM, both attention parts on from the first step of phase 1
    eca_cbam_joint   ECA-CBAM, both parts on from the first step

Joint runs the same four phases with the same epochs, learning rates, restarts, mixup, dropout
and clipping; only the attention switches differ, so phased - joint measures the progressive
activation alone. A seed fixes the data order, the augmentation and the mixup draws
(``ffcore.training.engine``), identical for every configuration, so differences pair by seed;
phased and joint of one variant also share their initial weights exactly.

A cell writes ``<out>/<cell>/result.json`` last (atomically): a cell with it is complete and is
skipped on a re-run; a killed cell resumes its unfinished phase from ``latest.pth``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ffcore.config import TrainConfig
from ffcore.cpu_kernels import PORTABLE, CpuKernels, environment_applied, pinned_environment
from ffcore.profiles import get_profile
from ffcore.schedule import PHASE_ORDER, get_phase

RESULT_FILE = "result.json"
PHASE_TIMES = "phase_times.json"  # wall and CPU seconds per phase, over invocations


@dataclass(frozen=True)
class Configuration:
    name: str
    variant: str
    schedule: str  # "phased" or "joint"
    label: str  # for figures and sentences


CONFIGURATIONS: dict[str, Configuration] = {
    c.name: c
    for c in (
        Configuration("none", "none", "phased", "no attention"),
        Configuration("cbam_phased", "cbam", "phased", "CBAM phased"),
        Configuration("eca_cbam_phased", "eca_cbam", "phased", "ECA-CBAM phased"),
        Configuration("cbam_joint", "cbam", "joint", "CBAM joint"),
        Configuration("eca_cbam_joint", "eca_cbam", "joint", "ECA-CBAM joint"),
    )
}


@dataclass(frozen=True)
class Cell:
    configuration: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.configuration}_seed{self.seed}"


@dataclass(frozen=True)
class StudySpec:
    """Everything a cell needs besides its (configuration, seed); picklable for launchers."""

    profile: str
    out_dir: str
    data_root: str  # a WIDER-layout root (the profile's synthetic set by default)
    device: str = "cpu"
    backbone_init: str | None = "auto"  # as run_phase: the reference backbone when installed
    threads: int | None = None  # torch threads per cell (None: torch's default)


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    time_min: int = 240
    gpus_per_node: int = 1
    cpus_per_task: int = 8
    mem_gb: int = 32
    array_parallelism: int = 16
    extra: dict[str, Any] = field(default_factory=dict)


def make_cells(configurations: tuple[str, ...], seeds: int | tuple[int, ...]) -> list[Cell]:
    """The grid in a fixed order (seed-major, so an interrupted study has whole seeds)."""
    unknown = [c for c in configurations if c not in CONFIGURATIONS]
    if unknown:
        raise ValueError(f"unknown configuration(s) {unknown}; choose from {list(CONFIGURATIONS)}")
    seed_list = tuple(range(seeds)) if isinstance(seeds, int) else tuple(seeds)
    if not seed_list:
        raise ValueError("a study needs at least one seed")
    return [Cell(c, s) for s in seed_list for c in configurations]


def read_cell_result(out_dir: str | os.PathLike[str], cell: Cell) -> dict[str, Any] | None:
    """The cell's result.json, or None when the cell has not completed."""
    path = Path(out_dir) / cell.name / RESULT_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "ap" in data else None


def _phase_start(
    weights: Path, phase_id: str, epochs: int, previous: str | None
) -> tuple[str | None, bool]:
    """(starting checkpoint, done) for a phase of a cell: done when its final checkpoint
    exists; a mid-phase ``latest.pth`` resumes; else the previous phase's final checkpoint."""
    from ffcore.models.checkpoint import final_checkpoint_name, load_checkpoint

    phase = get_phase(phase_id)
    folder = weights / phase.folder
    final = folder / final_checkpoint_name(phase, epochs)
    if final.is_file():
        return str(final), True
    latest = folder / "latest.pth"
    if latest.is_file() and load_checkpoint(latest)["phase"] == phase.id:
        return str(latest), False
    return previous, False


# The same phase-3 model scored on parts of the val set (official protocol on each part), so
# the study can tell evaluation noise from training noise: two disjoint halves (by a hash of the
# image name, so any WIDER layout splits the same way) and, for the synthetic set, its first 96
# images (the study's val set before it grew to 2,100 images).
SMALL_VAL_IMAGES = 96
# val images of one size per forward pass: 25 % less CPU than one at a time on the 2,100
# images, outputs equal to rounding (predict_dataset); AP agreed to 1e-10 on a study model
EVAL_BATCH = 16


def _half(name: str) -> str:
    return "half_a" if hashlib.sha256(name.encode()).digest()[0] % 2 == 0 else "half_b"


def val_splits(pred_dir: str | os.PathLike[str], data_root: str | os.PathLike[str]) -> dict:
    """AP (fractions) of the predictions in ``pred_dir`` on each part of the val set:
    ``{"half_a": {...}, "half_b": {...}, "first96": {...}}`` (first96 only for synthetic data)."""
    from ffcore.data.synthetic import image_index
    from ffcore.data.wider_mat import SUBSETS, read_ground_truth
    from ffcore.evaluation.inference import ground_truth_dir
    from ffcore.evaluation.wider_ap import evaluate, read_predictions, select_images

    gt = read_ground_truth(ground_truth_dir(data_root))
    preds = read_predictions(pred_dir, gt)
    rules = {
        "half_a": lambda _e, name: _half(name) == "half_a",
        "half_b": lambda _e, name: _half(name) == "half_b",
    }
    names = [n for per_event in gt.images for n in per_event]
    if all(image_index(n) is not None for n in names):
        rules["first96"] = lambda _e, name: image_index(name) < SMALL_VAL_IMAGES
    out = {}
    for part, keep in rules.items():
        if not any(
            keep(e, n) for e, names in zip(gt.events, gt.images, strict=True) for n in names
        ):
            out[part] = dict.fromkeys(SUBSETS)  # a tiny val set may leave a part empty
            continue
        part_gt, part_preds = select_images(gt, preds, keep)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a subset without faces: NaN
            result = evaluate(part_preds, part_gt)
        out[part] = result.as_dict()
    return out


def _phase_times(cell_dir: Path) -> dict[str, dict[str, float]]:
    try:
        return json.loads((cell_dir / PHASE_TIMES).read_text())
    except (OSError, ValueError):
        return {}


def _record_phase_time(cell_dir: Path, phase_id: str, wall: float, cpu: float) -> None:
    """Add an invocation's wall and CPU seconds of a phase (a resumed phase adds up)."""
    times = _phase_times(cell_dir)
    old = times.get(phase_id, {"wall": 0.0, "cpu": 0.0})
    times[phase_id] = {"wall": old["wall"] + wall, "cpu": old["cpu"] + cpu}
    _write_json(cell_dir / PHASE_TIMES, times)


from ffcore.atomic import write_json as _write_json  # noqa: E402  (one atomic writer)


def _phase_losses(weights: Path) -> dict[str, dict[str, Any]]:
    """Final training loss and probe losses of every phase, from its ``epochs.csv`` (written by
    whichever invocation trained it, so a resumed cell reports every phase)."""
    import csv

    from ffcore.training.history import EPOCHS

    losses = {}
    for pid in PHASE_ORDER:
        path = weights / get_phase(pid).folder / EPOCHS
        rows = list(csv.DictReader(path.open())) if path.is_file() else []
        if rows:
            losses[pid] = {
                "final_loss": float(rows[-1]["train_total"]),
                "probe_losses": [float(r["probe_total"]) for r in rows],
            }
    return losses


def run_cell(cell: Cell, spec: StudySpec) -> dict[str, Any]:
    """Train the four phases of one cell (resuming where it stopped), evaluate the phase-3
    model on the val set of ``spec.data_root`` (whole and in parts, ``val_splits``) and write
    ``result.json``; returns it. Seconds are per phase, summed over the invocations that
    trained it (``phase_times.json``), so a cell killed and resumed still reports its cost."""
    done = read_cell_result(spec.out_dir, cell)
    if done is not None:
        return done
    import torch

    from ffcore.evaluation.inference import evaluate_model
    from ffcore.evaluation.wider_ap import ap_record
    from ffcore.models.checkpoint import load_model
    from ffcore.models.reference import resolve_backbone_init
    from ffcore.training.engine import fit_phase

    if spec.threads is not None:
        torch.set_num_threads(spec.threads)
    conf = CONFIGURATIONS[cell.configuration]
    prof = get_profile(spec.profile)
    cell_dir = Path(spec.out_dir) / cell.name
    cell_dir.mkdir(parents=True, exist_ok=True)
    weights = cell_dir / "weights"
    init = resolve_backbone_init(spec.backbone_init)
    previous: str | None = None
    for pid in PHASE_ORDER:
        epochs = prof.epochs(pid)
        start, finished = _phase_start(weights, pid, epochs, previous)
        if finished:
            previous = start
            continue
        resuming = start is not None and Path(start).name == "latest.pth"
        config = TrainConfig(
            phase=pid,
            training_dataset=str(Path(spec.data_root) / "train" / "label.txt"),
            variant=conf.variant,
            epochs=epochs,
            batch_size=prof.batch_size,
            image_size=prof.image_size,
            num_workers=0,
            seed=cell.seed,
            device=spec.device,
            save_folder=str(weights),
            resume_net=start,
            backbone_init=init if (pid == PHASE_ORDER[0] and not resuming) else None,
            progress=False,
            attention_schedule=conf.schedule,
            init_seed=cell.seed,  # every variant of a seed starts from the same shared tensors
        )
        wall, cpu = time.perf_counter(), time.process_time()
        result = fit_phase(config)
        _record_phase_time(cell_dir, pid, time.perf_counter() - wall, time.process_time() - cpu)
        previous = str(result.checkpoint)
    for stale in cell_dir.glob(".predictions.*.tmp"):  # left by a kill during evaluation
        shutil.rmtree(stale, ignore_errors=True)
    wall, cpu = time.perf_counter(), time.process_time()
    model, info = load_model(previous, spec.device)
    evaluation = evaluate_model(
        model,
        spec.data_root,
        cell_dir / "predictions",
        image_size=prof.eval_image_size,
        device=spec.device,
        progress=False,
        batch_size=EVAL_BATCH,
    )
    splits = val_splits(cell_dir / "predictions", spec.data_root)
    times = _phase_times(cell_dir)
    record = {
        "cell": cell.name,
        "configuration": cell.configuration,
        "variant": conf.variant,
        "schedule": conf.schedule,
        "seed": cell.seed,
        "init_seed": cell.seed,
        "profile": spec.profile,
        "data_root": str(spec.data_root),
        "backbone_init": None if init is None else str(init),
        "ap": ap_record(evaluation),
        "ap_splits": splits,
        "num_faces": evaluation.num_faces,
        "checkpoint": os.path.relpath(previous, cell_dir),
        "phase_epochs": {pid: prof.epochs(pid) for pid in PHASE_ORDER},
        "losses": _phase_losses(weights),
        "seconds": {
            "train": sum(t["wall"] for t in times.values()),
            "evaluate": time.perf_counter() - wall,
        },
        "cpu_seconds": {
            "train": sum(t["cpu"] for t in times.values()),
            "evaluate": time.process_time() - cpu,
        },
        "phase_seconds": times,
        "torch_threads": torch.get_num_threads(),
        "attention_state": list(model.attention_state() or ()),
        "checkpoint_phase": info["phase"],
    }
    _write_json(cell_dir / RESULT_FILE, record)
    return record


def _run_cell_args(args: tuple[Cell, StudySpec]) -> dict[str, Any]:
    return run_cell(*args)


def run_study(
    cells: list[Cell],
    spec: StudySpec,
    launcher: str = "local",
    jobs: int = 1,
    slurm: SlurmOptions | None = None,
    report: Any = print,
    cpu_kernels: CpuKernels = PORTABLE,
) -> list[dict[str, Any]]:
    """Run every cell that is not complete yet and return all cells' results (grid order).

    ``launcher="local"``: ``jobs`` cells at once in worker processes (each with
    ``cpu_count // jobs`` torch threads unless ``spec.threads`` says otherwise); ``jobs=1``
    runs them in this process. ``launcher="slurm"``: one job array through submitit, one task
    per cell (``slurm`` sets partition, time, GPUs); ``launcher="submitit-local"`` runs the same
    submission path with submitit's local executor (tests, a workstation). ``cpu_kernels``:
    the kernel level of the cell processes (``ffcore.cpu_kernels``; portable AVX2 by default),
    set in their environment before they import torch, so a pinned local run always runs its
    cells in worker processes, also with ``jobs=1``."""
    Path(spec.out_dir).mkdir(parents=True, exist_ok=True)
    todo = [c for c in cells if read_cell_result(spec.out_dir, c) is None]
    report(f"study: {len(cells)} cells, {len(cells) - len(todo)} complete, {len(todo)} to run")
    env = pinned_environment(os.environ, cpu_kernels)
    if todo:
        if launcher == "local":
            with environment_applied(env):
                _run_local(todo, spec, jobs, report, in_process=cpu_kernels.level == "native")
        elif launcher in ("slurm", "submitit-local"):
            with environment_applied(env):  # submitit's jobs inherit the submitting environment
                _run_submitit(todo, spec, launcher, slurm or SlurmOptions(), report)
        else:
            raise ValueError(f"launcher must be local, slurm or submitit-local, got {launcher!r}")
    results = [read_cell_result(spec.out_dir, c) for c in cells]
    missing = [c.name for c, r in zip(cells, results, strict=True) if r is None]
    if missing:
        raise RuntimeError(f"cells without a result in {spec.out_dir}: {', '.join(missing)}")
    return results  # type: ignore[return-value]


def _run_local(
    todo: list[Cell], spec: StudySpec, jobs: int, report: Any, in_process: bool = True
) -> None:
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if jobs == 1 and in_process:
        for i, cell in enumerate(todo, 1):
            r = run_cell(cell, spec)
            report(f"[{i}/{len(todo)}] {cell.name}: AP {_ap_text(r)}")
        return
    import dataclasses
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = spec.threads or max(1, (os.cpu_count() or 1) // jobs)
    spec = dataclasses.replace(spec, threads=threads)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = {pool.submit(_run_cell_args, (c, spec)): c for c in todo}
        for i, fut in enumerate(as_completed(futures), 1):
            report(f"[{i}/{len(todo)}] {futures[fut].name}: AP {_ap_text(fut.result())}")


def _run_submitit(
    todo: list[Cell], spec: StudySpec, launcher: str, opts: SlurmOptions, report: Any
) -> None:
    try:
        import submitit
    except ImportError as exc:
        raise ImportError("the slurm launcher needs submitit: pip install -e .[cluster]") from exc
    folder = Path(spec.out_dir) / "submitit" / "%j"
    if launcher == "slurm":
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        params: dict[str, Any] = {
            "timeout_min": opts.time_min,
            "gpus_per_node": opts.gpus_per_node,
            "cpus_per_task": opts.cpus_per_task,
            "mem_gb": opts.mem_gb,
            "slurm_array_parallelism": opts.array_parallelism,
            **opts.extra,
        }
        if opts.partition:
            params["slurm_partition"] = opts.partition
        executor.update_parameters(**params)
    else:
        executor = submitit.AutoExecutor(folder=folder, cluster="local")
        executor.update_parameters(timeout_min=opts.time_min)
    jobs = executor.map_array(run_cell, todo, [spec] * len(todo))
    report(f"submitted {len(jobs)} task(s): " + ", ".join(j.job_id for j in jobs))
    for cell, job in zip(todo, jobs, strict=True):
        report(f"{cell.name}: AP {_ap_text(job.result())}")


def _ap_text(record: dict[str, Any]) -> str:
    ap = record["ap"]
    return " / ".join(
        f"{100 * ap[s]:.1f}" if ap[s] is not None else "n/a" for s in ("easy", "medium", "hard")
    )
