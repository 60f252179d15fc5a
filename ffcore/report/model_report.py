"""Tables about the models for the thesis (used by 01_model and the ablation notebook)."""

from __future__ import annotations

import pandas as pd
import torch

from ffcore.models import build_model
from ffcore.models.attention import eca_kernel_size
from ffcore.models.backbone import STAGE_CHANNELS
from ffcore.models.modes import eval_mode
from ffcore.report.complexity import parameter_table
from ffcore.schedule import PHASES


def parameter_frame(variants: tuple[str, ...] = ("cbam", "eca_cbam"), **overrides) -> pd.DataFrame:
    """Parameters per module group (rows) for each variant (columns)."""
    return pd.DataFrame({v: parameter_table(build_model(v, **overrides)) for v in variants})


def width_sweep(widths: tuple[int, ...] = (32, 40, 48, 52, 56, 64)) -> pd.DataFrame:
    """Total parameters of both variants as the neck width changes (the thesis uses 52)."""
    rows = []
    for c in widths:
        row = {"neck_channels": c}
        for v in ("cbam", "eca_cbam"):
            row[v] = parameter_table(build_model(v, neck_channels=c))["total"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("neck_channels")


def eca_kernel_frame(neck_channels: int = 52) -> pd.DataFrame:
    where = [f"backbone stage {i + 1}" for i in range(3)] + ["BiFPN output"]
    channels = [*STAGE_CHANNELS, neck_channels]
    return pd.DataFrame(
        {"where": where, "channels": channels, "k": [eca_kernel_size(c) for c in channels]}
    )


@torch.no_grad()
def phase_switch_frame(model, x: torch.Tensor) -> pd.DataFrame:
    """For each training phase: the switches, how far the output moves from the all-off output,
    and whether the parameter count and state-dict keys stay the same."""
    keys, n_params = list(model.state_dict()), sum(p.numel() for p in model.parameters())
    switches = model.attention_state() or (True, True)
    rows = []
    try:
        with eval_mode(model):
            model.set_attention(False, False)
            base = model(x)[1]
            for phase in PHASES.values():
                model.set_attention(phase.channel_attention, phase.spatial_attention)
                out = model(x)[1]
                rows.append(
                    {
                        "phase": phase.id,
                        "channel (ECA)": phase.channel_attention,
                        "spatial (SAM)": phase.spatial_attention,
                        "max |logit change| vs no attention": float((out - base).abs().max()),
                        "parameters": sum(p.numel() for p in model.parameters()),
                        "same state-dict keys": list(model.state_dict()) == keys,
                    }
                )
    finally:
        model.set_attention(*switches)
    frame = pd.DataFrame(rows).set_index("phase")
    if (frame["parameters"] != n_params).any():
        raise RuntimeError("a switch changed the parameter count")
    return frame


def module_summary(model: torch.nn.Module, depth: int = 1) -> pd.DataFrame:
    """A compact view of the module tree instead of ``print(model)``: one row per module down to
    ``depth`` levels below the model (name, class, direct children, parameters), and a total."""
    rows = []
    for name, module in model.named_modules():
        level = name.count(".") + 1 if name else 0
        if not name or level > depth:
            continue
        rows.append(
            {
                "module": name,
                "class": type(module).__name__,
                "children": len(list(module.children())),
                "parameters": sum(p.numel() for p in module.parameters()),
            }
        )
    rows.append(
        {
            "module": "total",
            "class": type(model).__name__,
            "children": len(list(model.children())),
            "parameters": sum(p.numel() for p in model.parameters()),
        }
    )
    return pd.DataFrame(rows).set_index("module")
