"""Test helper: a command's stderr holds exactly one ``error: ...`` line, without a traceback."""

from __future__ import annotations


def one_error_line(err: str, *names: str) -> str:
    """The one error line of ``err``; asserts it names every one of ``names``."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]
