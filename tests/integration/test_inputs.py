"""Every command that reads, through the CLI, against every kind of input.

Inputs: a regular file, gzip (`.gz`), a FIFO, stdin (`/dev/stdin`, a pipe: run as a
subprocess), an empty file, binary (invalid UTF-8), CRLF line ends, no final newline.
Commands: translate FILE, score HYP, evaluate --src, vocab --source, train
data.train_source. Whatever can be read gives exactly what the regular file gives (each
input is read once, so a pipe is not consumed by a check first); what cannot is one
`nmt: error:` line naming the file (and line), exit 2.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from nmt.cli import cli

REPO = Path(__file__).resolve().parents[2]
LINES = ["ein Hund läuft schnell", "der Hund schläft", "3 1 4 1 5", "eine Katze", "",
         "zwei Katzen laufen", "der Vogel singt", "1 2 3"]  # fmt: skip
TEXT = "".join(line + "\n" for line in LINES)

VARIANTS = {
    "regular": ("in.txt", TEXT.encode()),
    "gz": ("in.txt.gz", gzip.compress(TEXT.encode())),
    "fifo": ("in.fifo", TEXT.encode()),
    "stdin": ("/dev/stdin", TEXT.encode()),
    "empty": ("in.txt", b""),
    "binary": ("in.txt", b"ok\n\xff\xfe\n"),
    "crlf": ("in.txt", TEXT.replace("\n", "\r\n").encode()),
    "no-final-newline": ("in.txt", TEXT[:-1].encode()),
}


def _args(command: str, path, root: Path, model: Path) -> list[str]:
    ref = root / "ref.txt"
    if command == "translate":
        return ["translate", path, "--model", model, "-o", root / "out.txt"]
    if command == "score":
        return ["score", path, ref, "--json"]
    if command == "evaluate":
        return ["evaluate", "--model", model, "--src", path, "--ref", ref, "--json"]
    if command == "vocab":
        return ["vocab", "--source", path, "--target", ref, "--output", root / "vocab",
                "--size", "40"]  # fmt: skip
    sets = [f"data.train_source={path}", f"data.train_target={ref}", "train.max_steps=1",
            "train.checkpoint_every=1", "vocab.size=40"]  # fmt: skip
    return ["train", "--config", REPO / "configs" / "tiny.yaml", "--model-dir", root / "model",
            *[a for s in sets for a in ("--set", s)]]  # fmt: skip


def _product(command: str, root: Path, output: str):
    """What the command made, to compare with the regular file's."""
    if command == "translate":
        return (root / "out.txt").read_bytes()
    if command in ("score", "evaluate"):
        scores, _ = json.JSONDecoder().raw_decode(output[output.index('{\n  "bleu"') :])
        return {k: v["score"] for k, v in scores.items()}
    if command == "vocab":
        return (root / "vocab" / "joint.model").read_bytes()
    return "8 training pairs" in output  # train


def run(command, variant, root: Path, model: Path, make_fifo):
    name, data = VARIANTS[variant]
    root.mkdir(parents=True, exist_ok=True)
    empty = variant == "empty"
    (root / "ref.txt").write_text("" if empty else TEXT, encoding="utf-8")
    args = [str(a) for a in _args(command, name if name.startswith("/") else root / name,
                                  root, model)]  # fmt: skip
    if variant == "stdin":
        done = subprocess.run([sys.executable, "-m", "nmt", *args], input=data,
                              capture_output=True, timeout=600,
                              env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
        output = done.stderr.decode() + "\n" + done.stdout.decode()
        return done.returncode, output
    if variant == "fifo":
        make_fifo(root / name, data)
    else:
        (root / name).write_bytes(data)
    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.output


COMMANDS = ["translate", "score", "evaluate", "vocab", "train"]
# (command, variant) -> (exit code, what the error line says); the rest exit 0 and give the
# regular file's result.
FAILS = {
    ("translate", "binary"): "in.txt:2: invalid UTF-8 (byte 0xff at offset 0 of the line)",
    ("score", "binary"): "in.txt:2: invalid UTF-8",
    ("evaluate", "binary"): "in.txt:2: invalid UTF-8",
    ("vocab", "binary"): "in.txt:2: invalid UTF-8",
    ("train", "binary"): "in.txt:2: invalid UTF-8",
    ("vocab", "empty"): "in.txt: file is empty",
    ("train", "empty"): "in.txt: file is empty",
    ("train", "fifo"): "in.fifo: not a regular file",
    ("train", "stdin"): "/dev/stdin: not a regular file",
}


@pytest.fixture(scope="module")
def reference(tiny_model, tmp_path_factory) -> dict:
    """Each command's result on the regular file."""
    out = {}
    for command in COMMANDS:
        root = tmp_path_factory.mktemp(f"reference-{command}")
        code, output = run(command, "regular", root, tiny_model, None)
        assert code == 0, output
        out[command] = _product(command, root, output)
    return out


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "regular"])
@pytest.mark.parametrize("command", COMMANDS)
def test_input(command, variant, reference, tiny_model, tmp_path, make_fifo):
    code, output = run(command, variant, tmp_path, tiny_model, make_fifo)
    failure = FAILS.get((command, variant))
    if failure:
        assert code == 2, output
        errors = [line for line in output.splitlines() if line.startswith("nmt: error:")]
        assert len(errors) == 1 and failure in errors[0], output
        assert "Traceback" not in output
        return
    assert code == 0, output
    if variant == "empty":
        if command == "translate":
            assert (tmp_path / "out.txt").read_bytes() == b""
            assert "translated 0 lines" in output
        else:  # score, evaluate: no lines score 0
            assert set(_product(command, tmp_path, output).values()) == {0.0}
        return
    assert _product(command, tmp_path, output) == reference[command]


@pytest.mark.parametrize(
    "shell", ["cat {f} | {nmt} translate /dev/stdin", "{nmt} translate <(cat {f})"]
)
def test_translate_from_a_pipe_as_in_the_report(shell, tiny_model, tmp_path, reference):
    """The two commands of issue 13 that printed "translated 0 lines" and exited 0."""
    src = tmp_path / "in.txt"
    src.write_text(TEXT, encoding="utf-8")
    nmt = f"{sys.executable} -m nmt"
    line = shell.format(f=src, nmt=nmt) + f" --model {tiny_model} -o {tmp_path / 'out.txt'}"
    done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"translated {len(LINES)} lines" in done.stderr
    assert (tmp_path / "out.txt").read_bytes() == reference["translate"]
