"""nmt.layers.LSTM's `use_cudnn`: Keras' argument contract, the cuDNN weight layout, the dispatch.

On CPU the cuDNN op itself is replaced by a reference written from cuDNN's documented
parameter layout (`_reference_cudnn`), so the whole GPU code path (weight mapping, sequence
lengths, go_backwards, masked outputs, the fallback for masks cuDNN cannot take, gradients)
runs and is compared with our own kernel. The `gpu` tests run the real kernel and skip
without a GPU.
"""

from __future__ import annotations

import importlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from nmt.layers import LSTM, cudnn

B, T, D, U = 3, 5, 4, 6
HAS_GPU = bool(tf.config.list_physical_devices("GPU"))
RIGHT_PADDED = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], bool)
WITH_HOLES = np.array([[1, 1, 1, 1, 1], [0, 1, 1, 0, 1], [1, 0, 0, 0, 0]], bool)


def _weights(seed=0, input_dim=D, units=U):
    rng = np.random.default_rng(seed)
    return [
        rng.normal(scale=0.5, size=(input_dim, 4 * units)).astype("float32"),
        rng.normal(scale=0.5, size=(units, 4 * units)).astype("float32"),
        rng.normal(scale=0.5, size=(4 * units,)).astype("float32"),
    ]


def _built(layer_type, weights, **kwargs):
    layer = layer_type(weights[1].shape[0], **kwargs)
    layer.build((None, None, weights[0].shape[0]))
    layer.set_weights(weights)
    return layer


# === The argument, as keras.layers.LSTM has it ===


def _value_error(make):
    with pytest.raises(ValueError) as caught:
        make()
    return str(caught.value)


def test_use_cudnn_accepts_keras_values_and_rejects_others_with_keras_message():
    for value in ("auto", True, False):
        assert LSTM(U, use_cudnn=value).use_cudnn == value
    assert LSTM(U).use_cudnn == "auto" == keras.layers.LSTM(U).use_cudnn
    ours = _value_error(lambda: LSTM(U, use_cudnn="yes"))
    assert ours == _value_error(lambda: keras.layers.LSTM(U, use_cudnn="yes"))
    assert "use_cudnn=yes" in ours


@pytest.mark.parametrize("value", [True, False])
def test_get_config_keeps_use_cudnn(value):
    config = LSTM(U, use_cudnn=value).get_config()
    assert config["use_cudnn"] is value
    assert LSTM.from_config(config).use_cudnn is value
    revived = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(LSTM(U, use_cudnn=value))
    )
    assert revived.use_cudnn is value
    assert keras.layers.LSTM.from_config(config).use_cudnn is value  # Keras takes it too
    assert "use_cudnn" not in LSTM(U).get_config()  # the default, as Keras' config has it


@pytest.mark.parametrize(
    "kwargs", [dict(recurrent_dropout=0.5), dict(unroll=True), dict(use_bias=False)]
)
def test_use_cudnn_true_where_cudnn_cannot_run_raises_keras_error(kwargs):
    """Ineligible configurations (or no GPU at all) fail at call time, as in Keras."""
    x = np.zeros((B, T, D), "float32")
    for layer_type in (LSTM, keras.layers.LSTM):
        layer = layer_type(U, use_cudnn=True, **kwargs)
        message = _value_error(lambda layer=layer: layer(x))
        assert cudnn.UNSUPPORTED in message, layer_type  # Keras adds the layer's name
    if not HAS_GPU:  # no GPU: even the default configuration cannot use cuDNN
        assert cudnn.UNSUPPORTED in _value_error(lambda: LSTM(U, use_cudnn=True)(x))
        assert cudnn.UNSUPPORTED in _value_error(lambda: keras.layers.LSTM(U, use_cudnn=True)(x))


# === The weight layout ===


@pytest.mark.parametrize("rocm", [False, True])
def test_cudnn_params_match_keras_mapping(rocm):
    """Our packed weights -> the flat vector Keras' own cuDNN path builds from the same weights."""
    keras_rnn = importlib.import_module("keras.src.backend.tensorflow.rnn")

    kernel, recurrent_kernel, bias = (tf.constant(w) for w in _weights(1))
    ours = cudnn.cudnn_params(kernel, recurrent_kernel, bias, rocm=rocm)
    weights = tf.split(kernel, 4, axis=1) + tf.split(recurrent_kernel, 4, axis=1)
    full_bias = tf.concat((tf.zeros_like(bias), bias), 0)
    biases = tf.split(full_bias, 8)
    if rocm:
        order = (0, 1, 3, 2, 4, 5, 7, 6)
        weights, biases = [weights[k] for k in order], [biases[k] for k in order]
    keras_params = keras_rnn._standardize_cudnn_weights(
        weights=weights, biases=biases, shape=tf.constant([-1]), transpose_weights=True
    )
    np.testing.assert_array_equal(ours, keras_params)
    assert ours.shape == (4 * U * D + 4 * U * U + 8 * U,)


