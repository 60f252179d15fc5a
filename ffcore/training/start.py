"""Where a phase starts: the first of ``fit_phase``'s three steps (start state -> set-up -> loop).

``resolve_start`` turns a ``TrainConfig``, its starting checkpoint and the phase folder into a
``StartPlan`` (FRESH, FROM_PREVIOUS, RESUME or FINISH, with the epochs and offsets that follow)
or a ``Refusal`` (the error to raise). It reads files but writes nothing, so a refused run leaves
the folder as it was. The rules:

- a checkpoint of the wrong phase, or an unfinished previous phase: refused (``start_mode``);
- an explicit variant that is not the checkpoint's: refused;
- RESUME / FINISH continue a run, so the settings that determine its result -- batch size, seed,
  image size, epochs, variant, attention schedule, init seed, phase-3 variant and the dataset (a fingerprint of
  the label file) -- must be the checkpoint's ``train_config``; every difference is named.
  A field an older checkpoint lacks is not compared;
- FINISH with nothing left to finish (final checkpoint and last ``epochs.csv`` row exist):
  refused, the phase is complete;
- FRESH / FROM_PREVIOUS into a phase folder that holds an earlier run's work (a checkpoint or a
  completed epoch in ``epochs.csv``) is refused unless ``overwrite``: a re-run never destroys
  finished work. The remains of an interrupted first epoch (logs without any checkpoint) hold
  nothing a resume could keep, and a fresh start replaces them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ffcore.config import TrainConfig
from ffcore.models.checkpoint import CheckpointError, final_checkpoint_name, model_config_of
from ffcore.schedule import Phase, get_phase
from ffcore.training.checkpoint import Start, start_mode
from ffcore.training.history import EPOCHS, last_epoch

LATEST = "latest.pth"
# the settings that determine a run's result, compared when a run continues a checkpoint
RESULT_FIELDS: tuple[str, ...] = (
    "batch_size",
    "seed",
    "image_size",
    "epochs",
    "variant",
    "attention_schedule",
    "init_seed",
    "dataset_fingerprint",
    "channels_last",
    "phase3_variant",
)


class ConfigMismatch(CheckpointError):
    """A run asked to continue a checkpoint with other settings; ``differences`` lists
    (field, checkpoint value, requested value)."""

    def __init__(self, path: str | Path, differences: list[tuple[str, Any, Any]]) -> None:
        self.path, self.differences = str(path), differences
        listed = "; ".join(
            f"{name}: {show_setting(held)} in the checkpoint, {show_setting(asked)} requested"
            for name, held, asked in differences
        )
        super().__init__(
            f"{path} was trained with other settings ({listed}); continue it with its own "
            "settings or start a new run in another save_folder"
        )


class OutputsExist(ValueError):
    """A run that would start from scratch found an earlier run's work in its phase folder."""

    def __init__(
        self, folder: Path, found: list[str], latest: Path | None, complete: Path | None = None
    ) -> None:
        self.folder, self.found, self.latest, self.complete = folder, found, latest, complete
        offer = (
            f"it is complete: start the next phase from {complete}, "
            if complete is not None
            else f"resume it from {latest}, "
            if latest is not None
            else ""
        )
        super().__init__(
            f"{folder} already holds an earlier run ({', '.join(found)}); {offer}train into "
            "another save_folder, or overwrite it explicitly"
        )


def show_setting(value: Any) -> str:
    if isinstance(value, dict) and "label_sha256" in value:
        return (
            f"dataset of {value.get('images')} images (label sha256 {value['label_sha256'][:12]})"
        )
    return repr(value)


@dataclass(frozen=True)
class StartPlan:
    """A phase's start state and what follows from it."""

    kind: Start
    state: dict[str, Any] | None = field(repr=False)  # the starting checkpoint, loaded
    epochs: int  # epochs the phase plans
    t0: int  # cosine period
    start_epoch: int  # epochs already done (RESUME / FINISH)
    step_offset: int  # steps and epochs of the phases before this one (TensorBoard axis)
    epoch_offset: int


@dataclass(frozen=True)
class Refusal:
    """The phase cannot start as asked; ``error`` says why (``fit_phase`` raises it)."""

    error: ValueError


def phase_epochs_and_t0(phase: Phase, epochs: int | None) -> tuple[int, int]:
    """Epochs to run and the cosine period: the table's, or T_0 = epochs for a shorter run."""
    n = phase.epochs if epochs is None else int(epochs)
    return n, (phase.t0 if n == phase.epochs else n)


def dataset_fingerprint(label_file: str | Path | None) -> dict[str, Any] | None:
    """sha256 of the label file's bytes and its image count (None without a label file)."""
    if label_file is None:
        return None
    from ffcore.data.widerface import resolve_label_file

    data = resolve_label_file(label_file).read_bytes()
    images = sum(1 for line in data.splitlines() if line.lstrip().startswith(b"#"))
    return {"label_sha256": hashlib.sha256(data).hexdigest(), "images": images}


