"""The LSTM step kernel: one home for the step's equations and its hand-written backward pass.

One step maps the gate pre-activations z = W·[h_prev, x] + b, packed (i, f, C̃, o) along the
gate axis as `keras.layers.LSTMCell` packs them, and the previous cell state C_prev to

    i, f, o = σ(z_i), σ(z_f), σ(z_o)     C̃ = tanh(z_C)
    C       = f * C_prev + i * C̃         h = o * tanh(C)

Everything that runs an LSTM step uses this module: `LSTMCell.call`, the `LSTM` layer's
whole-sequence recurrences (below) and the decoder's input-feeding loop (nmt/decoder.py),
which also takes its loop matmuls' gradient scheme, `LoopMatmul`, from here.

The pieces:
  - `step_forward` / `gate_derivatives` / `step_backward`: the sigmoid/tanh step and its exact
    backward pass, elementwise on any layout (the gate axis is an argument, so batch-major
    (B, 4u) and feature-major (4u, B) steps, and whole (T, 4u, B) stacks, share the code).
  - `lstm_step`: one step with that backward pass as its gradient (`tf.custom_gradient`), for
    any activations (other than sigmoid/tanh it is plain autodiff of the same equations).
  - `recurrence_fused` (sigmoid/tanh, feature-major, the whole backward pass hand-written over
    time) and `recurrence_generic` (any activations, per-gate recurrent dropout): the `LSTM`
    layer's loops over a sequence.

Dtypes (mixed precision): z and h are in the compute dtype (the matmuls' dtype); the gates,
C and every elementwise derivative in the state dtype (float32 under 16-bit policies, see
nmt.layers.lstm).
"""

from __future__ import annotations

import tensorflow as tf
from keras import activations, ops

__all__ = [
    "LoopMatmul",
    "gate_derivatives",
    "is_standard",
    "lstm_step",
    "recurrence_fused",
    "recurrence_generic",
    "step_backward",
    "step_forward",
]


def cast(x, dtype):
    """tf.cast that is a no-op when `x` already has `dtype`."""
    dtype = tf.as_dtype(dtype)
    x = tf.convert_to_tensor(x)
    return x if x.dtype == dtype else tf.cast(x, dtype)


def split4(x, units: int, axis: int = -1):
    """Splits the gate axis (4u) into the four gate blocks (i, f, C̃, o)."""
    return tf.split(x, [units, units, units, units], axis=axis)


_TANH = (activations.tanh, tf.tanh, tf.math.tanh, ops.tanh)
_SIGMOID = (activations.sigmoid, tf.sigmoid, tf.math.sigmoid, ops.sigmoid)


def is_standard(activation, recurrent_activation) -> bool:
    """Whether the activations are tanh and sigmoid (the hand-written backward pass applies)."""
    return activation in _TANH and recurrent_activation in _SIGMOID


# === One step ===


def step_forward(z, c_prev, axis: int = -1):
    """The sigmoid/tanh step: z (…4u…) gates on `axis`, c_prev (…u…) -> (h, C, σ(z), C̃).

    σ is taken of all four blocks at once (the C̃ block of σ(z) is unused): one elementwise op
    over the packed gates instead of three over slices. h is in z's dtype; C, σ(z) and C̃ in
    c_prev's.
    """
    h, c, a, g, _ = _forward(z, c_prev, axis)
    return h, c, a, g


def _forward(z, c_prev, axis):
    """`step_forward` plus tanh(C) (…u…), which the one-step backward pass reuses.

    Under a 16-bit policy z is cast to C's dtype once, so σ, tanh and their derivatives run
    in float32: one cast of the packed gates instead of one per gate, and TensorFlow's
    bfloat16 elementwise kernels on CPU are slower than its float32 ones (BENCHMARKS.md).
    """
    zs = cast(z, c_prev.dtype)  # (…4u…)
    a = tf.sigmoid(zs)  # (…4u…) σ(z)
    a_i, a_f, _, a_o = tf.split(a, 4, axis=axis)  # (…u…) each
    g = tf.tanh(tf.split(zs, 4, axis=axis)[2])  # (…u…) C̃
    c = a_f * c_prev + a_i * g  # (…u…)
    tc = tf.tanh(c)  # (…u…)
    h = cast(a_o * tc, z.dtype)  # (…u…)
    return h, c, a, g, tc


