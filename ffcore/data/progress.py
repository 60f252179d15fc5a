"""Progress bars that read well where they are stored.

On a terminal a tqdm bar redraws itself in place. Where stderr is not a terminal (a notebook
kernel, whose every redraw becomes one more stored output; a log file) a redraw is a new line,
so there the bar is replaced by ``LineProgress``: nothing per step and one summary line when it
closes. The CLI on a terminal keeps its live bar.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm import tqdm


class LineProgress:
    """The part of tqdm's interface the loops use (``update``, ``set_postfix``, ``close``, a
    context manager); it writes one line at ``close``: ``desc: n/total unit in s (postfix)``."""

    def __init__(self, total: int, initial: int = 0, desc: str = "", unit: str = "it",
                 disable: bool = False, file: TextIO | None = None) -> None:  # fmt: skip
        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
        self.disable, self.file = disable, file
        self.postfix: dict[str, Any] = {}
        self._start, self._initial, self._closed = time.perf_counter(), initial, False

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, refresh: bool = False, **values: Any) -> None:
        self.postfix = values

    def line(self) -> str:
        seconds = time.perf_counter() - self._start
        done = self.n - self._initial
        rate = ""
        if seconds > 0 and done:
            per_s = done / seconds
            rate = (
                f", {per_s:.1f} {self.unit}/s" if per_s >= 1 else f", {1 / per_s:.1f} s/{self.unit}"
            )
        extra = ", ".join(f"{k}={v}" for k, v in self.postfix.items())
        return (f"{self.desc}: {self.n}/{self.total} {self.unit} in {seconds:.0f} s{rate}"
                + (f" ({extra})" if extra else ""))  # fmt: skip

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.disable:
            print(self.line(), file=self.file if self.file is not None else _line_stream(),
                  flush=True)  # fmt: skip

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _line_stream() -> TextIO:
    """Where a summary line goes: stderr, as tqdm's bars (a command's stdout may be data, e.g.
    JSON lines), except in a notebook kernel, whose stdout it is (nbconvert shows stderr as an
    error)."""
    in_kernel = type(sys.stdout).__module__.startswith("ipykernel")
    return sys.stdout if in_kernel else sys.stderr


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or non-standard stream
        return False


def progress_bar(total: int, *, desc: str, unit: str = "it", initial: int = 0,
                 disable: bool = False, file: TextIO | None = None) -> tqdm | LineProgress:  # fmt: skip
    """A tqdm bar when ``file`` (default stderr) is a terminal, else a ``LineProgress`` (its line
    on ``file`` when given, else stderr, or stdout in a notebook kernel)."""
    stream = file if file is not None else sys.stderr
    if _is_terminal(stream):
        return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=disable,
                    dynamic_ncols=True, file=stream)  # fmt: skip
    return LineProgress(total, initial, desc, unit, disable, file)
