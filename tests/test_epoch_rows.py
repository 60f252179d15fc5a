"""Issue 29, item 6: ``epochs.csv`` holds every epoch exactly once after a kill anywhere between
an epoch's row and its ``latest.pth``, with the rows an uninterrupted run writes."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from ffcore.config import TrainConfig
from ffcore.data.synthetic import generate_dataset
from ffcore.training import engine
from ffcore.training.engine import fit_phase

EPOCHS = 3
COMPARED = ["epoch", "train_total", "probe_total", "lr_last"]


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("data") / "widerface", 4, 1, 128, seed=4)


def _config(root: Path, save: Path, **kw) -> TrainConfig:
    return TrainConfig(
        phase="1", training_dataset=str(root / "train"), epochs=EPOCHS, batch_size=4,
        image_size=96, num_workers=0, device="cpu", save_folder=str(save), progress=False,
        probe_images=2, **kw,
    )  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(root: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    result = fit_phase(_config(root, tmp_path_factory.mktemp("whole")))
    return pd.read_csv(result.epochs_csv)


def _kill_at_latest(monkeypatch: pytest.MonkeyPatch, epoch: int, after: bool) -> None:
    """Kill the run when it saves ``latest.pth`` of ``epoch``: just before or just after."""
    real = engine.save_checkpoint

    def save(path, **kw):
        hit = Path(path).name == engine.LATEST and kw["epoch"] == epoch
        if hit and not after:
            raise Killed
        out = real(path, **kw)
        if hit:
            raise Killed
        return out

    monkeypatch.setattr(engine, "save_checkpoint", save)


@pytest.mark.slow
@pytest.mark.parametrize("after", [True, False], ids=["after-latest", "before-latest"])
def test_a_kill_around_latest_loses_no_epoch_row(
    root: Path, tmp_path: Path, uninterrupted: pd.DataFrame, monkeypatch, after: bool
) -> None:
    with monkeypatch.context() as m:
        _kill_at_latest(m, 2, after)
        with pytest.raises(Killed):
            fit_phase(_config(root, tmp_path))
    latest = tmp_path / "phase1" / engine.LATEST
    resumed = fit_phase(_config(root, tmp_path, resume_net=str(latest)))
    rows = pd.read_csv(resumed.epochs_csv)
    assert rows.epoch.tolist() == list(range(EPOCHS + 1))  # each epoch exactly once, in order
    pd.testing.assert_frame_equal(
        rows[COMPARED], uninterrupted[COMPARED], check_exact=False, rtol=1e-5
    )


@pytest.mark.slow
def test_a_row_lost_by_an_older_run_is_made_again_on_resume(
    root: Path, tmp_path: Path, uninterrupted: pd.DataFrame
) -> None:
    """A folder killed after ``latest.pth`` by a version that wrote the row last: the resume
    writes the checkpoint's row again from its weights and the logged iterations."""
    first = fit_phase(_config(root, tmp_path), stop_after_epoch=2)
    rows = pd.read_csv(first.epochs_csv)
    rows[rows.epoch < 2].to_csv(first.epochs_csv, index=False)  # the row of epoch 2 lost
    resumed = fit_phase(_config(root, tmp_path, resume_net=str(first.latest)))
    rows = pd.read_csv(resumed.epochs_csv)
    assert rows.epoch.tolist() == list(range(EPOCHS + 1))
    pd.testing.assert_frame_equal(
        rows[COMPARED], uninterrupted[COMPARED], check_exact=False, rtol=1e-5
    )
    assert math.isnan(rows.seconds[2]) and not rows.seconds.drop(index=2).isna().any()