def requested_settings(config: TrainConfig, fingerprint: dict[str, Any] | None) -> dict[str, Any]:
    """The result-determining settings a run asks for; None where it leaves one open (epochs and
    variant: the checkpoint's; no dataset fingerprint: a dataset passed in directly)."""
    return {
        "batch_size": config.batch_size,
        "seed": config.seed,
        "image_size": config.image_size,
        "epochs": config.epochs,
        "variant": config.variant,
        "attention_schedule": config.attention_schedule,
        "init_seed": config.init_seed,
        "dataset_fingerprint": fingerprint,
        "channels_last": config.channels_last,
        "phase3_variant": config.phase3_variant,
    }


def config_differences(
    config: TrainConfig, held: dict[str, Any], fingerprint: dict[str, Any] | None
) -> list[tuple[str, Any, Any]]:
    """(field, checkpoint value, requested value) for each result-determining setting that
    differs from the checkpoint's ``train_config`` ``held``. A field the checkpoint lacks, or
    that the request leaves open (epochs, variant, dataset None), is not compared."""
    asked = requested_settings(config, fingerprint)
    open_when_none = ("epochs", "variant", "dataset_fingerprint")
    return [
        (name, held[name], asked[name])
        for name in RESULT_FIELDS
        if name in held
        and not (asked[name] is None and name in open_when_none)
        and held[name] != asked[name]
    ]


def earlier_outputs(folder: Path) -> tuple[list[str], Path | None]:
    """What of an earlier run's work a phase folder holds (checkpoints, completed epochs in
    ``epochs.csv``), and its ``latest.pth`` (None when absent)."""
    if not folder.is_dir():
        return [], None
    latest = folder / LATEST
    found = [p.name for p in sorted(folder.glob("phase*_epoch_*.pth"))]
    if latest.is_file():
        found.insert(0, LATEST)
    done = last_epoch(folder / EPOCHS)
    if done:
        found.append(f"{EPOCHS} with {done} completed epoch(s)")
    return found, (latest if latest.is_file() else None)


def _variant_problem(variant: str | None, state: dict[str, Any] | None) -> str | None:
    if variant is None or state is None:
        return None
    held = model_config_of(state).variant
    if held == variant:
        return None
    return (
        f"variant {variant!r} was asked for, but {state['path']} holds variant {held!r}; "
        f"a phase continues the checkpoint's model (ask for {held!r} or leave the variant out)"
    )


def _offsets(state: dict[str, Any] | None, kind: Start) -> tuple[int, int]:
    """(steps, epochs) of the phases before this one on the continuous TensorBoard axis: a
    continued phase keeps its own offsets; a phase started from the previous one's checkpoint
    continues after it (older checkpoints without the fields count as 0)."""
    if state is None:
        return 0, 0
    if kind.continues:
        return int(state.get("step_offset", 0)), int(state.get("epoch_offset", 0))
    return int(state.get("global_step", 0)), int(state.get("epoch_offset", 0)) + int(state["epoch"])


def resolve_start(
    config: TrainConfig,
    state: dict[str, Any] | None,
    fingerprint: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> StartPlan | Refusal:
    """The start state of phase ``config.phase`` from ``state`` (its loaded starting checkpoint,
    or None) and the phase folder under ``config.save_folder`` (see the module doc)."""
    phase = get_phase(config.phase, config.phase3_variant)
    try:
        kind = start_mode(phase, state)
    except CheckpointError as exc:
        return Refusal(exc)
    problem = _variant_problem(config.variant, state)
    if problem is not None:
        return Refusal(ValueError(problem))
    out_dir = Path(config.save_folder) / phase.folder
    if kind.continues:
        assert state is not None
        differences = config_differences(config, state.get("train_config") or {}, fingerprint)
        named = {name for name, _, _ in differences}
        if config.epochs not in (None, state["epochs"]) and "epochs" not in named:
            differences.append(("epochs", state["epochs"], config.epochs))
        if differences:
            return Refusal(ConfigMismatch(state.get("path", "<checkpoint>"), differences))
    planned = state["epochs"] if kind.continues else config.epochs
    epochs, t0 = phase_epochs_and_t0(phase, planned)
    start_epoch = state["epoch"] if kind.continues else 0
    where = state.get("path", config.resume_net) if state is not None else config.resume_net
    if start_epoch > epochs or (start_epoch == epochs and kind is not Start.FINISH):
        return Refusal(ValueError(f"{where}: already {start_epoch} epochs of {epochs} done"))
    final = out_dir / final_checkpoint_name(phase, epochs)
    if kind is Start.FINISH and final.is_file() and last_epoch(out_dir / EPOCHS) >= epochs:
        return Refusal(
            CheckpointError(
                f"{where}: phase is already complete ({final} and the last row of "
                f"{out_dir / EPOCHS} exist); start the next phase from {final}"
            )
        )
    continues_here = kind.continues and Path(where or "").resolve().parent == out_dir.resolve()
    if not overwrite and not continues_here:
        found, latest = earlier_outputs(out_dir)
        if found:
            done = final.is_file() and last_epoch(out_dir / EPOCHS) >= epochs
            return Refusal(OutputsExist(out_dir, found, latest, final if done else None))
    step_offset, epoch_offset = _offsets(state, kind)
    return StartPlan(kind, state, epochs, t0, start_epoch, step_offset, epoch_offset)
