import math

import numpy as np
import pandas as pd
import pytest
import torch

from ffcore.config import TrainConfig, to_dict
from ffcore.data.synthetic import generate_dataset
from ffcore.models import build_model
from ffcore.models.checkpoint import CheckpointError, load_checkpoint, load_model
from ffcore.schedule import get_phase
from ffcore.training.checkpoint import save_checkpoint
from ffcore.training.engine import NonFiniteLossError, Start, fit_phase, phase_epochs_and_t0
from ffcore.training.mixup import mixup_batch

SIZE = 96


@pytest.fixture(scope="module")
def label_file(tmp_path_factory):
    root = generate_dataset(tmp_path_factory.mktemp("data") / "synthetic", 6, 1, 128, seed=3)
    return str(root / "train" / "label.txt")


def _config(label_file, save_folder, phase="1", **kw):
    base = dict(
        phase=phase,
        training_dataset=label_file,
        batch_size=2,
        image_size=SIZE,
        num_workers=0,
        device="cpu",
        save_folder=str(save_folder),
        progress=False,
        probe_images=2,
        seed=5,
    )
    return TrainConfig(**{**base, **kw})


def _complete_checkpoint(path, phase):
    model = build_model("eca_cbam")
    return str(save_checkpoint(path, model=model, phase=phase, epoch=1, epochs=1))


def test_phase_epochs_and_t0():
    assert phase_epochs_and_t0(get_phase("1"), None) == (30, 30)
    assert phase_epochs_and_t0(get_phase("2a"), 25) == (25, 25)
    assert phase_epochs_and_t0(get_phase("2a"), 2) == (2, 2)  # smoke: one full cosine


def test_mixup_batch_by_hand():
    images = torch.stack([torch.full((3, 2, 2), 10.0), torch.full((3, 2, 2), -20.0)])
    targets = [
        {
            "boxes": torch.tensor([[0.1, 0.1, 0.2, 0.2]]),
            "landmarks": torch.zeros(1, 10),
            "landmark_valid": torch.tensor([True]),
        },
        {
            "boxes": torch.tensor([[0.5, 0.5, 0.9, 0.9], [0.0, 0.0, 0.1, 0.1]]),
            "landmarks": torch.ones(2, 10),
            "landmark_valid": torch.tensor([False, True]),
        },
    ]
    lam = np.random.default_rng(7)
    lam.permutation(2)  # the same draws mixup_batch makes: permutation, then Beta
    expected = lam.beta(0.2, 0.2, size=2).astype(np.float32)
    mixed, out = mixup_batch(images, targets, 0.2, np.random.default_rng(7))
    # with two images each one's partner is the other
    l0, l1 = float(expected[0]), float(expected[1])
    torch.testing.assert_close(mixed[0], torch.full((3, 2, 2), 10 * l0 - 20 * (1 - l0)))
    torch.testing.assert_close(mixed[1], torch.full((3, 2, 2), -20 * l1 + 10 * (1 - l1)))
    assert out[0]["boxes"].shape == (3, 4) and out[1]["boxes"].shape == (3, 4)
    torch.testing.assert_close(out[0]["weights"], torch.tensor([l0, 1 - l0, 1 - l0]))
    torch.testing.assert_close(out[1]["weights"], torch.tensor([l1, l1, 1 - l1]))
    assert out[0]["landmark_valid"].tolist() == [True, False, True]
    torch.testing.assert_close(out[1]["boxes"][2], targets[0]["boxes"][0])


