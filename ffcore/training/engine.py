"""One phase of the four-phase training: ``fit_phase(TrainConfig)``. No argument parsing here.

Everything that defines a phase -- epochs, which attention is on, Adam's learning rate / betas /
eps / weight decay, T_0, mixup, head dropout, gradient clipping, loss weights, the phase it
starts from -- is read from ``ffcore.schedule.PHASES``.

Learning rate: ``CosineAnnealingWarmRestarts(T_0)`` stepped every iteration with the fractional
epoch, so iteration i of epoch e runs at lr(e + i / iters) and the cosine is smooth inside an
epoch. T_0 is the phase's (= its epochs); a run with fewer epochs than the table (smoke
profile) uses T_0 = the epochs it runs, so each phase still shows one complete cosine.

Reproducibility: the sample order (``DistributedSampler``, seeded by seed and epoch), the
augmentation (the dataset's rng of (seed, epoch, index)) and mixup (rng of (seed, epoch, rank))
depend only on the epoch; the global RNGs (dropout) are saved in every checkpoint. On CPU,
training 4 epochs straight and 2 + resume 2 give identical weights.

Distributed: launched by ``torchrun`` (WORLD_SIZE > 1 in the environment) the model is wrapped in
DistributedDataParallel (NCCL on CUDA, gloo on CPU), each process reads its shard, and rank 0
alone writes checkpoints and logs. ``batch_size`` is per process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ffcore.atomic import copy_file
from ffcore.config import DEFAULT_VARIANT, TrainConfig, to_dict
from ffcore.cpu_kernels import kernel_record
from ffcore.data.progress import progress_bar
from ffcore.data.widerface import collate
from ffcore.detection.loss import LOSS_TERMS, MultiBoxLoss
from ffcore.detection.priors import prior_boxes
from ffcore.models.checkpoint import (
    final_checkpoint_name,
    load_checkpoint,
    load_weights,
    model_config_of,
)
from ffcore.models.device import resolve_device
from ffcore.schedule import Phase, get_phase
from ffcore.training.checkpoint import Start, save_checkpoint, set_rng_states
from ffcore.training.distributed import DistInfo, all_finite, dist_from_env, distributed
from ffcore.training.history import EPOCHS, HISTORY, History, last_epoch, read_epoch_rows
from ffcore.training.lock import PhaseLock
from ffcore.training.mixup import mixup_batch
from ffcore.training.probe import Probe, make_probe, probe_losses, to_device
from ffcore.training.start import (
    LATEST,
    ConfigMismatch,
    Refusal,
    StartPlan,
    config_differences,
    dataset_fingerprint,
    phase_epochs_and_t0,
    resolve_start,
)

__all__ = ["FitResult", "NonFiniteLossError", "Start", "TrainingInterrupted", "fit_phase"]
__all__ += ["phase_epochs_and_t0", "resolve_start"]


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during a phase; ``latest`` is the checkpoint to resume from (None: none yet)."""

    def __init__(self, phase: str, latest: Path | None) -> None:
        self.phase, self.latest = phase, latest
        super().__init__(
            f"phase {phase} interrupted; "
            + (f"resume from {latest}" if latest is not None else "no checkpoint written yet")
        )


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; the message names the step and the last good checkpoint."""


@dataclass(frozen=True)
class FitResult:
    phase: str
    epochs: int  # epochs the phase plans (the final checkpoint's name)
    epochs_done: int
    checkpoint: Path | None  # the final checkpoint; None when stopped early (stop_after_epoch)
    latest: Path
    history_csv: Path
    tensorboard_dir: Path
    mode: Start | None  # how the phase started; None: already complete, nothing trained
    started_from: str | None
    epoch_losses: tuple[float, ...]  # mean total training loss of each epoch of the phase so far
    probe_losses: tuple[float, ...]  # probe total loss before the phase (0) and after each epoch
    epochs_csv: Path | None = None
    # the ATen level torch reported in the training process ("AVX2"; None: not recorded) and
    # oneDNN's ISA there ("Intel AVX2"), ffcore.cpu_kernels.kernel_record
    cpu_capability: str | None = None
    onednn_isa: str | None = None

    @property
    def final_loss(self) -> float:
        """Mean total loss of the last epoch (NaN on ranks other than 0, which keep no log)."""
        return self.epoch_losses[-1] if self.epoch_losses else math.nan


# -- pieces -----------------------------------------------------------------------------------
def make_optimizer(model: nn.Module, phase: Phase) -> torch.optim.Adam:
    return torch.optim.Adam(
        model.parameters(),
        lr=phase.lr,
        betas=phase.betas,
        eps=phase.eps,
        weight_decay=phase.weight_decay,
    )


def make_scheduler(
    optimizer: torch.optim.Optimizer, t0: int
) -> torch.optim.lr_scheduler.CosineAnnealingWarmRestarts:
    return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=t0, T_mult=1)


def _validate(label_file: Path, info: DistInfo) -> None:
    """Rank 0 checks the whole dataset (every image opened; a training set without a face is
    an error: ``no_face_problem``); all ranks raise its error."""
    from ffcore.data.widerface import validate_dataset

    message = [None]
    if info.main:
        try:
            report = validate_dataset(label_file)
            report.raise_if_errors()
        except ValueError as exc:
            message[0] = str(exc)
        else:
            if report.warnings:
                shown = "\n  ".join(report.warnings[:10])
                more = len(report.warnings) - 10
                warnings.warn(
                    f"{report.label_file}: {len(report.warnings)} suspicious label(s); training "
                    f"goes on (random crops drop boxes outside the image):\n  {shown}"
                    + (f"\n  ... and {more} more" if more > 0 else ""),
                    stacklevel=3,
                )
    if info.enabled:
        dist.broadcast_object_list(message, src=0)
    if message[0] is not None:
        raise ValueError(message[0])


def build_dataset(config: TrainConfig, info: DistInfo) -> Dataset:
    """The augmented training set of ``config.training_dataset``, validated first."""
    from ffcore.data.widerface import WiderFaceDataset, resolve_label_file

    if config.training_dataset is None:
        raise ValueError("training_dataset (path of train/label.txt) is required")
    label_file = resolve_label_file(config.training_dataset)  # label.txt or its folder
    _validate(label_file, info)
    return WiderFaceDataset(label_file, config.image_size, augment=True, seed=config.seed)


def _build_model(config: TrainConfig, state: dict[str, Any] | None) -> nn.Module:
    from ffcore.models import build_from_config, build_model

    if state is None:
        model = build_model(config.variant or DEFAULT_VARIANT, init_seed=config.init_seed)
        if config.backbone_init is not None:
            from ffcore.models.reference import init_backbone  # needs the pretrained extra

            init_backbone(model, config.backbone_init)
        return model
    if config.backbone_init is not None:
        raise ValueError(
            f"backbone_init applies to phase 1 from scratch; {state['path']} already holds "
            "every weight"
        )
    model = build_from_config(model_config_of(state))
    load_weights(model, state)
    return model


@dataclass(kw_only=True)
class PhaseLoop:
    """What one phase's epochs share, built by keyword; ``train_one_epoch`` runs one epoch."""

    phase: Phase
    epochs: int
    model: nn.Module  # unwrapped
    net: nn.Module  # model or its DDP wrapper
    loader: DataLoader
    sampler: DistributedSampler
    criterion: MultiBoxLoss
    priors: torch.Tensor
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    device: torch.device
    info: DistInfo
    seed: int
    use_amp: bool
    progress: bool
    history: History
    bar: Any = None  # the phase's progress bar (tqdm over all its steps), or None
    probe: Probe | None = None  # the fixed probe crops whose loss each epoch row records
    out_dir: Path = Path(".")  # the phase folder
    final: Path = Path(".")  # the phase's final checkpoint
    save: dict[str, Any] = dataclasses.field(default_factory=dict)  # save_checkpoint's keywords


