"""A tiny Seq2Seq with random weights, padded batches, and the step-by-step reference."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from nmt.constants import BOS_ID, EOS_ID
from nmt.model import Seq2Seq

V_SRC, V_TGT = 20, 23
TINY = dict(embedding_dim=8, units=16, encoder_layers=1, decoder_layers=1, dropout=0.0)


def make_model(seed=0, source_vocab_size=V_SRC, target_vocab_size=V_TGT, **overrides):
    kwargs = {**TINY, **overrides}
    model = Seq2Seq(source_vocab_size, target_vocab_size, **kwargs)
    model.build()
    randomize(model, seed)
    return model


def randomize(model, seed):
    """Random weights everywhere (biases too), so no gate or state can hide behind zeros."""
    rng = np.random.default_rng(seed)
    for variable in model.trainable_variables:
        variable.assign(rng.normal(scale=0.5, size=variable.shape).astype("float32"))


def batch(seed=0, source_lengths=(6, 3, 1), target_lengths=(5, 2, 4), vocab=(V_SRC, V_TGT)):
    """Padded ((source, target_in), target_out) like nmt.data: source ends with EOS."""
    rng = np.random.default_rng(seed)
    n, s, t = len(source_lengths), max(source_lengths), max(target_lengths)
    source = np.zeros((n, s), "int32")
    target_in = np.zeros((n, t), "int32")
    target_out = np.zeros((n, t), "int32")
    for i, (ls, lt) in enumerate(zip(source_lengths, target_lengths, strict=True)):
        source[i, : ls - 1] = rng.integers(4, vocab[0], ls - 1)
        source[i, ls - 1] = EOS_ID
        pieces = rng.integers(4, vocab[1], lt - 1)
        target_in[i, :lt] = [BOS_ID, *pieces]
        target_out[i, :lt] = [*pieces, EOS_ID]
    return source, target_in, target_out


def stepwise_logits(model, source, target_in, training=False):
    """The slow reference: encode once, then model.step() for every teacher-forced token."""
    memory, mask, state = model.encode(source, training=training)
    bundle = model.prepare_memory(memory, mask)
    logits = []
    for t in range(target_in.shape[1]):
        step_logits, state, attention = model.step(target_in[:, t], state, bundle, training)
        assert attention.shape == mask.shape
        logits.append(step_logits)
    return tf.stack(logits, axis=1)  # (B, T, V)
