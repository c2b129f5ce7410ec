"""The doubly stochastic attention penalty (`train.coverage_loss`): its value against a numpy
reference (masks respected, 0 for an even spread, about T^2 for a collapse), and its gradient
through the decoder's training loops against the step-by-step reference under autodiff."""

import numpy as np
import pytest
import tensorflow as tf

from nmt.constants import PAD_ID
from nmt.layers.attention import coverage_penalty
from nmt.model import sequence_loss
from tests.helpers.seq2seq import batch, make_model


def reference(weights, memory_mask, target_mask):
    total = 0.0
    for w, m, t in zip(weights, memory_mask, target_mask, strict=True):
        received = w[t].sum(axis=0)[m]  # (S_b,)
        total += float(((received - t.sum() / m.sum()) ** 2).sum())
    return total


def masks(source_lengths=(5, 2, 1), target_lengths=(4, 3, 1), s=5, t=4):
    memory = np.arange(s)[None, :] < np.array(source_lengths)[:, None]  # (B, S)
    target = np.arange(t)[None, :] < np.array(target_lengths)[:, None]  # (B, T)
    return memory, target


def softmax_over(memory_mask, logits):
    logits = np.where(memory_mask[:, None, :], logits, -1e9)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype("float32")


def test_equals_the_reference_and_ignores_padding():
    memory, target = masks()
    rng = np.random.default_rng(0)
    weights = softmax_over(memory, rng.normal(size=(3, 4, 5)))
    got = float(coverage_penalty(weights, memory, target))
    assert got == pytest.approx(reference(weights, memory, target), rel=1e-5)
    assert got > 0.1
    # Weights at padded target rows do not count.
    noisy = weights.copy()
    noisy[~target] = rng.uniform(size=noisy[~target].shape)
    assert float(coverage_penalty(noisy, memory, target)) == pytest.approx(got, rel=1e-6)


def test_zero_for_an_even_spread_and_t_squared_for_a_collapse():
    memory, target = masks()
    even = softmax_over(memory, np.zeros((3, 4, 5)))
    assert float(coverage_penalty(even, memory, target)) == pytest.approx(0.0, abs=1e-9)
    collapsed = np.zeros((3, 4, 5), "float32")
    lengths = memory.sum(-1)
    for b, n in enumerate(lengths):
        collapsed[b, :, n - 1] = 1.0  # every target word on EOS
    got = float(coverage_penalty(collapsed, memory, target))
    # Sentence b: (T_b - T_b/S_b)^2 at EOS plus (S_b - 1) (T_b/S_b)^2 elsewhere.
    expected = sum(
        (t - t / s) ** 2 + (s - 1) * (t / s) ** 2
        for t, s in zip(target.sum(-1), lengths, strict=True)
    )
    assert got == pytest.approx(expected, rel=1e-6)
    assert got == pytest.approx(reference(collapsed, memory, target), rel=1e-6)


def stepwise(model, source, target_in):
    """Logits and attention of model.step() for every teacher-forced token."""
    memory, mask, state = model.encode(source, training=True)
    bundle = model.prepare_memory(memory, mask)
    logits, weights = [], []
    for t in range(target_in.shape[1]):
        step_logits, state, attention = model.step(target_in[:, t], state, bundle, True)
        logits.append(step_logits)
        weights.append(attention)
    return tf.stack(logits, axis=1), tf.stack(weights, axis=1)  # (B, T, V), (B, T, S)


@pytest.mark.parametrize(
    "case",
    [
        dict(input_feeding=True, attention="general"),
        dict(input_feeding=True, attention="bahdanau", bidirectional=True),
        dict(input_feeding=False, attention="general"),
    ],
    ids=lambda case: "-".join(f"{k}={v}" for k, v in case.items()),
)
def test_training_loops_carry_the_penalty_gradient_of_the_steps(case):
    """Cross-entropy + 0.5 x penalty through the model's training call (the input-feeding loop
    with its own matmul gradients, or the whole-sequence path) against step() under autodiff:
    the same objective and the same gradient for every weight, the attention's included."""
    model = make_model(seed=5, **case)
    source, target_in, target_out = batch(seed=5)

    def objective(outputs):
        logits, weights = outputs
        loss, count = sequence_loss(target_out, logits, label_smoothing=0.1)
        penalty = coverage_penalty(weights, source != PAD_ID, target_out != PAD_ID)
        return (loss + 0.5 * penalty) / count, penalty

    def gradients(fn):
        with tf.GradientTape() as tape:
            value, penalty = objective(fn())
        return value, penalty, tape.gradient(value, model.trainable_variables)

    value, penalty, fast = gradients(
        lambda: model((source, target_in), training=True, return_attention=True)
    )
    ref_value, _, slow = gradients(lambda: stepwise(model, source, target_in))
    assert float(penalty) > 0.01
    np.testing.assert_allclose(value, ref_value, rtol=1e-5)
    for variable, g_fast, g_slow in zip(model.trainable_variables, fast, slow, strict=True):
        g_fast, g_slow = tf.convert_to_tensor(g_fast), tf.convert_to_tensor(g_slow)
        scale = float(tf.reduce_max(tf.abs(g_slow))) + 1e-6
        np.testing.assert_allclose(g_fast / scale, g_slow / scale, atol=2e-5, err_msg=variable.path)
    attention_grads = [
        g for v, g in zip(model.trainable_variables, fast, strict=True) if "attention" in v.path
    ]
    assert attention_grads and max(float(tf.reduce_max(tf.abs(g))) for g in attention_grads) > 0
