"""The one way the project writes a file: all or nothing.

Every writer goes to a temporary file beside the target (same folder, so the same file system),
which is flushed to disk (``fsync``) and then renamed over the target (``os.replace``, atomic on
POSIX and Windows). A failure part-way (disk full, the file-size limit, a kill) leaves the old
file as it was and no temporary file behind; the error propagates.

- ``write_text`` / ``write_bytes`` / ``write_json``: a whole content at once.
- ``replacing(path)``: for writers that want a path or a stream (matplotlib ``savefig``,
  pandas ``to_csv``, ``torch.save``, ``onnx.save``): ``with replacing(p) as tmp: writer(tmp)``.
  The temporary name keeps the target's suffix, so a writer that picks its format from the
  suffix (``savefig``, ``savemat``) writes the same format.
- ``replacing_all(paths)``: files that belong together, replaced only when all were written.
- ``copy_file``: a copy that is atomic at the destination.

Spec layer: no torch, no numpy.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "copy_file",
    "replacing",
    "replacing_all",
    "temporary_pid",
    "write_bytes",
    "write_json",
    "write_text",
    "write_texts",
]

# ``.<name>.<pid>.tmp`` plus the target's suffix: ``.fig.pdf.123.tmp.pdf``, ``.latest.pth.123.tmp.pth``
_TEMP = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.tmp(?:\.[^.]*)?")


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")


def temporary_pid(name: str) -> int | None:
    """The process id in a temporary file name this module makes (``None``: not one)."""
    m = _TEMP.fullmatch(name)
    return int(m["pid"]) if m else None


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every platform opens folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without an error, the file
    written there is synced and renamed over ``path``. On any error (or if nothing was written)
    the temporary file is removed and ``path`` is untouched. The parent folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    try:
        try:
            yield tmp
        except OSError as exc:  # name the file being written, not its temporary
            if exc.filename is not None and Path(exc.filename) == tmp:
                exc.filename = str(path)
            raise
        if not tmp.is_file():
            raise FileNotFoundError(f"{path}: the writer wrote nothing (expected {tmp.name})")
        _fsync_file(tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def replacing_all(paths: Iterable[str | Path]) -> Iterator[list[Path]]:
    """``replacing`` for files that belong together (a table's CSV and TeX, a figure's PDF and
    PNG): yields their temporary paths; none replaces its target unless all were written, so
    the set is never half old, half new."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(replacing(p)) for p in paths]


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; return ``path``."""
    path = Path(path)
    with replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return path


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (newlines as given); return ``path``."""
    path = Path(path)
    with replacing(path) as tmp, open(tmp, "w", encoding=encoding, newline="") as f:
        f.write(text)
    return path


def write_texts(texts: Mapping[Path, str], encoding: str = "utf-8") -> list[Path]:
    """Write several files that belong together (``replacing_all``); return their paths."""
    paths = [Path(p) for p in texts]
    with replacing_all(paths) as temporaries:
        for tmp, text in zip(temporaries, texts.values(), strict=True):
            with open(tmp, "w", encoding=encoding, newline="") as f:
                f.write(text)
    return paths


def write_json(
    path: str | Path,
    data: Any,
    indent: int | None = 2,
    sort_keys: bool = False,
    default: Callable[[Any], Any] | None = None,
) -> Path:
    """Write ``data`` as JSON (and a final newline) to ``path`` atomically (``default`` as for
    ``json.dumps``). The JSON is made before anything is written, so data that cannot be
    serialised leaves no trace."""
    text = json.dumps(data, indent=indent, sort_keys=sort_keys, default=default) + "\n"
    return write_text(path, text)


def copy_file(src: str | Path, dst: str | Path) -> Path:
    """Copy ``src`` to ``dst``, atomically at ``dst``; return ``dst``."""
    dst = Path(dst)
    with replacing(dst) as tmp:
        shutil.copyfile(src, tmp)
    return dst
