"""mixed_float16 training on CPU (tiny shapes): dynamic loss scaling in the `nmt train` step
(an overflow skips the update and halves the scale, a run of finite steps doubles it), and a
model trained in float16 exports and translates in float32 like its checkpoint does.

float16 arithmetic is emulated on a CPU (slow), so everything here is tiny. The same checks on
a GPU are in tests/unit/test_gpu.py.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest

from tests.helpers.corpus import Lines, tiny_config


@contextlib.contextmanager
def _policy(name: str):
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _trainer(tmp_path, precision: str):
    """The `nmt train` step of configs/tiny.yaml in `precision` (a `_Trainer`, not run)."""
    import tensorflow as tf

    from nmt.training import Cluster, _Trainer
    from nmt.vocab import train_vocab

    config = tiny_config(tmp_path / "c", f"train.precision={precision}", dev=False)
    src, tgt = config.data.train_source, config.data.train_target
    vocab = train_vocab(config.vocab, [src], [tgt], tmp_path / "vocab")
    trainer = _Trainer(config, tmp_path / "m", Cluster(tf.distribute.get_strategy()), Lines())
    with _policy(precision):
        trainer.build(vocab, precision)
    return trainer


@pytest.fixture(scope="module")
def float16_trainer(tmp_path_factory):
    return _trainer(tmp_path_factory.mktemp("fp16"), "mixed_float16")


def _step(trainer):
    (source, target_in), target_out = next(trainer.iterator)
    loss, _, _, norm = trainer.train_step(source, target_in, target_out)
    return float(loss), float(norm)


def test_float16_step_computes_in_float16_with_float32_variables(float16_trainer):
    import tensorflow as tf

    t = float16_trainer
    assert t.loss_scaling and t.model.compute_dtype == "float16"
    assert all(v.dtype == tf.float32 for v in t.model.trainable_variables)
    loss, norm = _step(t)
    assert math.isfinite(loss) and math.isfinite(norm) and norm > 0


def test_overflow_skips_the_update_and_halves_the_loss_scale(float16_trainer):
    """A loss scale of 2^40 makes the float16 gradients overflow: the step changes no weight
    and no optimizer slot, reports a finite loss and halves the scale (Keras's dynamic loss
    scaling), which `nmt train` logs and checkpoints."""
    t = float16_trainer
    inner = t.optimizer.inner_optimizer
    t.optimizer.dynamic_scale.assign(2.0**40)
    t.optimizer.step_counter.assign(5)
    weights = [w.numpy() for w in t.model.trainable_variables]
    slots = [v.numpy() for v in inner.variables]
    loss, norm = _step(t)
    assert math.isfinite(loss) and not math.isfinite(norm)  # the gradient overflowed
    assert float(t.optimizer.dynamic_scale.numpy()) == 2.0**39
    assert int(t.optimizer.step_counter.numpy()) == 0
    for before, v in zip(weights, t.model.trainable_variables, strict=True):
        np.testing.assert_array_equal(before, v.numpy())
    for before, v in zip(slots, inner.variables, strict=True):
        np.testing.assert_array_equal(before, v.numpy())


def test_finite_steps_update_and_grow_the_loss_scale(float16_trainer):
    """With a small scale the step applies the unscaled gradient; after dynamic_growth_steps
    finite steps in a row the scale doubles."""
    t = float16_trainer
    growth = t.optimizer.dynamic_growth_steps
    t.optimizer.dynamic_scale.assign(4.0)
    t.optimizer.step_counter.assign(growth - 2)
    iterations = int(t.optimizer.inner_optimizer.iterations.numpy())
    weights = [w.numpy() for w in t.model.trainable_variables]
    _, norm = _step(t)
    assert math.isfinite(norm)
    assert float(t.optimizer.dynamic_scale.numpy()) == 4.0
    assert int(t.optimizer.step_counter.numpy()) == growth - 1
    _step(t)
    assert float(t.optimizer.dynamic_scale.numpy()) == 8.0
    assert int(t.optimizer.step_counter.numpy()) == 0
    assert int(t.optimizer.inner_optimizer.iterations.numpy()) == iterations + 2
    changed = [
        not np.array_equal(b, v.numpy())
        for b, v in zip(weights, t.model.trainable_variables, strict=True)
    ]
    assert any(changed)


def test_float16_gradient_matches_float32_unscaled(tmp_path, float16_trainer):
    """The gradient norm the float16 step reports is the true (unscaled) one: within float16
    rounding of the float32 step's on the same batch and weights."""
    t16 = float16_trainer
    t32 = _trainer(tmp_path, "float32")
    t32.model.set_weights(t16.model.get_weights())
    t16.optimizer.dynamic_scale.assign(2.0**12)
    (source, target_in), target_out = next(t32.iterator)
    loss16, _, _, norm16 = t16.train_step(source, target_in, target_out)
    loss32, _, _, norm32 = t32.train_step(source, target_in, target_out)
    assert float(loss16) == pytest.approx(float(loss32), rel=1e-2)
    assert float(norm16) == pytest.approx(float(norm32), rel=3e-2)


def test_float16_trained_model_exports_and_translates_like_its_checkpoint(tmp_path):
    """A model trained in mixed_float16 (checkpoint and all) loads in float32; its float32
    export translates as the checkpoint does in the library, within float32 rounding."""
    import tensorflow as tf

    from nmt.checkpoints import load_model
    from nmt.constants import SERVING_SIGNATURE
    from nmt.export import export_model, load_export
    from nmt.training import train
    from nmt.translator import Translator

    config = tiny_config(
        tmp_path / "c", "train.max_steps=4", "train.precision=mixed_float16", dev=False
    )
    result = train(config, tmp_path / "m", log=Lines())
    assert result.precision == "mixed_float16" and all(map(math.isfinite, result.losses))
    loaded = load_model(tmp_path / "m", "last")
    assert loaded.model.compute_dtype == "float32" and loaded.step == 4
    lines = ["1 2 3", "4 5 6 7", "9", "8 8 0 1 2 3 4"]
    translator = Translator(loaded.model, loaded.vocab, loaded.config.decode, warn=lambda m: 0)
    expected = [h[0] for h in translator.translate_hypotheses(lines)]
    version = export_model(tmp_path / "m", tmp_path / "export", checkpoint="last")
    out = load_export(version).signatures[SERVING_SIGNATURE](text=tf.constant(lines))
    texts = [t.decode("utf-8") for t in out["translation"].numpy().tolist()]
    assert texts == [h.text for h in expected]
    np.testing.assert_allclose(out["score"].numpy(), [h.score for h in expected], atol=1e-4)
