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

A cell trains its four phases through the phase chain of ``train --all`` and the notebooks
(``ffcore.chain.phases.run_phases``: one rule for a complete phase) and scores each phase's
final checkpoint (phases 1-2b on half of the val set, phase 3 on all of it); asked to, it also
trains phase-3 variants (``ffcore.schedule.PHASE3_VARIANTS``) from its own phase-2b checkpoint.
``<out>/<cell>/result.json`` (a ``CellResult``, written atomically after each scored phase)
says what is done: a complete cell is skipped on a re-run; a killed cell resumes its unfinished
phase from ``latest.pth`` and scores nothing twice.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ffcore.config import TrainConfig
from ffcore.cpu_kernels import PORTABLE, CpuKernels, environment_applied, pinned_environment
from ffcore.profiles import get_profile
from ffcore.schedule import AS_SPECIFIED, FINAL_PHASE, PHASE3_VARIANTS, PHASE_ORDER

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
    # extra phase-3 variants (``ffcore.schedule.PHASE3_VARIANTS``) trained and scored in the
    # cells of ``phase3_configurations``, each from the cell's own phase-2b checkpoint
    phase3_variants: tuple[str, ...] = ()
    phase3_configurations: tuple[str, ...] = ("eca_cbam_phased",)

    def __post_init__(self) -> None:
        unknown = [v for v in self.phase3_variants if v not in PHASE3_VARIANTS or v == AS_SPECIFIED]
        if unknown:
            extra = [v for v in PHASE3_VARIANTS if v != AS_SPECIFIED]
            raise ValueError(f"unknown phase-3 variant(s) {unknown}; choose from {extra}")
        bad = [c for c in self.phase3_configurations if c not in CONFIGURATIONS]
        if bad:
            raise ValueError(f"unknown configuration(s) {bad}; choose from {list(CONFIGURATIONS)}")


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


@dataclass(frozen=True)
class PhaseResult:
    """One trained phase of a cell, scored. ``phase3_variant``: ``"as_specified"`` for every
    phase of the main chain, else the phase-3 variant (``ffcore.schedule.PHASE3_VARIANTS``).
    ``ap``: ``ap_record`` on the whole val set (phase 3; None for phases 1-2b, scored on
    ``half_a`` alone); ``ap_splits``: part -> AP per subset. Seconds: this phase's training
    (summed over the invocations that trained it) and its scoring."""

    phase: str
    phase3_variant: str
    checkpoint: str  # relative to the cell's folder
    epochs: int
    final_loss: float
    probe_losses: tuple[float, ...]
    ap: dict[str, Any] | None
    ap_splits: dict[str, dict[str, float | None]]
    num_faces: dict[str, int] | None
    train_seconds: float
    train_cpu_seconds: float
    eval_seconds: float
    eval_cpu_seconds: float
    attention_state: tuple[bool, ...]
    dropout_on: bool

    @property
    def key(self) -> tuple[str, str]:
        return self.phase, self.phase3_variant


