"""The fused Adam update (nmt.training.optim): Keras's Adam / AdamW numbers, Keras's slots."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from nmt.config import TrainConfig
from nmt.training.optim import clip_to_global_norm, fused_adam_classes, make_optimizer

SHAPES = [(7, 5), (5,), (3, 4)]


def _run(optimizer, steps=6, sparse=False, clip=0.0):
    """Weights and optimizer variables after `steps` tf.function updates from fixed values;
    `clip`: the gradients clipped first as the train step clips them (`clip_to_global_norm`
    with the norm of the unscaled gradient under loss scaling)."""
    rng = np.random.default_rng(0)
    variables = [keras.Variable(rng.normal(size=s).astype("float32")) for s in SHAPES]
    grads = [[rng.normal(size=s).astype("float32") for s in SHAPES] for _ in range(steps)]
    optimizer.build(variables)  # as the trainer does (the loss scale exists from here on)

    @tf.function
    def update(gs):
        if sparse:  # the first gradient as IndexedSlices: Keras's own sparse update
            gs = [tf.IndexedSlices(gs[0][:2], tf.constant([1, 4]), tf.constant(SHAPES[0])), *gs[1:]]
        if clip:
            norm = tf.linalg.global_norm(gs)
            if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                norm = norm / optimizer.dynamic_scale
            gs = clip_to_global_norm(gs, norm, clip)
        optimizer.apply(gs, variables)

    for gs in grads:
        update([tf.constant(g) for g in gs])
    return [v.numpy() for v in variables], optimizer.variables


def _kind(variable):
    """'iteration', 'learning_rate', 'momentum' or 'velocity' from a slot's path."""
    return variable.path.rsplit("/", 1)[-1].rsplit("_", 1)[-1].replace("rate", "learning_rate")


@pytest.mark.parametrize(
    "kind, options",
    [
        ("adam", {}),
        ("adam", {"global_clipnorm": 1.0, "beta_1": 0.8, "beta_2": 0.95, "epsilon": 1e-4}),
        ("adamw", {"weight_decay": 0.1}),
    ],
)
def test_fused_update_equals_keras(kind, options):
    fused_adam, fused_adamw = fused_adam_classes()
    fused_cls, keras_cls = {
        "adam": (fused_adam, keras.optimizers.Adam),
        "adamw": (fused_adamw, keras.optimizers.AdamW),
    }[kind]
    fused = fused_cls(learning_rate=0.01, **options)
    assert isinstance(fused, keras_cls)
    weights, slots = _run(fused)
    ref_weights, ref_slots = _run(keras_cls(learning_rate=0.01, **options))
    for a, b in zip(weights, ref_weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # The same slot variables in the same order (checkpoints store them by position), under
    # Keras's names (up to the counters Keras appends to repeated names).
    assert fused.name == {"adam": "adam", "adamw": "adam_w"}[kind]  # as Keras names them
    assert [(_kind(v), tuple(v.shape)) for v in slots] == [
        (_kind(v), tuple(v.shape)) for v in ref_slots
    ]
    for a, b in zip(slots, ref_slots, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_sparse_gradients_and_amsgrad_take_the_keras_update():
    fused_adam, _ = fused_adam_classes()
    weights, _ = _run(fused_adam(learning_rate=0.01), sparse=True)
    ref, _ = _run(keras.optimizers.Adam(learning_rate=0.01), sparse=True)
    for a, b in zip(weights, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    weights, _ = _run(fused_adam(learning_rate=0.01, amsgrad=True))
    ref, _ = _run(keras.optimizers.Adam(learning_rate=0.01, amsgrad=True))
    for a, b in zip(weights, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_make_optimizer_gives_the_fused_classes_also_under_loss_scaling():
    fused_adam, fused_adamw = fused_adam_classes()
    assert type(make_optimizer(TrainConfig(optimizer="adam"))) is fused_adam
    assert type(make_optimizer(TrainConfig(optimizer="adamw"))) is fused_adamw
    scaled = make_optimizer(TrainConfig(optimizer="adam"), loss_scaling=True)
    assert type(scaled.inner_optimizer) is fused_adam
    # _run's gradients count as loss-scaled (by 2^15): their unscaled norms are about 1e-4,
    # so a clip_norm of 1e-5 clips every update.
    cfg = TrainConfig(optimizer="adam", clip_norm=1e-5)
    weights, _ = _run(scaled, clip=cfg.clip_norm)
    unclipped, _ = _run(make_optimizer(TrainConfig(optimizer="adam"), loss_scaling=True))
    assert not np.allclose(weights[0], unclipped[0], rtol=1e-4)  # the clipping acted
    inner = keras.optimizers.Adam(
        learning_rate=cfg.learning_rate,
        beta_1=cfg.adam_beta_1,
        beta_2=cfg.adam_beta_2,
        global_clipnorm=cfg.clip_norm,
    )
    ref, _ = _run(keras.optimizers.LossScaleOptimizer(inner))
    for a, b in zip(weights, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_clip_to_global_norm_equals_tensorflow_and_passes_non_finite_on():
    rng = np.random.default_rng(3)
    grads = [tf.constant(rng.normal(size=s).astype("float32")) for s in SHAPES]
    norm = tf.linalg.global_norm(grads)
    for clip in (0.5, float(norm) * 2):  # above and below the norm
        ours = clip_to_global_norm(grads, norm, clip)
        ref, _ = tf.clip_by_global_norm(grads, clip)
        for a, b in zip(ours, ref, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6)
    assert clip_to_global_norm(grads, norm, 0.0) is grads  # clip_norm 0: off
    for bad in (np.inf, np.nan):
        out = clip_to_global_norm(grads, tf.constant(bad, tf.float32), 1.0)
        assert all(np.isnan(g.numpy()).all() for g in out)
    halves = [tf.cast(g, tf.float16) for g in grads]
    assert clip_to_global_norm(halves, norm, 0.5)[0].dtype == tf.float16
