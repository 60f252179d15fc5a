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

import csv
import dataclasses
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from ffcore.checkpoint import (
    final_checkpoint_name,
    load_checkpoint,
    load_weights,
    model_config_of,
    save_checkpoint,
    set_rng_states,
    start_mode,
)
from ffcore.config import TrainConfig, to_dict
from ffcore.data.widerface import collate
from ffcore.loss import LOSS_TERMS, MultiBoxLoss, Target
from ffcore.priors import prior_boxes
from ffcore.schedule import Phase, get_phase

LATEST = "latest.pth"
HISTORY = "history.csv"
EPOCHS = "epochs.csv"
HISTORY_COLUMNS: tuple[str, ...] = (
    "phase",
    "epoch",  # 1-based epoch the iteration belongs to
    "iteration",  # 1-based within the epoch
    "step",  # 1-based over the phase
    "epoch_float",  # schedule position e + i / iters at which this step's lr was taken
    "lr",
    "grad_norm",
    "images_per_s",
    *LOSS_TERMS,
)
EPOCH_COLUMNS: tuple[str, ...] = (
    "phase",
    "epoch",  # epochs completed; 0 = before the phase's first step
    "train_total",  # mean training loss of the epoch (mixup-weighted in phase 3)
    *(f"probe_{t}" for t in LOSS_TERMS),
    "lr_last",
    "seconds",
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
@dataclass(frozen=True)
class DistInfo:
    enabled: bool = False
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def dist_from_env() -> DistInfo:
    """The torchrun environment (WORLD_SIZE, RANK, LOCAL_RANK); single process without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(True, int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str | None, local_rank: int = 0) -> torch.device:
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


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


def configure_model(model: nn.Module, phase: Phase) -> None:
    """Attention and head-dropout switches as the phase table says."""
    model.set_attention(phase.channel_attention, phase.spatial_attention)
    model.set_head_dropout(phase.head_dropout)


def mixup_batch(
    images: torch.Tensor, targets: list[Target], alpha: float, rng: np.random.Generator
) -> tuple[torch.Tensor, list[Target]]:
    """Detection mixup: image b becomes lam_b * x_b + (1 - lam_b) * x_partner(b), lam ~ Beta(alpha,
    alpha); it keeps both images' faces, weighted lam_b and 1 - lam_b ("weights" in the target),
    so each image's loss terms count by its share. Partners form a random cycle (never itself)."""
    b = images.shape[0]
    if b < 2:
        return images, targets
    order = rng.permutation(b)
    partner = np.empty(b, dtype=np.int64)
    partner[order] = np.roll(order, -1)
    lam = rng.beta(alpha, alpha, size=b).astype(np.float32)
    lam_t = torch.from_numpy(lam).to(images.device).view(b, 1, 1, 1)
    mixed = lam_t * images + (1 - lam_t) * images[torch.from_numpy(partner).to(images.device)]
    out = []
    for i, j in enumerate(partner.tolist()):
        a, o = targets[i], targets[j]
        weights = torch.cat(
            [
                torch.full((len(a["boxes"]),), float(lam[i]), device=a["boxes"].device),
                torch.full((len(o["boxes"]),), 1.0 - float(lam[i]), device=a["boxes"].device),
            ]
        )
        out.append(
            {
                "boxes": torch.cat([a["boxes"], o["boxes"]]),
                "landmarks": torch.cat([a["landmarks"], o["landmarks"]]),
                "landmark_valid": torch.cat([a["landmark_valid"], o["landmark_valid"]]),
                "weights": weights,
            }
        )
    return mixed, out


def _to_device(targets: list[Target], device: torch.device) -> list[Target]:
    return [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]


def _all_finite(value: torch.Tensor, info: DistInfo) -> bool:
    flag = torch.isfinite(value.detach()).to(torch.float32).reshape(1)
    if info.enabled:
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() > 0)


def _read_rows(path: Path, keep_epochs: int) -> list[dict[str, Any]]:
    if keep_epochs <= 0 or not path.is_file():
        return []
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if int(r["epoch"]) <= keep_epochs]


class _Table:
    """A CSV that is rewritten on open (keeping the rows of completed epochs) and appended to."""

    def __init__(self, path: Path, columns: tuple[str, ...], keep_epochs: int) -> None:
        self.path, self.columns = path, columns
        self.rows = _read_rows(path, keep_epochs)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, columns)
            w.writeheader()
            w.writerows(self.rows)

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.columns).writerow(row)


