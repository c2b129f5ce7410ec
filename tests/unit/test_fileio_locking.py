"""nmt.fileio (inputs read once, outputs that keep what they must) and nmt.locking."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from nmt import fileio
from nmt.errors import DataError
from nmt.locking import LOCK_FILE, LockedError, model_dir_lock


def _pipe_with(data: bytes) -> str:
    """A /dev/fd path of a pipe whose writer thread sends `data`."""
    read, write = os.pipe()

    def send():
        with os.fdopen(write, "wb") as f:
            f.write(data)

    threading.Thread(target=send, daemon=True).start()
    return f"/dev/fd/{read}"


def test_line_source_reads_a_pipe_once_for_every_pass():
    path = _pipe_with(b"a\r\nb\n\xc3\xa4")
    with fileio.LineSource(path) as source:
        assert not source.regular
        first, second = list(source), list(source)
    assert first == second == [(1, "a"), (2, "b"), (3, "ä")]


def test_line_source_reopens_a_regular_file(tmp_path):
    (tmp_path / "f").write_bytes(b"x\ny\n")
    source = fileio.LineSource(tmp_path / "f")
    assert source.regular and list(source) == list(source) == [(1, "x"), (2, "y")]


def test_a_pass_cut_short_cannot_be_repeated():
    source = fileio.LineSource(_pipe_with(b"a\nb\n"))
    next(iter(source))
    with pytest.raises(RuntimeError, match="an earlier pass stopped early"):
        list(source)


def test_invalid_utf8_names_file_and_line(tmp_path):
    (tmp_path / "f").write_bytes(b"ok\n\xffx\n")
    with pytest.raises(DataError, match=r"f:2: invalid UTF-8 \(byte 0xff at offset 0"):
        fileio.read_lines(tmp_path / "f")


def test_check_output_file_refuses_the_input_under_another_name(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("x\n")
    os.link(src, tmp_path / "hard.txt")
    (tmp_path / "soft.txt").symlink_to(src)
    for name in ("in.txt", "hard.txt", "soft.txt"):
        with pytest.raises(DataError, match="is the same file as the input IN"):
            fileio.check_output_file(tmp_path / name, option="-o", inputs=[("IN", src)])
    fileio.check_output_file("/dev/null", option="-o", inputs=[("IN", "/dev/null")])


def test_two_inputs_may_not_read_one_stream(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    text = tmp_path / "a.txt"
    text.write_text("x\n")
    fileio.check_distinct_inputs([("--source a", text), ("--target a", text)])  # reopened
    fileio.check_distinct_inputs([("--source -", "-"), ("--target a", text)])
    with pytest.raises(DataError) as both:
        fileio.check_distinct_inputs([("--source -", "-"), ("--target -", "-")])
    assert str(both.value) == (
        "--source - and --target - both read standard input, so each would get only some of "
        "its lines; give at most one of them as -"
    )
    with pytest.raises(DataError, match=f"both read the same stream {fifo}.*its own file"):
        fileio.check_distinct_inputs([("--source p", fifo), ("--target p", str(fifo))])


def test_stdin_and_a_path_to_the_same_pipe_are_one_stream(tmp_path, monkeypatch):
    read_end, write_end = os.pipe()
    other = f"/proc/self/fd/{read_end}"  # what /dev/stdin is when stdin is this pipe
    try:
        with os.fdopen(read_end) as reader:
            monkeypatch.setattr(sys, "stdin", reader)
            with pytest.raises(DataError, match=f"--source - and --target {other} both read "
                                                "standard input"):  # fmt: skip
                fileio.check_distinct_inputs([("--source -", "-"), (f"--target {other}", other)])
            text = tmp_path / "a.txt"
            text.write_text("x\n")
            fileio.check_distinct_inputs([("--source -", "-"), ("--target a", text)])
    finally:
        os.close(write_end)


def test_open_output_failure_keeps_the_file_and_leaves_no_temporary(tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("old\n")
    with pytest.raises(RuntimeError):
        with fileio.open_output(out) as f:
            f.write("new\n")
            raise RuntimeError("stop")
    assert out.read_text() == "old\n" and sorted(os.listdir(tmp_path)) == ["out.txt"]


def test_make_temp_dir_has_mkdir_permissions_unless_private(tmp_path):
    mask = os.umask(0o022)
    try:
        shared = fileio.make_temp_dir(tmp_path, ".shared-")
        private = fileio.make_temp_dir(tmp_path, ".private-", private=True)
    finally:
        os.umask(mask)
    assert shared.parent == tmp_path and shared.name.startswith(".shared-")
    assert shared.stat().st_mode & 0o777 == 0o755
    assert private.stat().st_mode & 0o777 == 0o700


def test_second_lock_names_the_holder_and_release_removes_the_file(tmp_path):
    with model_dir_lock(tmp_path, "nmt train") as path:
        assert path.read_text() == f"{os.getpid()} nmt train\n"
        with pytest.raises(LockedError, match=f"in use by process {os.getpid()} \\(nmt train\\)"):
            with model_dir_lock(tmp_path, "nmt average"):
                pass
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_warning(tmp_path):
    (tmp_path / LOCK_FILE).write_text("4194304 nmt train\n")  # nobody holds its flock
    warnings = []
    with model_dir_lock(tmp_path, "nmt average", warn=warnings.append):
        assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()} nmt average\n"
    assert warnings == [
        f"{tmp_path}: taking over the lock left by process 4194304 (nmt train), which no "
        "longer runs"
    ]
