"""Latency and MACs per module group: where a forward pass spends its time, per MAC.

``group_rounds`` runs several models alternately (A B C, B C A, ...) on one input and times each
module group through forward hooks (a pre-hook starts the clock, a hook stops it; a group that is
a ModuleList is timed over its members), plus the post-processing (softmax, decoding, threshold,
NMS with ``ffcore.evaluation.inference``'s defaults) and the whole forward, round by round;
``group_times`` summarises the rounds (median, IQR) and ``round_ratio`` gives the side-by-side
ratio of two models per round with its spread. ``group_macs`` counts
MACs per group with fvcore (the same counter as ``ffcore.report.complexity.count_macs``).
``breakdown_table`` joins both: ms (median and IQR over the rounds), GMACs and ms per GMAC.

An ONNX Runtime column is not part of this module: ``ffcore.export`` may add per-group ORT
timings later; ``breakdown_table`` takes them as an optional ``onnx_ms`` mapping.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torchvision.ops import nms

from ffcore.detection.box_coder import decode_boxes, decode_landmarks
from ffcore.detection.priors import prior_boxes
from ffcore.models.detector import MODULE_GROUPS
from ffcore.models.modes import eval_mode

POSTPROCESS = "postprocess"
NETWORK = "network"  # the forward pass without post-processing
GROUPS: tuple[str, ...] = (*MODULE_GROUPS, POSTPROCESS)


def postprocess(
    outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    image_hw: tuple[int, int],
    conf_threshold: float = 0.02,
    nms_iou: float = 0.4,
    top_k: int = 5000,
    keep_top_k: int = 750,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(boxes, scores, landmarks) per image, as ``ffcore.evaluation.inference`` computes them
    (without the rescaling to the original image)."""
    loc, logits, ldm = outputs
    priors = prior_boxes(image_hw).to(loc.device)
    scores_all = torch.softmax(logits, dim=-1)[..., 1]
    result = []
    for k in range(loc.shape[0]):
        boxes = decode_boxes(loc[k], priors)
        landmarks = decode_landmarks(ldm[k], priors)
        scores = scores_all[k]
        keep = torch.nonzero(scores > conf_threshold).squeeze(1)
        keep = keep[torch.argsort(scores[keep], descending=True, stable=True)[:top_k]]
        keep = keep[nms(boxes[keep], scores[keep], nms_iou)[:keep_top_k]]
        result.append((boxes[keep], scores[keep], landmarks[keep]))
    return result


def _group_modules(model: nn.Module, group: str) -> list[nn.Module]:
    module = getattr(model, group)
    return list(module) if isinstance(module, nn.ModuleList) else [module]


def _hook(model: nn.Module, clock: Callable[[], float], spent: dict[str, float]) -> list:
    handles = []
    for group in MODULE_GROUPS:
        for module in _group_modules(model, group):
            start: list[float] = []

            def pre(_m, _inp, start=start) -> None:
                start.append(clock())

            def post(_m, _inp, _out, group=group, start=start) -> None:
                spent[group] += (clock() - start.pop()) * 1e3

            handles.append(module.register_forward_pre_hook(pre))
            handles.append(module.register_forward_hook(post))
    return handles


def group_rounds(
    models: Mapping[str, nn.Module],
    x: torch.Tensor,
    reps: int = 10,
    warmup: int = 1,
    clock: Callable[[], float] | None = None,
) -> pd.DataFrame:
    """Per-group ms of every model in each of ``reps`` rounds (the models run alternately, in a
    rotating order, under inference mode): one row per (model, round, group), column ``ms``.

    Besides the module groups: ``postprocess``; ``network`` the forward pass alone; ``other``
    what no group of the forward covers (the features' glue: input check, list building);
    ``total`` the forward plus post-processing."""
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    clock = clock or time.perf_counter
    names = list(models)
    hw = (int(x.shape[-2]), int(x.shape[-1]))
    records: list[dict[str, Any]] = []
    spent: dict[str, float] = {}
    handles = []
    try:
        for name in names:
            handles += _hook(models[name], clock, spent)
        with torch.inference_mode():
            for r in range(warmup + reps):
                for k in range(len(names)):
                    name = names[(k + r) % len(names)]
                    spent.clear()
                    spent.update(dict.fromkeys(GROUPS, 0.0))
                    t0 = clock()
                    out = models[name](x)
                    t1 = clock()
                    postprocess(out, hw)
                    t2 = clock()
                    spent[POSTPROCESS] = (t2 - t1) * 1e3
                    spent[NETWORK] = (t1 - t0) * 1e3
                    spent["other"] = spent[NETWORK] - sum(spent[g] for g in MODULE_GROUPS)
                    spent["total"] = (t2 - t0) * 1e3
                    if r >= warmup:
                        records += [
                            {"model": name, "round": r - warmup, "group": g, "ms": ms}
                            for g, ms in spent.items()
                        ]
    finally:
        for handle in handles:
            handle.remove()
    frame = pd.DataFrame(records)
    order = {name: i for i, name in enumerate(names)}  # the models' order, not the rotation's
    return frame.sort_values("model", key=lambda m: m.map(order), kind="stable").reset_index(
        drop=True
    )