@dataclass(frozen=True)
class CellResult:
    """What a cell's ``result.json`` holds: the cell's facts and one ``PhaseResult`` per phase
    scored so far (main chain in ``PHASE_ORDER``, then phase-3 variants). Written after each
    phase is scored, so a killed cell keeps its scores; ``complete`` once the main chain's
    phase 3 is scored. ``cpu_capability`` (torch's CPU kernel level) and ``torch_threads``:
    of the cell process that wrote the first phase's result."""

    cell: str
    configuration: str
    variant: str
    schedule: str
    seed: int
    init_seed: int
    profile: str
    data_root: str
    backbone_init: str | None
    phase_epochs: dict[str, int]
    torch_threads: int | None
    cpu_capability: str | None
    phases: tuple[PhaseResult, ...] = ()
    # wall / CPU seconds of training per phase (key "3_<variant>" for a phase-3 variant),
    # summed over the invocations that trained it (``phase_times.json`` when last written)
    phase_seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    # the code and packages that trained it (git commit and dirty flag, package versions) when
    # the cell started; empty in results written before they were recorded
    environment: dict[str, Any] = field(default_factory=dict)

    def train_seconds(
        self, phase_id: str, phase3_variant: str = AS_SPECIFIED
    ) -> tuple[float, float]:
        """(wall, CPU) seconds of training the chain up to and including ``phase_id`` (a
        variant's phase 3: the main chain's phases 1-2b and the variant's phase 3)."""
        keys = [p for p in PHASE_ORDER[: PHASE_ORDER.index(phase_id) + 1]]
        if phase3_variant != AS_SPECIFIED:
            keys[-1] = _time_key(phase_id, phase3_variant)
        times = [self.phase_seconds.get(k) for k in keys]
        if any(t is None for t in times):
            return math.nan, math.nan
        return sum(t["wall"] for t in times), sum(t["cpu"] for t in times)  # type: ignore[index]

    def phase(self, phase_id: str, phase3_variant: str = AS_SPECIFIED) -> PhaseResult | None:
        return next((p for p in self.phases if p.key == (phase_id, phase3_variant)), None)

    @property
    def final(self) -> PhaseResult | None:
        """The main chain's phase 3 (None until scored)."""
        return self.phase(FINAL_PHASE)

    @property
    def complete(self) -> bool:
        return all(self.phase(pid) is not None for pid in PHASE_ORDER)

    def has(self, phase3_variants: tuple[str, ...] = ()) -> bool:
        """Complete, with every phase-3 variant of ``phase3_variants`` scored too."""
        return self.complete and all(
            self.phase(FINAL_PHASE, v) is not None for v in phase3_variants
        )

    @property
    def ap(self) -> dict[str, Any]:
        final = self.final
        if final is None or final.ap is None:
            raise ValueError(f"{self.cell}: phase 3 is not scored yet")
        return final.ap

    def with_phase(self, result: PhaseResult) -> CellResult:
        kept = tuple(p for p in self.phases if p.key != result.key)
        order = {(pid, AS_SPECIFIED): i for i, pid in enumerate(PHASE_ORDER)}
        ranked = sorted((*kept, result), key=lambda p: (order.get(p.key, len(order)), p.key))
        return dataclasses.replace(self, phases=tuple(ranked))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CellResult:
        """From ``to_dict``'s form, or from a result of the older format (one dict of the
        phase-3 model's scores: its phase 3 alone, as ``as_specified``)."""
        if "phases" not in data:
            return _from_old_record(data)
        fields = {f.name for f in dataclasses.fields(cls)}
        phases = tuple(_phase_result(p) for p in data["phases"])
        return cls(**{k: v for k, v in data.items() if k in fields and k != "phases"},
                   phases=phases)  # fmt: skip


def _phase_result(data: dict[str, Any]) -> PhaseResult:
    return PhaseResult(**{
        **data,
        "probe_losses": tuple(data["probe_losses"]),
        "attention_state": tuple(data["attention_state"]),
    })  # fmt: skip