@pytest.mark.slow
def test_phase1_outputs_lr_cosine_and_frozen_attention(label_file, tmp_path):
    torch.manual_seed(5)  # fit_phase seeds with config.seed, then builds the model
    init = build_model("eca_cbam").state_dict()
    result = fit_phase(_config(label_file, tmp_path, epochs=2))
    folder = tmp_path / "phase1"
    assert result.checkpoint == folder / "phase1_epoch_2.pth"  # named after the epochs run
    assert (folder / "latest.pth").is_file() and result.tensorboard_dir.is_dir()
    assert any(result.tensorboard_dir.iterdir())
    history = pd.read_csv(result.history_csv)
    assert len(history) == 2 * 3  # 6 images / batch 2, 2 epochs
    assert {"box", "class", "landmark", "total", "lr", "grad_norm", "images_per_s"} <= set(
        history.columns
    )
    # lr of each step: 1e-3 * (1 + cos(pi * t / T0)) / 2 at t = epoch + i / iters, T0 = 2
    expected = [1e-3 * (1 + math.cos(math.pi * t / 2)) / 2 for t in history.epoch_float]
    np.testing.assert_allclose(history.lr, expected, rtol=1e-9)
    np.testing.assert_allclose(history.epoch_float, [0, 1 / 3, 2 / 3, 1, 4 / 3, 5 / 3])
    # total = 2 box + class + 0.5 landmark (phase-1 weights)
    np.testing.assert_allclose(
        history.total, 2 * history.box + history["class"] + 0.5 * history.landmark, rtol=1e-5
    )
    epochs = pd.read_csv(result.epochs_csv)
    assert epochs.epoch.tolist() == [0, 1, 2]
    assert len(result.probe_losses) == 3 and len(result.epoch_losses) == 2
    # phase 1 trains with attention off: attention weights keep their initial values
    model, info = load_model(result.checkpoint)
    assert info["phase"] == "1" and info["complete"]
    trained = model.state_dict()
    att = [k for k in init if "attention" in k and init[k].is_floating_point()]
    assert att and all(torch.equal(trained[k], init[k]) for k in att)
    assert not torch.equal(trained["heads.cls.0.weight"], init["heads.cls.0.weight"])
    state = load_checkpoint(result.checkpoint)
    assert state["train_config"]["epochs"] == 2 and state["train_config"]["phase"] == "1"


def test_channels_last_training_is_the_nchw_training_up_to_rounding(label_file, tmp_path):
    """The default trains in NHWC memory: the same arithmetic summed in another order. One
    epoch each way: the same first loss to rounding, losses and weights close after (Adam
    turns rounding noise in gradients that are zero mathematically into steps of up to lr),
    and both checkpoints load strictly into a plain NCHW model."""
    nhwc = fit_phase(_config(label_file, tmp_path / "nhwc", epochs=1, probe_images=0))
    nchw = fit_phase(
        _config(label_file, tmp_path / "nchw", epochs=1, probe_images=0, channels_last=False)
    )
    a, b = (load_checkpoint(r.checkpoint) for r in (nhwc, nchw))
    key = "backbone.stage1.0.0.weight"
    assert a["model"][key].is_contiguous(memory_format=torch.channels_last)
    assert not b["model"][key].is_contiguous(memory_format=torch.channels_last)
    assert a["train_config"]["channels_last"] and not b["train_config"]["channels_last"]
    ha, hb = pd.read_csv(nhwc.history_csv), pd.read_csv(nchw.history_csv)
    assert ha.total[0] == pytest.approx(hb.total[0], rel=1e-5)
    np.testing.assert_allclose(ha.total, hb.total, rtol=1e-2)
    models = [load_model(r.checkpoint)[0] for r in (nhwc, nchw)]  # strict loads
    params = [dict(m.named_parameters()) for m in models]
    for name, value in params[0].items():  # 3 Adam steps of at most ~lr (1e-3) each
        assert (value - params[1][name]).abs().max() < 3 * 2e-3, name


