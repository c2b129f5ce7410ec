"""Fault injection during training: SIGKILL at chosen and at random points, then resume.

One model directory goes through a chain of `nmt train` processes, each killed with SIGKILL
(no clean-up possible) somewhere else: while the model directory is set up, inside a train
step, inside every stage of a checkpoint write (TensorFlow writing the staging directory,
between the data-shard and .index moves, before old checkpoints are pruned, halfway through
pruning), while train_state.json is replaced, while best/ is written, and at random steps.
The kill points come from this file run as a script in the child process: it installs a hook
at one of nmt's fault points (nmt/faults.py) so that its Nth event SIGKILLs the process,
then runs the CLI (see `_child`).

After every kill the next run must resume from the newest listed checkpoint (a kill never
leaves a listed checkpoint half-written), every listed checkpoint must restore, and the last
run must end at the same step, with the same weights and dev losses, as an uninterrupted run
(train.deterministic, dropout on, a shuffle buffer: the data position and RNG states resume).

Then damaged checkpoints through the CLI (extending tests/unit/test_checkpoints.py and
tests/integration/test_training.py, which cover a flipped data byte, a truncated data shard and an
empty .index): a truncated .index, a missing or zeroed data shard are named in a warning and
the previous checkpoint is used; when none is readable, or train_state.json is damaged,
`nmt train` exits 2 with one line and leaves the files alone.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tiny.yaml"
MAX_STEPS = 30
SETTINGS = [
    "model.dropout=0.3",  # dropout RNG states must resume
    "data.shuffle_buffer=8",  # so must the shuffle buffer
    "train.deterministic=true",
    f"train.max_steps={MAX_STEPS}",
    "train.checkpoint_every=5",
    "train.keep_checkpoints=2",  # pruning happens at every save from step 15 on
    "train.eval_every=10",  # best/ is written at steps 10, 20, 30
    "train.eval_bleu=false",  # dev loss is the metric (faster)
    "train.log_every=1",  # a line per step: the random kills aim at steps
]
PROCESS_TIMEOUT = 300
# The outside kill's step and delay: seeded, so that a failure can be replayed
# (NMT_FAULT_SEED=N to try other points; the seed is in every failure message).
SEED = int(os.environ.get("NMT_FAULT_SEED", "18"))


# === The child: one nmt process with one kill point ===


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _install(point: str, nth: int) -> None:
    """Make the `nth` event of kind `point` SIGKILL this process (hooks of nmt.faults)."""
    from nmt import faults

    calls = [0]

    def at(fault_point, aimed, before_kill=None):
        """SIGKILL at the nth `fault_point` that `aimed` picks, after `before_kill`."""

        def hook(**info):
            if aimed(**info):
                calls[0] += 1
                if calls[0] == nth:
                    if before_kill is not None:
                        before_kill(**info)
                    _die()

        faults.install(fault_point, hook)

    def cut_short(directory, staging):
        data = max(staging.glob("*.data-*"), key=lambda p: p.stat().st_size)
        os.truncate(data, data.stat().st_size // 2)  # the bytes not written yet

    def index_of(prefix) -> Path:
        return Path(f"{prefix}.index")

    if point == "setup":  # vocabulary and config staged inside DIR, not moved into place
        at(faults.SETUP_STAGED, lambda staging: True)
    elif point == "step":  # a train step updated the weights in memory; nothing saved
        at(faults.STEP_END, lambda step: True)
    elif point == "tf-write":  # TensorFlow writing a checkpoint into its staging directory
        at(faults.CHECKPOINT_STAGED, lambda directory, staging: directory.name == "checkpoints",
           cut_short)  # fmt: skip
    elif point in ("index-move", "best-index-move"):  # data shard moved, .index not yet
        folder = "checkpoints" if point == "index-move" else "best"
        at(faults.CHECKPOINT_MOVE,
           lambda src, dst: dst.suffix == ".index" and dst.parent.name == folder)  # fmt: skip
    elif point == "state-move":  # train_state.json written to its temporary file, not moved
        at(faults.FILE_REPLACE, lambda src, dst: dst.name == "train_state.json")
    elif point == "before-prune":  # a new checkpoint complete, the old ones not pruned yet
        at(faults.CHECKPOINT_PRUNE, lambda directory, keep: directory.name == "checkpoints")
    elif point == "mid-prune":  # an old checkpoint's .index deleted, its data not yet
        at(faults.CHECKPOINT_DELETE,
           lambda prefix: index_of(prefix).parent.name == "checkpoints"
           and index_of(prefix).exists(),
           lambda prefix: index_of(prefix).unlink())  # fmt: skip
    elif point != "none":
        raise SystemExit(f"unknown kill point {point!r}")


def _child(argv: list[str]) -> None:
    point, nth, *args = argv
    _install(point, int(nth))
    from nmt.cli import cli

    cli(args, prog_name="nmt")


# === The parent ===


@dataclass
class Run:
    returncode: int
    output: str

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL


def _train_args(data: Path, max_steps: int = MAX_STEPS) -> list[str]:
    sets = [
        f"data.train_source={data / 'train.src'}",
        f"data.train_target={data / 'train.tgt'}",
        f"data.dev_source={data / 'train.src'}",
        f"data.dev_target={data / 'train.tgt'}",
        *SETTINGS,
        f"train.max_steps={max_steps}",
    ]
    args = ["train", "--config", str(TINY), "--model-dir", "model"]
    return args + [a for s in sets for a in ("--set", s)]


def _start(cwd: Path, args: list[str], point: str, nth: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), point, str(nth), *args],
        cwd=cwd,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _run(cwd: Path, args: list[str], point: str = "none", nth: int = 0) -> Run:
    proc = _start(cwd, args, point, nth)
    try:
        output, _ = proc.communicate(timeout=PROCESS_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Run(proc.returncode, output)


def _run_and_kill_at_step(cwd: Path, args: list[str], step: int, delay: float) -> Run:
    """SIGKILL from outside, `delay` seconds after the child logs `step STEP/...`."""
    proc = _start(cwd, args, "none", 0)
    lines: list[str] = []
    timer = threading.Timer(PROCESS_TIMEOUT, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:
            lines.append(line)
            match = re.match(r"step (\d+)/", line)
            if match and int(match.group(1)) >= step:
                time.sleep(delay)
                proc.send_signal(signal.SIGKILL)
                break
        lines.append(proc.stdout.read())
        proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Run(proc.returncode, "".join(lines))


def _steps(directory: Path) -> list[int]:
    from nmt.checkpoint_files import checkpoint_step, list_checkpoints

    return [checkpoint_step(p) for p in list_checkpoints(directory)]


def _leftovers(root: Path) -> list[str]:
    """Anything an interrupted write can leave: staging dirs, orphan shards, temp files."""
    model = root / "model"
    found = [p.name for p in root.glob(".model.setup-*")]
    for sub in ("checkpoints", "best"):
        folder = model / sub
        if folder.is_dir():
            for p in folder.iterdir():
                prefix = p.name.split(".", 1)[0]
                if p.name.startswith(".") or not (folder / f"{prefix}.index").exists():
                    found.append(f"{sub}/{p.name}")
    if model.is_dir():
        found += [p.name for p in model.iterdir() if p.name.startswith(".")]
    return found


def _check_resumed(run: Run, listed: list[int]) -> None:
    """The run resumed from the newest listed checkpoint, or started afresh without one."""
    if listed:
        newest = listed[-1]
        assert f"resumed from model/checkpoints/ckpt-{newest} (step {newest})" in run.output, (
            run.output[-3000:]
        )
        assert "nmt: warning" not in run.output  # no listed checkpoint was damaged
    else:
        assert "resumed from" not in run.output, run.output[-3000:]


def _check_restorable(model_dir: Path) -> None:
    from nmt import checkpoints as ckpt
    from nmt.checkpoint_files import checkpoint_step, list_checkpoints

    for prefix in list_checkpoints(model_dir / "checkpoints"):
        assert ckpt.load_model(model_dir, str(prefix)).step == checkpoint_step(prefix)


def _weights(model_dir: Path):
    from nmt import checkpoints as ckpt

    return ckpt.load_model(model_dir, "last").model.get_weights()


def _assert_same_weights(a: Path, b: Path) -> None:
    import numpy as np

    for x, y in zip(_weights(a), _weights(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def _dev_losses(model_dir: Path) -> dict[int, float]:
    state = json.loads((model_dir / "train_state.json").read_text())
    return {e["step"]: e["dev_loss"] for e in state["evaluations"]}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run (in process, same settings): root with data/ and model/."""
    from nmt.config import load_config
    from nmt.training import train
    from tests.helpers.corpus import Lines, write_corpus

    root = tmp_path_factory.mktemp("reference")
    src, tgt = write_corpus(root / "data")
    paths = [f"data.train_source={src}", f"data.train_target={tgt}"]
    paths += [f"data.dev_source={src}", f"data.dev_target={tgt}"]
    result = train(load_config(TINY, [*paths, *SETTINGS]), root / "model", log=Lines())
    assert result.step == MAX_STEPS and result.stop_reason == "max_steps"
    assert _steps(root / "model" / "checkpoints") == [25, 30]
    # The chain below kills a write of best/ at step 20: step 20 must be a new best.
    assert [e["step"] for e in result.evaluations if e["best"]][:2] == [10, 20]
    return root


