"""The files a user names: inputs read once, outputs that never clobber what they must not.

Inputs (`iter_lines`, `read_lines`, `LineSource`) are UTF-8 text, plain or gzip (by the
`.gz` suffix), or stdin for `-`. Only "\\n" ends a line; one "\\r" before it (or at the
very end) is dropped, as tf.data.TextLineDataset does, so form feeds or U+2028 inside a line
never split it. Errors name the file and line: `FILE:LINE: invalid UTF-8 (...)`.
A command that needs several passes over one input (check, then translate) uses a
`LineSource`: a regular file is reopened for each pass; anything else (stdin, a FIFO, a
pipe such as `<(cat f)`, a device) is read once and copied to an anonymous temporary file
on the first pass, which later passes read. A command that reads one input once as it
arrives (`nmt translate -` to stdout) uses a `LineStream`: batches of the lines available
now, so that an interactive line is answered without waiting for more.

Outputs (`check_output_file`, `open_output`, `write_atomic`): before any work, an output is
refused when it is a directory, its directory is missing or not writable, or it is the same
file as one of the command's inputs. Then a regular file (or a new one) is written to a
temporary file beside it and renamed into place only when complete, keeping its mode, so a
failure leaves it as it was; a symlink's target is replaced that way and the link kept; a
device (/dev/null), FIFO or socket is opened and written directly, never replaced.
Files written together (a checkpoint average, the set-up of a new model directory) are
staged in a `make_temp_dir` directory (the permissions of an ordinary mkdir), then moved.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import queue
import stat
import sys
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Union

from nmt import faults
from nmt.errors import DataError

PathLike = Union[str, Path]
STDIN = "-"
STDOUT = "-"


def display_name(path: PathLike) -> str:
    """How messages name an input: the path as given, `<stdin>` for `-`."""
    return "<stdin>" if str(path) == STDIN else str(path)


def reason(error: BaseException) -> str:
    """The strerror of an OSError ("No space left on device"), else its message."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


# --------------------------------------------------------------------------------------------
# Inputs


def check_input(path: PathLike) -> None:
    """DataError naming `path` when it does not exist or is a directory."""
    if str(path) == STDIN:
        return
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    if p.is_dir():
        raise DataError(f"{p}: is a directory, expected a text file")


def check_distinct_inputs(inputs: Iterable[tuple[str, PathLike]]) -> None:
    """DataError when two of a command's inputs, (how to name it, path) pairs, would read
    one stream: both `-` (standard input; also `-` and /dev/stdin when stdin is a pipe),
    or one FIFO, socket or device given twice. Each would take some of the lines and the
    pairs would silently not line up. A regular file named twice is fine: each reader opens
    it afresh."""
    seen: dict[object, tuple[str, PathLike]] = {}
    for label, path in inputs:
        keys = _stream_keys(path)
        for key in keys:
            if key in seen:
                first, first_path = seen[key]
                if STDIN in (str(path), str(first_path)):
                    what, fix = "standard input", "give at most one of them as -"
                else:
                    what, fix = f"the same stream {path}", "give each its own file"
                raise DataError(f"{first} and {label} both read {what}, so each would get "
                                f"only some of its lines; {fix}")  # fmt: skip
        seen.update((key, (label, path)) for key in keys)


def _stream_keys(path: PathLike) -> list:
    """What identifies the stream an input path reads: `-` itself and, when stdin is not a
    regular file, its (device, inode); (device, inode) of a FIFO, socket or device; nothing
    for a regular file or a directory (each reader opens those afresh)."""
    st = _stat_input(path)
    stream = st is not None and not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode))
    return ([STDIN] if str(path) == STDIN else []) + ([(st.st_dev, st.st_ino)] if stream else [])


def _stat_input(path: PathLike) -> os.stat_result | None:
    """os.stat of an input path (`-`: of stdin), None where there is none to take."""
    try:
        return os.fstat(sys.stdin.fileno()) if str(path) == STDIN else os.stat(path)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return None


def _open_binary(path: PathLike) -> IO[bytes]:
    if str(path) == STDIN:
        return sys.stdin.buffer
    check_input(path)
    p = Path(path)
    try:
        if p.suffix == ".gz":
            return gzip.open(p, "rb")  # buffered; closing it closes the file
        return open(p, "rb")
    except OSError as e:
        raise DataError(f"{p}: cannot read: {reason(e)}") from None


def _decode(raw_lines: Iterable[bytes], name: str) -> Iterator[tuple[int, str]]:
    number = 0
    try:
        for number, raw in enumerate(raw_lines, 1):  # noqa: B007 - used after the loop
            if raw.endswith(b"\n"):
                raw = raw[:-1]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{name}:{number}: invalid UTF-8 (byte 0x{raw[e.start]:02x} at offset "
                    f"{e.start} of the line)"
                ) from None
            yield number, text
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataError(f"{name}:{number + 1}: corrupt or truncated gzip data ({e})") from None
    except OSError as e:
        raise DataError(f"{name}:{number + 1}: cannot read: {reason(e)}") from None


