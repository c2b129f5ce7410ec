"""Encoder and Decoder layers on their own: config round trips, masking, residuals, shapes."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from nmt.constants import PAD_ID
from nmt.decoder import Decoder, OutputProjection
from nmt.encoder import Encoder

SOURCE = np.array([[5, 6, 7, 8, 3], [9, 4, 3, 0, 0], [3, 0, 0, 0, 0]], "int32")
LENGTHS = (SOURCE != PAD_ID).sum(1)


def randomize(layer, seed=0):
    rng = np.random.default_rng(seed)
    for variable in layer.trainable_variables:
        variable.assign(rng.normal(scale=0.5, size=variable.shape).astype("float32"))


def round_trips(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    return json.dumps(clone.get_config(), sort_keys=True) == json.dumps(config, sort_keys=True)


def test_configs_round_trip():
    assert round_trips(Encoder(20, 8, 16, 3, True, "sum", 0.1, False, name="enc"))
    assert round_trips(Decoder(20, 16, 16, 2, "bahdanau", False, 0.2, True, "dense", True))
    assert round_trips(OutputProjection(20))


def test_unidirectional_final_state_is_output_at_last_real_token():
    encoder = Encoder(20, 8, 16, num_layers=1)
    encoder.build()
    randomize(encoder)
    memory, mask, ((h, c),) = encoder(SOURCE)
    np.testing.assert_array_equal(mask, SOURCE != PAD_ID)
    last = np.asarray(memory)[np.arange(3), LENGTHS - 1]  # (B, units)
    np.testing.assert_allclose(h, last, rtol=1e-6, atol=1e-6)
    assert c.shape == (3, 16)


@pytest.mark.parametrize("merge, per_direction", [("concat", 8), ("sum", 16)])
def test_bidirectional_widths_and_merged_states(merge, per_direction):
    encoder = Encoder(20, 8, 16, num_layers=2, bidirectional=True, bidirectional_merge=merge)
    encoder.build()
    randomize(encoder)
    assert encoder.rnn_layers[0].forward_layer.units == per_direction
    memory, _, states = encoder(SOURCE)
    assert memory.shape == (3, 5, 16)
    assert all(h.shape == (3, 16) and c.shape == (3, 16) for h, c in states)
    # The backward direction's final state is its output at position 0 (it runs last to first).
    layer = encoder.rnn_layers[0]
    embedded = encoder.embedding(SOURCE)
    forward, fw_h, _ = layer.forward_layer(embedded, mask=SOURCE != PAD_ID)
    backward, bw_h, _ = layer.backward_layer(embedded, mask=SOURCE != PAD_ID)
    # go_backwards outputs are in processing order: the last one is at source position 0.
    np.testing.assert_allclose(bw_h, np.asarray(backward)[:, -1], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fw_h, np.asarray(forward)[np.arange(3), LENGTHS - 1], atol=1e-6)
    merged = tf.concat([fw_h, bw_h], -1) if merge == "concat" else fw_h + bw_h
    np.testing.assert_allclose(states[0][0], merged, rtol=1e-6, atol=1e-6)


def test_residual_adds_the_layer_input_from_the_second_layer_on():
    encoder = Encoder(20, 8, 16, num_layers=2, residual=True)
    plain = Encoder(20, 8, 16, num_layers=2, residual=False)
    for layer in (encoder, plain):
        layer.build()
    randomize(encoder)
    plain.set_weights(encoder.get_weights())
    memory, _, _ = encoder(SOURCE)
    first, _, _ = encoder.rnn_layers[0](encoder.embedding(SOURCE), mask=SOURCE != PAD_ID)
    second, _, _ = encoder.rnn_layers[1](first, mask=SOURCE != PAD_ID)
    np.testing.assert_allclose(memory, second + first, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(plain(SOURCE)[0], second, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("input_feeding, rows", [(True, 8 + 16), (False, 8)])
def test_first_decoder_layer_input_width(input_feeding, rows):
    decoder = Decoder(20, 8, 16, num_layers=2, input_feeding=input_feeding)
    decoder.build()
    assert decoder.rnn_layers[0].cell.kernel.shape == (rows, 64)
    assert decoder.rnn_layers[1].cell.kernel.shape == (16, 64)


def test_decoder_rejects_bad_arguments():
    with pytest.raises(ValueError, match="tie_output_embeddings needs embedding_dim == units"):
        Decoder(20, 8, 16, tie_output_embeddings=True)
    with pytest.raises(ValueError, match="bridge must be one of copy, dense, none"):
        Decoder(20, 8, 16, bridge="mlp")
    with pytest.raises(ValueError, match="bidirectional_merge must be concat or sum"):
        Encoder(20, 8, 16, bidirectional=True, bidirectional_merge="ave")


def test_output_projection_is_float32_under_mixed_precision():
    rng = np.random.default_rng(0)
    embedding = keras.layers.Embedding(11, 4, dtype="mixed_float16")
    embedding.build((None,))
    tied = OutputProjection(11, tied_embedding=embedding)
    tied.build((None, 4))
    # Its weights are its bias and the embedding matrix it shares: no kernel of its own.
    assert {id(w) for w in tied.trainable_weights} == {id(tied.bias), id(embedding.embeddings)}
    x = rng.normal(size=(2, 3, 4)).astype("float16")
    logits = tied(x)
    assert logits.dtype == tf.float32 and logits.shape == (2, 3, 11)
    reference = x.astype("float32") @ np.asarray(embedding.embeddings).T
    np.testing.assert_allclose(logits, reference, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("attention", ["bahdanau", "general", "dot"])
@pytest.mark.parametrize("training", [False, True])
def test_decoder_loop_jit_gives_the_same_logits_and_gradients(training, attention):
    """`loop_jit` XLA-compiles each step of the input-feeding loop; with the dropout seeds
    restored the compiled steps get the same masks (drawn outside them) and compute the same,
    the memory's gradient (`LoopMemory`, after the loop) included."""
    rng = np.random.default_rng(5)
    decoder = Decoder(20, 8, 16, num_layers=2, attention=attention, dropout=0.3)
    decoder.build()
    randomize(decoder, seed=6)
    memory = tf.constant(rng.normal(size=(3, 5, 16)).astype("float32"))
    mask = tf.constant(SOURCE != PAD_ID)
    states = [tuple(tf.constant(rng.normal(size=(3, 16)).astype("float32")) for _ in "hc")] * 2
    target = tf.constant(rng.integers(4, 20, size=(3, 4)).astype("int32"))
    seeds = [v.numpy() for v in decoder.non_trainable_variables]

    def run(loop_jit):
        decoder.loop_jit = loop_jit
        for variable, seed in zip(decoder.non_trainable_variables, seeds, strict=True):
            variable.assign(seed)
        with tf.GradientTape() as tape:
            tape.watch(memory)
            logits = decoder(target, memory, mask, decoder.initial_state(states), training=training)
            loss = tf.reduce_sum(tf.sin(logits))
        return logits, tape.gradient(loss, [*decoder.trainable_variables, memory])

    logits, grads = run(False)
    jit_logits, jit_grads = run(True)
    # XLA orders its float32 sums its own way; unscaled general scores make the softmax sharp
    # enough to turn that into 2e-5 on a logit near 0.01 (seen once in CI).
    np.testing.assert_allclose(jit_logits, logits, rtol=1e-4, atol=1e-4)
    names = [v.path for v in decoder.trainable_variables] + ["memory"]
    for name, a, b in zip(names, jit_grads, grads, strict=True):
        a, b = tf.convert_to_tensor(a), tf.convert_to_tensor(b)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=name)
    assert float(tf.reduce_max(tf.abs(grads[-1]))) > 0  # the memory gets a gradient


def test_lstm_step_hand_backward_equals_autodiff():
    from nmt.layers.lstm_kernel import lstm_step

    rng = np.random.default_rng(7)
    z = tf.constant(rng.normal(size=(3, 16)).astype("float32"))
    c = tf.constant(rng.normal(size=(3, 4)).astype("float32"))
    results = []
    for hand in (False, True):
        with tf.GradientTape() as tape:
            tape.watch([z, c])
            h, c_new = lstm_step(z, c, hand_backward=hand)
            loss = tf.reduce_sum(tf.sin(2.0 * h) + tf.cos(c_new))
        results.append((h, c_new, *tape.gradient(loss, [z, c])))
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