def _from_old_record(r: dict[str, Any]) -> CellResult:
    """A result.json of the format before the per-phase scores: its phase-3 model."""
    times = (r.get("phase_seconds") or {}).get(FINAL_PHASE) or {}
    losses = (r.get("losses") or {}).get(FINAL_PHASE) or {}
    final = PhaseResult(
        phase=FINAL_PHASE,
        phase3_variant=AS_SPECIFIED,
        checkpoint=r.get("checkpoint", ""),
        epochs=int((r.get("phase_epochs") or {}).get(FINAL_PHASE, 0)),
        final_loss=float(losses.get("final_loss", math.nan)),
        probe_losses=tuple(losses.get("probe_losses", ())),
        ap=r["ap"],
        ap_splits=r.get("ap_splits") or {},
        num_faces=r.get("num_faces"),
        train_seconds=float(times.get("wall", math.nan)),
        train_cpu_seconds=float(times.get("cpu", math.nan)),
        eval_seconds=float((r.get("seconds") or {}).get("evaluate", math.nan)),
        eval_cpu_seconds=float((r.get("cpu_seconds") or {}).get("evaluate", math.nan)),
        attention_state=tuple(r.get("attention_state") or ()),
        dropout_on=True,
    )
    return CellResult(
        cell=r.get("cell", f"{r['configuration']}_seed{r['seed']}"),
        configuration=r["configuration"], variant=r.get("variant", ""),
        schedule=r.get("schedule", ""), seed=int(r["seed"]),
        init_seed=int(r.get("init_seed", r["seed"])), profile=r["profile"],
        data_root=r.get("data_root", ""),
        backbone_init=r.get("backbone_init"), phase_epochs=dict(r.get("phase_epochs") or {}),
        torch_threads=r.get("torch_threads"), cpu_capability=r.get("cpu_capability"),
        phases=(final,),
        phase_seconds=dict(r.get("phase_seconds") or {}),
    )  # fmt: skip


def read_cell_result(out_dir: str | os.PathLike[str], cell: Cell) -> CellResult | None:
    """The cell's result.json (possibly of a cell still running or killed: see
    ``CellResult.complete``), or None when it has none yet."""
    return read_result_file(Path(out_dir) / cell.name / RESULT_FILE)


def read_result_file(path: str | os.PathLike[str]) -> CellResult | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not ("phases" in data or "ap" in data):
        return None
    return CellResult.from_dict(data)


def _phase_times(cell_dir: Path) -> dict[str, dict[str, float]]:
    try:
        return json.loads((cell_dir / PHASE_TIMES).read_text())
    except (OSError, ValueError):
        return {}


def _time_key(phase_id: str, phase3_variant: str) -> str:
    return phase_id if phase3_variant == AS_SPECIFIED else f"{phase_id}_{phase3_variant}"


def _record_phase_time(cell_dir: Path, key: str, wall: float, cpu: float) -> None:
    """Add an invocation's wall and CPU seconds of a phase (a resumed phase adds up)."""
    times = _phase_times(cell_dir)
    old = times.get(key, {"wall": 0.0, "cpu": 0.0})
    times[key] = {"wall": old["wall"] + wall, "cpu": old["cpu"] + cpu}
    _write_json(cell_dir / PHASE_TIMES, times)


from ffcore.atomic import write_json as _write_json  # noqa: E402  (one atomic writer)


def write_cell_result(cell_dir: str | os.PathLike[str], result: CellResult) -> Path:
    """``<cell_dir>/result.json``, atomically (temporary file, then rename)."""
    path = Path(cell_dir) / RESULT_FILE
    _write_json(path, result.to_dict())
    return path


def cell_phase3_variants(cell: Cell, spec: StudySpec) -> tuple[str, ...]:
    """The phase-3 variants ``spec`` asks of ``cell`` (those of its configuration)."""
    return spec.phase3_variants if cell.configuration in spec.phase3_configurations else ()


def _train_config(cell: Cell, spec: StudySpec, weights: Path, init: Any) -> TrainConfig:
    conf = CONFIGURATIONS[cell.configuration]
    prof = get_profile(spec.profile)
    return TrainConfig(
        phase=PHASE_ORDER[0],
        training_dataset=str(Path(spec.data_root) / "train" / "label.txt"),
        variant=conf.variant,
        epochs=prof.epochs(PHASE_ORDER[0]),
        batch_size=prof.batch_size,
        image_size=prof.image_size,
        num_workers=0,
        seed=cell.seed,
        device=spec.device,
        save_folder=str(weights),
        backbone_init=init,
        progress=False,
        attention_schedule=conf.schedule,
        init_seed=cell.seed,  # every variant of a seed starts from the same shared tensors
    )