def train_one_epoch(loop: PhaseLoop, epoch: int, last_good: str | None) -> float:
    """Train epoch ``epoch`` (0-based) of the phase; returns the learning rate of its last step."""
    phase, info = loop.phase, loop.info
    loop.sampler.set_epoch(epoch)
    if hasattr(loop.loader.dataset, "set_epoch"):
        loop.loader.dataset.set_epoch(epoch)
    mix_rng = np.random.default_rng([loop.seed, epoch, info.rank])
    max_norm = phase.grad_clip if phase.grad_clip is not None else math.inf
    loop.net.train()
    iters = len(loop.loader)
    lr = math.nan
    tick = time.perf_counter()
    for i, (images, targets) in enumerate(loop.loader):
        images = images.to(loop.device, non_blocking=True)
        targets = to_device(targets, loop.device)
        if phase.mixup_alpha is not None:
            images, targets = mixup_batch(images, targets, phase.mixup_alpha, mix_rng)
        with torch.autocast(loop.device.type, dtype=torch.float16, enabled=loop.use_amp):
            predictions = loop.net(images)
        losses = loop.criterion(predictions, targets, loop.priors)  # fp32
        if not all_finite(losses["total"], info):
            terms = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
            raise NonFiniteLossError(
                f"phase {phase.id} epoch {epoch + 1} iteration {i + 1}: non-finite loss "
                f"({terms}); training stopped. Last good checkpoint: {last_good or 'none'}"
            )
        loop.optimizer.zero_grad(set_to_none=True)
        loop.scaler.scale(losses["total"]).backward()
        loop.scaler.unscale_(loop.optimizer)
        grad_norm = nn.utils.clip_grad_norm_(loop.model.parameters(), max_norm)
        lr = loop.optimizer.param_groups[0]["lr"]
        loop.scaler.step(loop.optimizer)
        loop.scaler.update()
        loop.scheduler.step(epoch + (i + 1) / iters)
        now = time.perf_counter()
        row = {
            "phase": phase.id,
            "epoch": epoch + 1,
            "iteration": i + 1,
            "step": epoch * iters + i + 1,
            "epoch_float": epoch + i / iters,
            "lr": lr,
            "grad_norm": float(grad_norm),
            "images_per_s": images.shape[0] * info.world_size / (now - tick),
            **{k: float(v.detach()) for k, v in losses.items()},
        }
        tick = now
        loop.history.add(row)
        if loop.bar is not None:
            loop.bar.update(1)
            loop.bar.set_postfix(
                epoch=f"{epoch + 1}/{loop.epochs}", loss=f"{row['total']:.3f}", lr=f"{lr:.2e}",
                refresh=False,
            )  # fmt: skip
    return lr