def iter_lines(path: PathLike) -> Iterator[tuple[int, str]]:
    """(line number from 1, text without its line end) for each line; one pass over `path`."""
    stream = _open_binary(path)
    try:
        yield from _decode(stream, display_name(path))
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def read_lines(path: PathLike) -> list[str]:
    """Every line of `path` (no line ends); an empty file gives []."""
    return [text for _, text in iter_lines(path)]


def is_regular_file(path: PathLike) -> bool:
    """Whether `path` (not `-`) names a regular file, so that it can be read again."""
    if str(path) == STDIN:
        return False
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


class LineSource:
    """Passes over one input, which is itself read once (see the module docstring).

    Iterate it for each pass; every pass yields the same (line number, text) pairs. The
    first pass over a non-regular input must run to its end before another starts.
    """

    def __init__(self, path: PathLike):
        check_input(path)
        self.path = path
        self.name = display_name(path)
        self.regular = is_regular_file(path)
        self._spool: IO[bytes] | None = None
        self._complete = False

    def __iter__(self) -> Iterator[tuple[int, str]]:
        if self.regular:
            return iter_lines(self.path)
        if self._complete:
            self._spool.seek(0)
            return _decode(self._spool, self.name)
        if self._spool is not None:
            raise RuntimeError(f"{self.name}: an earlier pass stopped early")
        return self._first_pass()

    def _first_pass(self) -> Iterator[tuple[int, str]]:
        self._spool = tempfile.TemporaryFile(prefix="nmt-input-")
        stream = _open_binary(self.path)
        try:
            yield from _decode(self._copy(stream), self.name)
            self._spool.flush()
            self._complete = True
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()

    def _copy(self, stream: IO[bytes]) -> Iterator[bytes]:
        for raw in stream:
            try:
                self._spool.write(raw)
            except OSError as e:
                raise DataError(
                    f"{self.name}: cannot keep a copy of the input in {tempfile.gettempdir()} "
                    f"({reason(e)})"
                ) from None
            yield raw

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()

    def __enter__(self) -> LineSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LineStream:
    """One pass over an input, in batches of the lines that have arrived (see the module
    docstring). A reader thread reads ahead (at most `2 * max_lines` lines); `batches`
    waits for one line, then takes what else is there, up to `max_lines`. Every line is
    yielded once, in order; a read or UTF-8 error is raised (`FILE:LINE: ...`) after the
    lines before it have been yielded.
    """

    _END = object()

    def __init__(self, path: PathLike, max_lines: int = 5000):
        check_input(path)
        self.path, self.name, self.max_lines = path, display_name(path), max(1, int(max_lines))
        self._queue: queue.Queue = queue.Queue(maxsize=2 * self.max_lines)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> None:
        try:
            for item in iter_lines(self.path):
                self._queue.put(item)
                if self._stop.is_set():
                    return
            self._queue.put(self._END)
        except BaseException as error:  # noqa: BLE001 - handed to the consuming thread
            self._queue.put(error)

    def batches(self) -> Iterator[list[tuple[int, str]]]:
        """Lists of (line number, text), each as long as what was available (>= 1 line)."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name}: a LineStream is read once")
        self._thread = threading.Thread(target=self._read, name="nmt-input", daemon=True)
        self._thread.start()
        while True:
            batch, end = [], None
            item = self._queue.get()
            while True:
                if item is self._END or isinstance(item, BaseException):
                    end = item
                    break
                batch.append(item)
                if len(batch) >= self.max_lines:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                yield batch
            if isinstance(end, BaseException):
                raise end
            if end is self._END:
                return

    def close(self) -> None:
        """Let the reader thread go (it may still be blocked reading: it is a daemon)."""
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break

    def __enter__(self) -> LineStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# Outputs


def _identity(path: PathLike) -> tuple[int, int] | None:
    """(device, inode) of a regular file (`-`: of stdin when it is one), else None."""
    st = _stat_input(path)
    return (st.st_dev, st.st_ino) if st is not None and stat.S_ISREG(st.st_mode) else None


def _stdout_identity() -> tuple[int, int] | None:
    try:
        st = os.fstat(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def _same_input(
    identity: tuple[int, int] | None, inputs: Iterable[tuple[str, PathLike]]
) -> str | None:
    if identity is None:
        return None
    for label, path in inputs:
        if _identity(path) == identity:
            return label
    return None


def _label(option: str | None, path: PathLike) -> str:
    return f"{option} {path}" if option else str(path)


def check_output_file(
    path: PathLike, *, option: str | None = None, inputs: Iterable[tuple[str, PathLike]] = ()
) -> None:
    """Refuse, before any work, an output file that cannot or must not be written.

    `option` is the flag the user gave it with (`-o`), `inputs` the command's inputs as
    (how to name it, path) pairs. `-` (stdout) is refused only when stdout is redirected
    into one of the inputs.
    """
    inputs = list(inputs)
    if str(path) == STDOUT:
        same = _same_input(_stdout_identity(), inputs)
        if same:
            raise DataError(
                f"standard output is the input {same}: the translation would overwrite or "
                "grow it while it is read; write to another file"
            )
        return
    label = _label(option, path)
    if os.path.isdir(path):
        raise DataError(f"{label}: is a directory, expected an output file")
    target = Path(os.path.realpath(path))
    if not target.parent.is_dir():
        shown = target.parent if os.path.islink(path) else Path(path).parent  # as typed
        raise DataError(f"{label}: output directory {shown} not found")
    try:
        mode = os.stat(target).st_mode
    except OSError:
        mode = None
    if mode is None or stat.S_ISREG(mode):
        if not os.access(target.parent, os.W_OK | os.X_OK):
            raise DataError(f"{label}: cannot write in {target.parent} (permission denied "
                            "or a read-only file system)")  # fmt: skip
    same = _same_input(_identity(path), inputs)
    if same:
        raise DataError(f"{label}: is the same file as the input {same}; write to another file")


def check_output_dir(path: PathLike, *, option: str | None = None) -> None:
    """Refuse, before any work, an output directory that is a file or cannot be created."""
    label = _label(option, path)
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise DataError(f"{label}: exists and is not a directory")
    existing = p
    while not existing.exists():  # the nearest ancestor that exists
        if existing.is_symlink():
            raise DataError(f"{label}: {existing} is a symbolic link to nothing")
        existing = existing.parent
    if not existing.is_dir():
        raise DataError(f"{label}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DataError(f"{label}: cannot write in {existing} (permission denied or a "
                        "read-only file system)")  # fmt: skip


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_temp_dir(parent: PathLike | None, prefix: str, *, private: bool = False) -> Path:
    """mkdtemp with the permissions of an ordinary mkdir (mkdtemp makes it owner-only).

    `parent` None: the system's temporary directory. `private`: keep mkdtemp's owner-only
    mode (scratch space whose files are moved out or thrown away).
    """
    path = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    if not private:
        os.chmod(path, 0o777 & ~_umask())
    return path


def _warn(message: str) -> None:
    print(f"nmt: warning: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _stdout(binary: bool) -> Iterator[IO]:
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if binary:
        yield buffer if buffer is not None else sys.stdout
        return
    if buffer is None:
        yield sys.stdout
        return
    out = io.TextIOWrapper(buffer, encoding="utf-8", newline="\n")  # UTF-8 whatever the locale
    try:
        yield out
    finally:
        out.flush()
        out.detach()  # leave sys.stdout's buffer open


@contextlib.contextmanager
def open_output(
    path: PathLike,
    *,
    binary: bool = False,
    what: str = "",
    fsync: bool = False,
    warn: Callable[[str], None] | None = None,
) -> Iterator[IO]:
    """A file object for `path` (see the module docstring); `-` is stdout.

    An OSError while writing or moving into place becomes a DataError naming `path` and
    saying what was kept (`what` names the content, e.g. "the translation").
    """
    if str(path) == STDOUT:
        with _stdout(binary) as out:
            yield out
        return
    text = {} if binary else {"encoding": "utf-8", "newline": "\n"}
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        with _write_errors(path, what, "it was written directly and may be incomplete"):
            with open(path, "wb" if binary else "w", **text) as out:  # noqa: SIM115
                yield out
        return
    target = Path(os.path.realpath(path))  # a symlink's target; the link stays
    if mode is not None and os.stat(target).st_nlink > 1:
        (warn or _warn)(f"{path} has other hard links; they keep the previous content")
    kept = "it is unchanged" if mode is not None else "nothing was written"
    tmp = None
    try:
        with _write_errors(path, what, kept):
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            with os.fdopen(fd, "wb" if binary else "w", **text) as out:
                yield out
                out.flush()
                if fsync:
                    os.fsync(out.fileno())
            os.chmod(tmp, stat.S_IMODE(mode) if mode is not None else 0o666 & ~_umask())
            faults.fire(faults.FILE_REPLACE, src=Path(tmp), dst=target)
            os.replace(tmp, target)
            tmp = None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


@contextlib.contextmanager
def _write_errors(path: PathLike, what: str, kept: str) -> Iterator[None]:
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as e:
        content = f" {what}" if what else ""
        raise DataError(f"{path}: cannot write{content} ({reason(e)}); {kept}") from e


def replace_directory(staged: PathLike, target: PathLike, aside: PathLike) -> bool:
    """Rename the directory `staged` to `target`; an existing `target` is renamed to `aside`
    first and put back when the second rename fails or is interrupted (Ctrl-C, SIGTERM), so
    `target` is never lost. Returns whether `aside` now holds the previous `target` (the
    caller removes it)."""
    moved = False
    if os.path.exists(target):
        os.rename(target, aside)
        moved = True
    try:
        os.rename(staged, target)
    finally:
        if moved and not os.path.exists(target):
            os.rename(aside, target)
            moved = False
    return moved


def write_atomic(path: PathLike, data: str | bytes, *, what: str = "", fsync: bool = False):
    """Write `data` to `path` with `open_output`; returns `path` as a Path."""
    with open_output(path, binary=isinstance(data, bytes), what=what, fsync=fsync) as out:
        out.write(data)
    return Path(path)
