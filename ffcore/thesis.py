"""Claims and targets stated in the thesis text. Figures show them beside measured values,
always labelled as claims or targets; code never uses them as facts
(``ffcore.report.findings`` sets each beside its measurement)."""

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
# How the thesis prints each claim, and the step of its last printed digit: a measurement within
# half a step of the claim matches it as printed ("~460K" is to the nearest 10K).
CLAIM_TEXT: dict[str, str] = {
    "eca_cbam_params": "~460K",
    "cbam_params": "488.7K",
    "model_size_mb": "1.4 MB",
    "latency_a100_ms": "3.2 ms",
    "latency_snapdragon888_ms": "10 ms",
}
CLAIM_STEP: dict[str, float] = {
    "eca_cbam_params": 10_000,
    "cbam_params": 100,
    "model_size_mb": 0.1,
    "latency_a100_ms": 0.1,
    "latency_snapdragon888_ms": 1.0,
}
AP_TARGET_STEP = 0.001  # the targets are printed to 0.1 AP points
# Statements without a number.
STATEMENTS: dict[str, str] = {
    "progressive": "progressive activation of attention prevents training instability",
    "accuracy": "ECA-CBAM is as accurate as CBAM",
}