def _reference_cudnn(
    input, input_h, input_c, params, is_training, rnn_mode, sequence_lengths, time_major
):
    """CudnnRNNV3 (LSTM, batch-major) from cuDNN's documented parameter layout: W_i, W_f, W_C,
    W_o (u, D) and R_i, ..., R_o (u, u) row-major, then the input-side and recurrent-side biases;
    outputs are zeros after each row's length, h and C those after its last step."""
    assert rnn_mode == "lstm" and not time_major
    _, steps, dim = input.shape
    u = input_h.shape[-1]
    parts = tf.split(params, [u * dim] * 4 + [u * u] * 4 + [u] * 8)
    w = [tf.reshape(p, [u, dim]) for p in parts[:4]]
    r = [tf.reshape(p, [u, u]) for p in parts[4:8]]
    b = [parts[8 + k] + parts[12 + k] for k in range(4)]
    h, c = input_h[:, 0], input_c[:, 0]
    outputs = []
    for t in range(steps):
        x = input[:, t]
        z = [
            tf.matmul(x, w[k], transpose_b=True) + tf.matmul(h, r[k], transpose_b=True) + b[k]
            for k in range(4)
        ]
        c_new = tf.sigmoid(z[1]) * c + tf.sigmoid(z[0]) * tf.tanh(z[2])
        h_new = tf.sigmoid(z[3]) * tf.tanh(c_new)
        live = (t < sequence_lengths)[:, None]
        h, c = tf.where(live, h_new, h), tf.where(live, c_new, c)
        outputs.append(tf.where(live, h_new, tf.zeros_like(h_new)))
    return tf.stack(outputs, 1), h[:, None], c[:, None], None, None


@pytest.fixture
def fake_gpu(monkeypatch):
    """A 'GPU' whose cuDNN LSTM is `_reference_cudnn`; counts the calls."""
    calls = []

    def op(**kwargs):
        calls.append(kwargs["sequence_lengths"])
        return _reference_cudnn(**kwargs)

    monkeypatch.setattr(cudnn, "gpu_available", lambda: True)
    monkeypatch.setattr(tf.raw_ops, "CudnnRNNV3", op)
    return calls


def _outputs_and_grads(layer, x, h0, c0, mask):
    x, h0, c0 = (tf.constant(v) for v in (x, h0, c0))
    with tf.GradientTape() as tape:
        tape.watch([x, h0, c0])
        outputs = layer(x, initial_state=[h0, c0], mask=mask)
        loss = sum(tf.reduce_sum(tf.sin(3.0 * o)) for o in tf.nest.flatten(outputs))
    return outputs, tape.gradient(loss, [x, h0, c0, *layer.trainable_weights])


@pytest.mark.parametrize(
    "mask, go_backwards, return_sequences, zero_output_for_mask",
    [
        (None, False, True, False),
        (RIGHT_PADDED, False, True, False),
        (RIGHT_PADDED, True, True, False),
        (RIGHT_PADDED, False, True, True),
        (RIGHT_PADDED, True, False, True),
        (WITH_HOLES, True, True, False),  # not right-padded: "auto" runs our kernel
    ],
)
def test_cudnn_path_equals_our_kernel(
    fake_gpu, mask, go_backwards, return_sequences, zero_output_for_mask
):
    weights = _weights(2)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(B, T, D)).astype("float32")
    h0, c0 = (rng.normal(size=(B, U)).astype("float32") for _ in range(2))
    kwargs = dict(
        return_sequences=return_sequences,
        return_state=True,
        go_backwards=go_backwards,
        zero_output_for_mask=zero_output_for_mask,
    )
    gpu = _built(LSTM, weights, use_cudnn="auto", **kwargs)
    ours = _built(LSTM, weights, use_cudnn=False, **kwargs)
    got, got_grads = _outputs_and_grads(gpu, x, h0, c0, mask)
    calls = 0 if mask is WITH_HOLES else 1  # eager: a mask with holes takes our kernel alone
    assert len(fake_gpu) == calls
    want, want_grads = _outputs_and_grads(ours, x, h0, c0, mask)
    assert len(fake_gpu) == calls  # use_cudnn=False never calls it
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(got_grads, want_grads, strict=True):
        np.testing.assert_allclose(tf.convert_to_tensor(a), b, rtol=1e-4, atol=1e-5)
    if calls and mask is not None:
        np.testing.assert_array_equal(fake_gpu[0], mask.sum(1))


