"""The loop both searches of nmt/search.py run: one `tf.while_loop` over a step function.

`setup` turns the searches' common arguments (batch size, maximum lengths, EOS, a shortlist's
vocab_ids, a forced prefix) into the tensors the loop needs; `search_loop` runs the loop: at
each step the step function, log_softmax, the limits (`block_eos`, the forced prefix) and the
search's own `advance`. The conventions are in nmt/search.py's module docstring.
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import tensorflow as tf

from nmt.search_options import force_prefix, prefix_columns

_NEG_INF = float("-inf")


def _keep_shape(new: Any, old: Any) -> Any:
    """Give loop outputs at least the static shape of their inputs (while_loop invariants)."""
    return tf.nest.map_structure(lambda n, o: tf.ensure_shape(n, o.shape), new, old)


def _checked_step(step_fn, ids, step, state, return_attention: bool):
    logits, new_state, attention = step_fn(ids, step, state)
    tf.nest.assert_same_structure(state, new_state)
    new_state = _keep_shape(new_state, state)
    if return_attention and attention is None:
        raise ValueError("return_attention=True but step_fn returned attention=None")
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)  # (N, V)
    return log_probs, new_state, attention


def block_eos(
    log_probs: tf.Tensor, step: tf.Tensor, min_length: Any, max_lengths: tf.Tensor, eos_id: int
) -> tf.Tensor:
    """Set log p(EOS) to -inf for rows that may not end yet: float (N, V) -> (N, V).

    `max_lengths` is int (N,); a row is blocked while step < min_length and step < its
    max_lengths (its forced EOS is never blocked). A Python 0 adds no ops. `eos_id` is the
    column of EOS (an int or an int32 scalar tensor: its shortlist column, see `_columns`).
    """
    if isinstance(min_length, numbers.Integral) and min_length <= 0:
        return log_probs
    blocked = (step < tf.cast(min_length, tf.int32)) & (step < max_lengths)  # (N,)
    is_eos = tf.equal(tf.range(tf.shape(log_probs)[1]), eos_id)  # (V,)
    return tf.where(blocked[:, None] & is_eos[None, :], _NEG_INF, log_probs)  # (N, V)


def _columns(vocab_ids: Any, eos_id: int) -> tuple[Any, Any]:
    """(vocab_ids int32 (K,) or None, the column of EOS): the identity map gives (None, eos_id).

    With a shortlist, EOS must be one of its ids (an assertion in the graph), so that a
    hypothesis can always end and min-length blocking has a column to block.
    """
    if vocab_ids is None:
        return None, eos_id
    vocab_ids = tf.ensure_shape(tf.cast(vocab_ids, tf.int32), [None])  # (K,)
    is_eos = tf.equal(vocab_ids, eos_id)  # (K,)
    check = tf.debugging.assert_equal(
        tf.reduce_any(is_eos), True, message="the shortlist (vocab_ids) must hold eos_id"
    )
    with tf.control_dependencies([check]):
        column = tf.argmax(tf.cast(is_eos, tf.int32), output_type=tf.int32)  # ()
    return vocab_ids, column


def to_vocab(columns: tf.Tensor, vocab_ids: Any) -> tf.Tensor:
    """Vocabulary ids of picked columns: vocab_ids[columns], or the columns themselves."""
    return columns if vocab_ids is None else tf.gather(vocab_ids, columns)


def _max_lengths(max_lengths: Any, batch: tf.Tensor, prefix=None) -> tuple[tf.Tensor, tf.Tensor]:
    """(max_lengths int32 (B,), their maximum): raised to the prefix lengths when given."""
    max_lengths = tf.reshape(tf.cast(max_lengths, tf.int32), [-1])  # (B,)
    max_lengths = tf.ensure_shape(max_lengths, [None])
    tf.debugging.assert_equal(
        tf.shape(max_lengths)[0], batch, message="max_lengths must have one entry per batch row"
    )
    if prefix is not None:
        max_lengths = tf.maximum(max_lengths, prefix[1])  # (B,)
    longest = tf.maximum(tf.reduce_max(tf.concat([max_lengths, [0]], axis=0)), 0)
    return max_lengths, longest


class Setup(NamedTuple):
    """What both searches derive from their arguments before the loop (see `setup`)."""

    batch: tf.Tensor  # int32 (): B
    vocab_ids: Any  # int32 (K,) or None
    eos_column: Any  # EOS's column of the log-probabilities: int or int32 ()
    prefix: Any  # (prefix columns int32 (B, P + 1), prefix lengths int32 (B,)) or None
    max_lengths: tf.Tensor  # int32 (B,), raised to the prefix lengths
    longest: tf.Tensor  # int32 (): T = max(max_lengths)
    positions: tf.Tensor  # int32 (T,)


def setup(batch_size, max_lengths, eos_id, vocab_ids, prefix_ids, prefix_lengths) -> Setup:
    vocab_ids, eos_column = _columns(vocab_ids, eos_id)
    batch = tf.cast(batch_size, tf.int32)
    prefix = prefix_columns(prefix_ids, prefix_lengths, vocab_ids, batch)
    max_lengths, longest = _max_lengths(max_lengths, batch, prefix)
    return Setup(batch, vocab_ids, eos_column, prefix, max_lengths, longest, tf.range(longest))


def _running(v, longest):
    """Loop condition: always take step 0, then go on while a hypothesis is unfinished."""
    return tf.logical_or(
        tf.equal(v["step"], 0),
        tf.logical_and(v["step"] <= longest, tf.logical_not(tf.reduce_all(v["finished"]))),
    )


def search_loop(step_fn, loop, advance, *, longest, limits, return_attention):
    """The one `tf.while_loop` of both searches, from the loop values `loop` to the final ones.

    A step runs step_fn on v["ids"] and v["state"] (`_checked_step`), applies `limits` =
    (min_length, max_lengths (N,), EOS's column, forced prefix or None) to the
    log-probabilities (`block_eos`, `force_prefix`), and `advance(v, log_probs (N, V),
    new_state)` gives the next loop values, which keep their static shapes. With
    return_attention each step's attention (N, S) is written to v["history"].
    """
    min_length, max_lengths, eos_column, prefix = limits
    if return_attention:
        loop = {**loop, "history": tf.TensorArray(tf.float32, size=0, dynamic_size=True)}

    def body(v):
        step = v["step"]
        log_probs, state, attention = _checked_step(
            step_fn, v["ids"], step, v["state"], return_attention
        )  # (N, V)
        log_probs = block_eos(log_probs, step, min_length, max_lengths, eos_column)  # (N, V)
        if prefix is not None:
            log_probs = force_prefix(log_probs, step, *prefix)  # (N, V)
        out = advance(v, log_probs, state)
        out = _keep_shape(out, {name: v[name] for name in out})
        if return_attention:
            out["history"] = v["history"].write(step, tf.cast(attention, tf.float32))
        return (out,)

    (final,) = tf.while_loop(lambda v: _running(v, longest), body, (loop,))
    return final
