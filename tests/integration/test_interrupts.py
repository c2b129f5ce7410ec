"""SIGINT and SIGTERM during `nmt train`, and two writers of one model directory.

Signals are sent by the process to itself at chosen points (before the first checkpoint,
mid-step, during a checkpoint write; once, or twice to abort), through the CLI in process;
then a resumed run must end with the same weights as an uninterrupted one. One test runs
`nmt train` as a real subprocess: a second trainer and `nmt average` are refused while it
runs, naming its PID, and SIGTERM stops it with a checkpoint, exit 143.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from nmt import checkpoints as ckpt
from nmt import faults
from nmt.checkpoint_files import checkpoint_step, list_checkpoints
from nmt.cli import cli
from nmt.locking import LOCK_FILE

REPO = Path(__file__).resolve().parents[2]
SETTINGS = ["model.dropout=0.3", "data.shuffle_buffer=8", "train.deterministic=true",
            "train.checkpoint_every=5", "train.keep_checkpoints=5",
            "train.log_every=1"]  # fmt: skip


def train_args(root: Path, max_steps: int = 10) -> list[str]:
    data = root / "data"
    sets = [f"data.train_source={data / 'train.src'}", f"data.train_target={data / 'train.tgt'}",
            *SETTINGS, f"train.max_steps={max_steps}"]  # fmt: skip
    return ["train", "--config", str(REPO / "configs" / "tiny.yaml"), "--model-dir",
            str(root / "model"), *[a for s in sets for a in ("--set", s)]]  # fmt: skip


def weights(model_dir: Path) -> list[np.ndarray]:
    return ckpt.load_model(model_dir, "last").model.get_weights()


def steps(model_dir: Path) -> list[int]:
    return [checkpoint_step(p) for p in list_checkpoints(model_dir / "checkpoints")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[np.ndarray]:
    """The weights of an uninterrupted run to step 10."""
    from tests.helpers.corpus import write_corpus

    root = tmp_path_factory.mktemp("uninterrupted")
    write_corpus(root / "data")
    result = CliRunner().invoke(cli, train_args(root))
    assert result.exit_code == 0, result.output
    return weights(root / "model")


def _kill(signals) -> None:
    for signum in signals:
        os.kill(os.getpid(), signum)


def at_step(n: int, signals) -> Callable[[], None]:
    """Send `signals` while the n-th train step of this run executes; returns the remover."""
    calls = [0]

    def hook(step):
        calls[0] += 1
        if calls[0] == n:
            _kill(signals)

    return faults.install(faults.STEP_START, hook)


def at_checkpoint_write(signals) -> Callable[[], None]:
    """Send `signals` while TensorFlow writes the first checkpoint of this run; returns the
    remover."""
    calls = [0]

    def hook(directory, step):
        calls[0] += 1
        if calls[0] == 1:
            _kill(signals)

    return faults.install(faults.CHECKPOINT_WRITE, hook)


INT, TERM = signal.SIGINT, signal.SIGTERM
# (case, where, signals, exit code, checkpoints after the interrupted run)
CASES = [
    ("before-first-checkpoint", 2, [INT], 130, [2]),
    ("mid-step", 7, [TERM], 143, [5, 7]),
    ("during-checkpoint-write", "write", [INT], 130, [5]),
    ("abort-during-checkpoint-write", "write", [INT, INT], 130, []),
    ("abort-mid-step", 7, [TERM, TERM], 143, [5]),
]


@pytest.mark.parametrize("case, where, signals, code, kept", CASES, ids=[c[0] for c in CASES])
def test_signal_then_resume_equals_uninterrupted_run(
    case, where, signals, code, kept, reference, tmp_path, corpus
):
    model = tmp_path / "model"
    remove = at_checkpoint_write(signals) if where == "write" else at_step(where, signals)
    try:
        result = CliRunner().invoke(cli, train_args(tmp_path))
    finally:
        remove()
    name = signal.Signals(signals[0]).name
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert steps(model) == kept
    assert (model / "config.yaml").exists()  # the model directory is kept in every case
    assert not (model / LOCK_FILE).exists()
    assert not list((model / "checkpoints").glob(".staging-*"))
    if len(signals) == 1:
        assert (
            f"nmt: interrupted ({name}) at step {kept[-1]}; saved "
            f"{model / 'checkpoints' / f'ckpt-{kept[-1]}'}; resume with: nmt train --config "
        ) in result.output
    else:
        assert result.output.rstrip().endswith(f"nmt: interrupted ({name})")
    (model / LOCK_FILE).write_text("999999 nmt train\n")  # as if left by a killed trainer
    result = CliRunner().invoke(cli, train_args(tmp_path))
    assert result.exit_code == 0, result.output
    assert "taking over the lock left by process 999999 (nmt train)" in result.output
    for x, y in zip(weights(model), reference, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    assert not (model / LOCK_FILE).exists()


def test_second_writer_refused_while_training_and_sigterm_saves(tmp_path, corpus):
    model = tmp_path / "model"
    args = train_args(tmp_path, max_steps=100_000)
    proc = subprocess.Popen([sys.executable, "-m", "nmt", *args], stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    lines: list[str] = []
    started = threading.Event()

    def read():
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("step 3/"):
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(300), "".join(lines)
        held = f"{model}: in use by process {proc.pid} (nmt train)"
        second = CliRunner().invoke(cli, args)
        assert second.exit_code == 2 and f"nmt: error: {held}" in second.output, second.output
        average = CliRunner().invoke(cli, ["average", "--model", str(model), "--last", "1"])
        assert average.exit_code == 2 and held in average.output, average.output
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(10)
    output = "".join(lines)
    kept = steps(model)
    assert kept, output
    step = kept[-1]
    assert f"nmt: interrupted (SIGTERM) at step {step}; saved" in output
    assert not (model / LOCK_FILE).exists()
