import pytest
import torch

from ffcore.detection.priors import num_priors, prior_boxes
from ffcore.models import build_model


def test_640_has_16800_priors():
    # 80*80*2 + 40*40*2 + 20*20*2
    assert prior_boxes((640, 640)).shape == (16800, 4)
    assert num_priors((640, 640)) == 16800


def test_first_priors_by_hand():
    p = prior_boxes((64, 96))  # H=64, W=96
    # level 0: step 8 -> 8 rows x 12 cols; order (row, col, size)
    expected = torch.tensor(
        [
            [4 / 96, 4 / 64, 16 / 96, 16 / 64],  # row 0, col 0, size 16
            [4 / 96, 4 / 64, 32 / 96, 32 / 64],  # row 0, col 0, size 32
            [12 / 96, 4 / 64, 16 / 96, 16 / 64],  # row 0, col 1, size 16
        ]
    )
    torch.testing.assert_close(p[:3], expected)
    # row 1, col 0, size 16 is index 12 cols * 2 sizes = 24
    torch.testing.assert_close(p[24], torch.tensor([4 / 96, 12 / 64, 16 / 96, 16 / 64]))
    # first prior of level 1 comes after 8*12*2 = 192 priors: centre (8/96, 8/64), size 64
    torch.testing.assert_close(p[192], torch.tensor([8 / 96, 8 / 64, 64 / 96, 64 / 64]))
    # the last prior: level 2 (2 rows x 3 cols), row 1 col 2, size 512
    torch.testing.assert_close(p[-1], torch.tensor([80 / 96, 48 / 64, 512 / 96, 512 / 64]))
    assert p.shape[0] == 8 * 12 * 2 + 4 * 6 * 2 + 2 * 3 * 2


@pytest.mark.parametrize("size", [(160, 160), (96, 128)])
def test_prior_count_matches_model_outputs(size):
    model = build_model("eca_cbam").eval()
    with torch.no_grad():
        box, cls, ldm = model(torch.zeros(1, 3, *size))
    assert box.shape[1] == cls.shape[1] == ldm.shape[1] == prior_boxes(size).shape[0]


def test_rejects_bad_size():
    with pytest.raises(ValueError, match="positive"):
        prior_boxes((0, 64))