def gate_derivatives(a, g, c_prev, c, axis: int = -1, tc=None):
    """The step's elementwise derivatives from its saved values (any leading shape).

    Returns (dgates (…4u…): ∂C/∂z_i, ∂C/∂z_f, ∂C/∂z_C, ∂h/∂z_o packed as z; dh_dc (…u…):
    ∂h/∂C through tanh(C); f (…u…): ∂C/∂C_prev), all in C's dtype. `tc` is tanh(C) if kept.
    σ' = σ(1 - σ) and tanh' = 1 - tanh² are TensorFlow's fused SigmoidGrad / TanhGrad ops
    (σ'(z)·v, tanh'(z)·v from the saved activations), one op per block.
    """
    sdt = c.dtype
    a_i, a_f, _, a_o = (cast(v, sdt) for v in tf.split(a, 4, axis=axis))
    g = cast(g, sdt)
    tc = tf.tanh(c) if tc is None else tc
    sigmoid_grad, tanh_grad = tf.raw_ops.SigmoidGrad, tf.raw_ops.TanhGrad
    dgates = tf.concat(
        [
            sigmoid_grad(y=a_i, dy=g),  # ∂C/∂z_i = C̃ σ'(z_i)
            sigmoid_grad(y=a_f, dy=c_prev),  # ∂C/∂z_f = C_prev σ'(z_f)
            tanh_grad(y=g, dy=a_i),  # ∂C/∂z_C = i tanh'(z_C)
            sigmoid_grad(y=a_o, dy=tc),  # ∂h/∂z_o = tanh(C) σ'(z_o)
        ],
        axis=axis,
    )
    return dgates, tanh_grad(y=tc, dy=a_o), a_f  # dh_dc = o tanh'(C)


def step_backward(dh, dc, dgates, dh_dc, f, z_dtype, axis: int = -1):
    """One step backward: ∂L/∂h and ∂L/∂C of the step's outputs -> (∂L/∂z, ∂L/∂C_prev).

    dh, dc (…u…) in C's dtype; dc is the gradient arriving at C from later steps (h's share
    through tanh(C) is added here). ∂L/∂z comes back in `z_dtype`.
    """
    dc = dc + dh * dh_dc  # (…u…) ∂L/∂C, total
    dz = tf.concat([dc, dc, dc, dh], axis=axis) * dgates  # (…4u…)
    return cast(dz, z_dtype), dc * f


def _step_autodiff(z, c_prev, activation, recurrent_activation, axis):
    """The same equations for any activations, differentiated by autodiff."""
    z_i, z_f, z_c, z_o = tf.split(cast(z, c_prev.dtype), 4, axis=axis)  # as `_forward`
    i, f, o = recurrent_activation(z_i), recurrent_activation(z_f), recurrent_activation(z_o)
    c = f * c_prev + i * activation(z_c)
    h = cast(o * activation(c), z.dtype)
    return h, c


def lstm_step(
    z,
    c_prev,
    activation=activations.tanh,
    recurrent_activation=activations.sigmoid,
    axis=-1,
    hand_backward: bool = False,
):
    """One LSTM step: `(h, C)` from gate pre-activations z (…4u…) and c_prev (…u…).

    Differentiated by autodiff by default: inside per-step loops (the cell, the decoder's
    input-feeding loop) that measured 2-6% faster on CPU than the hand-written backward pass,
    whose strength is the whole-sequence form (`recurrence_fused`: derivatives of all steps at
    once, weight gradients after the loop). `hand_backward=True` (tanh/sigmoid only) gives
    this step that backward pass (`gate_derivatives`, `step_backward`) as its gradient.
    """
    if not hand_backward or not is_standard(activation, recurrent_activation):
        return _step_autodiff(z, c_prev, activation, recurrent_activation, axis)

    @tf.custom_gradient
    def step(z, c_prev):
        h, c, a, g, tc = _forward(z, c_prev, axis)

        def grad(dh, dc):
            sdt = c.dtype
            dh = tf.zeros_like(c) if dh is None else cast(dh, sdt)
            dc = tf.zeros_like(c) if dc is None else cast(dc, sdt)
            dgates, dh_dc, f = gate_derivatives(a, g, c_prev, c, axis, tc)
            return step_backward(dh, dc, dgates, dh_dc, f, z.dtype, axis)

        return (h, c), grad

    return step(z, c_prev)


# ---------------------------------------------------------------------------------------------
# The recurrence. Time is the leading axis of every per-step tensor, and a masked step carries
# h and C forward unchanged. `recurrence_generic` keeps states batch-major (B, u);
# `recurrence_fused` keeps them feature-major (u, B). Both return the h state after every step
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


