"""`nmt train` and `nmt average` end to end: learning, errors, SIGKILL and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from nmt import checkpoints as ckpt
from nmt.checkpoint_files import checkpoint_step, list_checkpoints
from nmt.cli import cli
from tests.helpers.checkpoints import make_model_dir
from tests.helpers.corpus import TINY, write_corpus

DATA = [
    "--set",
    "data.train_source=data/train.src",  # relative to the current directory
    "--set",
    "data.train_target=data/train.tgt",
    "--set",
    "data.dev_source=data/train.src",
    "--set",
    "data.dev_target=data/train.tgt",
]


def _sets(*pairs: str) -> list[str]:
    return [arg for pair in pairs for arg in ("--set", pair)]


@pytest.mark.slow
def test_cli_train_memorises_twenty_pairs(tmp_path, monkeypatch):
    from nmt.evaluation import bleu
    from nmt.translator import Translator

    monkeypatch.chdir(tmp_path)
    src, tgt = write_corpus(tmp_path / "data")
    args = ["train", "--config", str(TINY), "--model-dir", "model", *DATA]
    args += _sets(
        "model.units=32",
        "model.embedding_dim=16",
        "train.learning_rate=0.02",
        "train.max_steps=300",
        "train.eval_every=300",
        "train.checkpoint_every=300",
        "train.log_every=100",
    )
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "trained to step 300 (max_steps)" in result.output
    assert "best BLEU 100.00 at step 300" in result.output
    loaded = ckpt.load_model(tmp_path / "model")  # best
    assert loaded.checkpoint_path.parent.name == "best"
    sources = src.read_text().splitlines()
    references = tgt.read_text().splitlines()
    hyps = Translator(loaded.model, loaded.vocab, loaded.config.decode).translate(
        sources, beam_size=1
    )
    assert bleu(hyps, references).score == pytest.approx(100.0)


def test_cli_config_errors_exit_2_naming_the_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_corpus(tmp_path / "data")
    base = ["train", "--config", str(TINY), "--model-dir", "model", *DATA]
    result = CliRunner().invoke(cli, [*base, "--set", "model.unitz=3"])
    assert result.exit_code == 2
    assert "nmt: error:" in result.output and "unknown key model.unitz" in result.output
    result = CliRunner().invoke(
        cli,
        [
            *base,
            "--set",
            "train.decay=plateau",
            "--set",
            "data.dev_source=",
            "--set",
            "data.dev_target=",
        ],
    )
    assert result.exit_code == 2 and "train.decay: plateau needs a dev set" in result.output
    result = CliRunner().invoke(cli, ["train", "--config", "missing.yaml", "--model-dir", "m"])
    assert result.exit_code == 2 and "missing.yaml: config file not found" in result.output
    assert not (tmp_path / "model").exists()


def test_cli_missing_data_file_exit_2_and_no_model_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_corpus(tmp_path / "data")
    args = ["train", "--config", str(TINY), "--model-dir", "model", *DATA]
    result = CliRunner().invoke(cli, [*args, "--set", "data.train_target=data/nope.tgt"])
    assert result.exit_code == 2
    assert f"{tmp_path / 'data' / 'nope.tgt'}: file not found" in result.output
    assert not (tmp_path / "model").exists()


def test_cli_incompatible_model_dir_exit_2(tmp_path, monkeypatch):
    model_dir, _ = make_model_dir(tmp_path / "made")
    monkeypatch.chdir(tmp_path / "made")  # its corpus is in made/corpus
    args = ["train", "--config", str(TINY), "--model-dir", str(model_dir)]
    args += _sets(
        "data.train_source=corpus/train.src",
        "data.train_target=corpus/train.tgt",
        "model.attention=dot",
    )
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert f"{model_dir}: holds a model trained with another config" in result.output
    assert "model.attention: 'general' -> 'dot'" in result.output


def test_cli_average(tmp_path):
    model_dir, _ = make_model_dir(tmp_path)
    result = CliRunner().invoke(cli, ["average", "--model", str(model_dir), "--last", "2"])
    assert result.exit_code == 0, result.output
    assert f"-> {model_dir / 'averaged' / 'ckpt-3'}" in result.output
    assert ckpt.load_model(model_dir, str(model_dir / "averaged")).step == 3
    result = CliRunner().invoke(cli, ["average", "--model", str(model_dir), "--last", "9"])
    assert result.exit_code == 2 and "cannot average the last 9" in result.output
    result = CliRunner().invoke(cli, ["average", "--model", str(tmp_path / "x"), "--last", "1"])
    assert result.exit_code == 2 and "x: model directory not found" in result.output


def _nmt(args: list[str], cwd: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen(
        [sys.executable, "-c", "from nmt.cli import cli; cli()", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


@pytest.mark.slow
def test_sigkill_mid_training_then_resume(tmp_path):
    write_corpus(tmp_path / "data")
    args = ["train", "--config", str(TINY), "--model-dir", "model", *DATA]
    args += _sets("train.checkpoint_every=5", "train.eval_every=1000", "train.log_every=5")
    proc = _nmt([*args, "--set", "train.max_steps=1000000"], tmp_path)
    checkpoints = tmp_path / "model" / "checkpoints"
    deadline = time.monotonic() + 240
    try:
        while not [p for p in list_checkpoints(checkpoints) if checkpoint_step(p) >= 10]:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    last = checkpoint_step(list_checkpoints(checkpoints)[-1])
    resumed = _nmt([*args, "--set", f"train.max_steps={last + 5}", "--threads", "1"], tmp_path)
    output, _ = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, output
    assert f"resumed from model/checkpoints/ckpt-{last} (step {last})" in output
    assert f"trained to step {last + 5} (max_steps)" in output
    assert not list(checkpoints.glob(".staging-*"))


def test_cli_flags_reach_the_config(tmp_path, monkeypatch):
    import nmt.training
    from nmt.training import TrainResult

    seen = {}

    def fake_train(config, model_dir, **kwargs):
        seen["config"], seen["model_dir"] = config, model_dir
        seen["threads"] = kwargs.get("threads")
        return TrainResult(
            Path(model_dir), 7, 0, "max_steps", Path("m/checkpoints/ckpt-7"), 5, 12.5
        )

    monkeypatch.setattr(nmt.training, "train", fake_train)
    args = ["train", "--config", str(TINY), "--model-dir", "m", "--precision", "mixed_bfloat16"]
    result = CliRunner().invoke(
        cli, [*args, "--jit", "--set", "train.max_steps=7", "--threads", "1"]
    )
    assert result.exit_code == 0, result.output
    assert seen["threads"] == 1
    config = seen["config"]
    assert config.train.precision == "mixed_bfloat16" and config.train.jit is True
    assert config.train.max_steps == 7 and seen["model_dir"] == "m"
    assert "trained to step 7 (max_steps); last checkpoint m/checkpoints/ckpt-7" in result.output
    assert "best BLEU 12.50 at step 5" in result.output
