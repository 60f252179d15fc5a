"""Every file the project writes is written whole or not at all (``ffcore.atomic``): a write
that hits the file-size limit (as a full disk would) part-way leaves the old file as it was and
no temporary file beside it, and the CLI says so in one line."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ffcore import atomic
from tests.errorline import one_error_line

REPO = Path(__file__).resolve().parent.parent


def _limit(max_bytes: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit: EFBIG, no kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return apply


def _run_limited(code: str, max_bytes: int, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that may write no file past ``max_bytes``."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
        preexec_fn=_limit(max_bytes),
    )  # fmt: skip


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _assert_intact(folder: Path, before: dict[str, bytes]) -> None:
    after = _snapshot(folder)
    assert after == before, sorted(set(after) ^ set(before))  # no temporary left either


def test_write_text_and_bytes_replace_whole_and_leave_nothing_on_failure(tmp_path: Path):
    target = tmp_path / "sub" / "a.txt"
    atomic.write_text(target, "one\n")
    assert target.read_text() == "one\n"
    atomic.write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    atomic.write_json(tmp_path / "a.json", {"b": 1, "a": [1.5]}, sort_keys=True)
    assert json.loads((tmp_path / "a.json").read_text()) == {"a": [1.5], "b": 1}
    with pytest.raises(RuntimeError, match="boom"), atomic.replacing(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"two" and sorted(os.listdir(target.parent)) == ["a.txt"]
    with pytest.raises(TypeError):  # not JSON: nothing written, the old file stays
        atomic.write_json(tmp_path / "a.json", {"x": object()})
    assert json.loads((tmp_path / "a.json").read_text()) == {"a": [1.5], "b": 1}
    assert atomic.temporary_pid(f".a.pdf.{os.getpid()}.tmp.pdf") == os.getpid()
    assert atomic.temporary_pid(".latest.pth.17.tmp") == 17
    assert atomic.temporary_pid("latest.pth") is None


def _readme_setup(tmp_path: Path, size: int) -> tuple[Path, Path]:
    figs = tmp_path / "figs"
    figs.mkdir()
    entries = {"Ap": {"text": "97.7"}}
    (figs / "numbers.json").write_text(json.dumps(entries))
    body = "Intro.\n" + "x" * (size - 100) + "\nAP <!-- ff:Ap -->1.0<!-- /ff -->.\n"
    readme = tmp_path / "README.md"
    readme.write_text(body)
    return readme, figs


def test_figures_readme_past_the_size_limit_keeps_the_readme_and_says_one_line(tmp_path: Path):
    readme, figs = _readme_setup(tmp_path, 42_000)
    before = _snapshot(tmp_path)
    cmd = "from ffcore.cli import main; raise SystemExit(main(['figures', '--readme', "
    cmd += f"{str(readme)!r}, '--dir', {str(figs)!r}]))"
    proc = _run_limited(cmd, 40 * 1024, tmp_path)
    assert proc.returncode != 0
    one_error_line(proc.stderr, str(readme))
    _assert_intact(tmp_path, before)
    proc = _run_limited(cmd, 1 << 20, tmp_path)  # room enough: rewritten
    assert proc.returncode == 0, proc.stderr
    assert "<!-- ff:Ap -->97.7<!-- /ff -->" in readme.read_text()


@pytest.mark.slow  # fresh interpreters importing torch / matplotlib
def test_table_csv_and_tex_past_the_size_limit_keep_the_old_files(tmp_path: Path):
    out = tmp_path / "figs"
    code = f"""
        import pandas as pd
        from ffcore.report.figures import save_table
        df = pd.DataFrame({{"a": range(%d), "b": [0.5] * %d}})
        save_table(df, "t", {str(out)!r})
    """
    proc = _run_limited(code % (3, 3), 1 << 20, tmp_path)
    assert proc.returncode == 0, proc.stderr
    before = _snapshot(out)
    proc = _run_limited(code % (4000, 4000), 20_000, tmp_path)  # CSV ~40 kB: fails first
    assert proc.returncode != 0 and "File too large" in proc.stderr
    _assert_intact(out, before)
    # a CSV that fits and a TeX that does not: neither changes, so the pair never disagrees
    csv_only = 20_000 - 1
    proc = _run_limited(code % (1000, 1000), csv_only, tmp_path)
    assert proc.returncode != 0 and "File too large" in proc.stderr
    after = _snapshot(out)
    assert after["t.tex"] == before["t.tex"] and set(after) == set(before)


@pytest.mark.slow  # fresh interpreters importing torch / matplotlib
def test_figure_past_the_size_limit_keeps_the_old_pdf_and_png(tmp_path: Path):
    out = tmp_path / "figs"
    code = f"""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from ffcore.report.figures import save_figure
        from ffcore.report.figures import new_figure
        fig, ax = new_figure()
        ax.plot(range(%d))
        save_figure(fig, "f", {str(out)!r})
    """
    assert _run_limited(code % 3, 10 << 20, tmp_path).returncode == 0
    before = _snapshot(out)
    proc = _run_limited(code % 5, 2_000, tmp_path)
    assert proc.returncode != 0 and "File too large" in proc.stderr
    _assert_intact(out, before)


def test_numbers_json_past_the_size_limit_keeps_the_old_files(tmp_path: Path):
    out = tmp_path / "figs"
    code = f"""
        from ffcore.report.numbers import Numbers
        n = Numbers("nb", "ci")
        for i in range(%d):
            n.add("N" + "".join("abcdefghij"[int(c)] for c in str(i)), i * 0.5, description="d" * 50)
        n.write({str(out)!r})
    """
    assert _run_limited(code % 2, 1 << 20, tmp_path).returncode == 0
    before = _snapshot(out)
    proc = _run_limited(code % 2000, 30_000, tmp_path)
    assert proc.returncode != 0 and "File too large" in proc.stderr
    _assert_intact(out, before)


@pytest.mark.slow  # fresh interpreters importing torch / matplotlib
def test_checkpoint_past_the_size_limit_keeps_the_old_checkpoint(tmp_path: Path):
    out = tmp_path / "w"
    code = f"""
        import torch
        from ffcore.training.checkpoint import save_checkpoint
        from ffcore.models import build_model
        model = build_model("%s")
        save_checkpoint({str(out / "latest.pth")!r}, model=model, phase="1", epoch=1, epochs=2)
    """
    assert _run_limited(code % "none", 1 << 30, tmp_path).returncode == 0
    before = _snapshot(out)
    proc = _run_limited(code % "eca_cbam", 100_000, tmp_path)
    assert proc.returncode != 0
    _assert_intact(out, before)


def _code_lines(path: Path) -> dict[int, str]:
    """Each line's code without comments and docstrings (short strings, such as a file mode,
    kept): what the line does, not what it says."""
    import io
    import tokenize

    out: dict[int, str] = {}
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    for tok in tokens:
        if tok.type == tokenize.COMMENT or (tok.type == tokenize.STRING and len(tok.string) > 5):
            continue
        out[tok.start[0]] = out.get(tok.start[0], "") + tok.string
    return out


def test_every_writer_goes_through_ffcore_atomic() -> None:
    """No module of ffcore writes a file by itself (write_text, open(..., "w"), to_csv,
    savefig, torch.save to a path, onnx.save, savemat): each goes through ffcore.atomic."""
    import re

    raw = re.compile(
        r"\.write_text\(|\.write_bytes\(|open\([^)]*[\"'][wax]b?[\"']|\.to_csv\(|\.savefig\("
        r"|torch\.save\(|onnx\.save\(|savemat\(|\.save\(str\(|copyfile\("
    )
    # pdflatex's input, written into its own temporary build folder
    build_folder = {"companion.py": ('(figs / f"{INDEX}.tex")', '(build / f"{COMPANION}.tex")')}
    found = []
    for path in sorted((REPO / "ffcore").rglob("*.py")):
        if path.name == "atomic.py":
            continue
        lines = path.read_text().splitlines()
        for no, code in _code_lines(path).items():
            if no > len(lines):
                continue
            line = lines[no - 1]
            if not raw.search(code) or "atomic-ok" in lines[no - 1] + lines[no - 2]:
                continue
            if any("replacing" in above for above in lines[max(0, no - 8) : no - 1]):
                continue  # the writer fills a temporary of ffcore.atomic.replacing(_all)
            if any(line.strip().startswith(k) for k in build_folder.get(path.name, ())):
                continue
            found.append(f"{path.relative_to(REPO)}:{no}: {line.strip()}")
    assert found == [], "\n".join(found)