def recurrence_generic(xw, h0, c0, rk, mask, activation, recurrent_activation, rdp, unroll):
    """Any activations, optional per-gate recurrent dropout `rdp` (4, B, u), batch-major.

    Each step is `lstm_step` (its hand-written gradient with tanh/sigmoid, else autodiff).

    xw (T, B, 4u) is x_t·kernel + b for every step, h0 and c0 (B, u), rk (u, 4u), mask
    (T, B, 1) bool or None. Returns hs (T, B, u) and the final C (B, u).
    """
    cdt = h0.dtype
    u = h0.shape[-1]
    n, static_n = tf.shape(xw)[0], xw.shape[0]
    xs = _steps(xw, unroll)
    ms = _steps(mask, unroll) if mask is not None else None
    if rdp is not None:
        rk_per_gate = tf.stack(split4(rk, u))  # (4, u, u)

    def body(t, h, c, hs):
        if rdp is not None:
            hz = tf.matmul(h[None] * rdp, rk_per_gate)  # (4, B, u)
            hz = tf.concat(tf.unstack(hz), axis=-1)  # (B, 4u)
        else:
            hz = tf.matmul(h, rk)  # (B, 4u)
        h_new, c_new = lstm_step(_read(xs, t) + hz, c, activation, recurrent_activation)
        if ms is not None:
            m = _read(ms, t)  # (B, 1)
            h_new = tf.where(m, h_new, h)
            c_new = tf.where(m, c_new, c)
        return h_new, c_new, _write(hs, t, h_new)

    hs = _new_steps(cdt, n, static_n, unroll, h0.shape)
    _, c_last, hs = _time_loop(body, n, static_n, (h0, c0, hs), unroll)
    return _stack(hs), c_last


def project_feature_major(x2, kernel_t, bias):
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


