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


# -- what an executed phase notebook stores (issue 27: one progress line per phase) -----------
def test_progress_is_one_line_where_stderr_is_not_a_terminal() -> None:
    import io

    from tqdm import tqdm

    from ffcore.data.progress import LineProgress, progress_bar

    out = io.StringIO()  # a notebook kernel's stream or a log file: not a terminal
    bar = progress_bar(24, desc="phase 1", unit="step", file=out)
    assert isinstance(bar, LineProgress)
    for _ in range(24):
        bar.update(1)
        bar.set_postfix(epoch="2/2", loss="3.210")
    assert out.getvalue() == ""  # nothing per step
    bar.close()
    bar.close()  # closing twice writes once
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("phase 1: 24/24 step in ")
    assert lines[0].endswith("(epoch=2/2, loss=3.210)")
    quiet = io.StringIO()
    with progress_bar(3, desc="x", disable=True, file=quiet) as off:
        off.update(3)
    assert quiet.getvalue() == ""

    import contextlib

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()) as std:
        LineProgress(2, desc="detect", unit="img").close()  # outside a kernel: stderr
    assert err.getvalue().startswith("detect: 0/2 img") and std.getvalue() == ""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    live = progress_bar(3, desc="phase 1", file=Terminal())  # the CLI keeps its live bar
    assert isinstance(live, tqdm)
    live.close()


def _stored_lines(output) -> int:
    if output.output_type == "stream":
        return len(output.text.splitlines())
    data = output.get("data", {})
    return len(data.get("text/plain", "").splitlines()) if "text/html" not in data else 1


@pytest.mark.notebook
@pytest.mark.slow
def test_executed_phase_notebook_output_is_short(tmp_path) -> None:
    """Phase 1 in the ci profile under papermill: its training cell stores a few lines (one
    progress line, the epoch table), no cell echoes the paths of exported files, and the
    generated probe sentence is displayed as Markdown."""
    import nbformat
    import papermill as pm

    from ffcore.paths import NOTEBOOKS_DIR

    out = tmp_path / "02_phase1.ipynb"
    pm.execute_notebook(
        str(NOTEBOOKS_DIR / "02_phase1.ipynb"), str(out), kernel_name="python3",
        cwd=str(NOTEBOOKS_DIR), progress_bar=False,
        parameters={"profile": "ci", "run_dir": str(tmp_path / "run"),
                    "figures_dir": str(tmp_path / "figs"), "backbone_init": "random"},
    )  # fmt: skip
    nb = nbformat.read(out, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    training = next(c for c in code if "run_phase(" in c.source)
    streams = [o for o in training.outputs if o.output_type == "stream"]
    assert len(streams) <= 2 and sum(map(_stored_lines, streams)) <= 3, streams
    progress = [o for o in streams if o.text.startswith("phase 1: ")]  # the one progress line
    assert len(progress) == 1 and progress[0].name == "stdout", streams  # not shown as an error
    assert len(training.outputs) <= 3, [o.output_type for o in training.outputs]
    for cell in code:
        for o in cell.outputs:
            assert "PosixPath(" not in str(o.get("data", {}).get("text/plain", "")), cell.source
    probe = next(c for c in code if "probe_change_sentence" in c.source)
    markdown = probe.outputs[0]["data"]["text/markdown"]
    assert markdown.startswith("Over phase 1 the probe-set loss fell: ")
    total = sum(_stored_lines(o) for c in code for o in c.outputs)
    assert total < 120, total  # the whole notebook: tables, one figure, a few lines
