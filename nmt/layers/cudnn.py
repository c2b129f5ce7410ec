"""The cuDNN path of `nmt.layers.LSTM` (`use_cudnn`, as `keras.layers.LSTM` has it).

With a GPU and an eligible configuration the layer's whole-sequence recurrence is one
`CudnnRNNV3` call: the same six equations (nmt/layers/lstm_kernel.py) computed by the cuDNN
kernel. Eligible, as Keras documents it: tanh / sigmoid activations, no recurrent dropout, not
unrolled, bias on; not inside an XLA-compiled function; and at run time a right-padded mask
(True steps first, no empty row), else `use_cudnn="auto"` runs our own kernel and
`use_cudnn=True` fails as Keras does.

Weight layout: ours is Keras' (kernel (D, 4u), recurrent_kernel (u, 4u), bias (4u,), gate
blocks i, f, C̃, o). cuDNN takes one flat vector: the eight matrices W_i, W_f, W_C, W_o (input,
each (u, D) row-major, i.e. the kernel's gate block transposed) and R_i, …, R_o (recurrent,
(u, u)), then eight bias vectors: four on the input side (zeros here) and four on the recurrent
side (our bias), so that b_W + b_R is our one bias. ROCm's MIOpen orders the gates i, f, o, C̃.
"""

from __future__ import annotations

import tensorflow as tf

from nmt.layers.lstm_kernel import cast, is_standard

USE_CUDNN_VALUES = ("auto", True, False)
CUDNN_DTYPES = ("float16", "float32", "float64")

# keras.layers.LSTM's own messages (Keras 3.15), so that a swap changes nothing for the user.
UNSUPPORTED = (
    "use_cudnn=True was specified, but cuDNN is not supported for this layer configuration "
    "with this backend. Pass use_cudnn='auto' to fallback to a non-cuDNN implementation."
)
MASK_NOT_RIGHT_PADDED = (
    "You are passing a RNN mask that does not correspond to right-padded sequences, while "
    "using cuDNN, which is not supported. With cuDNN, RNN masks can only be used for "
    "right-padding, e.g. `[[True, True, False, False]]` would be a valid mask, but any mask "
    "that isn't just contiguous `True`'s on the left and contiguous `False`'s on the right "
    "would be invalid. You can pass `use_cudnn=False` to your RNN layer to stop using cuDNN "
    "(this may be slower)."
)


def check_use_cudnn(value) -> None:
    """Raises Keras' ValueError unless `value` is "auto", True or False."""
    if value not in USE_CUDNN_VALUES:  # Keras' own test (so 1 and 0 pass, as there)
        raise ValueError(
            "Invalid valid received for argument `use_cudnn`. "
            "Expected one of {'auto', True, False}. "
            f"Received: use_cudnn={value}"
        )


def gpu_available() -> bool:
    return bool(tf.config.list_logical_devices("GPU"))


def in_xla_context() -> bool:
    """Whether the op being built goes into an XLA-compiled function (`jit_compile=True`,
    e.g. `train.jit`), where the cuDNN op cannot run; then "auto" takes our kernel."""
    try:
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - TensorFlow moved its internals
        return False
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


def arguments_support_cudnn(activation, recurrent_activation, unroll, use_bias) -> bool:
    """Keras' static conditions: tanh/sigmoid, not unrolled, with a bias."""
    return is_standard(activation, recurrent_activation) and not unroll and bool(use_bias)


def cudnn_params(kernel, recurrent_kernel, bias, rocm: bool | None = None):
    """Our (Keras') weights as cuDNN's flat parameter vector, in the dtype of `kernel`.

    kernel (D, 4u), recurrent_kernel (u, 4u), bias (4u,) -> (4u·D + 4u·u + 8u,).
    """
    if rocm is None:
        rocm = bool(tf.sysconfig.get_build_info().get("is_rocm_build", False))
    weights = tf.split(kernel, 4, axis=1) + tf.split(recurrent_kernel, 4, axis=1)
    biases = tf.split(tf.concat([tf.zeros_like(bias), bias], 0), 8)  # (u,) each
    if rocm:
        order = (0, 1, 3, 2, 4, 5, 7, 6)
        weights = [weights[k] for k in order]
        biases = [biases[k] for k in order]
    flat = [tf.reshape(tf.transpose(w), [-1]) for w in weights]
    return tf.concat(flat + biases, axis=0)


def mask_is_right_padded(mask):
    """Scalar bool: every row of `mask` (B, T) is True steps then False steps, none empty."""
    lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)  # (B,)
    right = tf.sequence_mask(lengths, maxlen=tf.shape(mask)[1])  # (B, T)
    return tf.logical_and(
        tf.reduce_all(tf.equal(tf.cast(mask, tf.bool), right)), tf.reduce_all(lengths > 0)
    )


def cudnn_recurrence(x, h0, c0, params, mask, go_backwards: bool, return_sequences: bool):
    """The recurrence as one cuDNN call, shaped as our own recurrence returns it.

    x (B, T, D), h0 and c0 (B, u) in one float dtype, params from `cudnn_params`, mask (B, T)
    right-padded or None. Returns (states (B, T, u) in processing order or None, h_last, C_last):
    states[:, k] is h after the k-th processed step, masked steps carrying h (as
    `recurrence_fused` gives them), so the layer's output masking applies unchanged.
    """
    batch, steps = tf.shape(x)[0], tf.shape(x)[1]
    if mask is None:
        lengths = tf.fill([batch], steps)  # (B,)
    else:
        lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)  # (B,)
    if go_backwards:  # the real steps of each row, last first; padding stays at the end
        x = tf.reverse_sequence(x, lengths, seq_axis=1, batch_axis=0)
    outputs, h, c, _, _ = tf.raw_ops.CudnnRNNV3(
        input=x,
        input_h=h0[:, None],  # (B, 1, u): cuDNN's layer axis after the batch
        input_c=c0[:, None],
        params=params,
        is_training=True,
        rnn_mode="lstm",
        sequence_lengths=lengths,
        time_major=False,
    )  # (B, T, u): zeros after each row's length
    h, c = h[:, 0], c[:, 0]  # (B, u)
    if not return_sequences:
        return None, h, c
    if mask is not None:
        real = tf.sequence_mask(lengths, maxlen=steps)[:, :, None]  # (B, T, 1)
        carried = h0 if go_backwards else h  # what a masked step holds in processing order
        outputs = tf.where(real, outputs, carried[:, None])
    if go_backwards:  # processing order: the padding first, then the real steps last first
        outputs = tf.reverse(tf.reverse_sequence(outputs, lengths, seq_axis=1, batch_axis=0), [1])
    return outputs, h, c


def run_cudnn(x, h0, c0, cell, mask, go_backwards: bool, return_sequences: bool):
    """`cudnn_recurrence` with the cell's weights, in the dtype of x; C comes back as c0's."""
    cdt, sdt = x.dtype, c0.dtype
    params = cudnn_params(
        cast(cell.kernel, cdt), cast(cell.recurrent_kernel, cdt), cast(cell.bias, cdt)
    )
    seq, h, c = cudnn_recurrence(x, h0, cast(c0, cdt), params, mask, go_backwards, return_sequences)
    return seq, h, cast(c, sdt)