# -- the phase ----------------------------------------------------------------------------------
def fit_phase(
    config: TrainConfig,
    dataset: Dataset | None = None,
    stop_after_epoch: int | None = None,
    *,
    overwrite: bool = False,
) -> FitResult:
    """Train one phase (``config.phase``) and return where its outputs are.

    Outputs in ``<save_folder>/phase<id>/``: ``latest.pth`` after every epoch, the final
    ``phase<id>_epoch_<epochs>.pth``, ``history.csv`` (one row per iteration), ``epochs.csv``
    (one row per epoch with the probe losses; row 0 = before the first step) and
    ``tensorboard/``. ``dataset`` replaces the one read from ``config.training_dataset`` (tests,
    benchmarks; no validation and no dataset fingerprint then): it yields (image, target) like
    ``WiderFaceDataset`` and may have ``set_epoch``. ``stop_after_epoch`` ends the run after that
    epoch as if interrupted (resume it from ``latest.pth``). ``overwrite``: a run from scratch or
    from the previous phase may replace an earlier run's work in the phase folder (otherwise
    refused, ``OutputsExist``).

    Three steps: the start state (``resolve_start``: refused before anything is written), the
    set-up (``_set_up``) and the epoch loop (``_run_epochs``). A KeyboardInterrupt leaves as
    ``TrainingInterrupted`` naming the checkpoint to resume from.
    """
    phase = get_phase(config.phase, config.phase3_variant)
    info = dist_from_env()
    device = resolve_device(config.device, info.local_rank)
    state = load_checkpoint(config.resume_net) if config.resume_net else None
    fingerprint = dataset_fingerprint(config.training_dataset) if dataset is None else None
    plan = resolve_start(config, state, fingerprint, overwrite)
    del state
    if isinstance(plan, Refusal):
        raise plan.error
    end_epoch = plan.epochs if stop_after_epoch is None else min(plan.epochs, stop_after_epoch)

    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    out_dir = Path(config.save_folder) / phase.folder
    latest = out_dir / LATEST
    lock = PhaseLock(out_dir) if info.main else contextlib.nullcontext()
    try:
        with lock, distributed(info, device):
            loop = _set_up(config, plan, dataset, info, device, out_dir, fingerprint)
            if overwrite and not plan.kind.continues and info.main:
                _remove_checkpoints(out_dir)  # once the data and the model are known good
            plan = dataclasses.replace(plan, state=None)  # the weights live in the model now
            try:
                _run_epochs(loop, plan, end_epoch, config.resume_net)
            finally:
                loop.bar.close()
                loop.history.close()
    except KeyboardInterrupt as exc:
        if isinstance(exc, TrainingInterrupted):
            raise
        raise TrainingInterrupted(phase.id, latest if latest.is_file() else None) from None
    return FitResult(
        phase=phase.id,
        epochs=plan.epochs,
        epochs_done=end_epoch,
        checkpoint=loop.final if end_epoch == plan.epochs else None,
        latest=latest,
        history_csv=out_dir / HISTORY,
        tensorboard_dir=out_dir / "tensorboard",
        mode=plan.kind,
        started_from=config.resume_net,
        epoch_losses=loop.history.column("train_total", first_epoch=1),
        probe_losses=loop.history.column("probe_total"),
        epochs_csv=out_dir / EPOCHS,
        cpu_capability=loop.save["cpu_kernels"].get("cpu_capability"),
        onednn_isa=loop.save["cpu_kernels"].get("onednn_isa"),
    )


