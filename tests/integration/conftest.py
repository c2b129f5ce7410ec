"""Fixtures shared by the integration tests of inputs, outputs, signals and the lock."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.helpers.corpus import TINY, write_corpus
from tests.helpers.export import make_tiny_export


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The session's tiny trained model directory (shared, read only)."""
    return make_tiny_export(tmp_path_factory.getbasetemp()).model_dir


@pytest.fixture(scope="session")
def tiny_yaml() -> Path:
    return TINY


REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def nmt_env() -> dict[str, str]:
    """The environment of an `nmt` subprocess: this checkout first on PYTHONPATH, and
    TF_CPP_MIN_LOG_LEVEL unset (tests/conftest.py sets it for this process), so that the
    test sees what a user sees."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


@pytest.fixture(scope="session")
def run_nmt(nmt_env):
    """run_nmt(*args, cwd=None, code=None) -> CompletedProcess (text) of `python -m nmt ARGS`
    in `nmt_env`; `code`: run this Python program instead, with ARGS as its sys.argv[1:]."""

    def run(*args, cwd=None, code=None, timeout=600) -> subprocess.CompletedProcess:
        program = ["-c", code] if code is not None else ["-m", "nmt"]
        return subprocess.run([sys.executable, *program, *map(str, args)], cwd=cwd,
                              env=nmt_env, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip

    return run


@pytest.fixture
def corpus(tmp_path) -> tuple[Path, Path]:
    """20 seeded digit pairs in tmp_path/data/train.{src,tgt}."""
    return write_corpus(tmp_path / "data")


@pytest.fixture
def readonly_dir(tmp_path) -> Path:
    """A directory nobody can write in: chmod 0555, or as root (who ignores modes) a
    directory of a read-only file system (/proc/sys in containers)."""
    if os.geteuid() != 0:
        path = tmp_path / "readonly"
        path.mkdir()
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    if os.path.isdir("/proc/sys") and not os.access("/proc/sys", os.W_OK):
        yield Path("/proc/sys")
        return
    pytest.skip("running as root and no read-only file system found (/proc/sys is writable)")


class Fifo:
    """A FIFO whose writer thread sends `data` once a reader opens it."""

    def __init__(self, path: Path, data: bytes):
        os.mkfifo(path)
        self.path, self.data = path, data
        self.thread = threading.Thread(target=self._write, daemon=True)
        self.thread.start()

    def _write(self) -> None:
        with open(self.path, "wb") as f:
            f.write(self.data)

    def close(self) -> None:
        """Release a writer that nobody read from (a command that refused the FIFO)."""
        if self.thread.is_alive():
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            self.thread.join(5)
            os.close(fd)


@pytest.fixture
def make_fifo():
    """make_fifo(path, data) -> Fifo; writers left unread are released at the end."""
    made: list[Fifo] = []

    def make(path: Path, data: bytes) -> Fifo:
        made.append(Fifo(path, data))
        return made[-1]

    yield make
    for fifo in made:
        fifo.close()


class FifoReader:
    """Reads everything written into a FIFO (an output) in a thread."""

    def __init__(self, path: Path):
        os.mkfifo(path)
        self.path, self.data = path, b""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with open(self.path, "rb") as f:
            self.data = f.read()

    def result(self) -> bytes:
        """The bytes read. A reader still blocked in open() (nothing wrote to the FIFO) is
        released; one that has already closed its end may still be alive for a moment, and
        then opening the write end fails with ENXIO, which is no error here."""
        self.thread.join(1)
        if self.thread.is_alive():
            try:
                os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError as err:
                if err.errno != errno.ENXIO:
                    raise
            self.thread.join(5)
        assert not self.thread.is_alive(), f"the reader of {self.path} never finished"
        return self.data


@pytest.fixture
def fifo_reader():
    made: list[FifoReader] = []

    def make(path: Path) -> FifoReader:
        made.append(FifoReader(path))
        return made[-1]

    yield make
    for reader in made:
        reader.result()


# === The memorised digit-reversal model (tests/helpers/memorised.py), shared by the
# translator, translate-CLI and streaming tests: trained once, only read.


@pytest.fixture(scope="session")
def memorised(tmp_path_factory):
    from tests.helpers.memorised import make_memorised_model

    return make_memorised_model(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def loaded(memorised):
    from nmt.checkpoints import load_model

    return load_model(memorised.model_dir)


@pytest.fixture(scope="session")
def translator(loaded):
    """The library's translations with the model's own decode config (best checkpoint)."""
    from tests.helpers.memorised import make_translator

    return make_translator(loaded)[0]
