"""Decoding options of the searches (nmt/search.py): a forced target prefix and sampling.

Small graph pieces that `search.greedy_search` and `search.beam_search` call inside their one
`tf.while_loop`; the conventions (what is forced, what the scores hold) are in nmt/search.py's
module docstring.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import tensorflow as tf

_NEG_INF = float("-inf")


def force_prefix(
    log_probs: tf.Tensor, step: tf.Tensor, prefix_columns: tf.Tensor, prefix_lengths: tf.Tensor
) -> tf.Tensor:
    """Keep only the prefix's column in rows still inside their prefix: float (N, V) -> (N, V).

    prefix_columns int32 (N, P + 1) (columns of the log-probabilities, one spare column at the
    end), prefix_lengths int32 (N,) <= P. Row n is forced while step < prefix_lengths[n]: its
    column prefix_columns[n, step] keeps its value, every other column becomes -inf.
    """
    width = tf.shape(prefix_columns)[1]
    wanted = tf.gather(prefix_columns, tf.minimum(step, width - 1), axis=1)  # (N,)
    forced = step < prefix_lengths  # (N,)
    other = tf.not_equal(tf.range(tf.shape(log_probs)[1])[None, :], wanted[:, None])  # (N, V)
    return tf.where(forced[:, None] & other, _NEG_INF, log_probs)  # (N, V)


def prefix_columns(prefix_ids: Any, prefix_lengths: Any, vocab_ids: Any, batch: tf.Tensor):
    """(columns int32 (B, P + 1), lengths int32 (B,)) of a prefix, or None without one.

    With a shortlist the prefix's ids are mapped to their columns; each must be one of
    vocab_ids (an assertion in the graph).
    """
    if prefix_ids is None:
        return None
    ids = tf.ensure_shape(tf.cast(prefix_ids, tf.int32), [None, None])  # (B, P)
    lengths = tf.ensure_shape(tf.reshape(tf.cast(prefix_lengths, tf.int32), [-1]), [None])
    checks = [
        tf.debugging.assert_equal(tf.shape(ids)[0], batch, message="prefix_ids needs B rows"),
        tf.debugging.assert_less_equal(
            lengths, tf.shape(ids)[1], message="prefix_lengths exceeds the width of prefix_ids"
        ),
    ]
    with tf.control_dependencies(checks):
        ids = tf.identity(ids)
    if vocab_ids is not None:
        columns = tf.searchsorted(vocab_ids, ids, side="left")  # (B, P)
        columns = tf.minimum(columns, tf.shape(vocab_ids)[0] - 1)
        inside = tf.range(tf.shape(ids)[1])[None, :] < lengths[:, None]  # (B, P)
        found = tf.equal(tf.gather(vocab_ids, columns), ids) | ~inside
        check = tf.debugging.assert_equal(
            tf.reduce_all(found), True, message="the shortlist (vocab_ids) must hold the prefix"
        )
        with tf.control_dependencies([check]):
            ids = tf.identity(columns)
    return tf.pad(ids, [[0, 0], [0, 1]]), lengths  # (B, P + 1), (B,)


def hash_uint32(x: tf.Tensor) -> tf.Tensor:
    """MurmurHash3's 32-bit finaliser (fmix32) of a uint32 tensor, element-wise."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))
    x = x * tf.constant(0x85EBCA6B, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(13, tf.uint32)))
    x = x * tf.constant(0xC2B2AE35, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))


def uniform_noise(seeds: tf.Tensor, step: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """Uniform draws in (0, 1), float32 (N, width), from seeds int (N,) and a step.

        u[n, v] = ((h(h(h(seed_n) ^ step) ^ v) >> 8) + 0.5) / 2**24,  h = `hash_uint32`

    A row's draws depend only on its seed, the step and the column.
    """
    seeds = tf.bitcast(tf.cast(seeds, tf.int32), tf.uint32)  # (N,)
    row = hash_uint32(tf.bitwise.bitwise_xor(hash_uint32(seeds), tf.cast(step, tf.uint32)))  # (N,)
    columns = tf.range(width, dtype=tf.int32)  # (V,)
    bits = hash_uint32(
        tf.bitwise.bitwise_xor(row[:, None], tf.bitcast(columns, tf.uint32)[None, :])
    )  # (N, V)
    high = tf.cast(tf.bitwise.right_shift(bits, tf.constant(8, tf.uint32)), tf.float32)
    return (high + 0.5) / float(1 << 24)


def sample_columns(
    log_probs: tf.Tensor, step: tf.Tensor, seeds: tf.Tensor, topk: int, temperature: float
) -> tf.Tensor:
    """One column per row drawn from softmax(log_probs / temperature) over the row's `topk`
    best columns (`tf.math.top_k`'s, ties to the lower column; 0: every column).

    Gumbel-max: argmax(candidates / temperature - log(-log u)) with u = `uniform_noise`
    (per candidate rank with top-k, per column without); -inf columns are never drawn.
    float (N, V) -> int32 (N,).
    """
    if topk == 0:
        candidates, columns = log_probs, None  # (N, V)
    else:
        k = tf.minimum(topk, tf.shape(log_probs)[1])
        candidates, columns = tf.math.top_k(log_probs, k=k)  # (N, k) each
    noise = uniform_noise(seeds, step, tf.shape(candidates)[1])  # (N, k or V)
    gumbel = -tf.math.log(-tf.math.log(noise))
    choice = tf.argmax(candidates / temperature + gumbel, axis=-1, output_type=tf.int32)  # (N,)
    if columns is None:
        return choice
    return tf.gather(columns, choice[:, None], batch_dims=1)[:, 0]  # (N,)


def check_sampling(topk: Any, temperature: Any, seeds: Any) -> None:
    if not isinstance(topk, numbers.Integral) or topk < 0:
        raise ValueError(f"sampling_topk must be an integer >= 0, got {topk!r}")
    if not isinstance(temperature, numbers.Real) or not 0 < temperature < math.inf:
        raise ValueError(f"sampling_temperature must be > 0 and finite, got {temperature!r}")
    if topk != 1 and seeds is None:
        raise ValueError("sampling (sampling_topk != 1) needs seeds, one per batch row")
