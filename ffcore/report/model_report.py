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


def _k(n: float) -> str:
    return f"{n / 1e3:g}K" if n % 100 == 0 else f"{n / 1e3:.1f}K"


def parameter_claims_markdown(params: pd.DataFrame, sweep: pd.DataFrame, claims: dict) -> str:
    """The thesis' parameter counts beside the architecture's, in words computed from the
    counts: ``params`` (``parameter_frame`` of cbam and eca_cbam), ``sweep`` (``width_sweep``)
    and ``claims`` (``ffcore.thesis.CLAIMS``: ``cbam_params``, ``eca_cbam_params``)."""
    from ffcore.report.narrative import Prose

    cbam, eca = int(params.loc["total", "cbam"]), int(params.loc["total", "eca_cbam"])
    saved = cbam - eca
    attention = [r for r in params.index if r.endswith("attention")]
    before = " + ".join(f"{int(params.loc[r, 'cbam']):,}" for r in attention)
    after = " + ".join(f"{int(params.loc[r, 'eca_cbam']):,}" for r in attention)
    claim_cbam, claim_eca = claims["cbam_params"], claims["eca_cbam_params"]

    def agrees(count: int, claim: float) -> str:  # the thesis rounds to 0.1K
        return "matches" if round(count / 100) == round(claim / 100) else "does not match"

    wanted = sweep["eca_cbam"]
    below = wanted[wanted <= claim_eca]
    above = wanted[wanted >= claim_eca]
    width = (
        f"between {below.index.max()} and {above.index.min()} channels "
        f"({below.index.max()} give {_k(below.max())}, {above.index.min()} give {_k(above.min())})"
        if len(below) and len(above)
        else "a width outside the sweep"
    )
    return Prose(
        f"The CBAM baseline has **{cbam:,}** parameters, which {agrees(cbam, claim_cbam)} the "
        f"thesis' {_k(claim_cbam)}. Replacing CBAM's channel MLPs with ECA changes only the "
        f"attention weights ({before} → {after}, {saved:,} fewer), so ECA-CBAM has **{eca:,}** "
        f"parameters, which {agrees(eca, claim_eca)} the thesis' ~{_k(claim_eca)} (that would "
        f"take {cbam - claim_eca:,.0f} fewer than the baseline). The count depends mainly on "
        f"the BiFPN/SSH width: in the sweep above, ~{_k(claim_eca)} would need a neck "
        f"{width}. The code keeps the architecture as specified and reports its count."
    )