@pytest.mark.slow
def test_resume_is_exact_in_phase3(label_file, tmp_path):
    """Phase 3 (mixup, dropout, gradient clipping): 4 epochs straight == 2 + resume 2."""
    start = _complete_checkpoint(tmp_path / "p2b.pth", "2b")
    straight = fit_phase(_config(label_file, tmp_path / "a", "3", epochs=4, resume_net=start))
    fit_phase(
        _config(label_file, tmp_path / "b", "3", epochs=4, resume_net=start), stop_after_epoch=2
    )
    resumed = fit_phase(
        _config(label_file, tmp_path / "b", "3", resume_net=str(tmp_path / "b/phase3/latest.pth"))
    )
    assert resumed.mode is Start.RESUME and resumed.checkpoint.name == "phase3_epoch_4.pth"
    a = load_checkpoint(straight.checkpoint)
    b = load_checkpoint(resumed.checkpoint)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["scheduler"]["T_cur"] == b["scheduler"]["T_cur"]
    ha, hb = pd.read_csv(straight.history_csv), pd.read_csv(resumed.history_csv)
    pd.testing.assert_frame_equal(ha.drop(columns="images_per_s"), hb.drop(columns="images_per_s"))
    assert straight.probe_losses == resumed.probe_losses


def test_wrong_starting_checkpoint_is_refused(label_file, tmp_path):
    p1 = _complete_checkpoint(tmp_path / "p1.pth", "1")
    with pytest.raises(
        CheckpointError, match="phase 2b starts from the final checkpoint of phase 2a"
    ):
        fit_phase(_config(label_file, tmp_path, "2b", resume_net=p1))
    with pytest.raises(CheckpointError, match="starting checkpoint"):
        fit_phase(_config(label_file, tmp_path, "3"))


class _PoisonAfterFirstEpoch(torch.utils.data.Dataset):
    """Wraps a dataset; from epoch 1 on its images are NaN."""

    def __init__(self, base):
        self.base, self.epoch = base, 0

    def set_epoch(self, epoch):
        self.epoch = epoch
        self.base.set_epoch(epoch)

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        image, target = self.base[i]
        return (image * math.nan if self.epoch >= 1 else image), target


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(label_file, tmp_path):
    from ffcore.data.widerface import WiderFaceDataset

    data = _PoisonAfterFirstEpoch(WiderFaceDataset(label_file, SIZE, augment=True, seed=5))
    config = _config(label_file, tmp_path, "2a", epochs=3, resume_net=None, probe_images=0)
    config = TrainConfig(
        **{**to_dict(config), "resume_net": _complete_checkpoint(tmp_path / "p1.pth", "1")}
    )
    latest = tmp_path / "phase2a" / "latest.pth"
    with pytest.raises(NonFiniteLossError, match="epoch 2 iteration 1") as err:
        fit_phase(config, dataset=data)
    assert str(latest) in str(err.value)
    assert load_checkpoint(latest)["epoch"] == 1
    assert not (tmp_path / "phase2a" / "phase2a_epoch_3.pth").exists()


@pytest.mark.slow
def test_cli_train_all_chains_the_four_phases(label_file, tmp_path, capsys):
    from ffcore.cli import main

    common = ["--training_dataset", label_file, "--epochs", "1", "--batch-size", "3",
              "--image-size", str(SIZE), "--save_folder", str(tmp_path), "--device", "cpu",
              "--num-workers", "0", "--no-progress"]  # fmt: skip
    assert main(["train", "--all", *common]) == 0
    previous, steps_before = None, 0
    for k, phase in enumerate(("1", "2a", "2b", "3")):
        state = load_checkpoint(tmp_path / f"phase{phase}" / f"phase{phase}_epoch_1.pth")
        assert state["phase"] == phase and state["train_config"]["resume_net"] == previous
        previous = str(tmp_path / f"phase{phase}" / f"phase{phase}_epoch_1.pth")
        card = (tmp_path / f"phase{phase}" / "model_card.md").read_text()  # beside the final one
        assert f"- phase {phase}, epoch 1 of 1" in card and "not evaluated" in card
        # one continuous TensorBoard axis: each phase continues where the previous one ended
        assert state["step_offset"] == steps_before and state["epoch_offset"] == k
        assert state["global_step"] > steps_before
        steps_before = state["global_step"]
    assert "phase 3 (ECA -> SAM): 1/1 epochs" in capsys.readouterr().out
    # a phase without its starting checkpoint: one clear line, exit status 2
    assert main(["train", "--phase", "2b", *common]) == 2
    assert "phase 2b starts from the final checkpoint of phase 2a" in capsys.readouterr().err
