"""One writer at a time for a model directory (`nmt train`, `nmt average` writing into it).

The lock is DIR/.nmt-lock, `flock`ed while held and holding `PID COMMAND`. The kernel
drops an flock when its process dies however it dies, so a lock file left by a killed
process is simply taken over, with a warning naming that process. A second writer gets
`LockedError` naming the process that holds the lock. The file is removed on release.
Readers (translate, evaluate, export) take no lock: a checkpoint is listed only once it is
complete (see nmt/checkpoint_files.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from nmt.errors import NmtError

LOCK_FILE = ".nmt-lock"


class LockedError(NmtError):
    """Another process is writing the model directory."""


def _warn(message: str) -> None:
    print(f"nmt: warning: {message}", file=sys.stderr, flush=True)


def _holder(fd: int) -> str:
    """`process PID (COMMAND)` from an open lock file; "" when it names nobody."""
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode("utf-8", "replace").strip()
    pid, _, command = text.partition(" ")
    if not pid.isdigit():
        return ""
    return f"process {pid} ({command})" if command else f"process {pid}"


def _open_locked(path: Path, model_dir: Path) -> int:
    """An fd of `path` holding its flock; LockedError when another process holds it."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise NmtError(f"{model_dir}: cannot create the lock {path} ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd) or "another process"
            os.close(fd)
            raise LockedError(
                f"{model_dir}: in use by {holder}, which writes it; wait for it to finish or "
                "stop it (one `nmt train` or `nmt average` at a time per model directory)"
            ) from None
        try:  # a holder releasing removes the file: then lock the new one instead
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def model_dir_lock(
    model_dir: str | Path, command: str, *, warn: Callable[[str], None] | None = None
) -> Iterator[Path]:
    """Hold the lock of the existing directory `model_dir` while inside; yields its path."""
    model_dir = Path(model_dir)
    path = model_dir / LOCK_FILE
    fd = _open_locked(path, model_dir)
    try:
        previous = _holder(fd)
        if previous:
            (warn or _warn)(
                f"{model_dir}: taking over the lock left by {previous}, which no longer runs"
            )
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()} {command}\n".encode())
        yield path
    finally:
        with contextlib.suppress(OSError):  # ours only (DIR may have been removed and remade)
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                path.unlink()  # before the flock goes: see the re-check in _open_locked
        os.close(fd)
