"""The decoder's input-feeding loop: teacher forcing with input feeding as one `tf.while_loop`.

With input feeding, layer 1's input at step t holds h~_{t-1}, so `Decoder.call()` cannot run
its layers over the whole target at once; `FeedingLoop.run` does the recurrence step by step:

  - the embedding part of layer 1's input projection, E y_t W_1[:emb] + b_1 for all t, is one
    matmul before the loop;
  - in the loop each layer does one matmul of [input; h] with its stacked [W; U], and
    h~_t = tanh([c_t; out_L] W_c) one more; each is a `LoopMatmul` (plain-matmul input
    gradients, weight gradients as one matmul after the loop);
  - the attention's memory-side gradients (the memory's, and the keys' of dot/general) are
    batched matmuls after the loop (`LoopMemory`), as `LoopMatmul`'s weight gradients are;
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
        memory, memory_mask, keys = memory_bundle
        loop_memory = LoopMemory(memory, keys, steps, self.attention.multiplicative)
        compute = self._compute(matmuls, (loop_memory, memory_mask), params)
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

        def body(t, hs, cs, feed, outputs_ta, kept, recorded, memory_recorded):
            step_masks, weight_masks = (None if ta is None else ta.read(t) for ta in masks)
            offsets = [matmul.offset(t) for matmul in matmuls]  # (B, 4u) ..., (B, units)
            new_hs, new_cs, h_tilde, weights, xs, used = compute(
                (offsets, loop_memory.offsets(t)), step_masks, weight_masks, hs, cs, feed
            )
            if return_attention:
                kept = (kept[0].write(t, weights),)  # (B, S) at t; train.coverage_loss's gradient
            recorded = tuple(LoopMatmul.record(r, t, x) for r, x in zip(recorded, xs, strict=True))
            memory_recorded = loop_memory.record(memory_recorded, t, used)
            return (
                t + 1,
                new_hs,
                new_cs,
                h_tilde,
                outputs_ta.write(t, h_tilde),
                kept,
                recorded,
                memory_recorded,
            )

        recorded = tuple(m.recorded for m in matmuls)
        start = (tf.constant(0), hs, cs, feed, outputs_ta, kept, recorded, loop_memory.recorded)
        _, _, _, _, outputs_ta, kept, recorded, memory_recorded = tf.while_loop(
            lambda t, *_: t < steps,
            body,
            start,
            maximum_iterations=steps,  # XLA needs a bound for TensorArrays written in the loop
        )
        for matmul, stack in zip(matmuls, recorded, strict=True):
            matmul.finish(stack)
        loop_memory.finish(memory_recorded)
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
        loop_memory, memory_mask = memory_bundle

        def compute(all_offsets, masks, weight_masks, hs, cs, feed):
            """One step on tensors only (no TensorArrays), so that it can be XLA-compiled.

            Returns (new hs, new cs, h~ (B, units), attention (B, S), every loop-matmul input,
            the attention products' inputs for `LoopMemory.record`).
            """
            offsets, memory_offsets = all_offsets
            products = StepProducts(*memory_offsets)
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
                top,
                loop_memory.memory,
                memory_mask,
                loop_memory.keys,
                params,
                weight_masks,
                products=products,
            )
            # h~ = tanh([c_t; out_L] W_c), as Attention.attentional_hidden.
            joined = tf.concat([context, top], 1)  # (B, units + units)
            xs.append(joined)
            h_tilde = tf.tanh(matmuls[-1].apply(joined, offsets[-1]))  # (B, units)
            if masks is not None:
                h_tilde = h_tilde * masks[0]
            return tuple(new_hs), tuple(new_cs), h_tilde, weights, tuple(xs), products.used()

        return compute


class LoopMemory:
    """The memory side of the loop's attention, with `LoopMatmul`'s scheme for its gradients.

    Autodiff of the step products s_t = K q_t (the multiplicative scores, K the keys (B, S, D))
    and c_t = a_t M (the context, M the memory (B, S, D_m)) gives K and M an outer-product
    gradient at every step, dS_t ⊗ q_t and a_t ⊗ dc_t (B, S, D), summed over the steps by the
    loop's gradient accumulators: a batched matmul and a (B, S, D) AddN per step each.
    Instead, as `LoopMatmul` does for the weights:

      - in the loop the products (`StepProducts`) see K and M without gradient; their
        gradients for q_t and a_t are the batched matrix-vector products;
      - zero offsets (T, B, S) and (T, B, D_m), added to s_t and c_t, have the stacks dS and
        dC of every step as their gradients; the loop records q_t and a_t (`record`), and
        after it dK = Σ_t dS_tᵀ q_t and dM = Σ_t a_tᵀ dc_t are one batched (B, S, T)·(B, T, D)
        matmul each.

    The keys of the additive scores (v·tanh(K + q W)) have a different gradient at every step
    and keep autodiff; their context product takes this scheme.
    """

    def __init__(self, memory, keys, steps, multiplicative: bool):
        self.multiplicative = multiplicative
        self.memory = tf.stop_gradient(memory)  # (B, S, D_m)
        if multiplicative:  # unscaled dot attention has no keys: the memory is its key
            self.keys = tuple(tf.stop_gradient(k) for k in keys)
            key = keys[0] if keys else memory  # (B, S, D)
        else:
            self.keys, key = keys, None
        self.queries = self.weights = None  # (T, B, D), (T, B, S): set by finish()
        offsets = _zeros_with_memory_gradient(self, key, memory, steps)
        self.score_offsets = None
        if multiplicative:
            self.score_offsets = _unstacked(offsets[0], steps, [None, None])  # (B, S) at t
        self.context_offsets = _unstacked(offsets[-1], steps, [None, memory.shape[-1]])
        width = key.shape[-1] if multiplicative else None
        self.recorded = (
            tf.TensorArray(key.dtype, size=steps, element_shape=[None, width])
            if multiplicative
            else (),
            tf.TensorArray(memory.dtype, size=steps, element_shape=[None, None]),
        )

    def offsets(self, t):
        """(score offset (B, S) or None, context offset (B, D_m)) at step t."""
        score = None if self.score_offsets is None else self.score_offsets.read(t)
        return score, self.context_offsets.read(t)

    def record(self, recorded, t, used):
        """Writes `StepProducts.used()` (query, weights) of step t."""
        queries, weights = recorded
        query, step_weights = used
        if self.multiplicative:
            queries = queries.write(t, tf.stop_gradient(query))
        return queries, weights.write(t, tf.stop_gradient(step_weights))

    def finish(self, recorded):
        queries, weights = recorded
        self.queries = queries.stack() if self.multiplicative else None  # (T, B, D)
        self.weights = weights.stack()  # (T, B, S)


class StepProducts:
    """One step's attention products for `Attention.attend(products=)` (see `LoopMemory`)."""

    def __init__(self, score_offset, context_offset):
        self.score_offset, self.context_offset = score_offset, context_offset
        self.query = self.weights = None

    def score(self, keys, query):
        """keys (B, S, D) · query (B, D) + offset: `(B, S)`; gradient for the query only."""
        self.query = query
        return _product_for_right(keys, query) + self.score_offset

    def context(self, weights, memory):
        """weights (B, S) · memory (B, S, D_m) + offset: `(B, D_m)`; gradient for the weights."""
        self.weights = weights
        return _product_for_left(weights, memory) + self.context_offset

    def used(self):
        """(query or a placeholder zero, weights), the tensors `LoopMemory.record` writes."""
        return (0.0 if self.query is None else self.query), self.weights


def _product_for_right(keys, query):
    """keys (B, S, D) x query (B, D) -> (B, S), differentiated for the query only."""

    @tf.custom_gradient
    def product(query):
        def grad(d_scores):
            return tf.squeeze(tf.matmul(d_scores[:, None, :], keys), 1)  # (B, D)

        return tf.squeeze(tf.matmul(keys, query[:, :, None]), -1), grad  # (B, S)

    return product(query)


def _product_for_left(weights, memory):
    """weights (B, S) x memory (B, S, D) -> (B, D), differentiated for the weights only."""

    @tf.custom_gradient
    def product(weights):
        def grad(d_context):
            return tf.squeeze(tf.matmul(memory, d_context[:, :, None]), -1)  # (B, S)

        return tf.squeeze(tf.matmul(weights[:, None, :], memory), 1), grad  # (B, D)

    return product(weights)


def _zeros_with_memory_gradient(loop_memory, key, memory, steps):
    """Zeros ((T, B, S) score offsets with a key, and (T, B, D_m) context offsets) whose
    gradients dS, dC give the key Σ_t dS_tᵀ q_t and the memory Σ_t a_tᵀ dc_t."""
    batch, length = tf.shape(memory)[0], tf.shape(memory)[1]
    context_shape = tf.stack([steps, batch, memory.shape[-1]])

    def memory_gradient(d_context):
        weights = tf.transpose(loop_memory.weights, [1, 2, 0])  # (B, S, T)
        return tf.matmul(weights, tf.transpose(d_context, [1, 0, 2]))  # (B, S, D_m)

    if key is None:

        @tf.custom_gradient
        def context_zeros(memory):
            return tf.zeros(context_shape, memory.dtype), memory_gradient

        return (context_zeros(memory),)

    @tf.custom_gradient
    def zeros(key, memory):
        def grad(d_scores, d_context):
            queries = tf.transpose(loop_memory.queries, [1, 0, 2])  # (B, T, D)
            d_key = tf.matmul(tf.transpose(d_scores, [1, 2, 0]), queries)  # (B, S, D)
            return d_key, memory_gradient(d_context)

        score_zeros = tf.zeros(tf.stack([steps, batch, length]), key.dtype)  # (T, B, S)
        return (score_zeros, tf.zeros(context_shape, memory.dtype)), grad

    return zeros(key, memory)
