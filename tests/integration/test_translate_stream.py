"""`nmt translate` streaming (stdin or a pipe to stdout, line by line as it arrives), its
progress and summary, and the decoding options --prefix, --prefix-file, --sampling-* and
--seed, end to end on the session's memorised tiny model."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from nmt.cli import cli
from tests.helpers.memorised import random_digits


def run(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def translate(memorised, path, *options, input=None, code=0):
    result = run("translate", path, "--model", memorised.model_dir, "--quiet", *options,
                 input=input)  # fmt: skip
    assert result.exit_code == code, result.output
    return result, result.stdout.split("\n")[:-1] if result.stdout else []


def lines_file(path: Path, lines) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# === Streaming ===


class Reader:
    """The lines a subprocess writes to a pipe, read in a thread; `line(timeout)` waits."""

    def __init__(self, stream):
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def line(self, timeout: float) -> str | None:
        return self.lines.get(timeout=timeout)


def test_an_interactive_line_is_answered_before_stdin_closes(memorised, nmt_env):
    """The issue's done-when: each line typed into `nmt translate -` comes back at once."""
    process = subprocess.Popen(
        [sys.executable, "-m", "nmt", "translate", "-", "--model", str(memorised.model_dir)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=nmt_env,
    )  # fmt: skip
    try:
        out = Reader(process.stdout)
        process.stdin.write(memorised.sources[0] + "\n")
        process.stdin.flush()
        assert out.line(timeout=300) == memorised.references[0] + "\n"  # start-up included
        answers = []
        for i in (1, 2, 3):
            began = time.perf_counter()
            process.stdin.write(memorised.sources[i] + "\n")
            process.stdin.flush()
            answers.append(out.line(timeout=60))
            assert time.perf_counter() - began < 5  # a warm model: well under a second alone
        assert answers == [memorised.references[i] + "\n" for i in (1, 2, 3)]
        assert process.poll() is None  # still waiting for more input
        process.stdin.close()
        assert out.line(timeout=60) is None
        assert process.wait(60) == 0
        assert process.stderr.read() == ""  # no progress drawn into a pipe, no summary
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_stdin_to_stdout_keeps_every_line_in_order_and_stops_at_a_bad_line(memorised, translator):
    lines = random_digits(30, seed=21) + ["", "  "] + memorised.sources[:5]
    data = "".join(line + "\n" for line in lines).encode()
    _, got = translate(memorised, "-", "--batch-tokens", "16", input=data)
    assert got == translator.translate(lines)
    # A streamed input is not checked first: the lines before a bad one are translated.
    result, got = translate(memorised, "-", input=data[:40] + b"\n\xff\n" + data, code=2)
    assert got == translator.translate(data[:40].decode().split("\n"))
    assert result.stderr.splitlines()[-1].startswith(
        f"nmt: error: <stdin>:{len(got) + 1}: invalid UTF-8"
    )


def test_line_stream_batches_what_is_available(tmp_path):
    from nmt import fileio

    read, write = os.pipe()
    path = f"/dev/fd/{read}"
    with fileio.LineStream(path, max_lines=3) as stream:
        batches = stream.batches()
        os.write(write, b"a\n")
        assert next(batches) == [(1, "a")]  # one line available: one line, no waiting
        os.write(write, b"b\nc\nd\ne\n")
        time.sleep(0.2)  # the reader thread has read ahead
        assert next(batches) == [(2, "b"), (3, "c"), (4, "d")]  # at most max_lines
        os.write(write, b"f\xff\n")
        os.close(write)
        assert next(batches) == [(5, "e")]
        with pytest.raises(Exception, match=r"6: invalid UTF-8"):
            next(batches)
    os.close(read)


def test_file_output_summary_counts_lines_per_second(memorised, tmp_path):
    src = lines_file(tmp_path / "in.txt", memorised.sources[:6])
    result = run("translate", src, "--model", memorised.model_dir, "-o", tmp_path / "out.txt")
    assert result.exit_code == 0, result.output
    summary = result.stderr.splitlines()[-1]
    assert summary.startswith("translated 6 lines in ") and "lines/s after" in summary
    assert summary.endswith(f"s of start-up) -> {tmp_path / 'out.txt'}")
    assert "\r" not in result.stderr  # stderr is no terminal here: no progress bar


def test_progress_bar_on_a_terminal_only(monkeypatch, capsys):
    from nmt import translation_job

    assert not translation_job.show_progress(True, "in.txt", "out.txt")  # stderr: a pipe
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert translation_job.show_progress(True, "in.txt", "out.txt")
    assert not translation_job.show_progress(False, "in.txt", "out.txt")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    assert not translation_job.show_progress(True, "in.txt", "-")  # output on the terminal
    progress = translation_job.Progress(True, 10)
    progress.start()
    progress.update(4)
    progress.end()
    err = capsys.readouterr()
    assert err.out == "" and "nmt translate" in err.err and "4/10" in err.err
    assert "lines/s" in err.err


# === Decoding options ===


def test_prefix_starts_every_output_and_the_rest_follows(memorised, translator, tmp_path):
    src = lines_file(tmp_path / "in.txt", memorised.sources[:4] + [""])
    _, got = translate(memorised, src, "--prefix", "7 7")
    assert got[-1] == ""  # an empty input still gives an empty output
    assert all(line.startswith("7 7") for line in got[:4]), got
    want = [h[0].text for h in translator.translate_encoded(
        [translator.encode(line) for line in memorised.sources[:4]],
        prefixes=[translator.encode_prefix("7 7")] * 4,
    )]  # fmt: skip
    assert got[:4] == want
    prefixes = lines_file(tmp_path / "prefixes.txt", ["", "1", "2 3", "", ""])
    _, per_line = translate(memorised, src, "--prefix-file", prefixes, "--beam", "1")
    plain = translator.translate(memorised.sources[:4], beam_size=1)
    assert per_line[0] == plain[0] and per_line[3] == plain[3]  # no prefix: unchanged
    assert per_line[1].startswith("1") and per_line[2].startswith("2 3")


def test_prefix_file_must_have_one_line_per_input_line(memorised, tmp_path):
    src = lines_file(tmp_path / "in.txt", memorised.sources[:3])
    short = lines_file(tmp_path / "short.txt", ["1", "2"])
    out = tmp_path / "out.txt"
    result = run("translate", src, "--model", memorised.model_dir, "--prefix-file", short,
                 "-o", out)  # fmt: skip
    assert result.exit_code == 2 and not out.exists()
    assert result.stderr.splitlines() == [
        f"nmt: error: --prefix-file {short} has 2 lines but {src} has 3: one prefix per input line"
    ]
    result = run("translate", src, "--model", memorised.model_dir, "--prefix", "1",
                 "--prefix-file", short)  # fmt: skip
    assert result.exit_code == 2 and "not both" in result.stderr
    both = CliRunner().invoke(cli, ["translate", "-", "--model", str(memorised.model_dir),
                                    "--prefix-file", "-"], input="1 2\n3\n")  # fmt: skip
    assert both.exit_code == 2
    assert both.stderr.splitlines() == [
        "nmt: error: FILE - and --prefix-file - both read standard input, so each would get "
        "only some of its lines; give at most one of them as -"
    ]


def test_seeded_sampling_is_reproducible_and_per_line(memorised, translator, tmp_path):
    lines = random_digits(12, seed=22)
    src = lines_file(tmp_path / "in.txt", lines)
    options = ["--sampling-topk", "0", "--sampling-temperature", "3", "--seed", "5"]
    _, first = translate(memorised, src, *options, "--with-scores")
    _, again = translate(memorised, src, *options, "--with-scores", "--batch-tokens", "8")
    texts = [line.split(" ||| ")[0] for line in first]
    assert [line.split(" ||| ")[0] for line in again] == texts  # another batching, same samples
    for a, b in zip(first, again, strict=True):  # padding changes the last float digits
        assert float(a.split(" ||| ")[1]) == pytest.approx(float(b.split(" ||| ")[1]), abs=1e-4)
    _, other = translate(memorised, src, *options[:-1], "6", "--with-scores")
    assert other != first
    greedy = translator.translate(lines, beam_size=1)
    assert texts != greedy  # T 3 strays from greedy
    # A line's sample depends on its number only: line 2 alone, as the 2nd line of stdin.
    _, second = translate(memorised, "-", *options, "--with-scores",
                          input=f"x\n{lines[1]}\n".encode())  # fmt: skip
    assert second[1].split(" ||| ")[0] == texts[1]
    _, top1 = translate(memorised, src, "--sampling-topk", "1", "--beam", "1")
    assert top1 == greedy


@pytest.mark.parametrize(
    "options, message",
    [
        (["--sampling-topk", "-1"], "--sampling-topk"),
        (["--sampling-temperature", "0"], "--sampling-temperature"),
        (["--sampling-temperature", "inf"], "--sampling-temperature must be > 0 and finite"),
        (["--sampling-topk", "0", "--beam", "4"], "decodes with --beam 1, not --beam 4"),
        (["--sampling-topk", "5", "--n-best", "2"], "--n-best 2 cannot exceed the beam size 1"),
    ],
)
def test_bad_sampling_options_exit_2_with_one_line(memorised, tmp_path, options, message):
    src = lines_file(tmp_path / "in.txt", ["1 2"])
    result = run("translate", src, "--model", memorised.model_dir, *options)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr
