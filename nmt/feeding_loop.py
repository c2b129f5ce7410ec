"""The decoder's input-feeding loop: teacher forcing with input feeding as one `tf.while_loop`.

With input feeding, layer 1's input at step t holds h~_{t-1}, so `Decoder.call()` cannot run
its layers over the whole target at once; `FeedingLoop.run` does the recurrence step by step:

  - the embedding part of layer 1's input projection, E y_t W_1[:emb] + b_1 for all t, is one
    matmul before the loop;
  - in the loop each layer does one matmul of [input; h] with its stacked [W; U], and
    h~_t = tanh([c_t; out_L] W_c) one more; each is a `LoopMatmul` (plain-matmul input
    gradients, weight gradients as one matmul after the loop);
  - the dropout masks are drawn before the loop (by the decoder) and read at each step;
  - with `jit` each step (forward and backward) is XLA-compiled: `_compute` sees tensors only.
"""

from __future__ import annotations

import tensorflow as tf
from keras import ops

from nmt.layers.lstm_kernel import LoopMatmul, lstm_step


def state_dtype(cell):
    """Dtype of the cell state c: the cell's `state_dtype` (float32 under 16-bit policies)."""
    return getattr(cell, "state_dtype", cell.compute_dtype)


def _unstacked(tensor, steps, element_shape):
    """A TensorArray of `tensor`'s rows along axis 0 (one per step), or None for None."""
    if tensor is None:
        return None
    return tf.TensorArray(tensor.dtype, size=steps, element_shape=element_shape).unstack(tensor)