def cpu_model(cpuinfo: str | None = None) -> str:
    """The processor that trains, e.g. "AMD EPYC (AuthenticAMD cpu family 26 model 2)": the same
    code, packages and kernel pin trained different numbers on two processors, so a cell says
    which one it ran on. ``cpuinfo``: the text of ``/proc/cpuinfo`` (read when None; where it
    is absent, ``platform.processor()`` or the architecture)."""
    import platform

    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        name, sep, value = line.partition(":")
        if not sep:
            if fields:
                break  # the first processor's block is enough
            continue
        fields.setdefault(name.strip(), value.strip())
    if "model name" not in fields:
        return platform.processor() or platform.machine() or "unknown"
    ids = [fields.get("vendor_id", "")] + [
        f"{k} {fields[k]}" for k in ("cpu family", "model") if k in fields
    ]
    detail = " ".join(i for i in ids if i)
    return f"{fields['model name']} ({detail})" if detail else fields["model name"]


def cell_environment() -> dict[str, Any]:
    """What a cell records of the code, packages and processor that train it."""
    from ffcore import fingerprint

    commit, dirty = fingerprint.git_state()
    return {"git_commit": commit, "git_dirty": dirty, "versions": fingerprint.versions(),
            "cpu": cpu_model()}  # fmt: skip


def run_cell(cell: Cell, spec: StudySpec) -> CellResult:
    """Train one cell's phases through the phase chain (``ffcore.chain.phases.run_phases``,
    resuming where it stopped) and score each phase's final checkpoint as it completes:
    phases 1-2b on ``half_a`` of the val set of ``spec.data_root``, phase 3 on all of it
    (whole and in parts); then the phase-3 variants ``spec`` asks of the cell, each trained
    from the cell's own phase-2b checkpoint with the same seed into its own folder and scored
    on the whole val set. ``result.json`` is written after every scored phase, so a killed
    cell neither trains nor scores a phase again. Seconds are per phase, summed over the
    invocations that trained it (``phase_times.json``)."""
    variants = cell_phase3_variants(cell, spec)
    done = read_cell_result(spec.out_dir, cell)
    if done is not None and done.has(variants):
        return done
    import torch

    from ffcore.chain.phases import run_phases
    from ffcore.models.reference import resolve_backbone_init

    if spec.threads is not None:
        torch.set_num_threads(spec.threads)
    conf = CONFIGURATIONS[cell.configuration]
    prof = get_profile(spec.profile)
    cell_dir = Path(spec.out_dir) / cell.name
    cell_dir.mkdir(parents=True, exist_ok=True)
    weights = cell_dir / "weights"
    init = resolve_backbone_init(spec.backbone_init)
    epochs = {pid: prof.epochs(pid) for pid in PHASE_ORDER}
    state = done or CellResult(
        cell=cell.name, configuration=cell.configuration, variant=conf.variant,
        schedule=conf.schedule, seed=cell.seed, init_seed=cell.seed, profile=spec.profile,
        data_root=str(spec.data_root), backbone_init=None if init is None else str(init),
        phase_epochs=epochs, torch_threads=torch.get_num_threads(),
        cpu_capability=torch.backends.cpu.get_cpu_capability(), environment=cell_environment(),
    )  # fmt: skip
    holder = {"state": state, "clock": (time.perf_counter(), time.process_time())}

    def on_phase(result: Any, variant: str) -> None:
        phase_variant = variant if result.phase == FINAL_PHASE else AS_SPECIFIED
        key = _time_key(result.phase, phase_variant)
        if result.mode is not None:  # trained (or finished) by this invocation
            wall, cpu = holder["clock"]
            now = (time.perf_counter(), time.process_time())
            _record_phase_time(cell_dir, key, now[0] - wall, now[1] - cpu)
        current: CellResult = holder["state"]
        if current.phase(result.phase, phase_variant) is None:
            scored = _score_phase(result, phase_variant, cell_dir, spec, prof.eval_image_size)
            holder["state"] = dataclasses.replace(
                current.with_phase(scored), phase_seconds=_phase_times(cell_dir)
            )
            write_cell_result(cell_dir, holder["state"])
        holder["clock"] = (time.perf_counter(), time.process_time())

    config = _train_config(cell, spec, weights, init)
    for variant in (AS_SPECIFIED, *variants):
        holder["clock"] = (time.perf_counter(), time.process_time())
        run_phases(config, epochs=epochs, phase3_variant=variant, profile=spec.profile,
                   on_phase=lambda r, v=variant: on_phase(r, v))  # fmt: skip
    return holder["state"]


