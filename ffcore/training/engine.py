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
import os
import shutil
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
from tqdm import tqdm

from ffcore.config import DEFAULT_VARIANT, TrainConfig, to_dict
from ffcore.data.widerface import collate
from ffcore.detection.loss import LOSS_TERMS, MultiBoxLoss
from ffcore.detection.priors import prior_boxes
from ffcore.models.checkpoint import (
    CheckpointError,
    final_checkpoint_name,
    load_checkpoint,
    load_weights,
    model_config_of,
)
from ffcore.models.device import resolve_device
from ffcore.schedule import Phase, get_phase
from ffcore.training.checkpoint import save_checkpoint, set_rng_states, start_mode
from ffcore.training.distributed import DistInfo, all_finite, dist_from_env, distributed
from ffcore.training.history import EPOCHS, HISTORY, History
from ffcore.training.lock import PhaseLock
from ffcore.training.mixup import mixup_batch
from ffcore.training.probe import Probe, make_probe, probe_losses, to_device

LATEST = "latest.pth"


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
    mode: str  # "fresh", "start" (from the previous phase) or "resume"
    started_from: str | None
    epoch_losses: tuple[float, ...]  # mean total training loss of each epoch of the phase so far
    probe_losses: tuple[float, ...]  # probe total loss before the phase (0) and after each epoch
    epochs_csv: Path | None = None

    @property
    def final_loss(self) -> float:
        """Mean total loss of the last epoch (NaN on ranks other than 0, which keep no log)."""
        return self.epoch_losses[-1] if self.epoch_losses else math.nan


# -- pieces -----------------------------------------------------------------------------------
def phase_epochs_and_t0(phase: Phase, epochs: int | None) -> tuple[int, int]:
    """Epochs to run and the cosine period: the table's, or T_0 = epochs for a shorter run."""
    n = phase.epochs if epochs is None else int(epochs)
    return n, (phase.t0 if n == phase.epochs else n)


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
    """Rank 0 checks the whole dataset (every image opened); all ranks raise its error."""
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