def completed_phase(config: TrainConfig) -> FitResult | None:
    """The phase ``config`` asks for when its folder already holds it complete (its final
    checkpoint and the last ``epochs.csv`` row) with the same result-determining settings;
    None when it is not complete. Other settings: ``ConfigMismatch`` naming them."""
    phase = get_phase(config.phase, config.phase3_variant)
    epochs, _ = phase_epochs_and_t0(phase, config.epochs)
    out_dir = Path(config.save_folder) / phase.folder
    final = out_dir / final_checkpoint_name(phase, epochs)
    if not (final.is_file() and last_epoch(out_dir / EPOCHS) >= epochs):
        return None
    state = load_checkpoint(final)
    held, kernels = state.get("train_config") or {}, state.get("cpu_kernels") or {}
    del state
    differences = config_differences(config, held, dataset_fingerprint(config.training_dataset))
    if differences:
        raise ConfigMismatch(final, differences)
    rows = read_epoch_rows(out_dir / EPOCHS)
    return FitResult(
        phase=phase.id,
        epochs=epochs,
        epochs_done=epochs,
        checkpoint=final,
        latest=out_dir / LATEST,
        history_csv=out_dir / HISTORY,
        tensorboard_dir=out_dir / "tensorboard",
        mode=None,
        started_from=held.get("resume_net"),
        epoch_losses=tuple(float(r["train_total"]) for r in rows if int(r["epoch"]) >= 1),
        probe_losses=tuple(float(r["probe_total"]) for r in rows),
        epochs_csv=out_dir / EPOCHS,
        cpu_capability=kernels.get("cpu_capability"),
        onednn_isa=kernels.get("onednn_isa"),
    )


def _remove_checkpoints(out_dir: Path) -> None:
    """``overwrite``: the earlier run's checkpoints go before the new run writes anything, so a
    folder never mixes the two runs' checkpoints (its logs are rewritten by ``History``)."""
    for path in (out_dir / LATEST, *out_dir.glob("phase*_epoch_*.pth")):
        path.unlink(missing_ok=True)


def _set_up(
    config: TrainConfig,
    plan: StartPlan,
    dataset: Dataset | None,
    info: DistInfo,
    device: torch.device,
    out_dir: Path,
    fingerprint: dict[str, Any] | None,
) -> PhaseLoop:
    """Data, model, optimiser, scheduler (their states when the phase continues), loader and
    logs of the phase whose start is ``plan``."""
    phase = get_phase(config.phase, config.phase3_variant)
    state = plan.state
    data = dataset if dataset is not None else build_dataset(config, info)
    probe = make_probe(data, config.probe_images)
    model = _build_model(config, state)
    model.apply_phase(phase, config.attention_schedule)
    model.to(device)
    if config.channels_last:  # weights NHWC and the input converted in FeatherFace.features
        model.to(memory_format=torch.channels_last)
        model.channels_last = True
    optimizer = make_optimizer(model, phase)
    scheduler = make_scheduler(optimizer, plan.t0)
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    if plan.kind.continues:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler") is not None and use_amp:
            scaler.load_state_dict(state["scaler"])
        set_rng_states(state["rng"])

    net: nn.Module = model
    if info.enabled:
        net = nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            # switched-off attention blocks get no gradient
            find_unused_parameters=model.attention_state() not in (None, (True, True)),
        )
    sampler = DistributedSampler(
        data, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=config.seed
    )
    loader = DataLoader(
        data,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=config.num_workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
    )
    if len(loader) == 0:
        raise ValueError("the training dataset is empty")
    history = History(
        out_dir, plan.start_epoch, enabled=info.main, step_offset=plan.step_offset,
        epoch_offset=plan.epoch_offset, phase=phase.id,
    )  # fmt: skip
    iters = len(loader)
    bar = progress_bar(  # a live bar on a terminal; one line per phase in a notebook or log
        plan.epochs * iters, initial=plan.start_epoch * iters, desc=f"phase {phase.id}",
        unit="step", disable=not (config.progress and info.main),
    )  # fmt: skip
    train_config = to_dict(
        dataclasses.replace(config, variant=model.config.variant, epochs=plan.epochs)
    )
    if fingerprint is not None:
        train_config["dataset_fingerprint"] = fingerprint
    return PhaseLoop(
        phase=phase,
        epochs=plan.epochs,
        model=model,
        net=net,
        loader=loader,
        sampler=sampler,
        criterion=MultiBoxLoss.from_phase(phase),
        priors=prior_boxes((config.image_size, config.image_size)).to(device),
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        device=device,
        info=info,
        seed=config.seed,
        use_amp=use_amp,
        progress=config.progress,
        history=history,
        bar=bar,
        probe=probe,
        out_dir=out_dir,
        final=out_dir / final_checkpoint_name(phase, plan.epochs),
        save=dict(
            model=model,
            phase=phase.id,
            epochs=plan.epochs,
            train_config=train_config,
            optimizer=optimizer,
            scheduler=scheduler,
            scaler=scaler,
            step_offset=plan.step_offset,
            epoch_offset=plan.epoch_offset,
            cpu_kernels=kernel_record(),  # read in this process, where the training runs
        ),
    )


