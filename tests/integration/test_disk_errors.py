"""Disk errors while writing: the previous good file stays, the CLI says what failed, exit 2.

Tests run as root, so a read-only directory (chmod) stops nothing. Two kinds of fault are
used instead:

- real ones from the kernel: RLIMIT_FSIZE lowered around one write (`file_size_limit`), so
  that write fails with EFBIG ("File too large") inside TensorFlow's C++ checkpoint and
  SavedModel writers or Python's file writes (Python ignores SIGXFSZ, so the process lives);
- injected ones: `nmt.checkpoint_files.os` replaced by a proxy whose `replace` or `fsync`
  raises ENOSPC or EIO at a chosen file.

Covered: a training checkpoint, train_state.json, `nmt export --overwrite`, the output of
`nmt translate`, and `nmt average`. After each failure the files written before are
byte-identical, no staging or temporary file is left, and a re-run without the fault works.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import shutil
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner

from nmt import checkpoint_files, fileio
from nmt.cli import cli
from tests.helpers.corpus import TINY, write_corpus
from tests.helpers.export import make_tiny_export

pytestmark = pytest.mark.skipif(
    signal.getsignal(signal.SIGXFSZ) != signal.SIG_IGN,
    reason="needs SIGXFSZ ignored (CPython does this) so that EFBIG is an error, not a kill",
)


@contextlib.contextmanager
def file_size_limit(limit: int):
    """Writes past `limit` bytes of any file fail with EFBIG while inside."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def limit_checkpoint_writes(monkeypatch, limit: int) -> None:
    """Every tf.train.Checkpoint.write runs under `file_size_limit(limit)`."""
    import tensorflow as tf

    write = tf.train.Checkpoint.write

    def limited(self, file_prefix, options=None):
        with file_size_limit(limit):
            return write(self, file_prefix, options=options)

    monkeypatch.setattr(tf.train.Checkpoint, "write", limited)


