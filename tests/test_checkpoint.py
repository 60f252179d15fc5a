import random

import numpy as np
import pytest
import torch

from ffcore.models import build_model
from ffcore.models.checkpoint import (
    CheckpointError,
    final_checkpoint_name,
    load_checkpoint,
    load_model,
)
from ffcore.schedule import get_phase
from ffcore.training.checkpoint import (
    Start,
    rng_states,
    save_checkpoint,
    set_rng_states,
    start_mode,
)


@pytest.fixture(scope="module")
def model():
    return build_model("eca_cbam")


def _save(path, model, phase="1", epoch=2, epochs=2, **kw):
    return save_checkpoint(
        path,
        model=model,
        phase=phase,
        epoch=epoch,
        epochs=epochs,
        train_config={"seed": 3},
        **kw,
    )


def test_roundtrip_model_optimizer_scheduler(tmp_path, model):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=4)
    sum(o.sum() for o in model(torch.randn(2, 3, 32, 32))).backward()
    opt.step()
    sched.step(1.5)
    path = _save(tmp_path / "phase2a" / "ck.pth", model, "2a", 3, 5, optimizer=opt, scheduler=sched)
    assert [p.name for p in path.parent.iterdir()] == ["ck.pth"]  # no temporary file left
    state = load_checkpoint(path)
    assert (state["phase"], state["epoch"], state["epochs"]) == ("2a", 3, 5)
    assert state["train_config"] == {"seed": 3}
    assert state["scheduler"]["T_cur"] == 1.5
    opt2 = torch.optim.Adam(model.parameters(), lr=1e-3)
    opt2.load_state_dict(state["optimizer"])
    assert opt2.state_dict()["state"].keys() == opt.state_dict()["state"].keys()
    loaded, info = load_model(path)
    assert info["phase"] == "2a" and info["complete"] is False
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert loaded.attention_state() == (True, False)  # phase 2a: ECA on, SAM off
    assert not loaded.training


def test_load_model_sets_phase_switches(tmp_path, model):
    m1, _ = load_model(_save(tmp_path / "p1.pth", model, "1"))
    assert m1.attention_state() == (False, False) and m1.dropout_on is False
    m3, info = load_model(_save(tmp_path / "p3.pth", model, "3", 30, 30))
    assert m3.attention_state() == (True, True) and m3.dropout_on is True
    assert info["complete"] is True


def test_rng_states_roundtrip():
    states = rng_states()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_states(states)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_truncated_corrupt_and_foreign_files(tmp_path, model):
    good = _save(tmp_path / "good.pth", model).read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good[: len(good) // 2])
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x00garbage" * 100)
    foreign = tmp_path / "foreign.pth"
    torch.save(model.state_dict(), foreign)  # a bare state dict, as reference repos save
    for path, words in [
        (truncated, "not a readable checkpoint"),
        (corrupt, "not a readable checkpoint"),
        (foreign, "not an ffcore checkpoint"),
        (tmp_path / "missing.pth", "not found"),
    ]:
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(path)
        assert str(path) in str(err.value) and words in str(err.value)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"format": "ffcore-checkpoint", "obj": CheckpointError("x")}, path)
    with pytest.raises(CheckpointError, match="evil.pth"):
        load_checkpoint(path)


def test_pickled_module_is_refused_without_unsafe_advice(tmp_path):
    path = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 2), path)  # a whole nn.Module, as many repositories save
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert str(path) in message and "pickled Python objects" in message
    assert "weights_only" not in message and "trust" not in message


def test_unavailable_device_is_not_a_bad_checkpoint(tmp_path, model, monkeypatch):
    path = _save(tmp_path / "ck.pth", model)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="'cuda' requested but CUDA is not available") as err:
        load_model(path, "cuda")
    assert not isinstance(err.value, CheckpointError)
    with pytest.raises(ValueError, match="'foo' is not a device name"):
        load_model(tmp_path / "missing.pth", "foo")  # the device is checked before the file


def test_wrong_weights_name_the_file(tmp_path, model):
    path = _save(tmp_path / "ck.pth", model)
    state = torch.load(path, weights_only=True)
    state["model"].pop(next(iter(state["model"])))
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="ck.pth: cannot be loaded as a FeatherFace model"):
        load_model(path)


def _state(phase, epoch, epochs):
    return {"phase": phase, "epoch": epoch, "epochs": epochs, "path": "x.pth"}


def test_start_rules():
    assert start_mode(get_phase("1"), None) is Start.FRESH
    assert start_mode(get_phase("2a"), _state("1", 30, 30)) is Start.FROM_PREVIOUS
    assert start_mode(get_phase("2a"), _state("2a", 3, 25)) is Start.RESUME
    assert start_mode(get_phase("3"), _state("2b", 2, 2)) is Start.FROM_PREVIOUS
    with pytest.raises(
        CheckpointError, match="phase 2b starts from the final checkpoint of phase 2a"
    ):
        start_mode(get_phase("2b"), _state("1", 30, 30))
    with pytest.raises(
        CheckpointError, match="phase 2a starts from .* phase 1.*starting checkpoint"
    ):
        start_mode(get_phase("2a"), None)
    with pytest.raises(CheckpointError, match="did not finish"):
        start_mode(get_phase("2a"), _state("1", 10, 30))
    # a complete checkpoint of the same phase finishes what a kill left (fit_phase decides)
    assert start_mode(get_phase("2a"), _state("2a", 25, 25)) is Start.FINISH
    with pytest.raises(CheckpointError, match="x.pth is from phase 3"):
        start_mode(get_phase("1"), _state("3", 30, 30))


def test_final_checkpoint_name():
    assert final_checkpoint_name(get_phase("2a"), 25) == "phase2a_epoch_25.pth"
    assert final_checkpoint_name(get_phase("3"), 2) == "phase3_epoch_2.pth"