def _score_phase(
    result: Any, phase3_variant: str, cell_dir: Path, spec: StudySpec, image_size: int | None
) -> PhaseResult:
    """Score a phase's final checkpoint: phase 3 on the whole val set, an earlier phase on
    ``half_a`` alone (only its images are predicted)."""
    from ffcore.chain.scoring import score_checkpoint, score_part

    checkpoint = Path(result.checkpoint)
    if result.phase == FINAL_PHASE:
        folder = (
            "predictions" if phase3_variant == AS_SPECIFIED else f"predictions_{phase3_variant}"
        )
        score = score_checkpoint(checkpoint, spec.data_root, cell_dir / folder,
                                 image_size=image_size, device=spec.device)  # fmt: skip
    else:
        score = score_part(checkpoint, spec.data_root, "half_a", image_size=image_size,
                           device=spec.device, work_dir=cell_dir)  # fmt: skip
    times = _phase_times(cell_dir).get(_time_key(result.phase, phase3_variant), {})
    return PhaseResult(
        phase=result.phase,
        phase3_variant=phase3_variant,
        checkpoint=os.path.relpath(checkpoint, cell_dir),
        epochs=result.epochs,
        final_loss=result.final_loss,
        probe_losses=tuple(result.probe_losses),
        ap=score.ap,
        ap_splits=score.ap_splits,
        num_faces=score.num_faces,
        train_seconds=float(times.get("wall", math.nan)),
        train_cpu_seconds=float(times.get("cpu", math.nan)),
        eval_seconds=score.seconds,
        eval_cpu_seconds=score.cpu_seconds,
        attention_state=score.attention_state,
        dropout_on=score.dropout_on,
    )


def _run_cell_args(args: tuple[Cell, StudySpec]) -> CellResult:
    return run_cell(*args)


def _one_study_per_folder(run: Any) -> Any:
    """``run_study`` holds ``<spec.out_dir>/.lock`` while it runs: a second study into the same
    folder is refused (``FolderLocked`` naming the first), a dead one's lock taken over."""
    import functools

    from ffcore.training.lock import FolderLock

    @functools.wraps(run)
    def locked(cells: list[Cell], spec: StudySpec, *args: Any, **kwargs: Any) -> Any:
        with FolderLock(spec.out_dir, kind="study folder"):
            return run(cells, spec, *args, **kwargs)

    return locked


@_one_study_per_folder
def run_study(
    cells: list[Cell],
    spec: StudySpec,
    launcher: str = "local",
    jobs: int = 1,
    slurm: SlurmOptions | None = None,
    report: Any = print,
    cpu_kernels: CpuKernels = PORTABLE,
) -> list[CellResult]:
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
    todo = [c for c in cells if not _finished(c, spec)]
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
    missing = [c.name for c in cells if not _finished(c, spec)]
    if missing:
        raise RuntimeError(f"cells without a result in {spec.out_dir}: {', '.join(missing)}")
    return results  # type: ignore[return-value]


def _finished(cell: Cell, spec: StudySpec) -> bool:
    result = read_cell_result(spec.out_dir, cell)
    return result is not None and result.has(cell_phase3_variants(cell, spec))


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


def _ap_text(result: CellResult) -> str:
    ap = result.ap
    return " / ".join(
        f"{100 * ap[s]:.1f}" if ap[s] is not None else "n/a" for s in ("easy", "medium", "hard")
    )