class History:
    """Rank 0's logs: ``history.csv`` (one row per iteration), ``epochs.csv`` (one row per epoch,
    with the probe losses) and TensorBoard scalars. A resumed phase keeps the rows of the epochs
    its checkpoint completed and drops the rest (an interrupted epoch's partial rows)."""

    def __init__(self, out_dir: Path, keep_epochs: int, enabled: bool) -> None:
        self.enabled = enabled
        self._writer = None
        if not enabled:
            return
        self.iterations = _Table(out_dir / HISTORY, HISTORY_COLUMNS, keep_epochs)
        self.epochs = _Table(out_dir / EPOCHS, EPOCH_COLUMNS, keep_epochs)
        from torch.utils.tensorboard import SummaryWriter  # slow import: only where used

        last = self.iterations.rows[-1]["step"] if self.iterations.rows else None
        self._writer = SummaryWriter(
            log_dir=str(out_dir / "tensorboard"), purge_step=None if last is None else int(last) + 1
        )

    def add(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.iterations.add(row)
        step = int(row["step"])
        for term in LOSS_TERMS:
            self._writer.add_scalar(f"loss/{term}", row[term], step)
        for key in ("lr", "grad_norm", "images_per_s"):
            self._writer.add_scalar(f"train/{key}", row[key], step)

    def add_epoch(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.epochs.add(row)
        for term in LOSS_TERMS:
            self._writer.add_scalar(f"probe/{term}", row[f"probe_{term}"], int(row["epoch"]))

    def train_mean(self, epoch: int) -> float:
        if not self.enabled:
            return math.nan
        values = [float(r["total"]) for r in self.iterations.rows if int(r["epoch"]) == epoch]
        return float(np.mean(values)) if values else math.nan

    def column(self, name: str, first_epoch: int = 0) -> tuple[float, ...]:
        if not self.enabled:
            return ()
        return tuple(float(r[name]) for r in self.epochs.rows if int(r["epoch"]) >= first_epoch)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


Probe = tuple[torch.Tensor, list[Target]]


def make_probe(dataset: Dataset, count: int) -> Probe | None:
    """The first ``count`` training images as augmented in epoch 0: a fixed set whose loss is
    measured before the phase and after every epoch -- a low-noise view of whether training
    fits, where the per-iteration loss jumps with each batch's crops."""
    from ffcore.data.widerface import collate

    n = min(count, len(dataset))
    if n <= 0:
        return None
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(0)
    return collate([dataset[i] for i in range(n)])


@torch.no_grad()
def probe_losses(
    model: nn.Module,
    criterion: MultiBoxLoss,
    probe: Probe | None,
    priors: torch.Tensor,
    device: torch.device,
    chunk: int = 8,
) -> dict[str, float]:
    """Loss terms of ``probe`` as training sees them: BatchNorm on batch statistics (chunks of
    ``chunk`` images, like a training batch), no dropout. Touches nothing: the BatchNorm running
    statistics are put back, so probing never changes training or checkpoints."""
    if probe is None:
        return dict.fromkeys(LOSS_TERMS, math.nan)
    images, targets = probe
    saved = {k: v.clone() for k, v in model.named_buffers()}
    was_training, dropout_on = model.training, getattr(model, "dropout_on", False)
    model.train()
    if hasattr(model, "set_head_dropout"):
        model.set_head_dropout(False)
    sums = dict.fromkeys(LOSS_TERMS, 0.0)
    try:
        for i in range(0, len(targets), chunk):
            x = images[i : i + chunk].to(device)
            out = criterion(model(x), _to_device(targets[i : i + chunk], device), priors)
            for k in LOSS_TERMS:
                sums[k] += float(out[k]) * x.shape[0]
    finally:
        for k, v in model.named_buffers():
            v.copy_(saved[k])
        model.train(was_training)
        if hasattr(model, "set_head_dropout"):
            model.set_head_dropout(dropout_on)
    return {k: v / len(targets) for k, v in sums.items()}


@contextmanager
def _distributed(info: DistInfo, device: torch.device) -> Iterator[None]:
    started = info.enabled and not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield
    finally:
        if started:
            dist.destroy_process_group()


def _validate(label_file: Path, info: DistInfo) -> None:
    """Rank 0 checks the whole dataset (every image opened); all ranks raise its error."""
    from ffcore.data.widerface import validate_dataset

    message = [None]
    if info.main:
        try:
            validate_dataset(label_file).raise_if_errors()
        except ValueError as exc:
            message[0] = str(exc)
    if info.enabled:
        dist.broadcast_object_list(message, src=0)
    if message[0] is not None:
        raise ValueError(message[0])


def build_dataset(config: TrainConfig, info: DistInfo) -> Dataset:
    """The augmented training set of ``config.training_dataset``, validated first."""
    from ffcore.data.widerface import WiderFaceDataset

    if config.training_dataset is None:
        raise ValueError("training_dataset (path of train/label.txt) is required")
    label_file = Path(config.training_dataset)
    if not label_file.is_file():
        raise FileNotFoundError(f"training dataset label file not found: {label_file}")
    _validate(label_file, info)
    return WiderFaceDataset(label_file, config.image_size, augment=True, seed=config.seed)


def _build_model(config: TrainConfig, state: dict[str, Any] | None) -> nn.Module:
    from ffcore.models import build_from_config, build_model

    if state is None:
        if config.backbone_init is not None:
            return build_model(config.variant, backbone_init=config.backbone_init)
        return build_model(config.variant)
    if config.backbone_init is not None:
        raise ValueError(
            f"backbone_init applies to phase 1 from scratch; {state['path']} already holds "
            "every weight"
        )
    model = build_from_config(model_config_of(state))
    load_weights(model, state)
    return model


@dataclass
class _Trainer:
    """The objects of one phase's run; ``epoch(e)`` trains one epoch."""

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

    def epoch(self, epoch: int, last_good: str | None) -> float:
        """Train epoch ``epoch`` (0-based); returns the learning rate of its last step."""
        phase, info = self.phase, self.info
        self.sampler.set_epoch(epoch)
        if hasattr(self.loader.dataset, "set_epoch"):
            self.loader.dataset.set_epoch(epoch)
        mix_rng = np.random.default_rng([self.seed, epoch, info.rank])
        max_norm = phase.grad_clip if phase.grad_clip is not None else math.inf
        self.net.train()
        iters = len(self.loader)
        bar = tqdm(
            self.loader,
            desc=f"phase {phase.id} epoch {epoch + 1}/{self.epochs}",
            disable=not (self.progress and info.main),
        )
        lr = math.nan
        tick = time.perf_counter()
        for i, (images, targets) in enumerate(bar):
            images = images.to(self.device, non_blocking=True)
            targets = _to_device(targets, self.device)
            if phase.mixup_alpha is not None:
                images, targets = mixup_batch(images, targets, phase.mixup_alpha, mix_rng)
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
                predictions = self.net(images)
            losses = self.criterion(predictions, targets, self.priors)  # fp32
            if not _all_finite(losses["total"], info):
                terms = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
                raise NonFiniteLossError(
                    f"phase {phase.id} epoch {epoch + 1} iteration {i + 1}: non-finite loss "
                    f"({terms}); training stopped. Last good checkpoint: {last_good or 'none'}"
                )
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(losses["total"]).backward()
            self.scaler.unscale_(self.optimizer)
            grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
            lr = self.optimizer.param_groups[0]["lr"]
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step(epoch + (i + 1) / iters)
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
            self.history.add(row)
            bar.set_postfix(loss=f"{row['total']:.3f}", lr=f"{lr:.2e}")
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
    mode = start_mode(phase, state)
    planned = config.epochs if config.epochs is not None or mode != "resume" else state["epochs"]
    epochs, t0 = phase_epochs_and_t0(phase, planned)
    start_epoch = state["epoch"] if mode == "resume" else 0
    if start_epoch >= epochs:
        raise ValueError(f"{config.resume_net}: already {start_epoch} epochs of {epochs} done")
    end_epoch = epochs if stop_after_epoch is None else min(epochs, stop_after_epoch)

    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    out_dir = Path(config.save_folder) / phase.folder
    with _distributed(info, device):
        data = dataset if dataset is not None else build_dataset(config, info)
        probe = make_probe(data, config.probe_images)
        model = _build_model(config, state)
        configure_model(model, phase)
        model.to(device)
        optimizer = make_optimizer(model, phase)
        scheduler = make_scheduler(optimizer, t0)
        use_amp = config.amp and device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        if mode == "resume":
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
                find_unused_parameters=not (phase.channel_attention and phase.spatial_attention),
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
        history = History(out_dir, start_epoch, enabled=info.main)
        trainer = _Trainer(
            phase, epochs, model, net, loader, sampler, MultiBoxLoss.from_phase(phase),
            prior_boxes((config.image_size, config.image_size)).to(device), optimizer,
            scheduler, scaler, device, info, config.seed, use_amp, config.progress, history,
        )  # fmt: skip
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
        )
        latest = out_dir / LATEST
        final = out_dir / final_checkpoint_name(phase, epochs)
        last_good = config.resume_net
        try:
            if start_epoch == 0:
                history.add_epoch(_epoch_row(phase, 0, math.nan, trainer, probe, math.nan, 0.0))
            for epoch in range(start_epoch, end_epoch):
                tick = time.perf_counter()
                lr = trainer.epoch(epoch, last_good)
                if info.main:
                    save_checkpoint(latest, epoch=epoch + 1, **save)
                    if epoch + 1 == epochs:
                        save_checkpoint(final, epoch=epoch + 1, **save)
                if info.enabled:
                    dist.barrier()
                last_good = str(latest)
                history.add_epoch(
                    _epoch_row(
                        phase, epoch + 1, history.train_mean(epoch + 1), trainer, probe, lr,
                        time.perf_counter() - tick,
                    )
                )  # fmt: skip
        finally:
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


def _epoch_row(
    phase: Phase,
    epoch: int,
    train_total: float,
    trainer: _Trainer,
    probe: Probe | None,
    lr: float,
    seconds: float,
) -> dict[str, Any]:
    probe_terms = (
        probe_losses(
            trainer.model,
            trainer.criterion,
            probe,
            trainer.priors,
            trainer.device,
            trainer.loader.batch_size or 8,
        )  # fmt: skip
        if trainer.info.main
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
