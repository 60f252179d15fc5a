from __future__ import annotations

import numpy as np
import pytest
import torch

from ffcore.models import build_model
from ffcore.report.attention_maps import attention_maps, resize_to_stride


def test_maps_are_what_the_blocks_apply() -> None:
    model = build_model("eca_cbam", deformable=False).eval()
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    maps = attention_maps(model, image)
    assert [m.name for m in maps] == [f"backbone_attention.{i}" for i in range(3)] + [
        f"neck_attention.{i}" for i in range(3)
    ]
    assert [m.channel.shape for m in maps] == [(64,), (128,), (256,), (52,), (52,), (52,)]
    assert [m.spatial.shape for m in maps[:3]] == [(12, 16), (6, 8), (3, 4)]
    # Independent check on the first block: recompute ECA by hand from the stage-1 features.
    from ffcore.data.preprocess import image_to_tensor

    feats = model.backbone.stage1(image_to_tensor(image)[None])
    gap = feats.mean(dim=(2, 3))[0]
    w = model.backbone_attention[0].channel.conv.weight.flatten()
    padded = torch.cat([torch.zeros(1), gap, torch.zeros(1)])
    expected = torch.sigmoid(torch.stack([(padded[c : c + 3] * w).sum() for c in range(64)]))
    np.testing.assert_allclose(maps[0].channel, expected.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert all(m.spatial.min() > 0 and m.spatial.max() < 1 for m in maps)


def test_switched_off_parts_report_none() -> None:
    model = build_model("eca_cbam", deformable=False)
    model.set_attention(True, False)
    maps = attention_maps(model, np.zeros((64, 64, 3), np.uint8))
    assert all(m.channel is not None and m.spatial is None for m in maps)
    with pytest.raises(ValueError, match="no attention"):
        attention_maps(build_model("none", deformable=False), np.zeros((64, 64, 3), np.uint8))


def test_resize_to_stride() -> None:
    assert resize_to_stride(np.zeros((600, 512, 3), np.uint8)).shape == (608, 512, 3)
    assert resize_to_stride(np.zeros((10, 70, 3), np.uint8)).shape == (32, 64, 3)


def test_sam_overlay_shows_the_structure_of_a_map_of_small_range() -> None:
    from matplotlib.image import AxesImage

    from ffcore.report import figures
    from ffcore.report.ablation import MAP_PERCENTILES, plot_attention
    from ffcore.report.attention_maps import BlockAttention

    yy, xx = np.mgrid[0:12, 0:16]
    spatial = 0.5 + 0.01 * np.exp(-((yy - 6.0) ** 2 + (xx - 8.0) ** 2) / 8.0)  # 0.500-0.510
    maps = {"2b": [BlockAttention("neck_attention.0", np.full(8, 0.5), spatial)]}
    fig = plot_attention(np.zeros((96, 128, 3), np.uint8), maps, source="smoke run")
    top = fig.axes[0]
    overlay = [im for im in top.get_images() if im.get_array().shape == spatial.shape]
    assert len(overlay) == 1 and isinstance(overlay[0], AxesImage)
    shown = overlay[0].norm(spatial)  # the colour-map positions the reader sees, 0-1
    low, high = np.percentile(spatial, MAP_PERCENTILES)
    assert overlay[0].norm.vmin == pytest.approx(low) and overlay[0].norm.vmax == pytest.approx(
        high
    )
    assert np.ptp(np.clip(shown, 0, 1)) == pytest.approx(1.0)  # on 0-1 it would be 0.01
    bar = next(ax for ax in fig.axes if ax.get_label() == "<colorbar>")
    assert "0.500\u20130.510" in bar.get_xlabel()  # the true range, stated
    assert "middle 96 %" in top.get_title()  # what the colours span, said on the panel
    figures.plt.close(fig)
