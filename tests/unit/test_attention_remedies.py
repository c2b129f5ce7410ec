"""Attention dropout and the score weights' learning-rate scale (W = k V): off by default and
then exactly the layer before them, dropout only in training and at its rate, the same function
for any k, k times Adam's step on W, and the decoder's loops against the step-by-step reference."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from nmt.config import load_config
from nmt.errors import ConfigError
from nmt.layers.attention import Attention
from nmt.model import Seq2Seq, sequence_loss
from tests.helpers.seq2seq import TINY, V_SRC, V_TGT, batch, make_model, stepwise_logits

B, S, T, DQ, DM = 3, 5, 4, 6, 7
LENGTHS = np.array([5, 2, 1])
# The learned score weights of each score (W_c, `output_kernel`, is never scaled).
SCORE_WEIGHTS = {
    "general": {"memory_kernel"},
    "concat": {"score_kernel", "score_vector"},
    "bahdanau": {"query_kernel", "memory_kernel", "score_vector"},
}


def make(score="general", seed=0, dm=DM, **kwargs):
    """A built layer with random weights W (its variables hold W / k)."""
    layer = Attention(score, units=5, **kwargs)
    layer.build((None, DQ), (None, None, dm))
    set_weights(layer, random_weights(layer, seed))
    return layer


def random_weights(layer, seed):
    rng = np.random.default_rng(seed)
    return {
        w.name: rng.normal(scale=0.5, size=w.shape).astype("float32")
        for w in layer.trainable_weights
    }


def set_weights(layer, weights):
    """Assign the effective weights: V = W / k for the score weights, W_c as it is."""
    for w in layer.trainable_weights:
        scaled = w.name in SCORE_WEIGHTS.get(layer.score, ())
        w.assign(weights[w.name] / layer.lr_scale if scaled else weights[w.name])


def inputs(seed=0, rank=3, dm=DM):
    rng = np.random.default_rng(seed)
    query = rng.normal(size=(B, T, DQ)[: rank - 1] + (DQ,)).astype("float32")
    memory = rng.normal(size=(B, S, dm)).astype("float32")
    mask = np.arange(S)[None, :] < LENGTHS[:, None]
    return query, memory, mask


def outputs(layer, query, memory, mask, training=False):
    context, weights = layer(query, memory, memory_mask=mask, training=training)
    h_tilde = layer.attentional_hidden(context, query, layer.parameters("float32"))
    return [np.asarray(x) for x in (context, weights, h_tilde)]


# === Arguments, config, defaults ===


def test_arguments_are_checked():
    with pytest.raises(ValueError, match=r"attention dropout must be in \[0, 1\), got 1.0"):
        Attention("general", dropout=1.0)
    with pytest.raises(ValueError, match="attention lr_scale must be a positive number, got 0"):
        Attention("general", lr_scale=0)
    with pytest.raises(ValueError, match="dot has no weights"):
        Attention("dot", lr_scale=2.0)
    Attention("dot", dropout=0.5, lr_scale=1.0)


@pytest.mark.parametrize(
    "item, message",
    [
        ("model.attention_dropout=1", r"model.attention_dropout must be in \[0, 1\), got 1.0"),
        ("model.attention_dropout=-0.1", r"model.attention_dropout must be in \[0, 1\)"),
        ("model.attention_lr_scale=0", "model.attention_lr_scale must be positive, got 0.0"),
        ("model.attention_lr_scale=-2", "model.attention_lr_scale must be positive, got -2.0"),
        ("model.attention_lr_scale=.inf", "model.attention_lr_scale must be a finite number"),
        ("model.attention_lr_scale=big", "model.attention_lr_scale must be a number"),
    ],
)
def test_config_errors_name_the_key(item, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(None, [item])
    assert str(info.value).startswith(f"--set {item}: ")


def test_config_accepts_both_and_rejects_a_scale_for_dot(tmp_path):
    config = load_config(None, ["model.attention_dropout=0.2", "model.attention_lr_scale=0.1"])
    assert (config.model.attention_dropout, config.model.attention_lr_scale) == (0.2, 0.1)
    assert load_config().model.attention_dropout == 0.0
    assert load_config().model.attention_lr_scale == 1.0
    with pytest.raises(ConfigError, match="model.attention 'dot' has none of; use 1"):
        load_config(None, ["model.attention=dot", "model.attention_lr_scale=2"])
    with pytest.raises(ConfigError, match="model.attention_lr_scale must be positive"):
        Seq2Seq(V_SRC, V_TGT, **{**TINY, "attention_lr_scale": 0.0})
    with pytest.raises(ConfigError, match=r"model.attention_dropout must be in \[0, 1\)"):
        Seq2Seq(V_SRC, V_TGT, **{**TINY, "attention_dropout": 1.5})


@pytest.mark.parametrize("score", ["dot", "general", "concat", "bahdanau"])
def test_layer_config_round_trip_and_legacy_configs(score):
    lr_scale = 1.0 if score == "dot" else 0.25
    layer = Attention(score, units=3, dropout=0.2, lr_scale=lr_scale, name="att")
    config = layer.get_config()
    assert (config["dropout"], config["lr_scale"]) == (0.2, lr_scale)
    clone = Attention.from_config(config)
    assert json.dumps(clone.get_config(), sort_keys=True) == json.dumps(config, sort_keys=True)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert (restored.dropout, restored.lr_scale) == (0.2, lr_scale)
    del config["dropout"], config["lr_scale"]  # a layer saved before the remedies existed
    legacy = Attention.from_config(config)
    assert (legacy.dropout, legacy.lr_scale, legacy.seed_generator) == (0.0, 1.0, None)


@pytest.mark.parametrize("score", ["general", "concat", "bahdanau"])
def test_defaults_are_the_layer_without_remedies(score):
    """At dropout 0 and k = 1: the same variables, and training gives the inference output
    bit for bit; a nonzero rate adds only its seed state (not a weight, so not in checkpoints)
    and changes nothing at inference."""
    plain, defaults = make(score), make(score, dropout=0.0, lr_scale=1.0)
    names = [(w.name, w.shape) for w in plain.variables]
    assert [(w.name, w.shape) for w in defaults.variables] == names
    query, memory, mask = inputs()
    for got, want in zip(
        outputs(defaults, query, memory, mask, training=True),
        outputs(plain, query, memory, mask),
        strict=True,
    ):
        np.testing.assert_array_equal(got, want)
    dropped = make(score, dropout=0.5)
    assert [(w.name, w.shape) for w in dropped.weights] == names
    assert len(dropped.variables) == 1 + len(plain.variables)
    for got, want in zip(
        outputs(dropped, query, memory, mask), outputs(plain, query, memory, mask), strict=True
    ):
        np.testing.assert_array_equal(got, want)


# === Attention dropout ===


@pytest.mark.parametrize("rank", [2, 3])
def test_dropout_zeroes_weights_at_its_rate_and_scales_the_rest(rank):
    """One-hot memory rows make the context the dropped weights themselves: each real weight
    is 0 with probability `rate`, else a_t(s) / (1 - rate); masked ones stay 0; no renormalising.
    The weights returned are those before dropout, and every call draws anew."""
    rate, batch_size = 0.3, 2000
    layer = make("general", dm=S, dropout=rate)
    rng = np.random.default_rng(1)
    shape = (batch_size, T, DQ)[: rank - 1] + (DQ,)
    query = rng.normal(size=shape).astype("float32")
    memory = np.broadcast_to(np.eye(S, dtype="float32"), (batch_size, S, S))  # h_s = e_s
    lengths = rng.integers(1, S + 1, batch_size)
    mask = np.arange(S)[None, :] < lengths[:, None]  # (N, S)
    context, weights = (np.asarray(x) for x in layer(query, memory, mask, training=True))
    real = np.broadcast_to(mask if rank == 2 else mask[:, None, :], weights.shape)
    dropped = context == 0
    assert abs(dropped[real].mean() - rate) < 0.03
    assert np.all(context[~real] == 0)
    np.testing.assert_allclose(context[~dropped], weights[~dropped] / (1 - rate), rtol=1e-5)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    again, _ = layer(query, memory, mask, training=True)
    assert not np.array_equal(again, context)


def test_dropout_noise_is_none_at_inference_or_rate_zero():
    shape = (2, 3)
    assert make(dropout=0.5).weight_noise(shape, training=False) is None
    assert make(dropout=0.0).weight_noise(shape, training=True) is None
    noise = np.asarray(make(dropout=0.5).weight_noise(shape, training=True))
    assert noise.dtype == np.float32 and set(np.unique(noise)) <= {0.0, 2.0}


# === The learning-rate scale: W = k V ===


SCALED = [(score, "none") for score in SCORE_WEIGHTS] + [("general", "sqrt"), ("general", "normed")]


@pytest.mark.parametrize("score, scale", SCALED)
@pytest.mark.parametrize("k", [0.25, 3.0])
def test_same_function_for_any_k_at_equal_weights(score, scale, k):
    one = make(score, scale=scale)
    scaled = make(score, scale=scale, lr_scale=k)
    set_weights(scaled, {w.name: np.asarray(w) for w in one.trainable_weights})
    assert [(w.name, w.shape) for w in scaled.variables] == [
        (w.name, w.shape) for w in one.variables
    ]
    for rank in (2, 3):
        query, memory, mask = inputs(rank=rank)
        for got, want in zip(
            outputs(scaled, query, memory, mask), outputs(one, query, memory, mask), strict=True
        ):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("score", ["general", "concat", "bahdanau"])
def test_initial_weights_do_not_depend_on_k(score):
    def initial(k):
        keras.utils.set_random_seed(7)
        layer = Attention(score, units=5, lr_scale=k)
        layer.build((None, DQ), (None, None, DM))
        scaled = SCORE_WEIGHTS[score]
        return {w.name: np.asarray(w) * (k if w.name in scaled else 1) for w in layer.weights}

    one, four = initial(1.0), initial(4.0)
    for name, value in one.items():
        np.testing.assert_allclose(four[name], value, rtol=1e-6, err_msg=name)


def one_step(layer, optimizer, seed=2):
    """One optimizer step on a fixed loss; the change of the effective weights W = k V."""
    query, memory, mask = inputs(seed)
    target = np.random.default_rng(seed).normal(size=(B, T, DQ)).astype("float32")
    before = effective(layer)
    with tf.GradientTape() as tape:
        context, _ = layer(query, memory, memory_mask=mask)
        h_tilde = layer.attentional_hidden(context, query, layer.parameters("float32"))
        loss = tf.reduce_sum(h_tilde * target)
    grads = tape.gradient(loss, layer.trainable_weights)
    optimizer.apply_gradients(zip(grads, layer.trainable_weights, strict=True))
    return {name: value - before[name] for name, value in effective(layer).items()}


def effective(layer):
    scaled = SCORE_WEIGHTS[layer.score]
    return {
        w.name: np.asarray(w) * (layer.lr_scale if w.name in scaled else 1.0)
        for w in layer.trainable_weights
    }


# Adam's epsilon is made negligible: an entry whose gradient is near epsilon moves less than lr
# (at any k), which is Adam's behaviour, not the reparameterisation's.
OPTIMIZERS = [
    (lambda lr: keras.optimizers.Adam(learning_rate=lr, epsilon=1e-15), 1),
    (lambda lr: keras.optimizers.SGD(learning_rate=lr), 2),
]


@pytest.mark.parametrize("score", ["general", "concat", "bahdanau"])
@pytest.mark.parametrize("optimizer, power", OPTIMIZERS, ids=["adam", "sgd"])
def test_an_optimizer_step_moves_w_k_times_as_far_with_adam_and_k_squared_with_sgd(
    score, optimizer, power
):
    k, lr = 4.0, 1e-3
    weights = random_weights(make(score), seed=3)
    steps = {}
    for scale in (1.0, k):
        layer = make(score, lr_scale=scale)
        set_weights(layer, weights)
        steps[scale] = one_step(layer, optimizer(lr))
    for name, step in steps[1.0].items():
        factor = k**power if name in SCORE_WEIGHTS[score] else 1.0
        assert np.abs(step).max() > 0, name
        # atol: float32 rounding of W + step (weights ~1), times the factor
        np.testing.assert_allclose(
            steps[k][name], factor * step, rtol=1e-4, atol=factor * 2e-7, err_msg=name
        )
    if power == 1:  # Adam's first step moves every entry by lr, so each W entry by k lr
        for name in SCORE_WEIGHTS[score]:
            np.testing.assert_allclose(np.abs(steps[k][name]), k * lr, rtol=1e-3, err_msg=name)


# === In the model: both decoder loops and step() ===


@pytest.mark.parametrize("input_feeding", [True, False])
def test_model_attention_dropout_only_in_training(input_feeding):
    kwargs = dict(attention="bahdanau", input_feeding=input_feeding)
    model = make_model(attention_dropout=0.5, **kwargs)
    plain = make_model(**kwargs)  # the same random weights
    source, target_in, _ = batch()
    inference = model((source, target_in))
    np.testing.assert_array_equal(inference, plain((source, target_in)))
    np.testing.assert_array_equal(plain((source, target_in), training=True), inference)
    np.testing.assert_allclose(
        inference, stepwise_logits(model, source, target_in), rtol=1e-5, atol=1e-5
    )
    first = model((source, target_in), training=True)
    second = model((source, target_in), training=True)
    assert not np.allclose(first, inference) and not np.allclose(first, second)
    _, weights = model((source, target_in), training=True, return_attention=True)
    np.testing.assert_allclose(np.sum(weights, -1), 1.0, rtol=1e-5)  # before dropout


@pytest.mark.parametrize(
    "case",
    [
        dict(input_feeding=True, attention="general", decoder_layers=2, encoder_layers=2),
        dict(input_feeding=True, attention="bahdanau", attention_lr_scale=3.0),
        dict(input_feeding=False, attention="concat", attention_lr_scale=0.5),
    ],
    ids=lambda case: "-".join(f"{k}={v}" for k, v in case.items()),
)
def test_training_loops_with_attention_dropout_equal_autodiff_steps_with_the_same_masks(
    case, monkeypatch
):
    """The input-feeding loop (hand-written matmul gradients) and the whole-sequence path, in
    training with attention dropout, against step() under plain autodiff fed the masks they
    drew (seed state restored): the same loss and the same gradient for every weight."""
    model = make_model(seed=4, attention_dropout=0.4, **case)
    source, target_in, target_out = batch(seed=4)
    layer = model.decoder.attention_layer
    seeds = [v.numpy() for v in model.non_trainable_variables]

    def gradients(logits_fn):
        for variable, seed in zip(model.non_trainable_variables, seeds, strict=True):
            variable.assign(seed)
        with tf.GradientTape() as tape:
            loss, count = sequence_loss(target_out, logits_fn(), label_smoothing=0.1)
            loss = loss / count
        return loss, tape.gradient(loss, model.trainable_variables)

    loss, fast = gradients(lambda: model((source, target_in), training=True))
    for variable, seed in zip(model.non_trainable_variables, seeds, strict=True):
        variable.assign(seed)
    steps, (n, length) = target_in.shape[1], source.shape
    if case["input_feeding"]:  # the loop draws its masks time-major
        masks = tf.unstack(layer.weight_noise((steps, n, length), True))
    else:  # the whole-sequence path batch-major
        masks = tf.unstack(layer.weight_noise((n, steps, length), True), axis=1)

    def replay():
        drawn = iter(masks)
        monkeypatch.setattr(layer, "weight_noise", lambda shape, training: next(drawn))
        return stepwise_logits(model, source, target_in, training=True)

    ref_loss, slow = gradients(replay)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    for variable, g_fast, g_slow in zip(model.trainable_variables, fast, slow, strict=True):
        g_fast, g_slow = tf.convert_to_tensor(g_fast), tf.convert_to_tensor(g_slow)
        scale = float(tf.reduce_max(tf.abs(g_slow))) + 1e-6
        np.testing.assert_allclose(g_fast / scale, g_slow / scale, atol=2e-5, err_msg=variable.path)