def _run_epochs(loop: PhaseLoop, plan: StartPlan, end_epoch: int, resume_net: str | None) -> None:
    """Epochs ``plan.start_epoch`` .. ``end_epoch`` (0-based, exclusive): train, log the epoch
    row, then save ``latest.pth`` (and at the phase's last epoch the final checkpoint).

    The row goes first: a kill between the two leaves a row past the checkpoint's epoch, which
    the resume drops (``History`` keeps the rows up to its checkpoint's epoch) and logs again
    when it trains that epoch again. A row missing at the checkpoint's epoch (a kill after the
    checkpoint by a version that wrote the row last) is made again from the checkpoint's
    weights and the logged iterations (``_restore_epoch_row``)."""
    phase, info, history, probe = loop.phase, loop.info, loop.history, loop.probe
    iters = len(loop.loader)
    latest = loop.out_dir / LATEST
    last_good = resume_net
    if plan.start_epoch == 0:
        history.add_epoch(_epoch_row(phase, 0, math.nan, loop, probe, math.nan, 0.0))
    elif plan.kind.continues:
        _restore_epoch_row(plan.start_epoch, history, loop, probe)
    for epoch in range(plan.start_epoch, end_epoch):
        tick = time.perf_counter()
        lr = train_one_epoch(loop, epoch, last_good)
        history.add_epoch(
            _epoch_row(
                phase, epoch + 1, history.train_mean(epoch + 1), loop, probe, lr,
                time.perf_counter() - tick,
            )
        )  # fmt: skip
        if info.main:
            done_steps = plan.step_offset + (epoch + 1) * iters
            save_checkpoint(latest, epoch=epoch + 1, global_step=done_steps, **loop.save)
            if epoch + 1 == loop.epochs:
                save_checkpoint(loop.final, epoch=epoch + 1, global_step=done_steps, **loop.save)
        if info.enabled:
            dist.barrier()
        last_good = str(latest)
    if plan.kind is Start.FINISH and info.main:
        _finish_phase(Path(resume_net), loop.final)


def _restore_epoch_row(epoch: int, history: History, loop: PhaseLoop, probe: Probe | None) -> None:
    """The ``epochs.csv`` row of ``epoch`` (the continued checkpoint's) when it is missing: the
    training mean and last learning rate from ``history.csv``, the probe losses of the
    checkpoint's weights (those the row was computed from), ``seconds`` unknown (NaN). A
    folder without that epoch's iterations (a checkpoint trained elsewhere) gets no row: a row
    of NaN would read as a measurement."""
    if not loop.info.main or history.has_epoch(epoch):
        return
    train_total = history.train_mean(epoch)
    if math.isnan(train_total):
        return
    history.add_epoch(
        _epoch_row(loop.phase, epoch, train_total, loop, probe, history.last_lr(), math.nan)
    )


def _finish_phase(latest: Path, final: Path) -> None:
    """Complete what a kill after the last ``latest.pth`` left undone: the final checkpoint (the
    same state as ``latest``, copied atomically; its ``epochs.csv`` row: ``_restore_epoch_row``)."""
    if latest.resolve() != final.resolve():
        copy_file(latest, final)


def _epoch_row(
    phase: Phase,
    epoch: int,
    train_total: float,
    loop: PhaseLoop,
    probe: Probe | None,
    lr: float,
    seconds: float,
) -> dict[str, Any]:
    probe_terms = (
        probe_losses(
            loop.model, loop.criterion, probe, loop.priors, loop.device, loop.loader.batch_size or 8
        )
        if loop.info.main
        else dict.fromkeys(LOSS_TERMS, math.nan)
    )
    return {
        "phase": phase.id,
        "epoch": epoch,
        "train_total": train_total,
        **{f"probe_{k}": v for k, v in probe_terms.items()},
        "lr_last": lr,
        "seconds": seconds,
    }
