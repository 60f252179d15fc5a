"""The hand-over between the phase notebooks (their sequence runs in tests/test_pipeline.py)."""

from __future__ import annotations

import json

import pytest

from ffcore.training.handover import previous_checkpoint


def test_previous_checkpoint_reads_result_json(tmp_path):
    assert previous_checkpoint(tmp_path, "1") is None
    with pytest.raises(FileNotFoundError, match="run 03_phase2a.ipynb first"):
        previous_checkpoint(tmp_path, "2b")
    (tmp_path / "03_phase2a").mkdir()
    (tmp_path / "03_phase2a" / "result.json").write_text(json.dumps({"checkpoint": "x.pth"}))
    assert previous_checkpoint(tmp_path, "2b") == str(tmp_path / "x.pth")  # stored relative
    (tmp_path / "03_phase2a" / "result.json").write_text("{}")
    with pytest.raises(ValueError, match="not a phase result file"):
        previous_checkpoint(tmp_path, "2b")