class FeedingLoop:
    """The input-feeding loop of one `Decoder.call()`.

    Args:
        cells: the decoder's LSTM cells, layer 1 first (its kernel acts on [e_t; h~_{t-1}]).
        attention: the decoder's `Attention` layer.
        residual_at: `(i, inputs) -> bool`, whether layer i adds its input to its output.
        dtype: the compute dtype.
        jit: XLA-compile each step.
    """

    def __init__(self, cells, attention, residual_at, dtype, jit=False):
        self.cells = cells
        self.attention = attention
        self.residual_at = residual_at
        self.dtype = dtype
        self.jit = jit
        self.units = cells[0].units

    def run(self, embedded, memory_bundle, initial_state, noise, return_attention):
        """h~ at every step.

        `embedded` (B, T, E); `memory_bundle` (memory, memory_mask, keys); `initial_state` the
        decoder's state nest; `noise` the pair (dropout masks (T, L, B, units), attention
        dropout masks float32 (T, B, S)), each None when off. Returns
        `(h~ (B, T, units), attention float32 (B, T, S) or None)`; the attention weights
        travel through the loop only with `return_attention`.
        """
        steps = tf.shape(embedded)[1]
        matmuls, params = self._matmuls(embedded)
        compute = self._compute(matmuls, memory_bundle, params)
        if self.jit:  # one XLA cluster per step, forward and backward
            compute = tf.function(compute, jit_compile=True)
        masks = (
            _unstacked(noise[0], steps, [len(self.cells), None, self.units]),  # (L, B, u) at t
            _unstacked(noise[1], steps, [None, None]),  # (B, S) at t
        )
        outputs_ta = tf.TensorArray(self.dtype, size=steps, element_shape=[None, self.units])
        kept = ()
        if return_attention:  # only then is the TensorArray made
            kept = (tf.TensorArray(tf.float32, size=steps, element_shape=[None, None]),)
        hs, cs, feed = self._start(initial_state)

        def body(t, hs, cs, feed, outputs_ta, kept, recorded):
            step_masks, weight_masks = (None if ta is None else ta.read(t) for ta in masks)
            offsets = [matmul.offset(t) for matmul in matmuls]  # (B, 4u) ..., (B, units)
            new_hs, new_cs, h_tilde, weights, xs = compute(
                offsets, step_masks, weight_masks, hs, cs, feed
            )
            if return_attention:
                kept = (kept[0].write(t, weights),)  # (B, S) at t; train.coverage_loss's gradient
            recorded = tuple(LoopMatmul.record(r, t, x) for r, x in zip(recorded, xs, strict=True))
            return (t + 1, new_hs, new_cs, h_tilde, outputs_ta.write(t, h_tilde), kept, recorded)

        start = (tf.constant(0), hs, cs, feed, outputs_ta, kept, tuple(m.recorded for m in matmuls))
        _, _, _, _, outputs_ta, kept, recorded = tf.while_loop(
            lambda t, *_: t < steps,
            body,
            start,
            maximum_iterations=steps,  # XLA needs a bound for TensorArrays written in the loop
        )
        for matmul, stack in zip(matmuls, recorded, strict=True):
            matmul.finish(stack)
        h_tilde = tf.transpose(outputs_ta.stack(), [1, 0, 2])  # (B, T, units)
        if not return_attention:
            return h_tilde, None
        return h_tilde, tf.transpose(kept[0].stack(), [1, 0, 2])  # (B, T, S)

    def _matmuls(self, embedded):
        """`(LoopMatmuls, attention parameters)`: the weights read once, before the loop.

        Every in-loop matmul with a weight: [h~_{t-1}; h^1_{t-1}] for layer 1 (plus the
        hoisted projection of the embeddings), [in_l; h^l_{t-1}] for layer l (plus its bias),
        [c_t; out_L] W_c.
        """
        dtype, units, first = self.dtype, self.units, self.cells[0]
        batch, steps = tf.shape(embedded)[0], tf.shape(embedded)[1]
        emb_dim = first.kernel.shape[0] - units  # E
        # Layer 1: the embedding rows of its kernel act on all steps at once; the fed-h~ rows
        # and the recurrent kernel are stacked to act on [h~_{t-1}; h^1_{t-1}].
        kernel = ops.cast(first.kernel, dtype)  # (E + units, 4 units)
        emb_kernel, feed_kernel = tf.split(kernel, [emb_dim, units], axis=0)  # (E | units, 4u)
        first_bias = ops.cast(first.bias, dtype)  # (4 units,)
        first_recurrent = ops.concatenate(
            [feed_kernel, ops.cast(first.recurrent_kernel, dtype)], axis=0
        )  # (2 units, 4 units)
        stacked = [
            ops.concatenate(
                [ops.cast(cell.kernel, dtype), ops.cast(cell.recurrent_kernel, dtype)], axis=0
            )  # (2 units, 4 units)
            for cell in self.cells[1:]
        ]
        biases = [ops.cast(cell.bias, dtype) for cell in self.cells[1:]]  # (4 units,)
        params = self.attention.parameters(dtype)

        time_major = tf.transpose(embedded, [1, 0, 2])  # (T, B, E)
        projected = tf.matmul(tf.reshape(time_major, [-1, emb_dim]), emb_kernel)
        projected = tf.reshape(projected + first_bias, [steps, batch, 4 * units])  # (T, B, 4u)
        gates = [steps, batch, 4 * units]
        matmuls = [LoopMatmul(first_recurrent, steps, batch, base=projected)]
        for weight, bias in zip(stacked, biases, strict=True):
            matmuls.append(LoopMatmul(weight, steps, batch, base=tf.broadcast_to(bias, gates)))
        matmuls.append(LoopMatmul(params["output_kernel"], steps, batch))
        return matmuls, params

    def _start(self, initial_state):
        """`(hs, cs, h~_0)`: the initial state nest in the loop's dtypes."""
        layer_states, feed = initial_state
        hs = tuple(ops.cast(h, self.dtype) for h, _ in layer_states)
        cs = tuple(
            ops.cast(c, state_dtype(cell))
            for (_, c), cell in zip(layer_states, self.cells, strict=True)
        )
        return hs, cs, ops.cast(feed, self.dtype)

    def _compute(self, matmuls, memory_bundle, params):
        """The step function `compute(offsets, masks, weight_masks, hs, cs, feed)`."""
        cells, attention, residual_at = self.cells, self.attention, self.residual_at
        memory, memory_mask, keys = memory_bundle

        def compute(offsets, masks, weight_masks, hs, cs, feed):
            """One step on tensors only (no TensorArrays), so that it can be XLA-compiled.

            Returns (new hs, new cs, h~ (B, units), attention (B, S), every loop-matmul input).
            """
            new_hs, new_cs, xs, top = [], [], [], feed
            for i, cell in enumerate(cells):
                inputs = top * masks[i] if masks is not None and i > 0 else top  # (B, units)
                x = tf.concat([inputs, hs[i]], 1)  # (B, 2 units)
                xs.append(x)
                z = matmuls[i].apply(x, offsets[i])  # (B, 4 units)
                h, c = lstm_step(z, cs[i], cell.activation, cell.recurrent_activation)
                new_hs.append(h)
                new_cs.append(c)
                top = h + inputs if i > 0 and residual_at(i, inputs) else h  # (B, units)
            context, weights = attention.attend(
                top, memory, memory_mask, keys, params, weight_masks
            )
            # h~ = tanh([c_t; out_L] W_c), as Attention.attentional_hidden.
            joined = tf.concat([context, top], 1)  # (B, units + units)
            xs.append(joined)
            h_tilde = tf.tanh(matmuls[-1].apply(joined, offsets[-1]))  # (B, units)
            if masks is not None:
                h_tilde = h_tilde * masks[0]
            return tuple(new_hs), tuple(new_cs), h_tilde, weights, tuple(xs)

        return compute
