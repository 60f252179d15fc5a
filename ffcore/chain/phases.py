"""Phases in sequence: the chain behind ``train --all`` and the study's cells (``run_phases``)
and the one-call driver of the phase notebooks (``run_phase``: profile -> TrainConfig ->
previous phase's hand-over -> fit -> ``result.json``). A phase is complete by the engine's one
rule (``completed_phase``: its final checkpoint and the last ``epochs.csv`` row)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ffcore.chain.model_card import write_model_card
from ffcore.config import TrainConfig
from ffcore.models.checkpoint import load_checkpoint
from ffcore.paths import repo_path
from ffcore.profiles import get_profile
from ffcore.schedule import AS_SPECIFIED, FINAL_PHASE, PHASE_ORDER, get_phase
from ffcore.training import handover
from ffcore.training.engine import FitResult, completed_phase, fit_phase
from ffcore.training.start import LATEST


def run_phases(
    config: TrainConfig,
    phases: tuple[str, ...] = PHASE_ORDER,
    report: Callable[[FitResult], None] | None = None,
    *,
    overwrite: bool = False,
    continue_run: bool = True,
    note: Callable[[str], None] | None = None,
    epochs: Mapping[str, int] | None = None,
    phase3_variant: str | None = None,
    on_phase: Callable[[FitResult], None] | None = None,
    profile: str | None = None,
) -> list[FitResult]:
    """Train ``phases`` in order, each starting from the previous one's final checkpoint.
    ``config`` is the first phase's (its ``resume_net``/``backbone_init`` apply to it only; a
    ``resume_net`` of a later phase in ``phases`` starts the chain at that phase). ``epochs``:
    per phase id, replacing ``config.epochs`` (a profile's schedule); ``phase3_variant``: the
    variant phase 3 trains as (``ffcore.schedule.PHASE3_VARIANTS``, in its own folder; the
    phases before it are the table's; None: ``config``'s). ``report`` hears each phase trained now, ``on_phase``
    every phase of the chain in order, complete ones included (e.g. to score it); ``profile``
    is named on each model card.

    With ``continue_run`` a re-run continues where the last one stopped: a phase whose folder holds its final
    checkpoint and the last ``epochs.csv`` row (with the same settings) is skipped, and the
    first unfinished phase resumes from its ``latest.pth``; ``note`` hears each such decision.
    ``overwrite`` instead trains every phase again, replacing what its folder holds; with neither,
    a phase whose folder holds an earlier run is refused (``fit_phase``)."""
    say = note or (lambda message: None)
    results: list[FitResult] = []
    first = _chain_start(config, phases, say)
    variant = config.phase3_variant if phase3_variant is None else phase3_variant
    for i in range(first, len(phases)):
        phase = phases[i]
        settings: dict[str, Any] = {
            "phase": phase,
            "phase3_variant": variant if phase == FINAL_PHASE else AS_SPECIFIED,
        }
        if epochs is not None:
            settings["epochs"] = epochs[phase]
        if i == first:
            step = dataclasses.replace(config, **settings)
        else:
            start = str(results[-1].checkpoint)
            step = dataclasses.replace(config, **settings, resume_net=start, backbone_init=None)
        explicit = i == first and config.resume_net is not None
        if continue_run and not overwrite and not explicit:
            done = completed_phase(step)
            if done is not None:
                say(f"phase {phase}: already complete ({done.checkpoint}); not trained again")
                results.append(done)
                if on_phase is not None:
                    on_phase(done)
                continue
            latest = Path(step.save_folder) / get_phase(phase, step.phase3_variant).folder / LATEST
            if latest.is_file():
                held = load_checkpoint(latest)
                if held["phase"] == phase:
                    say(f"phase {phase}: continuing {latest} (after epoch {held['epoch']}/"
                        f"{held['epochs']})")  # fmt: skip
                    step = dataclasses.replace(step, resume_net=str(latest), backbone_init=None)
        result = fit_phase(step, overwrite=overwrite)
        if result.checkpoint is not None:  # the phase's final checkpoint: its card beside it
            write_model_card(result.checkpoint, profile=profile)
        if report is not None:
            report(result)
        results.append(result)
        if on_phase is not None:
            on_phase(result)
    return results


def _chain_start(config: TrainConfig, phases: tuple[str, ...], say: Callable[[str], None]) -> int:
    """Where a chain of several phases starts (an index into ``phases``). Without a
    ``resume_net``, or with one of a phase not in ``phases``: the first phase. With a checkpoint
    of phase P of ``phases``: a mid-phase one resumes P; a complete one of P's own folder under
    ``save_folder`` finishes P (what a kill left undone); a complete one from elsewhere starts
    the next phase from it (P is done: its logs are not in this folder, so it is not finished
    again, which wrote an ``epochs.csv`` row of NaN). ``say`` hears where the chain starts and
    which phases it leaves out. A single phase starts at itself (``fit_phase`` decides)."""
    if config.resume_net is None or len(phases) < 2:
        return 0
    held = load_checkpoint(config.resume_net)
    phase = held["phase"]
    if phase not in phases:
        return 0
    first = phases.index(phase)
    complete = held["epoch"] >= held["epochs"]
    own = Path(config.save_folder, get_phase(phase).folder).resolve()
    if complete and Path(config.resume_net).resolve().parent != own:
        first += 1
        where = (
            f"the chain starts at phase {phases[first]} from it"
            if first < len(phases)
            else "no phase is left to train"
        )
        what = f"a complete phase {phase} checkpoint: {where}"
    else:
        verb = "finishes" if complete else "resumes"
        what = (
            f"a phase {phase} checkpoint after epoch {held['epoch']}/{held['epochs']}: the "
            f"chain {verb} phase {phase}"
        )
    left_out = phases[: phases.index(phase) + (1 if first > phases.index(phase) else 0)]
    if left_out:
        what += f"; phase {', '.join(left_out)} not trained"
    say(f"{config.resume_net} is {what}")
    return first


def run_phase(
    phase_id: str,
    *,
    profile: str = "smoke",
    run_dir: str | os.PathLike[str] = "runs/smoke",
    data_root: str | os.PathLike[str] | None = None,
    resume_net: str | os.PathLike[str] | None = None,
    backbone_init: str | os.PathLike[str] | None = "auto",
    overwrite: bool = True,
    **overrides: Any,
) -> FitResult:
    """Train one phase as its notebook does and write ``<run_dir>/<notebook>/result.json``.

    The ``TrainConfig`` comes from the profile (image size, batch size, epochs); ``overrides``
    set any other ``TrainConfig`` field (a None value keeps the profile's). The phase starts from
    ``resume_net`` or else from the checkpoint the previous phase's notebook recorded under
    ``run_dir``. ``data_root`` None uses the profile's synthetic dataset. ``backbone_init``
    (phase 1 only): "auto" (the RetinaFace reference backbone when installed), "random",
    "retinaface" or a file. ``overwrite``: a notebook trains its phase on purpose (``reproduce``
    decides when one runs again), so by default it replaces the outputs of an earlier run of the
    phase under ``run_dir``; False refuses instead (``fit_phase``).
    """
    from ffcore.data.synthetic import ensure_dataset

    phase = get_phase(phase_id)
    prof = get_profile(profile)
    run = repo_path(run_dir)
    root = repo_path(data_root) if data_root is not None else ensure_dataset(profile=profile)
    start = (
        str(resume_net) if resume_net is not None else handover.previous_checkpoint(run, phase.id)
    )
    init = None
    if phase.starts_from is None and start is None:
        from ffcore.models.reference import resolve_backbone_init

        init = resolve_backbone_init(backbone_init)
    settings: dict[str, Any] = {
        "training_dataset": str(Path(root) / "train" / "label.txt"),
        "epochs": prof.epochs(phase.id),
        "batch_size": prof.batch_size,
        "image_size": prof.image_size,
        "num_workers": 0,
        "save_folder": str(run / "weights"),
    }
    settings.update({k: v for k, v in overrides.items() if v is not None})
    config = TrainConfig(phase=phase.id, resume_net=start, backbone_init=init, **settings)
    result = fit_phase(config, overwrite=overwrite)
    if result.checkpoint is not None:  # the phase's final checkpoint: its card beside it
        write_model_card(result.checkpoint, profile=profile)
    handover.write_result(
        run,
        result,
        attention=phase.attention_label,
        head_dropout=phase.head_dropout,
        backbone_init=None if init is None else str(init),
    )
    return result


PROBE_RISE_LIMIT = 1.25  # phase 3 may end with a probe loss at most 25 % above where it started


def check_phase_result(result: FitResult) -> str:
    """The checks each phase notebook shows: the final checkpoint carries this phase's switches,
    it started from the previous phase's final checkpoint, and the probe loss fell (phase 3,
    which regularises: did not rise by more than ``PROBE_RISE_LIMIT``). Raises
    ``AssertionError`` naming what failed; returns a one-line summary."""
    from ffcore.models.checkpoint import load_checkpoint, load_model

    model, info = load_model(result.checkpoint)
    phase = get_phase(result.phase, info["phase3_variant"])
    assert info["phase"] == phase.id and info["complete"], f"{result.checkpoint}: {info}"
    assert model.attention_state() in (None, (phase.channel_attention, phase.spatial_attention))
    assert model.dropout_on == phase.head_dropout
    if phase.starts_from is not None:
        started = load_checkpoint(result.started_from)
        assert started["phase"] == phase.starts_from, (
            f"{result.started_from} is not a phase {phase.starts_from} checkpoint"
        )
        assert info["train_config"]["resume_net"] == result.started_from
    probe = result.probe_losses
    if phase.mixup_alpha is None:
        assert probe[-1] < probe[0], f"probe loss did not fall: {probe}"
    else:
        # A regularising phase (mixup, dropout, low lr) trades training fit for robustness: on a
        # converged model its clean-crop probe loss may rise a little; it must not blow up.
        assert probe[-1] < PROBE_RISE_LIMIT * probe[0], f"probe loss rose too far: {probe}"
    return (
        f"phase {phase.id}: attention {phase.attention_label}, head dropout {phase.head_dropout}; "
        f"probe loss {probe[0]:.3f} -> {probe[-1]:.3f}"
    )