# Kill points in chain order: (point, nth event of that kind in the process, what the model
# directory must show afterwards, proving that the kill landed where it was aimed).
CHAIN = [
    ("setup", 1, "setup"),
    ("step", 7, "step"),
    ("tf-write", 1, "staging"),  # the write of ckpt-10
    ("index-move", 1, "orphan"),  # ckpt-10 again
    ("mid-prune", 1, "half-pruned"),  # ckpt-5, pruned after ckpt-15 is written
    ("state-move", 1, "state-temp"),  # train_state.json at the evaluation of step 20
    ("best-index-move", 1, "best-orphan"),  # best/ckpt-20
]


@pytest.mark.slow
def test_sigkill_at_every_stage_then_resume_equals_uninterrupted_run(reference, tmp_path):
    shutil.copytree(reference / "data", tmp_path / "data")
    model = tmp_path / "model"
    checkpoints = model / "checkpoints"
    args = _train_args(tmp_path / "data")

    for point, nth, evidence in CHAIN:
        listed = _steps(checkpoints)
        run = _run(tmp_path, args, point, nth)
        assert run.killed, f"{point}: not killed (exit {run.returncode})\n{run.output[-3000:]}"
        if evidence != "setup":
            _check_resumed(run, listed)
        after = _steps(checkpoints)
        if evidence == "setup":
            assert not (model / "config.yaml").exists() and list(model.glob(".setup-*"))
        elif evidence == "step":
            assert after == [5]
        elif evidence == "staging":
            staged = [p for d in checkpoints.glob(".staging-*") for p in d.rglob("*.data-*")]
            assert staged and after == [5]
        elif evidence == "orphan":
            assert list(checkpoints.glob("ckpt-10.data-*")) and after == [5]
        elif evidence == "half-pruned":
            assert list(checkpoints.glob("ckpt-5.data-*")) and after == [10, 15]
        elif evidence == "state-temp":
            assert list(model.glob(".train_state.json.*")) and after == [10, 15]
        elif evidence == "best-orphan":
            assert list((model / "best").glob("ckpt-20.data-*")) and after == [10, 15]
        _check_restorable(model)

    # A kill from outside at a random step (wherever the process is then: a step, an
    # evaluation, a checkpoint write).
    rng = random.Random(SEED)
    listed = _steps(checkpoints)
    step, delay = rng.randint(listed[-1] + 1, listed[-1] + 5), rng.uniform(0.0, 0.02)
    run = _run_and_kill_at_step(tmp_path, args, step, delay)
    where = f"NMT_FAULT_SEED={SEED}: step {step} + {delay:.3f} s"
    assert run.killed, f"{where}: exit {run.returncode}\n{run.output[-3000:]}"
    _check_resumed(run, listed)
    _check_restorable(model)

    listed = _steps(checkpoints)
    final = _run(tmp_path, args)
    assert final.returncode == 0, final.output[-3000:]
    _check_resumed(final, listed)
    assert f"trained to step {MAX_STEPS} (max_steps)" in final.output
    assert _steps(checkpoints) == [25, 30]
    assert _leftovers(tmp_path) == []
    _assert_same_weights(model, reference / "model")
    losses, expected = _dev_losses(model), _dev_losses(reference / "model")
    assert sorted(losses) == [10, 20, 30]
    assert losses == pytest.approx(expected, rel=1e-5)


