"""notebooks/06_evaluation.ipynb runs under papermill on a phase-3 checkpoint recorded as
05_phase3 records it, and writes its numbers and figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ffcore.paths import NOTEBOOKS_DIR


@pytest.mark.slow
@pytest.mark.notebook
def test_evaluation_notebook_runs(tmp_path: Path) -> None:
    from ffcore.models import build_model
    from ffcore.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = build_model("eca_cbam")
    ckpt = save_checkpoint(
        tmp_path / "05_phase3" / "phase3.pt",
        model=model,
        phase="3",
        epoch=1,
        epochs=1,
    )
    (tmp_path / "05_phase3" / "result.json").write_text(json.dumps({"checkpoint": str(ckpt)}))
    cmd = [sys.executable, "-m", "papermill", "-k", "python3", "--no-progress-bar"]
    cmd += [str(NOTEBOOKS_DIR / "06_evaluation.ipynb"), str(tmp_path / "06.ipynb")]
    cmd += ["-p", "run_dir", str(tmp_path), "-p", "figures_dir", str(tmp_path / "fig")]
    cmd += ["-p", "image_size", "128", "-p", "num_examples", "2"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    result = json.loads((tmp_path / "06_evaluation" / "result.json").read_text())
    ap = json.loads((tmp_path / "06_evaluation" / "ap.json").read_text())
    assert set(ap) == {"easy", "medium", "hard", "landmarks", "protocol"} and result["ap"] == ap
    assert result["checkpoint"] == "05_phase3/phase3.pt"  # relative to the run folder
    assert result["image_size"] == 128
    for name in ("ap_phase3.csv", "ap_phase3.tex", "pr_curves.pdf", "failure_gallery.png",
                 "val_detections.png"):  # fmt: skip
        assert (tmp_path / "fig" / name).is_file()