class FailingOs:
    """`os` for nmt.checkpoint_files whose `name` call fails with `code` when `when(args)`."""

    def __init__(self, name: str, code: int, when):
        self._name, self._code, self._when = name, code, when

    def __getattr__(self, attr):
        real = getattr(os, attr)
        if attr != self._name:
            return real

        def call(*args, **kwargs):
            if self._when(*args):
                raise OSError(self._code, os.strerror(self._code))
            return real(*args, **kwargs)

        return call


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` (relative name -> bytes), hidden ones included."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def error_line(output: str) -> str:
    """The one error line; fails when there is none, several, or a traceback."""
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("nmt: error:")]
    assert len(errors) == 1, output
    return errors[0]


# === Training checkpoints and train_state.json ===


def _train(model_dir: Path, data: Path, max_steps: int):
    sets = [
        f"data.train_source={data / 'train.src'}",
        f"data.train_target={data / 'train.tgt'}",
        f"train.max_steps={max_steps}",
        "train.checkpoint_every=5",
        "train.log_every=5",
    ]
    args = ["train", "--config", str(TINY), "--model-dir", str(model_dir)]
    return CliRunner().invoke(cli, args + [a for s in sets for a in ("--set", s)])


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A model directory trained to step 10 (ckpt-5, ckpt-10), no dev set."""
    root = tmp_path_factory.mktemp("trained")
    write_corpus(root / "data")
    result = _train(root / "model", root / "data", 10)
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture
def copy(trained, tmp_path) -> Path:
    shutil.copytree(trained, tmp_path / "root")
    return tmp_path / "root"


def _steps(model_dir: Path) -> list[int]:
    return [
        checkpoint_files.checkpoint_step(p)
        for p in checkpoint_files.list_checkpoints(model_dir / "checkpoints")
    ]


def test_checkpoint_write_hits_file_too_large(copy, monkeypatch):
    model = copy / "model"
    before = snapshot(model / "checkpoints")
    state = (model / "train_state.json").read_bytes()
    limit_checkpoint_writes(monkeypatch, 4096)  # a training checkpoint is ~100 kB
    result = _train(model, copy / "data", 20)
    assert result.exit_code == 2, result.output
    assert error_line(result.output) == (
        f"nmt: error: {model / 'checkpoints' / 'ckpt-15'}: cannot write the checkpoint "
        "(File too large); ckpt-10 is the newest checkpoint there"
    )
    assert snapshot(model / "checkpoints") == before  # nothing new, nothing lost, no staging
    assert (model / "train_state.json").read_bytes() == state

    monkeypatch.undo()  # space again: the run resumes from the kept checkpoint
    result = _train(model, copy / "data", 20)
    assert result.exit_code == 0, result.output
    assert f"resumed from {model / 'checkpoints' / 'ckpt-10'} (step 10)" in result.output
    assert _steps(model) == [10, 15, 20]  # train.keep_checkpoints: 3


@pytest.mark.parametrize(
    "call, code, target, message",
    [
        ("replace", errno.EIO, ".index", "Input/output error"),
        ("fsync", errno.ENOSPC, "train_state.json", "No space left on device"),
    ],
)
def test_injected_os_errors_keep_the_previous_files(copy, monkeypatch, call, code, target, message):
    model = copy / "model"
    before = snapshot(model)

    def when(*args):
        if call == "replace":
            return str(args[1]).endswith(target)
        return True  # fsync: only write_text_atomic calls it (config.yaml, train_state.json)

    # config.yaml is rewritten (atomically) at start-up; fail from the first save on.
    started = []
    save = checkpoint_files.write_checkpoint

    def write_checkpoint(*args, **kwargs):
        started.append(True)
        return save(*args, **kwargs)

    monkeypatch.setattr(checkpoint_files, "write_checkpoint", write_checkpoint)
    failing = FailingOs(call, code, lambda *a: bool(started) and when(*a))
    monkeypatch.setattr(checkpoint_files, "os", failing)
    monkeypatch.setattr(fileio, "os", failing)  # write_text_atomic writes with nmt.fileio
    result = _train(model, copy / "data", 20)
    assert result.exit_code == 2, result.output
    line = error_line(result.output)
    after = snapshot(model)
    if target == ".index":
        assert line == (
            f"nmt: error: {model / 'checkpoints' / 'ckpt-15'}: cannot write the checkpoint "
            f"({message}); ckpt-10 is the newest checkpoint there"
        )
        assert {k: v for k, v in after.items() if k.startswith("checkpoints")} == {
            k: v for k, v in before.items() if k.startswith("checkpoints")
        }  # the data shard moved before the failure is removed again
    else:
        assert line == (
            f"nmt: error: {model / 'train_state.json'}: cannot write ({message}); "
            "the previous version is unchanged"
        )
        assert after["train_state.json"] == before["train_state.json"]
        assert _steps(model) == [5, 10, 15]  # ckpt-15 was complete before the state write
    assert not [name for name in after if Path(name).name.startswith(".")]


def test_tensorboard_log_errors_are_only_a_warning(copy, monkeypatch):
    from nmt.training.metrics import TensorBoard

    scalars = TensorBoard.scalars

    def limited(self, *args, **kwargs):
        with file_size_limit(64):  # smaller than an event file
            return scalars(self, *args, **kwargs)

    monkeypatch.setattr(TensorBoard, "scalars", limited)
    model = copy / "model"
    result = _train(model, copy / "data", 20)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if "TensorBoard" in line]
    assert warnings == [
        f"nmt: warning: cannot write TensorBoard logs to {model / 'logs'} (File too large); "
        "training continues without them"
    ]
    assert _steps(model) == [10, 15, 20]


# === Export ===


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The session's tiny model and export (tests/helpers/export.py; shared, read only)."""
    return make_tiny_export(tmp_path_factory.getbasetemp())


def test_export_overwrite_hits_file_too_large_and_keeps_the_version(tiny, tmp_path):
    base = tmp_path / "export"
    shutil.copytree(tiny.export_base, base)
    before = snapshot(base)
    args = ["export", "--model", str(tiny.model_dir), "--output", str(base), "--version", "1"]
    with file_size_limit(32 * 1024):  # the variables alone are ~50 kB
        result = CliRunner().invoke(cli, [*args, "--overwrite", "--beam", "2"])
    assert result.exit_code == 2, result.output
    line = error_line(result.output)
    assert line.startswith(f"nmt: error: {base / '1'}: export failed, nothing was written (")
    assert "File too large" in line and "{{" not in line and "[Op:" not in line
    assert snapshot(base) == before
    assert sorted(p.name for p in base.iterdir()) == ["1"]  # no temporary directory left


# === Translation output ===


def test_translation_output_hits_file_too_large_and_keeps_the_old_output(tiny, tmp_path):
    from nmt.translation_job import translate_file

    source = tmp_path / "in.txt"
    source.write_text("ein Hund läuft\n" * 300, encoding="utf-8")  # within 12 pieces
    output = tmp_path / "out.txt"
    translate_file(tiny.model_dir, str(source), str(output), progress=False)  # traces
    assert len(output.read_bytes()) > 4096
    output.write_bytes(b"the previous good output\n")
    args = ["translate", str(source), "-o", str(output), "--model", str(tiny.model_dir), "--quiet"]
    with file_size_limit(4096):
        result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert "File too large" in error_line(result.output)
    assert output.read_bytes() == b"the previous good output\n"


def test_translation_write_error_names_the_file_and_leaves_no_temporary(tiny, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("ein Hund\n" * 1000, encoding="utf-8")
    output = tmp_path / "out.txt"
    args = ["translate", str(source), "-o", str(output), "--model", str(tiny.model_dir), "--quiet"]
    with file_size_limit(4096):
        result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]
    assert error_line(result.output).startswith(f"nmt: error: {output}: ")


# === Averaging ===


def test_average_hits_file_too_large_and_keeps_the_previous_average(tmp_path, monkeypatch):
    from tests.helpers.checkpoints import make_model_dir

    model_dir, _ = make_model_dir(tmp_path)
    result = CliRunner().invoke(cli, ["average", "--model", str(model_dir), "--last", "2"])
    assert result.exit_code == 0, result.output
    averaged = model_dir / "averaged"
    before = snapshot(averaged)
    limit_checkpoint_writes(monkeypatch, 1024)
    result = CliRunner().invoke(cli, ["average", "--model", str(model_dir), "--last", "3"])
    assert result.exit_code == 2, result.output
    assert error_line(result.output) == (
        f"nmt: error: {averaged}: cannot write the averaged checkpoint (File too large); "
        f"{averaged} is unchanged"
    )
    assert snapshot(averaged) == before
    assert sorted(p.name for p in model_dir.iterdir() if p.name.startswith(".")) == []