# ~100 lines on purpose: one tf.custom_gradient whose forward loop and backward loop share the
# tensors the forward pass keeps (acts, gs, cs_*); split, they would travel through arguments.
def recurrence_fused(xw2, h0, c0, rk_t, mask, n_steps, static_steps, unroll):
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
            h_new, c_new, a, g = step_forward(z, c, axis=0)  # (u, B), (u, B), (4u, B), (u, B)
            acts, gs, cs_new = _write(acts, t, a), _write(gs, t, g), _write(cs_new, t, c_new)
            if has_mask:
                cs_prev = _write(cs_prev, t, c)
                m = _read(ms, t)  # (1, B)
                h_new = tf.where(m, h_new, h)
                c_new = tf.where(m, c_new, c)
            return h_new, c_new, _write(hs, t, h_new), acts, gs, cs_new, cs_prev

        storage = (
            _new_steps(cdt, n_steps, static_steps, unroll, state_shape),  # h after each step
            _new_steps(sdt, n_steps, static_steps, unroll, gates_shape),  # σ(z)
            _new_steps(sdt, n_steps, static_steps, unroll, state_shape),  # C̃
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
            # The elementwise derivatives of every step at once, before the loop.
            dgates, dh_dc, a_f = gate_derivatives(acts, gs, cs_prev, cs_new, axis=1)
            rk = tf.transpose(rk_t)  # (u, 4u)
            d_hs_steps = _steps(cast(d_hs, sdt), unroll)
            dgates_steps = _steps(dgates, unroll)
            dh_dc_steps = _steps(dh_dc, unroll)
            f_steps = _steps(a_f, unroll)
            if has_mask:
                m_float = cast(mask, sdt)  # (T, 1, B)
                m_steps = _steps(m_float, unroll)
                keep_steps = _steps(1.0 - m_float, unroll)

            def back(t, dh, dc, dzs):
                dh = dh + _read(d_hs_steps, t)  # (u, B) ∂L/∂h_t (carried h included)
                if has_mask:
                    m = _read(m_steps, t)  # (1, B) 1 = real step, 0 = masked (carry)
                    dh_new, dc_new = dh * m, dc * m  # (u, B) ∂L/∂h_new, ∂L/∂C_new from later
                else:
                    dh_new, dc_new = dh, dc
                dz, dc_prev = step_backward(
                    dh_new,
                    dc_new,
                    _read(dgates_steps, t),
                    _read(dh_dc_steps, t),
                    _read(f_steps, t),
                    cdt,
                    axis=0,
                )  # (4u, B) ∂L/∂z_t, (u, B)
                dh_prev = cast(tf.matmul(rk, dz), sdt)  # (u, B)
                if has_mask:
                    keep = _read(keep_steps, t)  # (1, B) = 1 - m: masked steps pass h, C on
                    dh_prev += dh * keep
                    dc_prev += dc * keep
                return dh_prev, dc_prev, _write(dzs, t, dz)

            dc_last = tf.zeros_like(c0) if d_c_last is None else cast(d_c_last, sdt)
            dzs = _new_steps(cdt, n_steps, static_steps, unroll, gates_shape)
            dh0, dc0, dzs = _time_loop(
                back, n_steps, static_steps, (tf.zeros_like(c0), dc_last, dzs), unroll, True
            )
            d_z = _stack(dzs)  # (T, 4u, B)
            d_xw2 = tf.reshape(tf.transpose(d_z, [1, 0, 2]), [4 * u, -1])  # (4u, T·B)
            h_prev = tf.concat([h0[None], hs[:-1]], axis=0)  # (T, u, B)
            h_prev2 = tf.reshape(tf.transpose(h_prev, [0, 2, 1]), [-1, u])  # (T·B, u)
            d_rk_t = tf.matmul(d_xw2, h_prev2)  # (4u, u)
            return d_xw2, cast(dh0, cdt), dc0, d_rk_t

        return (hs, c_last), grad

    return recurrence(xw2, h0, c0, rk_t)


# ---------------------------------------------------------------------------------------------
# Matmuls inside a step loop that autodiff differentiates (the decoder's input-feeding loop).
# ---------------------------------------------------------------------------------------------


class LoopMatmul:
    """x_t W at every step t of a `tf.while_loop`, with a backward pass that is fast on CPU.

    Autodiff of `tf.matmul(x_t, W)` inside a loop computes, at every step, dx_t = dz_t W^T as a
    transpose_b matmul (about 3x slower than a plain matmul for a (B, n) x (n, m) product on CPU)
    and dW += x_t^T dz_t (a small matmul plus an (n, m) accumulation). Instead:

      - dx_t = dz_t W_T, a plain matmul with W_T = transpose(W) computed once before the loop;
      - dW = X^T dZ, one (n, T*B) x (T*B, m) matmul after the loop. The loop adds
        `offset(t)` to x_t W: zeros (T, B, m) made by `_zeros_with_weight_gradient`, whose
        gradient is dZ, the stack of every dz_t. The loop records x_t with `record`; after it,
        `finish(recorded)` stacks them into X for that gradient.

    `base` (T, B, m), if given, is added to the offsets (e.g. the hoisted input projection).
    """

    def __init__(self, weight, steps, batch, base=None):
        self.weight = tf.stop_gradient(weight)  # (n, m)
        self.weight_t = tf.transpose(self.weight)  # (m, n)
        self.inputs = None  # X (T, B, n), set by finish()
        n_in, n_out = weight.shape
        offsets = _zeros_with_weight_gradient(weight, [steps, batch, n_out], self)
        if base is not None:
            offsets = offsets + base
        self.offsets = tf.TensorArray(weight.dtype, size=steps, element_shape=[None, n_out])
        self.offsets = self.offsets.unstack(offsets)
        self.recorded = tf.TensorArray(weight.dtype, size=steps, element_shape=[None, n_in])

    def __call__(self, t, x):
        """x_t W + offset(t) for x_t `(B, n)`: `(B, m)`."""
        return self.apply(x, self.offset(t))

    def offset(self, t):
        """offset(t) `(B, m)`, read from the loop's TensorArray."""
        return self.offsets.read(t)

    def apply(self, x, offset):
        """x W + offset, with `offset(t)` read by the caller (e.g. outside an XLA function)."""
        return _matmul_with_fast_input_gradient(x, self.weight, self.weight_t) + offset  # (B, m)

    @staticmethod
    def record(recorded, t, x):
        return recorded.write(t, tf.stop_gradient(x))

    def finish(self, recorded):
        self.inputs = recorded.stack()  # (T, B, n)


def _matmul_with_fast_input_gradient(x, weight, weight_t):
    """x @ weight; gradient for x only, dz @ weight_t (a plain matmul)."""

    @tf.custom_gradient
    def matmul(x):
        def grad(dz):
            return tf.matmul(dz, weight_t)  # (B, n)

        return tf.matmul(x, weight), grad  # (B, m)

    return matmul(x)


def _zeros_with_weight_gradient(weight, shape, loop_matmul):
    """Zeros of `shape` (T, B, m) whose gradient dZ gives weight the gradient X^T dZ."""

    @tf.custom_gradient
    def zeros(weight):
        def grad(dz):
            x = loop_matmul.inputs  # (T, B, n), stacked by the loop
            x = tf.reshape(x, [-1, x.shape[-1]])  # (T*B, n)
            return tf.matmul(x, tf.reshape(dz, [-1, dz.shape[-1]]), transpose_a=True)  # (n, m)

        return tf.zeros(shape, weight.dtype), grad

    return zeros(weight)
