"""The learning-rate schedule and the optimizer of a training run."""

from __future__ import annotations

import re

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


def make_optimizer(train: TrainConfig, *, loss_scaling: bool = False):
    """The Keras optimizer for `train` (wrapped for loss scaling), without clipping.

    `train.clip_norm` is applied by the train step (`clip_to_global_norm`) with the global norm
    it computes for the log, once, of the replica-summed gradient: Keras's `global_clipnorm`
    would compute the norm a second time, and under a distribution strategy it clips each
    replica's share before the optimizer sums them, which is not the summed gradient's norm.
    """
    import keras

    common = {"learning_rate": train.learning_rate}
    adam, adamw = fused_adam_classes()
    if train.optimizer == "adam":
        optimizer = adam(beta_1=train.adam_beta_1, beta_2=train.adam_beta_2, **common)
    elif train.optimizer == "adamw":
        optimizer = adamw(
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


def clip_to_global_norm(grads, norm, clip_norm: float):
    """`grads` times clip_norm / max(norm, clip_norm): the gradient clipped to global norm
    `clip_norm` (unchanged at or below it; `clip_norm` 0: off), as `tf.clip_by_global_norm` and
    Keras's `global_clipnorm` do, with the norm `norm` (float32 ()) computed by the caller.

    `norm` may be the norm of the unscaled gradient while `grads` are loss-scaled (the scale
    cancels in the factor). A non-finite norm makes every gradient NaN, as in Keras, so that
    the loss-scale optimizer skips the step and a float32 run sees a non-finite update.
    """
    if not clip_norm:
        return grads
    import tensorflow as tf

    clip = tf.constant(clip_norm, tf.float32)
    factor = clip / tf.maximum(norm, clip) + (norm - norm)  # () NaN when norm is not finite
    return [g * tf.cast(factor, g.dtype) for g in grads]


_FUSED = {}


def fused_adam_classes():
    """`(FusedAdam, FusedAdamW)`: `keras.optimizers.Adam` / `AdamW` whose dense update is
    TensorFlow's fused `ResourceApplyAdam` kernel.

    The kernel computes Keras's own equations, with t = iterations + 1:

        alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
        m += (g - m) * (1 - beta_1)      v += (g^2 - v) * (1 - beta_2)
        var -= alpha * m / (sqrt(v) + epsilon)

    in one op per variable instead of about ten elementwise passes over it (the
    update of a 12M-parameter model took half the time on CPU; BENCHMARKS.md section 7). The
    slot variables, their names and so the checkpoints are Adam's own; AdamW's decoupled weight
    decay runs before, as in Keras. amsgrad and sparse (IndexedSlices) gradients take Keras's
    update.
    """
    import keras

    if not _FUSED:
        for base in (keras.optimizers.Adam, keras.optimizers.AdamW):
            _FUSED[base] = _fused(base)
    return _FUSED[keras.optimizers.Adam], _FUSED[keras.optimizers.AdamW]


def _fused(base):
    """`base` (Adam or AdamW) with the fused dense update (see `fused_adam_classes`)."""
    import keras
    import tensorflow as tf

    def handle(variable):
        return (variable.value if isinstance(variable, keras.Variable) else variable).handle

    class Fused(base):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("name", re.sub(r"(?<!^)(?=[A-Z])", "_", base.__name__).lower())
            super().__init__(*args, **kwargs)

        def update_step(self, gradient, variable, learning_rate):
            if self.amsgrad or isinstance(gradient, tf.IndexedSlices):
                return super().update_step(gradient, variable, learning_rate)
            dtype = variable.dtype
            index = self._get_variable_index(variable)
            t = tf.cast(self.iterations + 1, dtype)
            beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
            tf.raw_ops.ResourceApplyAdam(
                var=handle(variable),
                m=handle(self._momentums[index]),
                v=handle(self._velocities[index]),
                beta1_power=tf.pow(beta_1, t),
                beta2_power=tf.pow(beta_2, t),
                lr=tf.cast(learning_rate, dtype),
                beta1=beta_1,
                beta2=beta_2,
                epsilon=tf.cast(self.epsilon, dtype),
                grad=tf.cast(gradient, dtype),
            )

    Fused.__name__ = Fused.__qualname__ = f"Fused{base.__name__}"
    Fused.__doc__ = f"{base.__name__} with TensorFlow's fused ResourceApplyAdam update."
    return Fused