# === Damaged checkpoints through the CLI (in process) ===


def _cli_train(root: Path, max_steps: int = MAX_STEPS):
    from click.testing import CliRunner

    from nmt.cli import cli

    args = _train_args(root / "data", max_steps)
    args[args.index("model")] = str(root / "model")
    return CliRunner().invoke(cli, args)


def _damage(prefix: Path, how: str) -> None:
    index = Path(f"{prefix}.index")
    (data,) = prefix.parent.glob(f"{prefix.name}.data-*")
    if how == "truncated-index":
        os.truncate(index, index.stat().st_size // 2)
    elif how == "missing-data":
        data.unlink()
    elif how == "zeroed-data":
        data.write_bytes(bytes(data.stat().st_size))
    else:
        raise ValueError(how)


def _copy(reference: Path, tmp_path: Path) -> Path:
    shutil.copytree(reference / "data", tmp_path / "data")
    shutil.copytree(reference / "model", tmp_path / "model")
    return tmp_path / "model"


@pytest.mark.slow
@pytest.mark.parametrize("how", ["truncated-index", "missing-data", "zeroed-data"])
def test_damaged_newest_checkpoint_is_named_and_the_previous_one_used(reference, tmp_path, how):
    model = _copy(reference, tmp_path)
    _damage(model / "checkpoints" / "ckpt-30", how)
    result = _cli_train(tmp_path)
    assert result.exit_code == 0, result.output
    warning = f"nmt: warning: {model / 'checkpoints' / 'ckpt-30'}: corrupt or truncated checkpoint"
    assert warning in result.output and "trying the previous one" in result.output
    assert f"resumed from {model / 'checkpoints' / 'ckpt-25'} (step 25)" in result.output
    assert f"trained to step {MAX_STEPS} (max_steps)" in result.output
    assert _steps(model / "checkpoints") == [25, 30]  # ckpt-30 written again, whole
    _assert_same_weights(model, reference / "model")


@pytest.mark.slow
def test_no_readable_checkpoint_or_damaged_state_exits_2_and_changes_nothing(reference, tmp_path):
    model = _copy(reference, tmp_path)
    _damage(model / "checkpoints" / "ckpt-30", "zeroed-data")
    _damage(model / "checkpoints" / "ckpt-25", "truncated-index")
    before = {p.name: p.read_bytes() for p in (model / "checkpoints").iterdir()}
    result = _cli_train(tmp_path, max_steps=40)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("nmt: error:")]
    assert errors == [
        f"nmt: error: {model / 'checkpoints'}: no readable checkpoint among ckpt-25, ckpt-30; "
        "remove them to start again"
    ]
    assert result.output.count("corrupt or truncated checkpoint") == 2
    assert "Traceback" not in result.output
    assert {p.name: p.read_bytes() for p in (model / "checkpoints").iterdir()} == before

    shutil.rmtree(tmp_path / "model")
    model = _copy(reference, tmp_path / "again")
    (model / "train_state.json").write_text('{"step": 30, "evaluations": [')
    result = _cli_train(tmp_path / "again", max_steps=40)
    assert result.exit_code == 2, result.output
    assert (
        result.output.strip()
        .splitlines()[-1]
        .startswith(f"nmt: error: {model / 'train_state.json'}: cannot read training state")
    )
    assert _steps(model / "checkpoints") == [25, 30]


if __name__ == "__main__":
    _child(sys.argv[1:])
