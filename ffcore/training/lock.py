"""One run per phase folder: ``<save_folder>/phase<id>/.lock`` holds the pid and host of the run
that trains there, created with ``O_CREAT | O_EXCL`` so that two runs cannot both hold it. The
same lock (``FolderLock``) keeps one ``reproduce`` per run folder and one study per study folder.

A second run refuses with a message naming the running process. A lock left by a process that
is gone (``kill -9``, a crash) is recognised -- same host, pid no longer alive -- and taken over
with a warning. A lock from another host cannot be checked and is never taken over. Holding the
lock, the run also removes the temporary files (``.<name>.<pid>.tmp``) that a checkpoint write
of a killed process left behind.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from pathlib import Path
from types import TracebackType

from ffcore.atomic import temporary_pid

LOCK_NAME = ".lock"
_UNWRITTEN_GRACE_S = 10.0  # an empty lock younger than this is a run that is just starting


class PhaseFolderLocked(ValueError):
    """Another live process works in this folder; the message names it."""


FolderLocked = PhaseFolderLocked


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read_owner(path: Path) -> dict | None:
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(owner, dict) or not isinstance(owner.get("pid"), int):
        return None
    return owner


class PhaseLock:
    """``with PhaseLock(folder):`` holds ``folder/.lock`` for the block (see the module doc).
    ``kind`` names the folder in the messages ("phase folder", "run folder", "study folder")."""

    def __init__(self, folder: str | Path, kind: str = "phase folder") -> None:
        self.folder = Path(folder)
        self.kind = kind
        self.path = self.folder / LOCK_NAME
        self.host = socket.gethostname()
        self.held = False
        self._made: list[Path] = []  # folders this lock created (removed again if left empty)

    def acquire(self) -> None:
        missing = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
        self.folder.mkdir(parents=True, exist_ok=True)
        self._made = missing  # deepest first
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._handle_existing()
                continue
            with os.fdopen(fd, "w") as f:  # atomic-ok: the lock, created exclusively
                json.dump({"pid": os.getpid(), "host": self.host, "started": time.time()}, f)
            self.held = True
            remove_stray_temporaries(self.folder)
            return
        raise PhaseFolderLocked(f"{self.path}: could not take the lock of {self.folder}")

    def _handle_existing(self) -> None:
        """Raise if a live process holds the lock; remove it (with a warning) if stale."""
        owner = _read_owner(self.path)
        if owner is None:
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return  # released meanwhile: try again
            if age < _UNWRITTEN_GRACE_S:
                raise PhaseFolderLocked(
                    f"{self.folder} is locked by a run that is starting ({self.path} is new "
                    f"and not yet written); one run per {self.kind}"
                )
            warnings.warn(
                f"{self.path}: unreadable lock file from an interrupted run; taking it over",
                stacklevel=3,
            )
        else:
            pid, host = owner["pid"], owner.get("host")
            who = f"process {pid} on {host}"
            if host != self.host:
                raise PhaseFolderLocked(
                    f"{self.folder} is in use by {who} (lock {self.path}); one run per "
                    f"{self.kind}. If that process is gone, delete the lock file"
                )
            if pid_alive(pid):
                raise PhaseFolderLocked(
                    f"{self.folder} is in use by {who} (lock {self.path}); one run per "
                    f"{self.kind}: wait for it, stop it, or use another folder"
                )
            warnings.warn(
                f"{self.path}: stale lock of {who}, which is no longer running; taking it over",
                stacklevel=3,
            )
        self.path.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            owner = _read_owner(self.path)
            if owner is not None and owner["pid"] == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False
            for folder in self._made:  # a run that failed before writing leaves no folders
                try:
                    folder.rmdir()
                except OSError:  # not empty: the run wrote something
                    break

    def __enter__(self) -> PhaseLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def remove_stray_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporary files (``ffcore.atomic``: ``.<name>.<pid>.tmp[.suffix]``, half-written
    checkpoints and logs) of processes that are no longer running; returns what was removed,
    each with a warning."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp*"):
        pid = temporary_pid(tmp.name)
        if pid is None or pid_alive(pid):
            continue
        pid_text = str(pid)
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
        warnings.warn(
            f"{tmp}: removed the temporary file of a checkpoint write that process {pid_text} "
            "did not finish",
            stacklevel=2,
        )
    return removed


FolderLock = PhaseLock  # the name where the folder is not a phase folder
