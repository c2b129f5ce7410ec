"""Distributed training on CPU: two logical devices (MirroredStrategy) and two worker
processes on 127.0.0.1 (MultiWorkerMirroredStrategy). Both run in subprocesses because
device and cluster set-up must happen before TensorFlow initialises."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from nmt import checkpoint_files, modeldir
from nmt import checkpoints as ckpt
from tests.helpers.corpus import TINY, Lines, tiny_config, write_corpus

REPO = Path(__file__).resolve().parents[2]

MIRRORED = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {repo!r})
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from pathlib import Path
    from tests.helpers.corpus import Lines, tiny_config
    from nmt.training import train
    root = Path({root!r})
    # train.clip_norm 0.05 is below every step's gradient norm, so clipping acts on each
    # update: the mirrored run must clip the replica-summed gradient as one device does.
    common = ["train.max_steps=4", "train.checkpoint_every=4", "train.log_every=1",
              "model.dropout=0.0", "train.clip_norm=0.05"]
    # data.batch_tokens is per replica: both runs see the same global batches of 128 tokens.
    single = train(tiny_config(root / "c", *common, "data.batch_tokens=128",
                               "train.eval_every=4"),
                   root / "single", log=Lines())
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    # Validation (dev loss + greedy BLEU) runs on the mirrored model too; it trains nothing.
    mirrored = train(tiny_config(root / "c", *common, "data.batch_tokens=64",
                                 "train.eval_every=4"),
                     root / "mirrored", strategy=strategy, log=Lines())
    # mixed_float16 with dynamic loss scaling on the same two replicas.
    half = train(tiny_config(root / "c", *common, "data.batch_tokens=64",
                             "train.precision=mixed_float16", dev=False),
                 root / "half", strategy=strategy, log=Lines())
    # SGD's update is proportional to the clipped gradient (Adam's hardly changes when every
    # step's gradient is scaled alike), so a wrong threshold shows in the losses at once.
    sgd = ["train.optimizer=sgd", "train.learning_rate=0.5", "train.warmup_steps=0"]
    single_sgd = train(tiny_config(root / "c", *common, *sgd, "data.batch_tokens=128",
                                   dev=False), root / "single_sgd", log=Lines())
    mirrored_sgd = train(tiny_config(root / "c", *common, *sgd, "data.batch_tokens=64",
                                     dev=False), root / "mirrored_sgd", strategy=strategy,
                         log=Lines())
    print(json.dumps({{"single": single.losses, "mirrored": mirrored.losses,
                      "single_sgd": single_sgd.losses, "mirrored_sgd": mirrored_sgd.losses,
                      "replicas": [single.num_replicas, mirrored.num_replicas],
                      "evaluations": mirrored.evaluations,
                      "single_evaluations": single.evaluations, "half": half.losses,
                      "half_precision": [half.precision, half.num_replicas]}}))
    """
)


def _env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}


def test_mirrored_two_devices_matches_single_device(tmp_path):
    script = MIRRORED.format(repo=str(REPO), root=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == [1, 2]
    [evaluation] = result["evaluations"]
    [reference] = result["single_evaluations"]  # the same validation on one device
    assert evaluation["step"] == reference["step"] == 4
    assert evaluation["bleu"] == pytest.approx(reference["bleu"], abs=1e-6)
    assert np.isfinite(evaluation["dev_loss"])
    assert evaluation["dev_loss"] == pytest.approx(reference["dev_loss"], rel=1e-4)
    np.testing.assert_allclose(result["mirrored"], result["single"], rtol=1e-5)
    np.testing.assert_allclose(result["mirrored_sgd"], result["single_sgd"], rtol=1e-5)
    assert result["single_sgd"][-1] < result["single_sgd"][0]  # SGD trains
    assert result["half_precision"] == ["mixed_float16", 2]
    np.testing.assert_allclose(result["half"], result["single"], rtol=1e-2)
    a = ckpt.load_model(tmp_path / "single", "last").model.get_weights()
    b = ckpt.load_model(tmp_path / "mirrored", "last").model.get_weights()
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_workers_train_together_and_chief_checkpoint_resumes(tmp_path):
    from nmt.training import train

    src, tgt = write_corpus(tmp_path / "c")
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    args = ["train", "--config", str(TINY), "--model-dir", str(tmp_path / "model")]
    for pair in (
        f"data.train_source={src}",
        f"data.train_target={tgt}",
        "train.max_steps=4",
        "train.checkpoint_every=2",
        "train.log_every=1",
    ):
        args += ["--set", pair]
    procs = []
    for index in range(2):
        env = {
            **_env(),
            "TF_CONFIG": json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}}
            ),
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", "from nmt.cli import cli; cli()", *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=400)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, output[-3000:]
        assert "2 replica(s) on 2 workers" in output
        assert "trained to step 4 (max_steps)" in output
    # The losses are all-reduced, so both workers log the same numbers.
    pattern = r"step \d+/4 loss \S+ lr \S+ gnorm \S+"
    assert len(re.findall(pattern, outputs[0])) == 4
    assert re.findall(pattern, outputs[0]) == re.findall(pattern, outputs[1])
    model_dir = tmp_path / "model"
    names = [p.name for p in checkpoint_files.list_checkpoints(model_dir / "checkpoints")]
    assert names == ["ckpt-2", "ckpt-4"]
    assert modeldir.read_train_state(model_dir)["replicas"] == 2
    # One process resumes the chief's checkpoint (the data position restarts: the global
    # batch of one replica differs from that of two).
    log = Lines()
    config = tiny_config(tmp_path / "c", "train.max_steps=6", "train.log_every=1", dev=False)
    result = train(config, model_dir, log=log)
    assert result.start_step == 4 and result.step == 6
    assert "replicas: 2 -> 1" in log.text()
