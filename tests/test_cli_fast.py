"""`python -m ffcore --help`, every sub-command's --help and wider-eval never import torch; each
option's default is shown once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ffcore.cli import COMMANDS, EXPORT_PRECISIONS, build_parser
from ffcore.data.wider_mat import GroundTruth, write_ground_truth
from ffcore.evaluation.wider_ap import write_predictions

REPO = Path(__file__).resolve().parents[1]

# Runs the CLI in-process, then reports which heavy modules the command loaded.
_PROBE = """
import json, runpy, sys
sys.argv = ["ffcore", *json.loads(sys.argv[1])]
try:
    runpy.run_module("ffcore", run_name="__main__")
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("torch", "torchvision", "cv2", "onnxruntime") if m in sys.modules)
print("HEAVY=" + json.dumps({"code": code, "heavy": heavy}))
"""


def _probe(args: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    line = [x for x in proc.stdout.splitlines() if x.startswith("HEAVY=")]
    assert line, proc.stdout + proc.stderr
    return {**json.loads(line[-1][len("HEAVY=") :]), "stdout": proc.stdout}


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_imports_no_torch(command: str | None) -> None:
    result = _probe(["--help"] if command is None else [command, "--help"])
    assert result["code"] == 0
    assert result["heavy"] == [], f"{command} --help imported {result['heavy']}"


def test_wider_eval_imports_no_torch(tmp_path: Path) -> None:
    face = np.array([[10.0, 10, 20, 20]])
    keep = {s: [[np.array([1])]] for s in ("easy", "medium", "hard")}
    gt = GroundTruth(events=["0--E"], images=[["a"]], boxes=[[face]], keep=keep)
    write_ground_truth(tmp_path / "gt", gt)
    preds = np.array([[10.0, 10, 20, 20, 0.9], [200, 200, 9, 9, 0.1]])  # the face, then an FP
    write_predictions(tmp_path / "pred", gt, [[preds]])
    result = _probe(["wider-eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")])
    assert result["code"] == 0 and "100.00%" in result["stdout"]  # face found before the FP: AP 1
    assert result["heavy"] == []


def test_export_precisions_match_the_library() -> None:
    from ffcore.export import PRECISIONS

    assert EXPORT_PRECISIONS == PRECISIONS


def test_each_default_shown_once() -> None:
    sub = build_parser()._subparsers._group_actions[0]  # the sub-command action
    for name, parser in sub.choices.items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.help is None:
                continue
            text = formatter._expand_help(action) if action.help else ""
            assert text.lower().count("default") <= 1, f"{name} {action.option_strings}: {text}"
            shown = action.default not in (None, False, argparse_suppress())
            if shown and action.option_strings != ["-h", "--help"]:
                assert "default" in text.lower(), (
                    f"{name} {action.option_strings} hides its default"
                )


def argparse_suppress() -> str:
    import argparse

    return argparse.SUPPRESS
