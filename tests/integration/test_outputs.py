"""Every command that writes, through the CLI, against every kind of output path.

File outputs (`translate -o`, `evaluate --hyp-out`): a regular file, a new file, a symlink
(also a dangling one), a hard link, a FIFO, /dev/null, the input itself (by name, by hard
link, by symlink), a read-only directory, a missing directory, a full disk (ENOSPC injected
into the rename). Directory outputs (`vocab --output`, `average --output`, `export --output`,
`train --model-dir`): a regular file, a symlink to a directory, a FIFO, /dev/null, the
input itself, a read-only directory, missing parent directories, a full disk. A refused
output is refused with exit 2 before any work, and nothing there changes.
"""

from __future__ import annotations

import errno
import os
import resource
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from nmt import fileio
from nmt.cli import cli

INPUT = "ein Hund\n\nläuft schnell\n"


def invoke(args, **kwargs):
    return CliRunner().invoke(cli, [str(a) for a in args], **kwargs)


def error_line(output: str) -> str:
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("nmt: error:")]
    assert len(errors) == 1, output
    return errors[0]


def hidden(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


class FailingReplace:
    """`os` for nmt.fileio whose `replace` fails with ENOSPC."""

    def __getattr__(self, name):
        if name == "replace":

            def replace(*args, **kwargs):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            return replace
        return getattr(os, name)


@pytest.fixture(scope="module")
def expected(tiny_model, tmp_path_factory) -> bytes:
    """What `nmt translate` writes for INPUT (one line per input line)."""
    from nmt.translation_job import translate_file

    root = tmp_path_factory.mktemp("expected")
    (root / "in.txt").write_text(INPUT, encoding="utf-8")
    translate_file(tiny_model, str(root / "in.txt"), str(root / "out.txt"), progress=False)
    data = (root / "out.txt").read_bytes()
    assert data.count(b"\n") == 3
    return data


def _translate(model, src, out):
    return ["translate", src, "--model", model, "-o", out, "--quiet"]


def _evaluate(model, src, out):
    return ["evaluate", "--model", model, "--src", src, "--ref", src, "--hyp-out", out]


FILE_COMMANDS = {"translate": _translate, "evaluate": _evaluate}

# (case, exit code, what the error line says)
FILE_CASES = [
    ("regular", 0, None),
    ("new", 0, None),
    ("symlink", 0, None),
    ("dangling-symlink", 0, None),
    ("hardlink", 0, None),
    ("fifo", 0, None),
    ("devnull", 0, None),
    ("same-as-input", 2, "is the same file as the input"),
    ("hardlink-to-input", 2, "is the same file as the input"),
    ("symlink-to-input", 2, "is the same file as the input"),
    ("readonly-dir", 2, "cannot write in"),
    ("missing-dir", 2, "not found"),
    ("disk-full", 2, "No space left on device"),
]


@pytest.mark.parametrize("command", sorted(FILE_COMMANDS))
@pytest.mark.parametrize("case, code, message", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_file_output(command, case, code, message, tiny_model, expected, tmp_path,
                     readonly_dir_or_none, fifo_reader, monkeypatch):  # fmt: skip
    src = tmp_path / "in.txt"
    src.write_text(INPUT, encoding="utf-8")
    out = tmp_path / "out.txt"
    other = tmp_path / "other.txt"
    reader = None
    if case in ("regular", "disk-full"):
        out.write_bytes(b"old\n")
        out.chmod(0o640)
    elif case == "symlink":
        other.write_bytes(b"old\n")
        out.symlink_to(other)
    elif case == "dangling-symlink":
        out.symlink_to(other)
    elif case == "hardlink":
        other.write_bytes(b"old\n")
        os.link(other, out)
    elif case == "fifo":
        reader = fifo_reader(out)
    elif case == "devnull":
        out = Path("/dev/null")
    elif case == "same-as-input":
        out = src
    elif case == "hardlink-to-input":
        os.link(src, out)
    elif case == "symlink-to-input":
        out.symlink_to(src)
    elif case == "readonly-dir":
        if readonly_dir_or_none is None:
            pytest.skip("running as root and no read-only file system found")
        out = readonly_dir_or_none / "out.txt"
    elif case == "missing-dir":
        out = tmp_path / "nope" / "out.txt"
    if case == "disk-full":
        monkeypatch.setattr(fileio, "os", FailingReplace())
    result = invoke(FILE_COMMANDS[command](tiny_model, src, out))
    assert result.exit_code == code, result.output
    assert src.read_text(encoding="utf-8") == INPUT  # the input is never touched
    if code:
        line = error_line(result.output)
        assert message in line and str(out) in line
    if case in ("regular", "new", "hardlink"):
        assert out.read_bytes() == expected and not out.is_symlink()
        if case == "regular":
            assert stat.S_IMODE(out.stat().st_mode) == 0o640  # the mode is kept
        if case == "hardlink":  # the other name keeps the previous content, with a warning
            assert other.read_bytes() == b"old\n" and "other hard links" in result.output
    elif case in ("symlink", "dangling-symlink"):
        assert out.is_symlink() and os.readlink(out) == str(other)
        assert other.read_bytes() == expected
    elif case == "fifo":
        assert reader.result() == expected and stat.S_ISFIFO(os.stat(out).st_mode)
    elif case == "devnull":
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    elif case == "disk-full":
        assert out.read_bytes() == b"old\n"
    elif case in ("hardlink-to-input", "symlink-to-input"):
        assert out.read_text(encoding="utf-8") == INPUT
    if case != "devnull" and out.parent.is_dir() and out.parent != readonly_dir_or_none:
        assert hidden(out.parent) == []  # no temporary file left


@pytest.fixture
def readonly_dir_or_none(request):
    try:
        return request.getfixturevalue("readonly_dir")
    except pytest.skip.Exception:
        return None


def test_stdout_redirected_into_the_input_is_refused(tiny_model, tmp_path):
    """`nmt translate f >> f` would read its own output forever; `> f` already emptied f."""
    import subprocess
    import sys

    src = tmp_path / "in.txt"
    src.write_text(INPUT, encoding="utf-8")
    with open(src, "ab") as stdout:
        done = subprocess.run(
            [sys.executable, "-m", "nmt", "translate", str(src), "--model", str(tiny_model)],
            stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=300,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"nmt: error: standard output is the input {src}" in done.stderr
    assert src.read_text(encoding="utf-8") == INPUT


# === Directory outputs ===


def _vocab(root, out):
    src = root / "data" / "train.src"
    return ["vocab", "--source", src, "--target", root / "data" / "train.tgt",
            "--output", out, "--size", "16"]  # fmt: skip


def _average(root, out):
    return ["average", "--model", root / "model", "--last", "1", "--output", out]


def _export(root, out):
    return ["export", "--model", root / "model", "--output", out]


def _train(root, out):
    data = root / "data"
    sets = [f"data.train_source={data / 'train.src'}", f"data.train_target={data / 'train.tgt'}",
            "train.max_steps=2", "train.checkpoint_every=2", "train.log_every=1"]  # fmt: skip
    return ["train", "--config", root / "tiny.yaml", "--model-dir", out,
            *[a for s in sets for a in ("--set", s)]]  # fmt: skip


DIR_COMMANDS = {"vocab": _vocab, "average": _average, "export": _export, "train": _train}
# What shows that the command wrote its output into a directory.
WRITTEN = {"vocab": "joint.model", "average": "averaged.json", "export": "1", "train": "ckpt"}
DIR_CASES = ["file", "symlink", "fifo", "devnull", "same-as-input", "readonly-dir", "missing",
             "disk-full"]  # fmt: skip


@pytest.fixture(scope="module")
def dir_root(tiny_model, tiny_yaml, tmp_path_factory) -> Path:
    """A copy of the tiny model (to average), its corpus and configs/tiny.yaml."""
    import shutil

    from tests.helpers.corpus import write_corpus

    root = tmp_path_factory.mktemp("dir-outputs")
    shutil.copytree(tiny_model, root / "model")
    write_corpus(root / "data")
    shutil.copy(tiny_yaml, root / "tiny.yaml")
    return root


def _written(command: str, directory: Path) -> bool:
    if command == "train":
        return any((directory / "checkpoints").glob("ckpt-*.index"))
    return (directory / WRITTEN[command]).exists()


@pytest.mark.parametrize("command", sorted(DIR_COMMANDS))
@pytest.mark.parametrize("case", DIR_CASES)
def test_directory_output(command, case, dir_root, tmp_path, readonly_dir_or_none, make_fifo):
    before_model = sorted(p.name for p in (dir_root / "model").rglob("*"))
    out = tmp_path / "out"
    target = tmp_path / "target"
    code = 2
    limit = None
    if case == "file":
        out.write_bytes(b"keep me\n")
    elif case == "symlink":
        target.mkdir()
        out.symlink_to(target)
        code = 0
    elif case == "fifo":
        make_fifo(out, b"")
    elif case == "devnull":
        out = Path("/dev/null")
    elif case == "same-as-input":
        out = {"vocab": dir_root / "data" / "train.src", "average": dir_root / "model",
               "export": dir_root / "model" / "config.yaml",
               "train": dir_root / "data" / "train.src"}[command]  # fmt: skip
    elif case == "readonly-dir":
        if readonly_dir_or_none is None:
            pytest.skip("running as root and no read-only file system found")
        out = readonly_dir_or_none / "out"
    elif case == "missing":
        out = tmp_path / "a" / "b" / "out"
        code = 0
    elif case == "disk-full":
        if command != "vocab":
            pytest.skip("covered with real EFBIG errors in tests/integration/test_disk_errors.py")
        limit = 4096  # a SentencePiece model is larger
    before = out.read_bytes() if out.is_file() else None
    if limit:
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        result = invoke(DIR_COMMANDS[command](dir_root, out))
    finally:
        if limit:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert result.exit_code == code, result.output
    if code:
        line = error_line(result.output)
        assert str(out) in line or os.path.basename(out) in line, line
    else:
        assert _written(command, out)
    if case == "symlink":
        assert out.is_symlink() and _written(command, target)
    elif case == "fifo":
        assert stat.S_ISFIFO(os.stat(out).st_mode)
    elif case == "devnull":
        assert stat.S_ISCHR(os.stat(out).st_mode)
    elif before is not None:
        assert out.read_bytes() == before
    if case == "disk-full":
        assert "File too large" in result.output
        assert not out.exists() or list(out.iterdir()) == []
    assert sorted(p.name for p in (dir_root / "model").rglob("*")) == before_model