def summarise_rounds(rounds: pd.DataFrame) -> pd.DataFrame:
    """``group_rounds``' rows as one row per (model, group): ``median_ms``, ``p25_ms``,
    ``p75_ms`` over the rounds (models and groups in their first order)."""
    grouped = rounds.groupby(["model", "group"], sort=False)["ms"]
    return pd.DataFrame(
        {
            "median_ms": grouped.median(),
            "p25_ms": grouped.quantile(0.25),
            "p75_ms": grouped.quantile(0.75),
        }
    ).reset_index()


def group_times(
    models: Mapping[str, nn.Module],
    x: torch.Tensor,
    reps: int = 10,
    warmup: int = 1,
    clock: Callable[[], float] | None = None,
) -> pd.DataFrame:
    """``summarise_rounds(group_rounds(...))``: median and IQR of each (model, group)."""
    return summarise_rounds(group_rounds(models, x, reps, warmup, clock))


def round_ratio(
    rounds: pd.DataFrame, numerator: str, denominator: str, group: str = NETWORK
) -> tuple[float, float, float]:
    """Median, p25 and p75 of the per-round ratio numerator / denominator of ``group``'s ms
    (both models timed in the same rounds: the side-by-side ratio and its spread)."""
    ms = rounds[rounds["group"] == group].pivot(index="round", columns="model", values="ms")
    ratio = (ms[numerator] / ms[denominator]).to_numpy()
    return (
        float(np.median(ratio)),
        float(np.percentile(ratio, 25)),
        float(np.percentile(ratio, 75)),
    )


def group_macs(model: nn.Module, image_hw: tuple[int, int]) -> dict[str, int]:
    """MACs of one batch-1 forward per module group (fvcore, deformable convs included)."""
    from ffcore.report.complexity import _deform_conv_macs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

        device = next(model.parameters()).device
        with eval_mode(model), torch.no_grad():
            analysis = FlopCountAnalysis(model, torch.zeros(1, 3, *image_hw, device=device))
            analysis.set_op_handle("torchvision::deform_conv2d", _deform_conv_macs)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            by_module = analysis.by_module()
    return {group: int(by_module.get(group, 0)) for group in MODULE_GROUPS}


def breakdown_table(
    times: pd.DataFrame,
    macs: Mapping[str, Mapping[str, int]],
    onnx_ms: Mapping[tuple[str, str], float] | None = None,
) -> pd.DataFrame:
    """``times`` (``group_times``) joined with ``macs`` (model -> group -> MACs; a model name
    of ``times`` may carry a suffix after " (" that ``macs`` lacks, e.g. "ECA-CBAM (fused)"):
    columns model, group, median_ms, p25_ms, p75_ms, gmacs, ms_per_gmac (and onnx_ms when
    given, keyed by (model, group)). ``ms_per_gmac`` is missing where a group has no MACs."""
    table = times.copy()

    def gmacs(row: pd.Series) -> float:
        base = str(row["model"]).split(" (")[0]
        per_group = macs.get(row["model"], macs.get(base, {}))
        if row["group"] in ("total", NETWORK):
            return sum(per_group.values()) / 1e9
        value = per_group.get(row["group"])
        return np.nan if value is None else value / 1e9

    table["gmacs"] = table.apply(gmacs, axis=1)
    table["ms_per_gmac"] = np.where(
        table["gmacs"] > 0, table["median_ms"] / table["gmacs"].where(table["gmacs"] > 0), np.nan
    )
    if onnx_ms is not None:
        table["onnx_ms"] = [
            onnx_ms.get((m, g), np.nan) for m, g in zip(table["model"], table["group"], strict=True)
        ]
    return table