def test_use_cudnn_true_rejects_a_mask_that_is_not_right_padded(fake_gpu):
    layer = _built(LSTM, _weights(4), use_cudnn=True)
    x = np.zeros((B, T, D), "float32")
    layer(x, mask=RIGHT_PADDED)  # fine
    with pytest.raises(tf.errors.InvalidArgumentError, match="right-padded"):
        layer(x, mask=WITH_HOLES)


def test_cudnn_path_traces_in_a_tf_function(fake_gpu):
    layer = _built(LSTM, _weights(5), return_sequences=True)
    ours = _built(LSTM, _weights(5), return_sequences=True, use_cudnn=False)
    x = np.random.default_rng(6).normal(size=(B, T, D)).astype("float32")
    run = tf.function(lambda x, m: layer(x, mask=m))
    np.testing.assert_allclose(run(x, RIGHT_PADDED), ours(x, mask=RIGHT_PADDED), atol=1e-6)
    np.testing.assert_allclose(run(x, WITH_HOLES), ours(x, mask=WITH_HOLES), atol=1e-6)


def test_inside_xla_auto_takes_our_kernel_and_true_fails(fake_gpu):
    """cuDNN ops cannot be XLA-compiled (e.g. `train.jit`): "auto" runs our kernel there."""
    layer = _built(LSTM, _weights(11), return_sequences=True)
    x = np.random.default_rng(12).normal(size=(B, T, D)).astype("float32")
    got = tf.function(lambda x: layer(x), jit_compile=True)(x)
    assert not fake_gpu
    np.testing.assert_allclose(
        got,
        _built(LSTM, _weights(11), return_sequences=True, use_cudnn=False)(x),
        rtol=1e-5,
        atol=1e-6,
    )
    strict = _built(LSTM, _weights(11), use_cudnn=True)
    with pytest.raises(ValueError, match="use_cudnn=True was specified"):
        tf.function(lambda x: strict(x), jit_compile=True)(x)


# === On a GPU: the real cuDNN kernel ===


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs a GPU")
@pytest.mark.parametrize("policy, tol", [("float32", 1e-5), ("mixed_float16", 2e-2)])
@pytest.mark.parametrize("mask", [None, RIGHT_PADDED])
def test_gpu_cudnn_matches_keras_lstm(policy, tol, mask):
    weights = _weights(7)
    x = np.random.default_rng(8).normal(size=(B, T, D)).astype("float32")
    kwargs = dict(return_sequences=False, return_state=True, use_cudnn=True, dtype=policy)
    ours = _built(LSTM, weights, **kwargs)
    ref = _built(keras.layers.LSTM, weights, **kwargs)
    for a, b in zip(ours(x, mask=mask), ref(x, mask=mask), strict=True):
        np.testing.assert_allclose(
            tf.cast(a, tf.float32), tf.cast(b, tf.float32), rtol=tol, atol=tol
        )
    seq_ours = _built(LSTM, weights, return_sequences=True, use_cudnn=True, dtype=policy)
    seq_ref = _built(
        keras.layers.LSTM, weights, return_sequences=True, use_cudnn=True, dtype=policy
    )
    np.testing.assert_allclose(
        tf.cast(seq_ours(x), tf.float32), tf.cast(seq_ref(x), tf.float32), rtol=tol, atol=tol
    )


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs a GPU")
@pytest.mark.parametrize("go_backwards", [False, True])
def test_gpu_cudnn_equals_our_kernel_with_gradients(go_backwards):
    weights = _weights(9)
    rng = np.random.default_rng(10)
    x = rng.normal(size=(B, T, D)).astype("float32")
    h0, c0 = (rng.normal(size=(B, U)).astype("float32") for _ in range(2))
    kwargs = dict(return_sequences=True, return_state=True, go_backwards=go_backwards)
    got, got_grads = _outputs_and_grads(
        _built(LSTM, weights, use_cudnn=True, **kwargs), x, h0, c0, RIGHT_PADDED
    )
    want, want_grads = _outputs_and_grads(
        _built(LSTM, weights, use_cudnn=False, **kwargs), x, h0, c0, RIGHT_PADDED
    )
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    for a, b in zip(got_grads, want_grads, strict=True):
        np.testing.assert_allclose(tf.convert_to_tensor(a), b, rtol=1e-4, atol=1e-4)
