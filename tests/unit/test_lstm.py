"""nmt.layers.LSTM / LSTMCell: the six equations, keras.layers.LSTM parity, the layer contract."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from nmt.layers import LSTM, LSTMCell
from tests.helpers.layer_checks import check_layer

B, T, D, U = 3, 6, 4, 5
# Rows: right-padded, left-padded, holes, fully masked, and all real.
MASK = np.array(
    [
        [1, 1, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 1],
        [1, 0, 1, 0, 0, 1],
    ],
    dtype=bool,
)
MASK_WITH_EMPTY_ROW = np.array([[1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]], bool)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _random_weights(rng, input_dim=D, units=U, scale=0.6):
    """Random kernel, recurrent kernel and bias (bias random too), Keras layout."""
    return [
        rng.normal(scale=scale, size=(input_dim, 4 * units)).astype("float32"),
        rng.normal(scale=scale, size=(units, 4 * units)).astype("float32"),
        rng.normal(scale=scale, size=(4 * units,)).astype("float32"),
    ]


def _inputs(rng, batch=B, steps=T, input_dim=D, units=U):
    x = rng.normal(size=(batch, steps, input_dim)).astype("float32")
    h0 = rng.normal(size=(batch, units)).astype("float32")
    c0 = rng.normal(size=(batch, units)).astype("float32")
    return x, h0, c0


# ------------------------------------------------------------------------------------------
# The numpy oracle, written from the six equations with W_g acting on the concatenation [h, x].
# ------------------------------------------------------------------------------------------


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _gate_params(weights, units, gate_order="ifco"):
    """W_g (units + input_dim, units) over [h, x] and b_g for g in f, i, c, o."""
    kernel, recurrent_kernel, bias = (np.asarray(w, np.float64) for w in weights)
    w_hx = np.concatenate([recurrent_kernel, kernel], axis=0)  # rows: h then x
    params = {}
    for k, gate in enumerate(gate_order):
        cols = slice(k * units, (k + 1) * units)
        params[gate] = (w_hx[:, cols], bias[cols])
    return params


def oracle_step(x, h_prev, c_prev, weights, gate_order="ifco"):
    units = h_prev.shape[-1]
    p = _gate_params(weights, units, gate_order)
    hx = np.concatenate([h_prev, x], axis=-1)  # [h, x]
    f = _sigmoid(hx @ p["f"][0] + p["f"][1])
    i = _sigmoid(hx @ p["i"][0] + p["i"][1])
    c_tilde = np.tanh(hx @ p["c"][0] + p["c"][1])
    c = f * c_prev + i * c_tilde
    o = _sigmoid(hx @ p["o"][0] + p["o"][1])
    h = o * np.tanh(c)
    return h, c


def oracle_sequence(
    x, h0, c0, weights, mask=None, go_backwards=False, zero_output_for_mask=False, **kw
):
    """Outputs (B, T, u) in processing order, final h, final C; Keras masking semantics:
    a masked step keeps h and C; its output is the previous output (zeros before the first real
    step) or zeros with zero_output_for_mask."""
    x, h, c = (np.asarray(v, np.float64) for v in (x, h0, c0))
    steps = range(x.shape[1] - 1, -1, -1) if go_backwards else range(x.shape[1])
    prev_out = np.zeros_like(h)
    outputs = []
    for t in steps:
        h_new, c_new = oracle_step(x[:, t], h, c, weights, **kw)
        m = np.ones((x.shape[0], 1), bool) if mask is None else mask[:, t : t + 1]
        h = np.where(m, h_new, h)
        c = np.where(m, c_new, c)
        out = np.where(m, h_new, 0.0 if zero_output_for_mask else prev_out)
        outputs.append(out)
        prev_out = out
    return np.stack(outputs, axis=1), h, c


def _built_lstm(weights, input_dim=D, **kwargs):
    layer = LSTM(weights[1].shape[0], **kwargs)
    layer.build((None, None, input_dim))
    layer.set_weights(weights)
    return layer


# ------------------------------------------------------------------------------------------
# Oracle tests.
# ------------------------------------------------------------------------------------------


def test_cell_matches_oracle_with_random_weights_and_state():
    rng = _rng(1)
    weights = _random_weights(rng)
    x = rng.normal(size=(B, D)).astype("float32")
    h0, c0 = (rng.normal(size=(B, U)).astype("float32") for _ in range(2))
    cell = LSTMCell(U)
    cell.build((None, D))
    cell.set_weights(weights)
    out, (h, c) = cell(x, [h0, c0])
    want_h, want_c = oracle_step(x, h0, c0, weights)
    np.testing.assert_allclose(h, want_h, atol=1e-5)
    np.testing.assert_allclose(c, want_c, atol=1e-5)
    np.testing.assert_allclose(out, want_h, atol=1e-5)
    # The oracle is sensitive to the gate order: swapping any two gates changes the answer.
    for order in ("fico", "icfo", "ifoc", "oicf"):
        swapped_h, _ = oracle_step(x, h0, c0, weights, gate_order=order)
        assert np.max(np.abs(swapped_h - np.asarray(h))) > 1e-2, order


@pytest.mark.parametrize(
    "go_backwards,use_mask,zero_output_for_mask",
    [(False, False, False), (True, False, False), (False, True, False), (True, True, True)],
)
def test_layer_matches_oracle(go_backwards, use_mask, zero_output_for_mask):
    rng = _rng(2)
    weights = _random_weights(rng)
    x, h0, c0 = _inputs(rng)
    mask = MASK if use_mask else None
    layer = _built_lstm(
        weights,
        return_sequences=True,
        return_state=True,
        go_backwards=go_backwards,
        zero_output_for_mask=zero_output_for_mask,
    )
    seq, h, c = layer(x, initial_state=[h0, c0], mask=mask)
    want_seq, want_h, want_c = oracle_sequence(
        x, h0, c0, weights, mask, go_backwards, zero_output_for_mask
    )
    np.testing.assert_allclose(seq, want_seq, atol=1e-5)
    np.testing.assert_allclose(h, want_h, atol=1e-5)
    np.testing.assert_allclose(c, want_c, atol=1e-5)
    last = _built_lstm(
        weights, go_backwards=go_backwards, zero_output_for_mask=zero_output_for_mask
    )
    np.testing.assert_allclose(
        last(x, initial_state=[h0, c0], mask=mask), want_seq[:, -1], atol=1e-5
    )


# ------------------------------------------------------------------------------------------
# Parity with keras.layers.LSTM (weights copied both ways).
# ------------------------------------------------------------------------------------------


def _outputs_and_grads(layer, x, h0, c0, mask, training=False):
    """Outputs and the gradients of a fixed nonlinear loss w.r.t. inputs, states, weights."""
    x, h0, c0 = (tf.constant(v) for v in (x, h0, c0))
    with tf.GradientTape() as tape:
        tape.watch([x, h0, c0])
        outputs = layer(x, initial_state=[h0, c0], mask=mask, training=training)
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        loss = sum(tf.reduce_sum(tf.sin(3.0 * o) * (k + 1.0)) for k, o in enumerate(outputs))
    grads = tape.gradient(loss, [x, h0, c0, *layer.trainable_weights])
    return [np.asarray(o) for o in outputs], [np.asarray(g) for g in grads]


def _assert_same(ours, ref, atol=1e-5):
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_allclose(a, b, atol=atol, rtol=1e-5)


@pytest.mark.parametrize(
    "go_backwards,mask,return_sequences,copy_from_keras",
    [
        (gb, m, rs, cf)
        for gb, m, rs, cf in itertools.product(
            (False, True), (None, MASK, MASK_WITH_EMPTY_ROW), (False, True), (True,)
        )
    ]
    + [(False, MASK, True, False), (True, None, False, False)],
)
def test_matches_keras_lstm(go_backwards, mask, return_sequences, copy_from_keras):
    rng = _rng(3)
    x, h0, c0 = _inputs(rng)
    kwargs = dict(return_sequences=return_sequences, return_state=True, go_backwards=go_backwards)
    ref = keras.layers.LSTM(U, **kwargs)
    ours = LSTM(U, **kwargs)
    ref.build((None, T, D))
    ours.build((None, T, D))
    if copy_from_keras:
        ref.set_weights(_random_weights(rng))
        ours.set_weights(ref.get_weights())
    else:
        ours.set_weights(_random_weights(rng))
        ref.set_weights(ours.get_weights())
    out_ours, grads_ours = _outputs_and_grads(ours, x, h0, c0, mask)
    out_ref, grads_ref = _outputs_and_grads(ref, x, h0, c0, mask)
    _assert_same(out_ours, out_ref)
    _assert_same(grads_ours, grads_ref)


@pytest.mark.parametrize("zero_output_for_mask", [False, True])
def test_matches_keras_with_zero_output_for_mask_and_unroll(zero_output_for_mask):
    rng = _rng(4)
    x, h0, c0 = _inputs(rng)
    weights = _random_weights(rng)
    kwargs = dict(
        return_sequences=True, return_state=True, zero_output_for_mask=zero_output_for_mask
    )
    ref = keras.layers.LSTM(U, **kwargs)
    ref.build((None, T, D))
    ref.set_weights(weights)
    out_ref, grads_ref = _outputs_and_grads(ref, x, h0, c0, MASK)
    for unroll in (False, True):
        ours = _built_lstm(weights, unroll=unroll, **kwargs)
        out_ours, grads_ours = _outputs_and_grads(ours, x, h0, c0, MASK)
        _assert_same(out_ours, out_ref)
        _assert_same(grads_ours, grads_ref)


def test_matches_keras_with_other_activations():
    """Non-default activations take the autodiff path; still the same function as Keras."""
    rng = _rng(5)
    x, h0, c0 = _inputs(rng)
    weights = _random_weights(rng)
    kwargs = dict(
        activation="softsign",
        recurrent_activation="hard_sigmoid",
        return_sequences=True,
        return_state=True,
        go_backwards=True,
    )
    ref = keras.layers.LSTM(U, **kwargs)
    ref.build((None, T, D))
    ref.set_weights(weights)
    ours = _built_lstm(weights, **kwargs)
    out_ours, grads_ours = _outputs_and_grads(ours, x, h0, c0, MASK)
    out_ref, grads_ref = _outputs_and_grads(ref, x, h0, c0, MASK)
    _assert_same(out_ours, out_ref)
    _assert_same(grads_ours, grads_ref)


def test_matches_keras_without_bias():
    rng = _rng(6)
    x, h0, c0 = _inputs(rng)
    weights = _random_weights(rng)[:2]
    ref = keras.layers.LSTM(U, use_bias=False, return_sequences=True)
    ref.build((None, T, D))
    ref.set_weights(weights)
    ours = LSTM(U, use_bias=False, return_sequences=True)
    ours.build((None, T, D))
    ours.set_weights(weights)
    _assert_same(
        _outputs_and_grads(ours, x, h0, c0, MASK)[1], _outputs_and_grads(ref, x, h0, c0, MASK)[1]
    )


@pytest.mark.parametrize("merge_mode", ["concat", "sum"])
def test_bidirectional_matches_keras(merge_mode):
    rng = _rng(7)
    x = rng.normal(size=(B, T, D)).astype("float32")
    ref = keras.layers.Bidirectional(
        keras.layers.LSTM(U, return_sequences=True, return_state=True), merge_mode=merge_mode
    )
    ours = keras.layers.Bidirectional(
        LSTM(U, return_sequences=True, return_state=True), merge_mode=merge_mode
    )
    assert ours.backward_layer.go_backwards and not ours.forward_layer.go_backwards
    assert isinstance(ours.backward_layer, LSTM)
    ref.build((None, T, D))
    ours.build((None, T, D))
    ref.set_weights(_random_weights(rng) + _random_weights(rng))
    ours.set_weights(ref.get_weights())
    results = []
    for layer in (ours, ref):
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            outputs = layer(xt, mask=MASK)
            loss = sum(tf.reduce_sum(tf.sin(3.0 * o)) for o in outputs)
        grads = tape.gradient(loss, [xt, *layer.trainable_weights])
        results.append([np.asarray(v) for v in (*outputs, *grads)])
    _assert_same(results[0], results[1])


def test_stacked_layers_in_a_masked_model_match_keras():
    rng = _rng(8)
    tokens = rng.integers(1, 20, size=(B, T))
    tokens[0, 4:] = 0
    tokens[2, 2:] = 0

    def build(lstm_cls):
        return keras.Sequential(
            [
                keras.Input((T,), dtype="int32"),
                keras.layers.Embedding(20, D, mask_zero=True),
                lstm_cls(U, return_sequences=True),
                lstm_cls(U, go_backwards=True),
            ]
        )

    ref, ours = build(keras.layers.LSTM), build(LSTM)
    ours.set_weights(ref.get_weights())
    np.testing.assert_allclose(ours(tokens), ref(tokens), atol=1e-5)


# ------------------------------------------------------------------------------------------
# Masking semantics.
# ------------------------------------------------------------------------------------------


def test_final_state_is_the_output_at_the_last_real_step():
    rng = _rng(9)
    x, h0, c0 = _inputs(rng)
    lengths = np.array([4, 1, 6])
    mask = np.arange(T)[None, :] < lengths[:, None]
    layer = _built_lstm(_random_weights(rng), return_sequences=True, return_state=True)
    seq, h, _ = layer(x, initial_state=[h0, c0], mask=mask)
    for row, length in enumerate(lengths):
        np.testing.assert_allclose(h[row], seq[row, length - 1], atol=1e-6)


def test_masked_steps_carry_the_state():
    """Whatever sits at masked steps, h and C come out as from the real steps alone."""
    rng = _rng(10)
    weights = _random_weights(rng)
    x, h0, c0 = _inputs(rng, batch=1)
    mask = np.array([[1, 0, 1, 1, 0, 1]], bool)
    garbage = x.copy()
    garbage[0, ~mask[0]] = 100.0
    layer = _built_lstm(weights, return_state=True)
    _, h_a, c_a = layer(x, initial_state=[h0, c0], mask=mask)
    _, h_b, c_b = layer(garbage, initial_state=[h0, c0], mask=mask)
    _, h_real, c_real = layer(x[:, mask[0]], initial_state=[h0, c0])
    for got in (h_a, h_b):
        np.testing.assert_allclose(got, h_real, atol=1e-6)
    for got in (c_a, c_b):
        np.testing.assert_allclose(got, c_real, atol=1e-6)


def test_unroll_matches_loop_and_needs_a_static_length():
    rng = _rng(11)
    weights = _random_weights(rng)
    x, h0, c0 = _inputs(rng)
    kwargs = dict(return_sequences=True, return_state=True, go_backwards=True)
    loop = _built_lstm(weights, **kwargs)
    unrolled = _built_lstm(weights, unroll=True, **kwargs)
    _assert_same(
        _outputs_and_grads(unrolled, x, h0, c0, MASK, training=True)[1],
        _outputs_and_grads(loop, x, h0, c0, MASK, training=True)[1],
    )
    unknown_length = tf.function(
        lambda v: unrolled(v), input_signature=[tf.TensorSpec((None, None, D))]
    )
    with pytest.raises(ValueError, match="Cannot unroll"):
        unknown_length.get_concrete_function()


# ------------------------------------------------------------------------------------------
# The cell contract and the step-by-step use the decoder makes of `.cell`.
# ------------------------------------------------------------------------------------------


def test_cell_contract_and_keras_rnn_wrapping():
    cell = LSTMCell(U)
    assert list(cell.state_size) == [U, U] and cell.output_size == U
    h0, c0 = cell.get_initial_state(batch_size=B)
    assert tuple(h0.shape) == (B, U) and tuple(c0.shape) == (B, U)
    assert not np.any(h0) and not np.any(c0)

    rng = _rng(12)
    weights = _random_weights(rng)
    x, h0, c0 = _inputs(rng)
    wrapped = keras.layers.RNN(LSTMCell(U), return_sequences=True, return_state=True)
    wrapped.build((None, T, D))
    wrapped.set_weights(weights)
    ours = _built_lstm(weights, return_sequences=True, return_state=True)
    _assert_same(
        [np.asarray(v) for v in wrapped(x, initial_state=[h0, c0], mask=MASK)],
        [np.asarray(v) for v in ours(x, initial_state=[h0, c0], mask=MASK)],
    )


def test_stepping_the_layer_cell_reproduces_the_layer():
    rng = _rng(13)
    weights = _random_weights(rng)
    x, h, c = _inputs(rng)
    layer = _built_lstm(weights, return_sequences=True, return_state=True)
    seq, h_last, c_last = layer(x, initial_state=[h, c])
    assert layer.cell.built and layer.units == U
    assert [w.name for w in layer.cell.weights] == ["kernel", "recurrent_kernel", "bias"]
    for t in range(T):
        out, (h, c) = layer.cell(x[:, t], [h, c])
        np.testing.assert_allclose(out, seq[:, t], atol=1e-6)
    np.testing.assert_allclose(h, h_last, atol=1e-6)
    np.testing.assert_allclose(c, c_last, atol=1e-6)


def test_cell_dropout_masks_last_until_reset():
    rng = _rng(22)
    x, h0, c0 = (v[:, 0] if v.ndim == 3 else v for v in _inputs(rng))
    cell = LSTMCell(U, dropout=0.5, recurrent_dropout=0.5, seed=2)
    cell.build((None, D))
    cell.set_weights(_random_weights(rng))
    want, _ = oracle_step(x, h0, c0, cell.get_weights())
    np.testing.assert_allclose(cell(x, [h0, c0], training=False)[0], want, atol=1e-5)
    first = np.asarray(cell(x, [h0, c0], training=True)[0])
    assert np.max(np.abs(first - want)) > 1e-3
    assert tuple(cell.get_dropout_mask(x).shape) == (4, B, D)  # one per gate, as Keras
    assert tuple(cell.get_recurrent_dropout_mask(h0).shape) == (4, B, U)
    np.testing.assert_array_equal(cell(x, [h0, c0], training=True)[0], first)
    cell.reset_dropout_mask()
    cell.reset_recurrent_dropout_mask()
    assert np.max(np.abs(np.asarray(cell(x, [h0, c0], training=True)[0]) - first)) > 1e-6


def test_unit_forget_bias_and_weight_shapes_match_keras():
    for unit_forget_bias in (True, False):
        ref = keras.layers.LSTM(U, unit_forget_bias=unit_forget_bias, bias_initializer="ones")
        ours = LSTM(U, unit_forget_bias=unit_forget_bias, bias_initializer="ones")
        ref.build((None, T, D))
        ours.build((None, T, D))
        assert [w.shape for w in ours.get_weights()] == [(D, 4 * U), (U, 4 * U), (4 * U,)]
        np.testing.assert_array_equal(ours.get_weights()[2], ref.get_weights()[2])
    ours = LSTM(U)
    ours.build((None, T, D))
    np.testing.assert_array_equal(
        ours.get_weights()[2], np.concatenate([np.zeros(U), np.ones(U), np.zeros(2 * U)])
    )


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError, match="units"):
        LSTM(0)
    layer = LSTM(U)
    with pytest.raises(ValueError, match="initial_state"):
        layer(np.zeros((B, T, D), "float32"), initial_state=[np.zeros((B, U), "float32")])


# ------------------------------------------------------------------------------------------
# Layer contract: config, saving, tf.function / XLA, shapes, regularizers, constraints.
# ------------------------------------------------------------------------------------------


def test_generic_layer_checks():
    x = _rng(14).normal(size=(B, T, D)).astype("float32")
    check_layer(LSTM, {"units": U}, x, (B, U))
    check_layer(
        LSTM,
        {"units": U, "return_sequences": True, "return_state": True, "go_backwards": True},
        x,
        [(B, T, U), (B, U), (B, U)],
    )


def test_config_round_trip_keeps_every_argument():
    layer = LSTM(
        7,
        activation="relu",
        recurrent_activation="hard_sigmoid",
        use_bias=False,
        kernel_initializer="he_normal",
        unit_forget_bias=False,
        kernel_regularizer="l2",
        activity_regularizer="l1",
        recurrent_constraint="non_neg",
        dropout=0.25,
        recurrent_dropout=0.5,
        seed=3,
        return_sequences=True,
        return_state=True,
        go_backwards=True,
        stateful=True,
        unroll=True,
        zero_output_for_mask=True,
        name="enc",
    )
    config = layer.get_config()
    assert {
        k: config[k]
        for k in ("units", "use_bias", "dropout", "recurrent_dropout", "seed", "stateful", "unroll")
    } == {
        "units": 7,
        "use_bias": False,
        "dropout": 0.25,
        "recurrent_dropout": 0.5,
        "seed": 3,
        "stateful": True,
        "unroll": True,
    }
    assert config["zero_output_for_mask"] and config["go_backwards"] and config["return_state"]
    assert "cell" not in config
    clone = LSTM.from_config(config)
    assert clone.get_config() == config
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(revived) is LSTM and revived.get_config() == config
    cell = layer.cell
    assert LSTMCell.from_config(cell.get_config()).get_config() == cell.get_config()
    # Drop-in: the config holds the same keys as keras.layers.LSTM's, and either loads the other.
    keras_config = keras.layers.LSTM(**{k: v for k, v in config.items() if k != "name"})
    keras_config = keras_config.get_config()
    assert set(keras_config) == set(config)
    assert {
        k: v for k, v in LSTM.from_config(keras_config).get_config().items() if k != "name"
    } == {k: v for k, v in config.items() if k != "name"}


def test_keras_file_save_and_load(tmp_path):
    """An encoder-decoder: Bidirectional encoder, decoder started from the encoder state."""
    rng = _rng(15)
    src = rng.integers(1, 20, size=(B, T))
    src[:, -2:] = 0
    tgt = rng.integers(1, 20, size=(B, T - 1))
    src_in = keras.Input((None,), dtype="int32")
    tgt_in = keras.Input((None,), dtype="int32")
    emb = keras.layers.Embedding(20, D, mask_zero=True)(src_in)
    seq = keras.layers.Bidirectional(LSTM(U, return_sequences=True))(emb)
    _, h, c = LSTM(U, return_state=True, go_backwards=True)(seq)
    dec = LSTM(U, return_sequences=True)(
        keras.layers.Embedding(20, D)(tgt_in), initial_state=[h, c]
    )
    model = keras.Model([src_in, tgt_in], [dec, h, c])
    path = tmp_path / "lstm.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert sum(isinstance(layer, LSTM) for layer in reloaded.layers) == 2
    for a, b in zip(model([src, tgt]), reloaded([src, tgt]), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_tf_function_and_jit_compile_match_eager():
    rng = _rng(16)
    weights = _random_weights(rng)
    x, h0, c0 = _inputs(rng)
    layer = _built_lstm(weights, return_sequences=True, return_state=True)
    eager_out, eager_grads = _outputs_and_grads(layer, x, h0, c0, MASK, training=True)
    signature = [
        tf.TensorSpec((None, None, D)),  # batch and length unknown when traced
        tf.TensorSpec((None, U)),
        tf.TensorSpec((None, U)),
        tf.TensorSpec((None, None), tf.bool),
    ]
    for jit in (False, True):

        @tf.function(jit_compile=jit, input_signature=signature)
        def run(x, h0, c0, mask):
            return _outputs_and_grads_graph(layer, x, h0, c0, mask)

        out, grads = run(tf.constant(x), tf.constant(h0), tf.constant(c0), tf.constant(MASK))
        _assert_same([np.asarray(v) for v in out], eager_out)
        _assert_same([np.asarray(v) for v in grads], eager_grads)


@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("use_mask", [False, True])
def test_tf_function_with_static_shapes_matches_eager(rows, use_mask):
    """Traced with the batch known (one sentence included), outputs and gradients equal eager."""
    rng = _rng(17)
    weights = _random_weights(rng)
    x, h0, c0 = (v[:rows] for v in _inputs(rng))
    mask = MASK[:rows] if use_mask else None
    layer = _built_lstm(weights, return_sequences=True, return_state=True)
    eager_out, eager_grads = _outputs_and_grads(layer, x, h0, c0, mask, training=True)
    run = tf.function(lambda *args: _outputs_and_grads_graph(layer, *args))
    out, grads = run(tf.constant(x), tf.constant(h0), tf.constant(c0), mask)
    _assert_same([np.asarray(v) for v in out], eager_out)
    _assert_same([np.asarray(v) for v in grads], eager_grads)


def _outputs_and_grads_graph(layer, x, h0, c0, mask):
    with tf.GradientTape() as tape:
        tape.watch([x, h0, c0])
        outputs = list(layer(x, initial_state=[h0, c0], mask=mask, training=True))
        loss = sum(tf.reduce_sum(tf.sin(3.0 * o) * (k + 1.0)) for k, o in enumerate(outputs))
    return outputs, tape.gradient(loss, [x, h0, c0, *layer.trainable_weights])


@pytest.mark.parametrize(
    "return_sequences,return_state", list(itertools.product((False, True), (False, True)))
)
def test_output_shapes(return_sequences, return_state):
    x = np.zeros((B, T, D), "float32")
    layer = LSTM(U, return_sequences=return_sequences, return_state=return_state)
    outputs = layer(x)
    symbolic = LSTM(U, return_sequences=return_sequences, return_state=return_state)(
        keras.Input((None, D))
    )
    main = (B, T, U) if return_sequences else (B, U)
    main_symbolic = (None, None, U) if return_sequences else (None, U)
    if return_state:
        assert [tuple(o.shape) for o in outputs] == [main, (B, U), (B, U)]
        assert [tuple(o.shape) for o in symbolic] == [main_symbolic, (None, U), (None, U)]
    else:
        assert tuple(outputs.shape) == main
        assert tuple(symbolic.shape) == main_symbolic


def test_regularizers_and_constraints_behave_as_keras():
    rng = _rng(17)
    weights = _random_weights(rng)
    x = rng.normal(size=(B, T, D)).astype("float32")
    kwargs = dict(
        kernel_regularizer=keras.regularizers.L2(0.1),
        recurrent_regularizer=keras.regularizers.L1(0.2),
        bias_regularizer=keras.regularizers.L2(0.3),
        activity_regularizer=keras.regularizers.L2(0.4),
    )
    losses = []
    for cls in (LSTM, keras.layers.LSTM):
        layer = cls(U, **kwargs)
        layer.build((None, T, D))
        layer.set_weights(weights)
        layer(x)
        losses.append(sorted(float(v) for v in layer.losses))
    assert len(losses[0]) == 4
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)

    model = keras.Sequential([keras.Input((T, D)), LSTM(U, kernel_constraint="non_neg")])
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    model.fit(x, rng.normal(size=(B, U)), verbose=0)
    assert np.min(model.layers[0].get_weights()[0]) >= 0.0


# ------------------------------------------------------------------------------------------
# Dropout and statefulness.
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dropout,recurrent_dropout", [(0.5, 0.0), (0.0, 0.5), (0.3, 0.3)])
def test_dropout_only_in_training(dropout, recurrent_dropout):
    rng = _rng(18)
    weights = _random_weights(rng)
    x, h0, c0 = _inputs(rng)
    plain = _built_lstm(weights, return_sequences=True)
    layer = _built_lstm(
        weights, dropout=dropout, recurrent_dropout=recurrent_dropout, seed=5, return_sequences=True
    )
    np.testing.assert_allclose(layer(x, training=False), plain(x), atol=1e-6)
    train_out, grads = _outputs_and_grads(layer, x, h0, c0, MASK, training=True)
    assert np.all(np.isfinite(train_out[0])) and all(np.all(np.isfinite(g)) for g in grads)
    assert (
        np.max(np.abs(train_out[0] - np.asarray(plain(x, initial_state=[h0, c0], mask=MASK))))
        > 1e-3
    )
    # A fresh layer with the same seed draws the same masks on its first training call.
    twins = [
        _built_lstm(
            weights,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            seed=5,
            return_sequences=True,
        )(x, training=True)
        for _ in range(2)
    ]
    np.testing.assert_allclose(twins[0], twins[1], atol=1e-6)


def test_input_dropout_mask_is_shared_across_time():
    """One input mask per sequence (as Keras): with input dropout, training output equals the
    oracle run on x * m for a per-(sample, feature) mask m that does not depend on time."""
    rng = _rng(19)
    weights = _random_weights(rng)
    x = np.repeat(rng.normal(size=(1, 1, D)).astype("float32"), T, axis=1)  # same x every step
    layer = _built_lstm(weights, dropout=0.5, seed=1, return_sequences=True)
    out = np.asarray(layer(x, training=True))
    zeros = np.zeros((1, U), "float32")
    candidates = []
    for keep in itertools.product((0.0, 2.0), repeat=D):
        seq, _, _ = oracle_sequence(x * np.array(keep, "float32"), zeros, zeros, weights)
        candidates.append(np.max(np.abs(seq - out)))
    assert min(candidates) < 1e-5


def test_stateful_carries_state_across_calls_and_resets():
    rng = _rng(20)
    weights = _random_weights(rng)
    x = rng.normal(size=(B, 2 * T, D)).astype("float32")
    whole = _built_lstm(weights, return_sequences=True)(x)
    layer = LSTM(U, stateful=True, return_sequences=True)
    layer.build((B, T, D))
    layer.set_weights(weights)
    first, second = layer(x[:, :T]), layer(x[:, T:])
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, atol=1e-5)
    layer.reset_state()
    np.testing.assert_allclose(layer(x[:, :T]), whole[:, :T], atol=1e-6)
    assert all(np.any(np.asarray(s)) for s in layer.states)
    layer.reset_state()
    assert not any(np.any(np.asarray(s)) for s in layer.states)


# ------------------------------------------------------------------------------------------
# Mixed precision.
# ------------------------------------------------------------------------------------------


@pytest.fixture
def restore_policy():
    saved = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(saved)


@pytest.mark.parametrize("policy,tol", [("mixed_float16", 2e-2), ("mixed_bfloat16", 8e-2)])
def test_mixed_precision(restore_policy, policy, tol):
    rng = _rng(21)
    weights = _random_weights(rng, scale=0.3)
    x, h0, c0 = _inputs(rng)
    reference = _built_lstm(weights, return_sequences=True, return_state=True)
    want = [np.asarray(v) for v in reference(x, initial_state=[h0, c0], mask=MASK)]

    keras.config.set_dtype_policy(policy)
    compute = policy.split("_")[1]
    layer = _built_lstm(weights, return_sequences=True, return_state=True)
    assert all(v.dtype == "float32" for v in layer.weights)
    assert layer.cell.state_dtype == "float32"
    xt, h0t, c0t = tf.constant(x), tf.constant(h0), tf.constant(c0)
    with tf.GradientTape() as tape:
        tape.watch([xt, h0t, c0t])
        seq, h, c = layer(xt, initial_state=[h0t, c0t], mask=MASK, training=True)
        loss = tf.reduce_sum(tf.cast(seq, "float32")) + tf.reduce_sum(c)
    grads = tape.gradient(loss, [xt, h0t, c0t, *layer.trainable_weights])
    assert seq.dtype == compute and h.dtype == compute and c.dtype == "float32"
    for got, ref in zip((seq, h, c), want, strict=True):
        got = np.asarray(tf.cast(got, "float32"))
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, ref, atol=tol)
    assert all(np.all(np.isfinite(np.asarray(tf.cast(g, "float32")))) for g in grads)
    assert [g.dtype for g in grads[3:]] == ["float32"] * 3

    out, (h1, c1) = layer.cell(x[:, 0], layer.cell.get_initial_state(batch_size=B))
    assert out.dtype == compute and h1.dtype == compute and c1.dtype == "float32"
    symbolic = LSTM(U, return_state=True)(keras.Input((None, D)))
    assert [str(s.dtype) for s in symbolic] == [compute, compute, "float32"]
