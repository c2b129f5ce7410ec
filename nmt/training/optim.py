"""The learning-rate schedule and the optimizer of a training run."""

from __future__ import annotations

from nmt.config import TrainConfig
from nmt.errors import ConfigError


def learning_rate_at(step, factor, train: TrainConfig):
    """The learning rate of update number `step` (0-based); works on tensors and floats.

    With s = step + 1, w = warmup_steps, lr = learning_rate:
        warm(s) = min(1, s / w)                               (1 when w = 0)
        decay(s) = 1                                          none
                 = sqrt(max(w, 1) / max(s, w, 1))             rsqrt (1 during warm-up)
                 = decay_rate ** (max(0, s - decay_start) / decay_steps)   exponential
                 = factor                                     plateau (cut on dev metric)
        rate(s) = warm(s) * max(lr * decay(s), min_learning_rate)
    """
    import tensorflow as tf

    s = tf.cast(step, tf.float32) + 1.0
    w = float(train.warmup_steps)
    warm = tf.minimum(1.0, s / w) if w > 0 else tf.constant(1.0)
    if train.decay == "none":
        decay = tf.constant(1.0)
    elif train.decay == "rsqrt":
        decay = tf.sqrt(max(w, 1.0) / tf.maximum(s, max(w, 1.0)))
    elif train.decay == "exponential":
        exponent = tf.maximum(0.0, s - float(train.decay_start)) / float(train.decay_steps)
        decay = tf.pow(tf.constant(train.decay_rate, tf.float32), exponent)
    else:  # plateau
        decay = tf.cast(factor, tf.float32)
    rate = tf.maximum(train.learning_rate * decay, train.min_learning_rate)
    return warm * rate


def make_optimizer(train: TrainConfig, *, num_replicas: int = 1, loss_scaling: bool = False):
    """The Keras optimizer for `train` (clipping by global norm; wrapped for loss scaling).

    The train step gives the optimizer the replica-summed gradient divided by the number of
    replicas on every replica (the optimizer sums them again), so the clipping threshold is
    scaled by `num_replicas` to clip the summed gradient at `train.clip_norm`.
    """
    import keras

    clip = train.clip_norm * num_replicas if train.clip_norm > 0 else None
    common = {"learning_rate": train.learning_rate, "global_clipnorm": clip}
    if train.optimizer == "adam":
        optimizer = keras.optimizers.Adam(
            beta_1=train.adam_beta_1, beta_2=train.adam_beta_2, **common
        )
    elif train.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(
            weight_decay=train.weight_decay,
            beta_1=train.adam_beta_1,
            beta_2=train.adam_beta_2,
            **common,
        )
    elif train.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(**common)
    else:  # pragma: no cover - the config validates the choice
        raise ConfigError(f"train.optimizer: unknown {train.optimizer!r}")
    if loss_scaling:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