def check_variant(variant: str | None, state: dict[str, Any] | None) -> None:
    """An explicit ``variant`` must be the starting checkpoint's: a phase never changes model."""
    if variant is None or state is None:
        return
    held = model_config_of(state).variant
    if held != variant:
        raise ValueError(
            f"variant {variant!r} was asked for, but {state['path']} holds variant {held!r}; "
            f"a phase continues the checkpoint's model (ask for {held!r} or leave the variant out)"
        )


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
) -> FitResult:
    """Train one phase (``config.phase``) and return where its outputs are.

    Outputs in ``<save_folder>/phase<id>/``: ``latest.pth`` after every epoch, the final
    ``phase<id>_epoch_<epochs>.pth``, ``history.csv`` (one row per iteration), ``epochs.csv``
    (one row per epoch with the probe losses; row 0 = before the first step) and
    ``tensorboard/``. ``dataset`` replaces the one read from ``config.training_dataset`` (tests,
    benchmarks; no validation then): it yields (image, target) like ``WiderFaceDataset`` and may
    have ``set_epoch``. ``stop_after_epoch``
    ends the run after that epoch as if interrupted (resume it from ``latest.pth``).
    """
    phase = get_phase(config.phase)
    info = dist_from_env()
    device = resolve_device(config.device, info.local_rank)
    state = load_checkpoint(config.resume_net) if config.resume_net else None
    check_variant(config.variant, state)
    mode = start_mode(phase, state)
    resuming = mode in ("resume", "finish")
    planned = config.epochs if config.epochs is not None or not resuming else state["epochs"]
    epochs, t0 = phase_epochs_and_t0(phase, planned)
    start_epoch = state["epoch"] if resuming else 0
    step_offset, epoch_offset = _offsets(state, mode)
    if start_epoch > epochs or (start_epoch == epochs and mode != "finish"):
        raise ValueError(f"{config.resume_net}: already {start_epoch} epochs of {epochs} done")
    end_epoch = epochs if stop_after_epoch is None else min(epochs, stop_after_epoch)

    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    out_dir = Path(config.save_folder) / phase.folder
    final = out_dir / final_checkpoint_name(phase, epochs)
    lock = PhaseLock(out_dir) if info.main else contextlib.nullcontext()
    with lock, distributed(info, device):
        if mode == "finish":
            _check_unfinished(config.resume_net, final, out_dir / EPOCHS, epochs)
        data = dataset if dataset is not None else build_dataset(config, info)
        probe = make_probe(data, config.probe_images)
        model = _build_model(config, state)
        model.apply_phase(phase, config.attention_schedule)
        model.to(device)
        optimizer = make_optimizer(model, phase)
        scheduler = make_scheduler(optimizer, t0)
        use_amp = config.amp and device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        if resuming:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if state.get("scaler") is not None and use_amp:
                scaler.load_state_dict(state["scaler"])
            set_rng_states(state["rng"])
        del state  # the weights live in the model now

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
            out_dir, start_epoch, enabled=info.main, step_offset=step_offset,
            epoch_offset=epoch_offset, phase=phase.id,
        )  # fmt: skip
        iters = len(loader)
        bar = tqdm(
            total=epochs * iters, initial=start_epoch * iters, desc=f"phase {phase.id}",
            unit="step", disable=not (config.progress and info.main), dynamic_ncols=True,
        )  # fmt: skip
        loop = PhaseLoop(
            phase=phase,
            epochs=epochs,
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
        )
        save = dict(
            model=model,
            phase=phase.id,
            epochs=epochs,
            train_config=to_dict(
                dataclasses.replace(config, variant=model.config.variant, epochs=epochs)
            ),
            optimizer=optimizer,
            scheduler=scheduler,
            scaler=scaler,
            step_offset=step_offset,
            epoch_offset=epoch_offset,
        )
        latest = out_dir / LATEST
        last_good = config.resume_net
        try:
            if start_epoch == 0:
                history.add_epoch(_epoch_row(phase, 0, math.nan, loop, probe, math.nan, 0.0))
            for epoch in range(start_epoch, end_epoch):
                tick = time.perf_counter()
                lr = train_one_epoch(loop, epoch, last_good)
                if info.main:
                    done_steps = step_offset + (epoch + 1) * iters
                    save_checkpoint(latest, epoch=epoch + 1, global_step=done_steps, **save)
                    if epoch + 1 == epochs:
                        save_checkpoint(final, epoch=epoch + 1, global_step=done_steps, **save)
                if info.enabled:
                    dist.barrier()
                last_good = str(latest)
                history.add_epoch(
                    _epoch_row(
                        phase, epoch + 1, history.train_mean(epoch + 1), loop, probe, lr,
                        time.perf_counter() - tick,
                    )
                )  # fmt: skip
            if mode == "finish" and info.main:
                _finish_phase(Path(config.resume_net), final, history, loop, probe)
        finally:
            bar.close()
            history.close()
    return FitResult(
        phase=phase.id,
        epochs=epochs,
        epochs_done=end_epoch,
        checkpoint=final if end_epoch == epochs else None,
        latest=latest,
        history_csv=out_dir / HISTORY,
        tensorboard_dir=out_dir / "tensorboard",
        mode=mode,
        started_from=config.resume_net,
        epoch_losses=history.column("train_total", first_epoch=1),
        probe_losses=history.column("probe_total"),
        epochs_csv=out_dir / EPOCHS,
    )


def _check_unfinished(resume_net: str, final: Path, epochs_csv: Path, epochs: int) -> None:
    """A complete checkpoint of this phase may only finish a phase that a kill left unfinished
    (final checkpoint or last ``epochs.csv`` row missing); otherwise the phase is done."""
    from ffcore.training.history import has_epoch_row

    if final.is_file() and has_epoch_row(epochs_csv, epochs):
        raise CheckpointError(
            f"{resume_net}: phase is already complete ({final} and the last row of "
            f"{epochs_csv} exist); start the next phase from {final}"
        )


def _finish_phase(
    latest: Path, final: Path, history: History, loop: PhaseLoop, probe: Probe | None
) -> None:
    """Complete what a kill after the last ``latest.pth`` left undone: the final checkpoint (the
    same state as ``latest``, copied atomically) and the last ``epochs.csv`` row."""
    if latest.resolve() != final.resolve():
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        try:
            shutil.copyfile(latest, tmp)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
    if not history.has_epoch(loop.epochs):
        lr = history.last_lr()
        history.add_epoch(
            _epoch_row(
                loop.phase, loop.epochs, history.train_mean(loop.epochs), loop, probe, lr, math.nan
            )
        )


def _offsets(state: dict[str, Any] | None, mode: str) -> tuple[int, int]:
    """(steps, epochs) of the phases before this one on the continuous TensorBoard axis: a
    resumed phase keeps its own offsets; a phase started from the previous one's checkpoint
    continues after it (older checkpoints without the fields count as 0)."""
    if state is None:
        return 0, 0
    if mode in ("resume", "finish"):
        return int(state.get("step_offset", 0)), int(state.get("epoch_offset", 0))
    return int(state.get("global_step", 0)), int(state.get("epoch_offset", 0)) + int(state["epoch"])


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
