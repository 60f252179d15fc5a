"""Claims and targets stated in the thesis text. Figures show them beside measured values,
always labelled as claims or targets; code never uses them as facts."""

from __future__ import annotations

# WIDER FACE val AP targets (fractions, like ffcore.evaluation.wider_ap).
AP_TARGETS: dict[str, float] = {"easy": 0.925, "medium": 0.908, "hard": 0.800}

# Statements of the thesis text about the model.
CLAIMS: dict[str, float] = {
    "eca_cbam_params": 460_000,  # "~460K" (the architecture gives 476,357)
    "cbam_params": 488_700,  # "488.7K" (the architecture gives 488,664)
    "model_size_mb": 1.4,
    "latency_a100_ms": 3.2,
    "latency_snapdragon888_ms": 10.0,
}
