"""Quiet TensorFlow: no TensorFlow log line on an `nmt` command unless `--verbose`/`--debug`.

Where each line comes from (TensorFlow 2.21) and what silences it:

- `import tensorflow` loads two shared libraries whose static initialisers log through absl
  before anything calls `absl::InitializeLog()`, so absl writes them to stderr whatever
  `TF_CPP_MIN_LOG_LEVEL` says (tensorflow/tensorflow#100442, abseil/abseil-cpp#1718):
  `WARNING: All log messages before absl::InitializeLog() ...`, `port.cc] oneDNN custom
  operations are on`, `cudart_stub.cc] Could not find cuda drivers`, and `cpu_feature_guard.cc]
  This TensorFlow binary is optimized ...` (with its `To enable ...` line), the first three once
  per library. No variable or API reaches them, only the file descriptor: while TensorFlow is
  imported, fd 2 goes through a filter process (`_forward`) that drops these known lines and
  passes everything else on at once. The filter outlives a crash of ours, so a fatal line
  (`F...`) or a crash report still reaches the terminal.
- Later C++ lines honour `TF_CPP_MIN_LOG_LEVEL`, read once at import: `failed call to cuInit`
  (E, on the first device query of a machine without a GPU), `oneDNN supports DT_BOOL only on
  platforms with AVX-512` (E, from the graph optimiser), tf.data's I/W lines. It is set to 3
  (FATAL only) before the import; TensorFlow's errors still reach nmt as exceptions.
- Python: the `tensorflow` and `absl` loggers are set to ERROR once TensorFlow is imported, and
  warnings raised from keras, TensorFlow and their helpers are ignored.

What a user should know is said in nmt's words instead (`_warn_unusable_gpu`).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import BinaryIO

#: Modules whose Python warnings are TensorFlow's noise, not the user's business.
NOISY_MODULES = r"(keras|tensorflow|tensorflow_text|tf_keras|absl|google\.protobuf|h5py|ml_dtypes)"

_BEFORE_INIT = b"WARNING: All log messages before absl::InitializeLog() is called are written to"
# absl (`I0000 00:00:1796162699.483277    3821 port.cc:153] ...`) and TensorFlow's own format
# (`2025-09-17 14:44:05.157831: I external/.../cudart_stub.cc:32] ...`).
_LOG_LINE = re.compile(
    rb"^(?:(?P<absl>[IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ |"
    rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: (?P<tf>[IWEF]) )\S+:\d+\] (?P<message>.*)"
)
# Error lines at import that report no error of the user's: no GPU, duplicate CUDA plugins.
_NOISY_ERRORS = re.compile(rb"failed call to cuInit|Unable to register cu\w+ factory")


class NoiseFilter:
    """Decides line by line what of TensorFlow's start-up output to drop.

    Dropped: absl's "before InitializeLog" notice, INFO and WARNING lines (and the lines that
    continue them), and the known harmless ERROR lines. Everything else passes: other ERROR
    and FATAL lines, and any output that is not a log line.
    """

    def __init__(self) -> None:
        self._continuing = False  # the last log line was dropped: so are lines continuing it

    def keep(self, line: bytes) -> bool:
        if line.startswith(_BEFORE_INIT):
            return False
        match = _LOG_LINE.match(line)
        if match is None:
            return not (self._continuing and line.strip())
        severity = match["absl"] or match["tf"]
        noise = severity in (b"I", b"W") or (
            severity == b"E" and _NOISY_ERRORS.search(match["message"]) is not None
        )
        self._continuing = noise
        return not noise


def _forward(source: BinaryIO, sink: BinaryIO) -> None:
    """Copy `source` to `sink` line by line as it comes, without TensorFlow's noise."""
    noise = NoiseFilter()
    for line in iter(source.readline, b""):
        if noise.keep(line):
            sink.write(line)
            sink.flush()


# Ctrl-C reaches the whole process group: the filter ignores it and ends when nmt closes the pipe.
_FILTER_PROGRAM = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "sys.path.insert(0, {root!r}); from nmt.quiet import _forward; "
    "_forward(sys.stdin.buffer, sys.stdout.buffer)"
)


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """File descriptor 2 passes through `_forward` (a child process) inside the block.

    Where no child can be started, nothing is filtered: noise rather than lost errors.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    program = [sys.executable, "-I", "-S", "-c", _FILTER_PROGRAM.format(root=root)]
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        child = subprocess.Popen(program, stdin=subprocess.PIPE, stdout=saved, stderr=saved)
    except OSError:
        os.close(saved)
        yield
        return
    os.dup2(child.stdin.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        child.stdin.close()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:  # something TensorFlow started holds the pipe
            child.kill()


def _warn_unusable_gpu(tf) -> None:
    """Say so when this machine has an NVIDIA GPU that TensorFlow cannot use (the one line
    of TensorFlow's start-up that matters; `--verbose` shows TensorFlow's reason)."""
    if not (os.path.exists("/dev/nvidia0") or os.path.exists("/proc/driver/nvidia/version")):
        return
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return
    if not tf.config.list_physical_devices("GPU"):
        print(
            "nmt: warning: this machine has an NVIDIA GPU but TensorFlow cannot use it; "
            "computing on the CPU (run with --verbose to see why)",
            file=sys.stderr,
        )


def _quiet_python_loggers() -> None:
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if "absl.logging" in sys.modules:  # set through absl: its logger is its own class
        sys.modules["absl.logging"].set_verbosity("error")


class _QuietLoader:
    """Wraps the loader of `tensorflow` for its first import (see `_QuietImport`)."""

    def __init__(self, loader) -> None:
        self._loader = loader

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        try:
            with filtered_stderr():
                self._loader.exec_module(module)
        finally:
            module.__loader__ = module.__spec__.loader = self._loader
        _quiet_python_loggers()
        _warn_unusable_gpu(module)


class _QuietImport:
    """A meta path finder: the first `import tensorflow`, wherever it happens, runs with
    stderr filtered. TensorFlow stays imported lazily, after nmt's own checks."""

    def __init__(self) -> None:
        self._finding = False

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow" or self._finding:
            return None
        import importlib.util

        self._finding = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._finding = False
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def silence_tensorflow() -> Callable[[], None]:
    """Quiet TensorFlow for the rest of this process; returns a function that undoes what it
    can: the import hook and `TF_CPP_MIN_LOG_LEVEL` (once TensorFlow is imported its C++ log
    level is fixed). The warnings filter stays: the `nmt` process ends with the command, and
    pytest restores the filters after each test.

    Call it before TensorFlow is imported: the `nmt` command does, unless --verbose or --debug.
    """
    saved_level = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    warnings.filterwarnings("ignore", module=NOISY_MODULES + r"(\.|$)")
    finder = _QuietImport()
    if "tensorflow" in sys.modules:
        _quiet_python_loggers()
    else:
        sys.meta_path.insert(0, finder)

    def undo() -> None:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(finder)
        if saved_level is None:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
        else:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = saved_level

    return undo
