"""Long short-term memory: a one-step cell and a fast sequence layer.

`LSTMCell` computes one time step; `LSTM` runs it over a sequence and is a drop-in swap for
`keras.layers.LSTM` (same arguments, same weights, same results) that trains faster on CPU.

Weights are laid out exactly as in `keras.layers.LSTMCell`, so `get_weights()` / `set_weights()`
copy across both ways: `kernel` (input_dim, 4u), `recurrent_kernel` (u, 4u) and `bias` (4u,),
created in that order, each packed in gate order (i, f, C̃, o) along the last axis.

Mixed precision: under `mixed_float16` / `mixed_bfloat16` the matmuls and gates run in the
compute dtype while the variables stay float32 and the cell state C is kept in float32 all the
way (update, tanh(C), the returned state, stateful storage, the backward pass). A 16-bit C would
be rounded at every step (bfloat16 keeps 8 mantissa bits), and C is an unbounded running sum
that the forget gate carries across the whole sequence, so the rounding error would accumulate.
h, the outputs and the gates stay in the compute dtype. The state dtype is therefore:
h: compute dtype; C: float32 when the compute dtype is a 16-bit float, else the compute dtype.
Both layers cast their inputs and variables themselves (they are built with `autocast=False`),
because Keras' automatic input casting would otherwise turn a float32 C back into 16 bits.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import activations, constraints, initializers, ops, regularizers

__all__ = ["LSTM", "LSTMCell"]

_HALF_DTYPES = ("float16", "bfloat16")


def _state_dtype(compute_dtype: str) -> str:
    """Dtype of the cell state C for a given compute dtype (float32 for 16-bit floats)."""
    return "float32" if compute_dtype in _HALF_DTYPES else compute_dtype


def _cast(x, dtype):
    """tf.cast that is a no-op when `x` already has `dtype`."""
    dtype = tf.as_dtype(dtype)
    x = tf.convert_to_tensor(x)
    return x if x.dtype == dtype else tf.cast(x, dtype)


def _split4(x, units: int):
    """Splits the last axis (4u) into the four gate blocks (i, f, C̃, o)."""
    return tf.split(x, [units, units, units, units], axis=-1)


def _dropout_masks(ones, rate: float, count: int, seed_generator):
    """`count` independent dropout masks (scaled by 1/(1-rate)) shaped like `ones`."""
    masks = [keras.random.dropout(ones, rate=rate, seed=seed_generator) for _ in range(count)]
    return tf.stack(masks)  # (count, B, n)


@keras.saving.register_keras_serializable(package="nmt")
class LSTMCell(keras.layers.Layer):
    """One LSTM time step (Keras RNN cell contract), computing exactly

        f  = σ(W_f·[h_prev, x] + b_f)
        i  = σ(W_i·[h_prev, x] + b_i)
        C̃  = tanh(W_C·[h_prev, x] + b_C)
        C  = f * C_prev + i * C̃
        o  = σ(W_o·[h_prev, x] + b_o)
        h  = o * tanh(C)

    where σ is `recurrent_activation` (sigmoid by default) and tanh is `activation`. The gate
    matrices are stored split by operand: W_g·[h, x] = h·recurrent_kernel[:, g] + x·kernel[:, g],
    with the gate blocks g packed in the order (i, f, C̃, o) as `keras.layers.LSTMCell` does.

    Args mirror `keras.layers.LSTMCell`: `unit_forget_bias=True` adds 1 to b_f at
    initialization; `dropout` drops input units and `recurrent_dropout` drops units of h_prev.
    As in Keras, with `recurrent_dropout > 0` each gate gets its own input and recurrent mask,
    otherwise one input mask is shared by the four gates. Masks are created on the first
    training call and reused until `reset_dropout_mask()` / `reset_recurrent_dropout_mask()`.
    A caller stepping the cell in a `tf.while_loop` gets one mask for the whole sequence by
    calling `get_dropout_mask(x_0)` / `get_recurrent_dropout_mask(h_0)` before the loop and the
    resets after it, as `keras.layers.RNN` does for its own cells (it does not reset this cell's
    masks: to train with dropout over whole sequences use `nmt.layers.LSTM`).

    Call: `h, [h, c] = cell(x, [h_prev, c_prev], training=...)` with x (B, input_dim) and
    h_prev, c_prev (B, units). h is in the compute dtype, c in float32 under 16-bit policies.
    """

    def __init__(
        self,
        units: int,
        activation: Any = "tanh",
        recurrent_activation: Any = "sigmoid",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        unit_forget_bias: bool = True,
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        bias_regularizer: Any = None,
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        if int(units) != units or units <= 0:
            raise ValueError(
                f"Received an invalid value for argument `units`, expected a positive integer, "
                f"got {units}."
            )
        units = int(units)
        # `implementation` selects between two numerically equivalent Keras code paths.
        kwargs.pop("implementation", None)
        kwargs.pop("autocast", None)
        super().__init__(autocast=False, **kwargs)
        self.units = units
        self.activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.unit_forget_bias = unit_forget_bias
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.recurrent_constraint = constraints.get(recurrent_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.dropout = min(1.0, max(0.0, float(dropout)))
        self.recurrent_dropout = min(1.0, max(0.0, float(recurrent_dropout)))
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed=seed)
        self.state_size = [units, units]
        self.output_size = units
        self._dropout_mask = None
        self._recurrent_dropout_mask = None

    @property
    def state_dtype(self) -> str:
        """Dtype of the cell state C (float32 under 16-bit compute dtypes)."""
        return _state_dtype(self.compute_dtype)

    def build(self, input_shape) -> None:
        input_dim = input_shape[-1]
        u = self.units
        self.kernel = self.add_weight(
            shape=(input_dim, 4 * u),
            name="kernel",
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.recurrent_kernel = self.add_weight(
            shape=(u, 4 * u),
            name="recurrent_kernel",
            initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )
        if self.use_bias:
            if self.unit_forget_bias:
                base = self.bias_initializer

                def bias_initializer(shape, dtype=None):
                    return ops.concatenate(
                        [
                            base((u,), dtype=dtype),
                            initializers.Ones()((u,), dtype=dtype),
                            base((2 * u,), dtype=dtype),
                        ]
                    )

            else:
                bias_initializer = self.bias_initializer
            self.bias = self.add_weight(
                shape=(4 * u,),
                name="bias",
                initializer=bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None
        self.built = True

    # Dropout masks, cached across the steps of one sequence (Keras' DropoutRNNCell contract).
    def _input_mask_count(self) -> int:
        return 4 if self.recurrent_dropout > 0 else 1

    def get_dropout_mask(self, step_input):
        """Input dropout mask(s) for this sequence: (count, B, input_dim) with count 1 or 4."""
        if self._dropout_mask is None and self.dropout > 0:
            ones = ops.ones_like(step_input)
            self._dropout_mask = _dropout_masks(
                ones, self.dropout, self._input_mask_count(), self.seed_generator
            )
        return self._dropout_mask

    def get_recurrent_dropout_mask(self, step_state):
        """Recurrent dropout masks for this sequence: (4, B, units), one per gate."""
        if self._recurrent_dropout_mask is None and self.recurrent_dropout > 0:
            ones = ops.ones_like(step_state)
            self._recurrent_dropout_mask = _dropout_masks(
                ones, self.recurrent_dropout, 4, self.seed_generator
            )
        return self._recurrent_dropout_mask

    def reset_dropout_mask(self) -> None:
        self._dropout_mask = None

    def reset_recurrent_dropout_mask(self) -> None:
        self._recurrent_dropout_mask = None

    def call(self, inputs, states, training=False):
        cdt, sdt, u = self.compute_dtype, self.state_dtype, self.units
        x = _cast(inputs, cdt)  # (B, D)
        h_prev = _cast(states[0], cdt)  # (B, u)
        c_prev = _cast(states[1], sdt)  # (B, u)
        kernel = _cast(self.kernel, cdt)  # (D, 4u)
        recurrent_kernel = _cast(self.recurrent_kernel, cdt)  # (u, 4u)

        if training and 0.0 < self.dropout < 1.0:
            dp = _cast(self.get_dropout_mask(x), cdt)  # (1 or 4, B, D)
            x_per_gate = x[None] * dp  # (1 or 4, B, D)
        else:
            x_per_gate = x[None]  # (1, B, D)
        if x_per_gate.shape[0] == 1:
            z = tf.matmul(x_per_gate[0], kernel)  # (B, 4u)
        else:
            z = tf.concat(
                [tf.matmul(x_per_gate[k], w) for k, w in enumerate(_split4(kernel, u))], axis=-1
            )  # (B, 4u)
        if training and 0.0 < self.recurrent_dropout < 1.0:
            rdp = _cast(self.get_recurrent_dropout_mask(h_prev), cdt)  # (4, B, u)
            z += tf.concat(
                [tf.matmul(h_prev * rdp[k], w) for k, w in enumerate(_split4(recurrent_kernel, u))],
                axis=-1,
            )  # (B, 4u)
        else:
            z += tf.matmul(h_prev, recurrent_kernel)  # (B, 4u)
        if self.use_bias:
            z += _cast(self.bias, cdt)  # (B, 4u)

        z_i, z_f, z_c, z_o = _split4(z, u)  # each (B, u)
        i = self.recurrent_activation(z_i)
        f = self.recurrent_activation(z_f)
        c_tilde = self.activation(z_c)
        o = self.recurrent_activation(z_o)
        c = _cast(f, sdt) * c_prev + _cast(i, sdt) * _cast(c_tilde, sdt)  # (B, u)
        h = _cast(_cast(o, sdt) * self.activation(c), cdt)  # (B, u)
        return h, [h, c]

    def get_initial_state(self, batch_size=None):
        return [
            ops.zeros((batch_size, self.units), dtype=self.compute_dtype),
            ops.zeros((batch_size, self.units), dtype=self.state_dtype),
        ]

    def get_config(self) -> dict[str, Any]:
        config = {
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "recurrent_activation": activations.serialize(self.recurrent_activation),
            "use_bias": self.use_bias,
            "unit_forget_bias": self.unit_forget_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "recurrent_regularizer": regularizers.serialize(self.recurrent_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "recurrent_constraint": constraints.serialize(self.recurrent_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
        }
        return {**super().get_config(), **config}


# ---------------------------------------------------------------------------------------------
# The recurrence. Time is the leading axis of every per-step tensor, and a masked step carries
# h and C forward unchanged. `_recurrence_generic` keeps states batch-major (B, u);
# `_recurrence_fused` keeps them feature-major (u, B). Both return the h state after every step
# and the final C.
# ---------------------------------------------------------------------------------------------


def _steps(values, unroll: bool):
    """Per-step view of a (T, ...) tensor: a list when unrolled, else an unstacked TensorArray."""
    if unroll:
        return tf.unstack(values)
    ta = tf.TensorArray(values.dtype, size=tf.shape(values)[0], element_shape=values.shape[1:])
    return ta.unstack(values)


def _new_steps(dtype, n_steps, static_steps: int | None, unroll: bool, element_shape):
    """Empty per-step storage: a list when unrolled, else a TensorArray."""
    if unroll:
        return [None] * static_steps
    return tf.TensorArray(dtype, size=n_steps, element_shape=element_shape)


def _read(seq, t):
    return seq[t] if isinstance(seq, list) else seq.read(t)


def _write(seq, t, value):
    if isinstance(seq, list):
        seq = list(seq)
        seq[t] = value
        return seq
    return seq.write(t, value)


def _stack(seq):
    return tf.stack(seq) if isinstance(seq, list) else seq.stack()


def _time_loop(body, n_steps, static_steps: int | None, loop_vars, unroll: bool, reverse=False):
    """Runs `loop_vars = body(t, *loop_vars)` for t = 0..T-1 (T-1..0 if `reverse`).

    Unrolled: a Python loop over the static length. Otherwise one `tf.while_loop`.
    """
    if unroll:
        order = range(static_steps - 1, -1, -1) if reverse else range(static_steps)
        for t in order:
            loop_vars = body(t, *loop_vars)
        return tuple(loop_vars)
    step = -1 if reverse else 1
    t0 = n_steps - 1 if reverse else tf.constant(0, tf.int32)
    out = tf.while_loop(
        lambda t, *_: (t >= 0) if reverse else (t < n_steps),
        lambda t, *lv: (t + step, *body(t, *lv)),
        (t0, *loop_vars),
        maximum_iterations=n_steps,  # XLA needs a bound for TensorArrays written in the loop
    )
    return tuple(out[1:])


def _recurrence_generic(xw, h0, c0, rk, mask, activation, recurrent_activation, rdp, unroll):
    """Any activations, optional per-gate recurrent dropout `rdp` (4, B, u); autodiff backward.

    xw (T, B, 4u) is x_t·kernel + b for every step, h0 and c0 (B, u), rk (u, 4u), mask
    (T, B, 1) bool or None. Returns hs (T, B, u) and the final C (B, u).
    """
    cdt, sdt = h0.dtype, c0.dtype
    u = h0.shape[-1]
    n, static_n = tf.shape(xw)[0], xw.shape[0]
    xs = _steps(xw, unroll)
    ms = _steps(mask, unroll) if mask is not None else None
    if rdp is not None:
        rk_per_gate = tf.stack(_split4(rk, u))  # (4, u, u)

    def body(t, h, c, hs):
        if rdp is not None:
            hz = tf.matmul(h[None] * rdp, rk_per_gate)  # (4, B, u)
            hz = tf.concat(tf.unstack(hz), axis=-1)  # (B, 4u)
        else:
            hz = tf.matmul(h, rk)  # (B, 4u)
        z_i, z_f, z_c, z_o = _split4(_read(xs, t) + hz, u)  # each (B, u)
        i, f, o = recurrent_activation(z_i), recurrent_activation(z_f), recurrent_activation(z_o)
        c_new = _cast(f, sdt) * c + _cast(i, sdt) * _cast(activation(z_c), sdt)  # (B, u)
        h_new = _cast(_cast(o, sdt) * activation(c_new), cdt)  # (B, u)
        if ms is not None:
            m = _read(ms, t)  # (B, 1)
            h_new = tf.where(m, h_new, h)
            c_new = tf.where(m, c_new, c)
        return h_new, c_new, _write(hs, t, h_new)

    hs = _new_steps(cdt, n, static_n, unroll, h0.shape)
    _, c_last, hs = _time_loop(body, n, static_n, (h0, c0, hs), unroll)
    return _stack(hs), c_last


def _project_feature_major(x2, kernel_t, bias):
    """kernel_t·x2 + bias: the input projection of every step, x2 (D, T·B) -> (4u, T·B).

    Hand-written gradient so that all three backward matmuls are plain (no transpose flags):
    d kernel_t = d_out·x2ᵀ and d x2 = kernel_tᵀ·d_out, transposing the narrow (D-row) operands.
    """

    @tf.custom_gradient
    def project(x2, kernel_t, *maybe_bias):
        out = tf.matmul(kernel_t, x2)  # (4u, T·B)
        if maybe_bias:
            out += maybe_bias[0][:, None]

        def grad(d_out):
            d_kernel_t = tf.matmul(d_out, tf.transpose(x2))  # (4u, D)
            d_x2 = tf.matmul(tf.transpose(kernel_t), d_out)  # (D, T·B)
            if maybe_bias:
                return d_x2, d_kernel_t, tf.reduce_sum(d_out, axis=1)
            return d_x2, d_kernel_t

        return out, grad

    return project(x2, kernel_t) if bias is None else project(x2, kernel_t, bias)


def _recurrence_fused(xw2, h0, c0, rk_t, mask, n_steps, static_steps, unroll):
    """The sigmoid/tanh recurrence, feature-major, with a hand-written backward pass.

    Layout (measured faster on CPU than batch-major for every shape tried): states are
    (u, B); xw2 (4u, T·B) holds kernelᵀ·x_t + b in columns t·B..t·B+B-1; rk_t is the
    recurrent kernel transposed (4u, u); mask (T, 1, B) bool or None. Returns hs (T, u, B),
    the h state after every step, and the final C (u, B).

    Forward: z_t = xw_t + rk_t·h_{t-1}, one (4u, u)·(u, B) matmul per step; σ(z), C̃ and C are
    kept. Backward (the exact gradient of the same equations): one (u, 4u)·(4u, B) matmul per
    step; the elementwise gate derivatives of all steps are computed at once before the loop;
    the recurrent-kernel gradient is one (4u, T·B)·(T·B, u) matmul after the loop, where
    autodiff would do an extra small matmul inside every step.
    """
    cdt, sdt = h0.dtype, c0.dtype
    u = h0.shape[0]
    batch = tf.shape(h0)[1]
    state_shape = tf.TensorShape([u, h0.shape[1]])
    gates_shape = tf.TensorShape([4 * u, h0.shape[1]])
    has_mask = mask is not None

    @tf.custom_gradient
    def recurrence(xw2, h0, c0, rk_t):
        ms = _steps(mask, unroll) if has_mask else None

        def body(t, h, c, hs, acts, gs, cs_new, cs_prev):
            x_t = tf.slice(xw2, [0, t * batch], [4 * u, batch])  # (4u, B)
            # The slice's size is a tensor, so its static batch is lost; keep h's, or a
            # static batch (e.g. one sentence) would change the loop variables' shapes.
            x_t.set_shape([4 * u, h.shape[1]])
            z = x_t + tf.matmul(rk_t, h)  # (4u, B)
            a = tf.sigmoid(z)  # (4u, B): σ of all four blocks; the C̃ block is unused
            a_i, a_f, _, a_o = tf.split(a, 4, axis=0)  # (u, B) each
            g = tf.tanh(z[2 * u : 3 * u])  # (u, B) C̃
            c_new = _cast(a_f, sdt) * c + _cast(a_i, sdt) * _cast(g, sdt)  # (u, B)
            h_new = _cast(_cast(a_o, sdt) * tf.tanh(c_new), cdt)  # (u, B)
            acts, gs, cs_new = _write(acts, t, a), _write(gs, t, g), _write(cs_new, t, c_new)
            if has_mask:
                cs_prev = _write(cs_prev, t, c)
                m = _read(ms, t)  # (1, B)
                h_new = tf.where(m, h_new, h)
                c_new = tf.where(m, c_new, c)
            return h_new, c_new, _write(hs, t, h_new), acts, gs, cs_new, cs_prev

        storage = (
            _new_steps(cdt, n_steps, static_steps, unroll, state_shape),  # h after each step
            _new_steps(cdt, n_steps, static_steps, unroll, gates_shape),  # σ(z)
            _new_steps(cdt, n_steps, static_steps, unroll, state_shape),  # C̃
            _new_steps(sdt, n_steps, static_steps, unroll, state_shape),  # C before masking
            _new_steps(sdt, n_steps, static_steps, unroll, state_shape) if has_mask else 0,
        )
        _, c_last, hs, acts, gs, cs_new, cs_prev = _time_loop(
            body, n_steps, static_steps, (h0, c0, *storage), unroll
        )
        hs = _stack(hs)  # (T, u, B)
        acts = _stack(acts)  # (T, 4u, B)
        gs = _stack(gs)  # (T, u, B)
        cs_new = _stack(cs_new)  # (T, u, B)
        if has_mask:
            cs_prev = _stack(cs_prev)  # (T, u, B) C entering each step
        else:
            cs_prev = tf.concat([c0[None], cs_new[:-1]], axis=0)  # (T, u, B)

        def grad(d_hs, d_c_last):
            a_i, a_f, _, a_o = (_cast(v, sdt) for v in tf.split(acts, 4, axis=1))  # (T, u, B)
            g = _cast(gs, sdt)  # (T, u, B)
            tc = tf.tanh(cs_new)  # (T, u, B)
            dh_dc = a_o * (1.0 - tc * tc)  # (T, u, B) ∂h/∂C through tanh(C)
            dgates = tf.concat(
                [
                    g * a_i * (1.0 - a_i),  # ∂C/∂z_i
                    cs_prev * a_f * (1.0 - a_f),  # ∂C/∂z_f
                    a_i * (1.0 - g * g),  # ∂C/∂z_C
                    tc * a_o * (1.0 - a_o),  # ∂h/∂z_o
                ],
                axis=1,
            )  # (T, 4u, B)
            rk = tf.transpose(rk_t)  # (u, 4u)
            d_hs_steps = _steps(_cast(d_hs, sdt), unroll)
            dgates_steps = _steps(dgates, unroll)
            dh_dc_steps = _steps(dh_dc, unroll)
            f_steps = _steps(a_f, unroll)
            if has_mask:
                m_float = _cast(mask, sdt)  # (T, 1, B)
                m_steps = _steps(m_float, unroll)
                keep_steps = _steps(1.0 - m_float, unroll)

            def back(t, dh, dc, dzs):
                dh = dh + _read(d_hs_steps, t)  # (u, B) ∂L/∂h_t (carried h included)
                if has_mask:
                    m = _read(m_steps, t)  # (1, B) 1 = real step, 0 = masked (carry)
                    dh_new = dh * m  # (u, B) ∂L/∂h_new
                    dc_new = dc * m + dh_new * _read(dh_dc_steps, t)  # (u, B) ∂L/∂C_new
                else:
                    dh_new = dh
                    dc_new = dc + dh * _read(dh_dc_steps, t)  # (u, B) ∂L/∂C_new
                dz = tf.concat([dc_new, dc_new, dc_new, dh_new], axis=0)  # (4u, B)
                dz = _cast(dz * _read(dgates_steps, t), cdt)  # (4u, B) ∂L/∂z_t
                dh_prev = _cast(tf.matmul(rk, dz), sdt)  # (u, B)
                dc_prev = dc_new * _read(f_steps, t)  # (u, B)
                if has_mask:
                    keep = _read(keep_steps, t)  # (1, B) = 1 - m: masked steps pass h, C on
                    dh_prev += dh * keep
                    dc_prev += dc * keep
                return dh_prev, dc_prev, _write(dzs, t, dz)

            dc_last = tf.zeros_like(c0) if d_c_last is None else _cast(d_c_last, sdt)
            dzs = _new_steps(cdt, n_steps, static_steps, unroll, gates_shape)
            dh0, dc0, dzs = _time_loop(
                back, n_steps, static_steps, (tf.zeros_like(c0), dc_last, dzs), unroll, True
            )
            d_z = _stack(dzs)  # (T, 4u, B)
            d_xw2 = tf.reshape(tf.transpose(d_z, [1, 0, 2]), [4 * u, -1])  # (4u, T·B)
            h_prev = tf.concat([h0[None], hs[:-1]], axis=0)  # (T, u, B)
            h_prev2 = tf.reshape(tf.transpose(h_prev, [0, 2, 1]), [-1, u])  # (T·B, u)
            d_rk_t = tf.matmul(d_xw2, h_prev2)  # (4u, u)
            return d_xw2, _cast(dh0, cdt), dc0, d_rk_t

        return (hs, c_last), grad

    return recurrence(xw2, h0, c0, rk_t)


@keras.saving.register_keras_serializable(package="nmt")
class LSTM(keras.layers.RNN):
    """LSTM over a sequence; a drop-in swap for `keras.layers.LSTM`.

    Every step applies the `LSTMCell` equations (i, f, C̃, o gates; C = f * C_prev + i * C̃;
    h = o * tanh(C)). Constructor arguments, defaults, weights, masking, `initial_state`,
    `return_sequences` / `return_state` / `go_backwards` / `stateful` / `unroll` /
    `zero_output_for_mask`, `reset_state()`, `Bidirectional` and the config all behave as in
    `keras.layers.LSTM`; `.cell` is the `LSTMCell` that owns the weights.

    Masking (as Keras): a masked step leaves h and C unchanged. The output at a masked step is
    the output of the previous step (zeros before the first real step), or zeros when
    `zero_output_for_mask=True`; the returned final h and C are those after the last real step.

    How it runs (default sigmoid/tanh activations, no active recurrent dropout): kernelᵀ·x_t + b
    for all T steps is ONE (4u, D)·(D, T·B) matmul outside the recurrence; the recurrence is one
    `tf.while_loop` (a Python loop with `unroll=True`) doing one (4u, u)·(u, B) matmul per step,
    with a hand-written backward pass (`_recurrence_fused`). States are kept feature-major,
    (u, B), inside the loop: on this CPU (oneDNN) that orientation of the per-step matmul and of
    the large gradient matmuls measured faster than the batch-major one (scripts/bench_lstm.py).
    Other activations, or recurrent dropout in training, run a batch-major loop differentiated
    by autodiff (`_recurrence_generic`). Both compute the same equations as Keras to float32
    rounding.

    Not accepted: Keras' `use_cudnn` (this layer never dispatches to cuDNN). `implementation`
    is accepted and ignored (Keras' two implementations compute the same function).
    """

    def __init__(
        self,
        units: int,
        activation: Any = "tanh",
        recurrent_activation: Any = "sigmoid",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        unit_forget_bias: bool = True,
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        zero_output_for_mask: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("implementation", None)
        kwargs.pop("autocast", None)
        cell = LSTMCell(
            units,
            activation=activation,
            recurrent_activation=recurrent_activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            unit_forget_bias=unit_forget_bias,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            seed=seed,
            dtype=kwargs.get("dtype"),
            trainable=kwargs.get("trainable", True),
            name="lstm_cell",
        )
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            zero_output_for_mask=zero_output_for_mask,
            activity_regularizer=activity_regularizer,
            autocast=False,
            **kwargs,
        )
        self.input_spec = keras.InputSpec(ndim=3)

    # The constructor arguments, read back from the cell (as keras.layers.LSTM exposes them).
    @property
    def units(self) -> int:
        return self.cell.units

    @property
    def activation(self):
        return self.cell.activation

    @property
    def recurrent_activation(self):
        return self.cell.recurrent_activation

    @property
    def use_bias(self) -> bool:
        return self.cell.use_bias

    @property
    def unit_forget_bias(self) -> bool:
        return self.cell.unit_forget_bias

    @property
    def kernel_initializer(self):
        return self.cell.kernel_initializer

    @property
    def recurrent_initializer(self):
        return self.cell.recurrent_initializer

    @property
    def bias_initializer(self):
        return self.cell.bias_initializer

    @property
    def kernel_regularizer(self):
        return self.cell.kernel_regularizer

    @property
    def recurrent_regularizer(self):
        return self.cell.recurrent_regularizer

    @property
    def bias_regularizer(self):
        return self.cell.bias_regularizer

    @property
    def kernel_constraint(self):
        return self.cell.kernel_constraint

    @property
    def recurrent_constraint(self):
        return self.cell.recurrent_constraint

    @property
    def bias_constraint(self):
        return self.cell.bias_constraint

    @property
    def dropout(self) -> float:
        return self.cell.dropout

    @property
    def recurrent_dropout(self) -> float:
        return self.cell.recurrent_dropout

    @property
    def seed(self) -> int | None:
        return self.cell.seed

    def compute_output_spec(self, sequences, initial_state=None, mask=None, training=False):
        shapes = self.compute_output_shape(tuple(sequences.shape))
        cdt, sdt = self.compute_dtype, self.cell.state_dtype
        if self.return_state:
            output_shape, h_shape, c_shape = shapes
            return (
                keras.KerasTensor(output_shape, dtype=cdt),
                keras.KerasTensor(h_shape, dtype=cdt),
                keras.KerasTensor(c_shape, dtype=sdt),
            )
        return keras.KerasTensor(shapes, dtype=cdt)

    def _input_projection(self, xt, dp):
        """x_t·kernel + bias for every step in one matmul, batch-major: xt (T, B, D) -> (T, B, 4u).

        `dp` is None or the input dropout masks (count, B, D): one shared by the four gates, or
        one per gate (count 4, Keras' behaviour when recurrent_dropout > 0).
        """
        cell = self.cell
        cdt, u = cell.compute_dtype, cell.units
        kernel = _cast(cell.kernel, cdt)  # (D, 4u)
        n, b, d = tf.shape(xt)[0], tf.shape(xt)[1], kernel.shape[0]
        if dp is not None and dp.shape[0] == 4:
            xk = tf.reshape(xt[None] * dp[:, None], [4, -1, d])  # (4, T·B, D)
            xw = tf.matmul(xk, tf.stack(_split4(kernel, u)))  # (4, T·B, u)
            xw = tf.reshape(tf.transpose(xw, [1, 0, 2]), [-1, 4 * u])  # (T·B, 4u)
        else:
            if dp is not None:
                xt = xt * dp[0]  # (T, B, D)
            xw = tf.matmul(tf.reshape(xt, [-1, d]), kernel)  # (T·B, 4u)
        if cell.use_bias:
            xw = xw + _cast(cell.bias, cdt)  # (T·B, 4u)
        return tf.reshape(xw, [n, b, 4 * u])  # (T, B, 4u)

    def call(self, sequences, initial_state=None, mask=None, training=False):
        cell = self.cell
        cdt, sdt = cell.compute_dtype, cell.state_dtype
        x = _cast(sequences, cdt)  # (B, T, D)
        if self.unroll and x.shape[1] is None:
            raise ValueError(
                "Cannot unroll a RNN if the time dimension is undefined. Pass an `Input()` "
                "with a fixed time dimension (`shape=` or `batch_shape=`)."
            )
        if initial_state is None:
            if self.stateful:
                initial_state = self.states
            else:
                initial_state = cell.get_initial_state(batch_size=tf.shape(x)[0])
        if self.stateful and self._expected_batch_size is not None:
            if x.shape[0] is not None and x.shape[0] != self._expected_batch_size:
                raise ValueError(
                    "If an RNN is stateful, the batch size of the input sequences must be the "
                    "same as the batch size of the initial state.\n"
                    f"- Expected batch size: {self._expected_batch_size}\n"
                    f"- Received batch size: {x.shape[0]}"
                )
        initial_state = list(initial_state) if isinstance(initial_state, (list, tuple)) else []
        if len(initial_state) != 2:
            raise ValueError(
                f"LSTM expects initial_state=[h, c] (two tensors); got {len(initial_state)}."
            )
        h0 = _cast(initial_state[0], cdt)  # (B, u)
        c0 = _cast(initial_state[1], sdt)  # (B, u)

        if mask is not None:
            if isinstance(mask, (list, tuple)):
                mask = mask[0]
            mask = tf.cast(mask, tf.bool)  # (B, T)
        if self.go_backwards:
            x = tf.reverse(x, [1])
            if mask is not None:
                mask = tf.reverse(mask, [1])
        n_steps, static_steps = tf.shape(x)[1], x.shape[1]

        dp = None
        if training and 0.0 < cell.dropout < 1.0:
            count = 4 if cell.recurrent_dropout > 0 else 1  # per-gate masks, as Keras does
            ones = tf.ones_like(x[:, 0])  # (B, D)
            dp = _cast(_dropout_masks(ones, cell.dropout, count, cell.seed_generator), cdt)
        rdp = None
        if training and 0.0 < cell.recurrent_dropout < 1.0:
            ones = tf.ones_like(h0)  # (B, u)
            rdp = _dropout_masks(ones, cell.recurrent_dropout, 4, cell.seed_generator)
            rdp = _cast(rdp, cdt)  # (4, B, u)
        fused = (
            cell.activation is activations.tanh
            and cell.recurrent_activation is activations.sigmoid
            and rdp is None
            and (dp is None or dp.shape[0] == 1)
        )

        if fused:
            if dp is not None:
                x = x * dp[0][:, None, :]  # (B, T, D)
            kernel_t = tf.transpose(_cast(cell.kernel, cdt))  # (4u, D)
            x2 = tf.reshape(tf.transpose(x, [2, 1, 0]), [kernel_t.shape[1], -1])  # (D, T·B)
            bias = _cast(cell.bias, cdt) if cell.use_bias else None  # (4u,)
            xw2 = _project_feature_major(x2, kernel_t, bias)  # (4u, T·B)
            hs, c_last = _recurrence_fused(
                xw2,
                tf.transpose(h0),
                tf.transpose(c0),
                tf.transpose(_cast(cell.recurrent_kernel, cdt)),
                None if mask is None else tf.transpose(mask)[:, None, :],  # (T, 1, B)
                n_steps,
                static_steps,
                self.unroll,
            )  # (T, u, B), (u, B)
            h_last = tf.transpose(hs[-1])  # (B, u)
            c_last = tf.transpose(c_last)  # (B, u)
            seq = tf.transpose(hs, [2, 0, 1]) if self.return_sequences else None  # (B, T, u)
        else:
            xw = self._input_projection(tf.transpose(x, [1, 0, 2]), dp)  # (T, B, 4u)
            hs, c_last = _recurrence_generic(
                xw,
                h0,
                c0,
                _cast(cell.recurrent_kernel, cdt),
                None if mask is None else tf.transpose(mask)[:, :, None],  # (T, B, 1)
                cell.activation,
                cell.recurrent_activation,
                rdp,
                self.unroll,
            )  # (T, B, u), (B, u)
            h_last = hs[-1]  # (B, u)
            seq = tf.transpose(hs, [1, 0, 2]) if self.return_sequences else None  # (B, T, u)

        if self.stateful:
            for variable, value in zip(self.states, (h_last, c_last), strict=True):
                variable.assign(_cast(value, variable.dtype))

        # Outputs as Keras gives them at masked steps (see the class docstring).
        if mask is None:
            valid = None
        elif self.zero_output_for_mask:
            valid = mask[:, :, None]  # (B, T, 1)
        else:
            valid = tf.cumsum(tf.cast(mask, tf.int32), axis=1)[:, :, None] > 0  # (B, T, 1)
        if self.return_sequences:
            output = seq if valid is None else tf.where(valid, seq, tf.zeros_like(seq))
        else:
            output = h_last if valid is None else tf.where(valid[:, -1], h_last, 0.0)
        output = _cast(output, self.compute_dtype)
        if self.return_state:
            return output, h_last, c_last
        return output

    def get_config(self) -> dict[str, Any]:
        config = {
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "recurrent_activation": activations.serialize(self.recurrent_activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "unit_forget_bias": self.unit_forget_bias,
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "recurrent_regularizer": regularizers.serialize(self.recurrent_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "activity_regularizer": regularizers.serialize(self.activity_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "recurrent_constraint": constraints.serialize(self.recurrent_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
        }
        base = super().get_config()
        del base["cell"]
        return {**base, **config}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LSTM:
        return cls(**config)
