"""Training loop: schedules, optimizer, model-dir rules, exact resume, precision, failures."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from nmt import checkpoints as ckpt
from nmt import modeldir
from nmt.checkpoint_files import list_checkpoints, write_checkpoint
from nmt.config import TrainConfig, load_config
from nmt.errors import CheckpointError, ConfigError, DataError, NmtError
from nmt.version import __version__
from tests.helpers.corpus import Lines, tiny_config

# --------------------------------------------------------------------------------------------
# Pure helpers


def _lr(step, train, factor=1.0):
    from nmt.training import learning_rate_at

    return float(learning_rate_at(step, factor, train))


def test_learning_rate_warmup_then_rsqrt():
    train = TrainConfig(learning_rate=1e-3, warmup_steps=100, decay="rsqrt")
    assert _lr(0, train) == pytest.approx(1e-3 * 1 / 100)
    assert _lr(49, train) == pytest.approx(1e-3 * 50 / 100)
    assert _lr(99, train) == pytest.approx(1e-3)
    assert _lr(399, train) == pytest.approx(1e-3 * math.sqrt(100 / 400))


def test_learning_rate_exponential_and_min():
    train = TrainConfig(
        learning_rate=1.0,
        decay="exponential",
        decay_rate=0.5,
        decay_steps=10,
        decay_start=20,
        min_learning_rate=0.1,
    )
    assert _lr(9, train) == pytest.approx(1.0)
    assert _lr(29, train) == pytest.approx(0.5)  # s = 30: one period after decay_start
    assert _lr(34, train) == pytest.approx(0.5**1.5)
    assert _lr(1000, train) == pytest.approx(0.1)  # clamped at min_learning_rate


def test_learning_rate_plateau_uses_factor_and_none_is_constant():
    assert _lr(500, TrainConfig(learning_rate=0.2, decay="plateau"), factor=0.25) == (
        pytest.approx(0.05)
    )
    assert _lr(12345, TrainConfig(learning_rate=0.2)) == pytest.approx(0.2)


def test_make_optimizer_leaves_clipping_to_the_train_step_and_wraps_loss_scaling():
    import keras

    from nmt.training import make_optimizer

    opt = make_optimizer(TrainConfig(optimizer="adamw", clip_norm=2.0))
    assert isinstance(opt, keras.optimizers.AdamW) and opt.global_clipnorm is None
    scaled = make_optimizer(TrainConfig(optimizer="sgd"), loss_scaling=True)
    assert isinstance(scaled, keras.optimizers.LossScaleOptimizer)
    assert isinstance(scaled.inner_optimizer, keras.optimizers.SGD)
    assert scaled.inner_optimizer.global_clipnorm is None


def test_resolve_paths_makes_data_paths_absolute(tmp_path):
    from nmt.training import resolve_paths

    config = load_config(None, ["data.train_source=a/x.src", "data.train_target=/abs/x.tgt"])
    resolved = resolve_paths(config, cwd=tmp_path)
    assert resolved.data.train_source == str(tmp_path / "a" / "x.src")
    assert resolved.data.train_target == "/abs/x.tgt"
    assert resolved.data.dev_source is None and resolved.vocab.path is None


def test_resolve_precision():
    from nmt.precision import resolve_precision

    assert resolve_precision("auto", gpu_visible=True) == "mixed_float16"
    assert resolve_precision("auto", gpu_visible=False, cpu_bf16=False) == "float32"
    assert resolve_precision("auto", gpu_visible=False, cpu_bf16=True) == "mixed_bfloat16"
    assert resolve_precision("auto", gpu_visible=True, cpu_bf16=True) == "mixed_float16"
    assert resolve_precision("mixed_bfloat16", gpu_visible=True) == "mixed_bfloat16"
    assert resolve_precision("float32", gpu_visible=False, cpu_bf16=True) == "float32"


def test_cpu_description_names_the_model_and_the_matrix_flags(tmp_path):
    from nmt.precision import cpu_description, cpu_info

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Some Xeon\nflags\t\t: fpu avx2 fma amx_bf16 sse\n")
    assert cpu_info(cpuinfo) == ("Some Xeon", {"fpu", "avx2", "fma", "amx_bf16", "sse"})
    assert cpu_description(cpuinfo) == "Some Xeon; flags: avx2 fma amx_bf16"
    assert cpu_description(tmp_path / "missing").endswith("; flags: none of AVX2+")


def test_set_threads_checks_its_value_and_the_tensorflow_state():
    import tensorflow as tf

    from nmt.errors import ConfigError, NmtError
    from nmt.training import set_threads

    for bad in (0, -1, True, 1.5):
        with pytest.raises(ConfigError, match="--threads must be a positive integer"):
            set_threads(bad)
    tf.constant(1.0) + 1.0  # TensorFlow has started in this process
    if tf.config.threading.get_intra_op_parallelism_threads() != 3:
        with pytest.raises(NmtError, match="^--threads: "):
            set_threads(3)


@pytest.mark.parametrize(
    "flags, expected",
    [
        ("fpu avx2 fma", []),
        ("fpu avx512f avx512_bf16 avx512_fp16", ["avx512_bf16"]),
        ("fpu amx_tile amx_bf16 avx512_bf16", ["avx512_bf16", "amx_bf16"]),
    ],
)
def test_cpu_bf16_flags_and_the_reason_logged(tmp_path, flags, expected):
    from nmt.precision import cpu_bf16_flags, explain_precision

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n")
    assert cpu_bf16_flags(cpuinfo) == expected
    assert cpu_bf16_flags(tmp_path / "missing") == []
    policy, why = explain_precision("auto", gpu_visible=False, cpu_bf16=bool(expected))
    assert policy == ("mixed_bfloat16" if expected else "float32")
    assert why.startswith("auto: this CPU has")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ([], "data.train_source"),
        (["data.train_source=a", "data.train_target=b", "train.decay=plateau"], "train.decay"),
        (["data.train_source=a", "data.train_target=b", "train.early_stopping=2"], "early"),
        (["data.train_source=a", "data.train_target=b", "train.decay_rate=1.5"], "decay_rate"),
    ],
)
def test_check_train_config_names_the_key(overrides, message):
    from nmt.training import check_train_config

    with pytest.raises(ConfigError, match=message):
        check_train_config(load_config(None, overrides))


def test_incompatible_and_data_changes():
    from nmt.training import data_changes, incompatible_changes

    a = load_config(None)
    b = load_config(None, ["model.units=64", "vocab.path=/elsewhere", "data.batch_tokens=512"])
    assert incompatible_changes(a, b) == ["model.units: 512 -> 64"]
    assert data_changes(a, b) == ["data.batch_tokens: 4096 -> 512"]
    assert data_changes(a, dataclasses.replace(a)) == []


# --------------------------------------------------------------------------------------------
# Training runs (tiny model, a few steps each)


def _events(directory: Path) -> dict[str, list[tuple[int, float]]]:
    import tensorflow as tf

    found: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(directory.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                number = float(tf.make_ndarray(value.tensor))
                found.setdefault(value.tag, []).append((event.step, number))
    return found


STRAIGHT = [
    "model.dropout=0.3",  # the dropout RNG states must be resumed too
    "data.shuffle_buffer=8",  # the shuffle buffer's contents are part of the iterator state
    "train.deterministic=true",
    "train.max_steps=8",
    "train.checkpoint_every=4",
    "train.eval_every=4",
    "train.log_every=2",
    "train.eval_bleu=false",
]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """One 8-step run (checkpoints at 4 and 8) shared by the tests below."""
    from nmt.training import train

    root = tmp_path_factory.mktemp("straight")
    log = Lines()
    result = train(tiny_config(root / "corpus", *STRAIGHT), root / "model", log=log)
    return root / "model", result, log


def test_train_writes_a_model_directory(straight):
    model_dir, result, log = straight
    assert result.step == 8 and result.stop_reason == "max_steps" and len(result.losses) == 8
    assert all(math.isfinite(x) for x in result.losses)
    assert (model_dir / "VERSION").read_text().strip() == __version__
    assert (model_dir / "joint.model").exists()
    assert modeldir.read_config(model_dir).data.train_source.startswith("/")  # absolute
    names = [p.name for p in list_checkpoints(model_dir / "checkpoints")]
    assert names == ["ckpt-4", "ckpt-8"]
    assert list_checkpoints(model_dir / "best")  # the first evaluation is always a gain
    state = json.loads((model_dir / "train_state.json").read_text())
    assert state["step"] == 8 and [e["step"] for e in state["evaluations"]] == [4, 8]
    seconds = [e["train_seconds"] for e in state["evaluations"]]
    assert 0 < seconds[0] < seconds[1] <= state["train_seconds"]  # cumulative wall time
    text = log.text()
    assert "tok/s" in text and "eta" in text and "dropped 0 too long" in text
    train_events, dev_events = _events(model_dir / "logs/train"), _events(model_dir / "logs/dev")
    assert [s for s, _ in train_events["loss"]] == [2, 4, 6, 8]
    assert train_events["loss"][-1][1] == pytest.approx(np.mean(result.losses[6:]), rel=1e-5)
    assert {"learning_rate", "tokens_per_second", "grad_norm"} <= set(train_events)
    assert [s for s, _ in dev_events["perplexity"]] == [4, 8]
    assert ckpt.load_model(model_dir, "last").step == 8
    from tensorflow.python.framework import config as tf_config

    assert not tf_config.is_op_determinism_enabled()  # train.deterministic is undone


def test_resume_after_corrupt_newest_checkpoint_is_exact(straight, tmp_path):
    """Resuming from step 4 (ckpt-8 corrupted) repeats steps 5-8 of the straight run exactly."""
    from nmt.training import train

    model_dir, result, _ = straight
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    for name in ("best", "train_state.json"):  # as they were at step 4 is irrelevant here
        assert (copy / name).exists()
    data = copy / "checkpoints" / "ckpt-8.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    log = Lines()
    config = modeldir.read_config(model_dir)
    resumed = train(config, copy, log=log)
    assert "ckpt-8: corrupt or truncated checkpoint" in log.text()
    assert "trying the previous one" in log.text()
    assert resumed.start_step == 4 and resumed.step == 8
    before = json.loads((model_dir / "train_state.json").read_text())["train_seconds"]
    after = json.loads((copy / "train_state.json").read_text())
    # the wall-time record continues from the saved figure instead of restarting at zero
    assert after["evaluations"][-1]["train_seconds"] > before
    np.testing.assert_allclose(resumed.losses, result.losses[4:], rtol=1e-6)
    a = ckpt.load_model(model_dir, "last").model.get_weights()
    b = ckpt.load_model(copy, "last").model.get_weights()
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


def test_existing_directories_are_checked(straight, tmp_path):
    from nmt.training import train

    model_dir, _, _ = straight
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not an nmt model directory"):
        train(tiny_config(tmp_path / "c"), other, log=Lines())
    changed = tiny_config(tmp_path / "c", *STRAIGHT, "model.units=24")
    with pytest.raises(CheckpointError, match=r"another config \(model.units: 16 -> 24\)"):
        train(changed, model_dir, log=Lines())
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    (copy / "VERSION").write_text("7.0.0\n")
    with pytest.raises(CheckpointError, match="written by nmt '7.0.0'"):
        train(modeldir.read_config(model_dir), copy, log=Lines())


def test_max_minutes_then_already_trained(straight, tmp_path):
    from nmt.training import train

    model_dir, _, _ = straight
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    config = modeldir.read_config(model_dir)
    config.train.max_steps, config.train.max_minutes = 1000, 1e-4  # 6 ms: one step
    result = train(config, copy, log=Lines())
    assert result.stop_reason == "max_minutes" and (result.start_step, result.step) == (8, 9)
    assert result.last_checkpoint == copy / "checkpoints" / "ckpt-9"
    config.train.max_steps, config.train.max_minutes = 9, None
    log = Lines()
    result = train(config, copy, log=log)
    assert result.stop_reason == "already_done" and result.step == 9 and result.losses == []
    assert "already trained to step 9" in log.text()


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_with_float32_variables(tmp_path, precision):
    import keras
    import tensorflow as tf

    from nmt.training import _Trainer, train

    built = []
    original = _Trainer.build

    def spy(self, vocab, precision):
        original(self, vocab, precision)
        built.append(self)

    before = keras.mixed_precision.global_policy().name
    config = tiny_config(
        tmp_path / "c", "train.max_steps=3", f"train.precision={precision}", dev=False
    )
    try:
        _Trainer.build = spy
        result = train(config, tmp_path / "m", log=Lines())
        if precision == "mixed_float16":  # the loss scale is checkpointed and resumed
            built[0].optimizer.dynamic_scale.assign(1024.0)
            write_checkpoint(built[0].checkpoint, tmp_path / "m" / "checkpoints", 3)
            config.train.max_steps = 4
            resumed = train(config, tmp_path / "m", log=Lines())
            assert resumed.start_step == 3 and math.isfinite(resumed.losses[0])
            assert float(built[1].optimizer.dynamic_scale.numpy()) == 1024.0
    finally:
        _Trainer.build = original
    trainer = built[0]
    assert result.precision == precision and all(math.isfinite(x) for x in result.losses)
    assert all(v.dtype == tf.float32 for v in trainer.model.trainable_variables)
    assert trainer.model.dtype_policy.compute_dtype == precision.split("_")[1]
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer) == (
        precision == "mixed_float16"
    )
    assert keras.mixed_precision.global_policy().name == before  # restored


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path):
    from nmt.training import train

    config = tiny_config(
        tmp_path / "c",
        "train.learning_rate=3.0e+38",  # the first update blows the weights up
        "train.clip_norm=0",
        "train.max_steps=10",
        "train.checkpoint_every=1",
        dev=False,
    )
    with pytest.raises(NmtError, match="NaN or infinite by step 2.*ckpt-1"):
        train(config, tmp_path / "m", log=Lines())
    names = [p.name for p in list_checkpoints(tmp_path / "m" / "checkpoints")]
    assert names == ["ckpt-1"]


def test_failure_before_first_checkpoint_leaves_no_model_dir(tmp_path):
    from nmt.training import train

    config = tiny_config(tmp_path / "c", "vocab.size=5000")  # more pieces than the data has
    with pytest.raises(DataError, match="vocab.size 5000 is too large"):
        train(config, tmp_path / "m", log=Lines())
    assert not (tmp_path / "m").exists()
    assert not list(tmp_path.glob(".m.*"))  # no staging directory left either


def test_stale_setup_without_checkpoint_is_redone(tmp_path):
    """A run killed before its first checkpoint does not block a re-run with a new config."""
    from nmt.training import prepare_model_dir

    first = tiny_config(tmp_path / "c")
    prepare_model_dir(first, tmp_path / "m", log=Lines())
    second = tiny_config(tmp_path / "c", "vocab.seed=99")
    log = Lines()
    vocab, created, saved = prepare_model_dir(second, tmp_path / "m", log=log)
    assert created and saved is None and vocab.source_size == 16
    assert modeldir.read_config(tmp_path / "m").vocab.seed == 99
    assert "holds no checkpoint yet" in log.text()


def test_early_stopping_and_plateau_decay(tmp_path):
    from nmt.training import train

    config = tiny_config(
        tmp_path / "c",
        "train.learning_rate=1.0e-30",  # updates vanish below float32 resolution: no gain
        "train.eval_bleu=false",
        "train.max_steps=100",
        "train.eval_every=2",
        "train.early_stopping=3",
        "train.decay=plateau",
        "train.plateau_patience=1",
        "train.decay_rate=0.5",
        "train.checkpoint_every=100",
    )
    result = train(config, tmp_path / "m", log=Lines())
    assert result.stop_reason == "early_stopping" and result.step == 8
    assert [e["best"] for e in result.evaluations] == [True, False, False, False]
    assert result.best_step == 2
    state = modeldir.read_train_state(tmp_path / "m")
    assert state["learning_rate_factor"] == pytest.approx(0.125)
    assert [p.name for p in list_checkpoints(tmp_path / "m" / "best")] == ["ckpt-2"]
    assert [p.name for p in list_checkpoints(tmp_path / "m" / "checkpoints")] == ["ckpt-8"]
