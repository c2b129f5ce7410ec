"""Seq2Seq: teacher forcing == step by step, masking, gradients, loss, config, precision, graphs."""

import dataclasses
import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from nmt.config import ModelConfig
from nmt.constants import PAD_ID
from nmt.errors import ConfigError
from nmt.model import Seq2Seq, sequence_loss
from tests.helpers.seq2seq import TINY, V_SRC, V_TGT, batch, make_model, stepwise_logits

# Every attention score, every bridge, input feeding on/off, uni / bi concat / bi sum encoders,
# 1 and 3 layers: each value appears with input feeding both on and off.
CASES = [
    dict(input_feeding=True, attention="general", bridge="copy"),
    dict(
        input_feeding=True,
        attention="dot",
        bridge="dense",
        bidirectional=True,
        encoder_layers=3,
        decoder_layers=3,
    ),
    dict(
        input_feeding=True,
        attention="concat",
        bridge="none",
        bidirectional=True,
        bidirectional_merge="sum",
        encoder_layers=3,
        decoder_layers=3,
    ),
    dict(input_feeding=True, attention="bahdanau", bridge="copy", bidirectional=True),
    dict(input_feeding=True, attention="general", bridge="none", encoder_layers=3, residual=False),
    dict(
        input_feeding=False, attention="general", bridge="dense", encoder_layers=3, decoder_layers=3
    ),
    dict(
        input_feeding=False,
        attention="dot",
        bridge="copy",
        bidirectional=True,
        bidirectional_merge="sum",
    ),
    dict(
        input_feeding=False,
        attention="concat",
        bridge="copy",
        bidirectional=True,
        encoder_layers=3,
        decoder_layers=3,
    ),
    dict(input_feeding=False, attention="bahdanau", bridge="none", decoder_layers=3),
    dict(
        input_feeding=False, attention="general", bridge="dense", residual=False, decoder_layers=1
    ),
]


def case_id(case):
    return "-".join(f"{k}={v}" for k, v in case.items())


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_call_equals_repeated_step(case):
    model = make_model(**case)
    source, target_in, _ = batch()
    logits = model((source, target_in))
    assert logits.dtype == tf.float32
    assert tuple(logits.shape) == (3, target_in.shape[1], V_TGT)
    np.testing.assert_allclose(
        logits, stepwise_logits(model, source, target_in), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(
    "case",
    [
        dict(input_feeding=True, attention="general", attention_scale="normed"),
        dict(input_feeding=True, attention="dot", bidirectional=True),
        dict(input_feeding=True, attention="general", bidirectional=True, bridge="dense"),
        dict(input_feeding=False, attention="bahdanau"),
        dict(input_feeding=False, attention="general", attention_scale="sqrt"),
    ],
    ids=case_id,
)
def test_call_returns_the_attention_of_repeated_steps(case):
    model = make_model(**case)
    source, target_in, _ = batch()
    logits, weights = model((source, target_in), return_attention=True)
    np.testing.assert_allclose(logits, model((source, target_in)), rtol=1e-6, atol=1e-6)
    memory, mask, state = model.encode(source)
    bundle = model.prepare_memory(memory, mask)
    assert tuple(weights.shape) == (3, target_in.shape[1], source.shape[1])
    for t in range(target_in.shape[1]):
        _, state, step_weights = model.step(target_in[:, t], state, bundle)
        np.testing.assert_allclose(weights[:, t], step_weights, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "case",
    [
        dict(input_feeding=True, bidirectional=True, encoder_layers=2, decoder_layers=2),
        dict(input_feeding=False, bidirectional=True, bidirectional_merge="sum", bridge="dense"),
        dict(input_feeding=True, attention="bahdanau", bridge="dense"),
    ],
    ids=case_id,
)
def test_padded_rows_equal_rows_alone(case):
    model = make_model(seed=1, **case)
    source, target_in, _ = batch(seed=1)
    logits = model((source, target_in)).numpy()
    for i in range(len(source)):
        ls, lt = int((source[i] != PAD_ID).sum()), int((target_in[i] != PAD_ID).sum())
        alone = model((source[i : i + 1, :ls], target_in[i : i + 1, :lt])).numpy()
        np.testing.assert_allclose(logits[i, :lt], alone[0], rtol=1e-5, atol=1e-5)


def test_attention_ignores_padding_and_sums_to_one():
    model = make_model(bidirectional=True)
    source, target_in, _ = batch()
    memory, mask, state = model.encode(source)
    assert memory.shape == (3, source.shape[1], TINY["units"]) and mask.dtype == tf.bool
    np.testing.assert_array_equal(mask, source != PAD_ID)
    bundle = model.prepare_memory(memory, mask)
    _, _, weights = model.step(target_in[:, 0], state, bundle)
    weights = weights.numpy()
    assert np.all(weights[source == PAD_ID] == 0.0)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)


@pytest.mark.parametrize(
    "case",
    [
        dict(
            input_feeding=True,
            bidirectional=True,
            encoder_layers=2,
            decoder_layers=2,
            bridge="dense",
        ),
        dict(input_feeding=False, attention="bahdanau", encoder_layers=2, decoder_layers=2),
        dict(input_feeding=True, attention="concat", tie_output_embeddings=True, embedding_dim=16),
        # The loop's memory-side gradients after the loop (LoopMemory): unscaled dot (the
        # memory is key and value), normed general (the query is scaled in the step), bahdanau
        # (keys by autodiff, context after the loop).
        dict(input_feeding=True, attention="dot", bidirectional=True),
        dict(input_feeding=True, attention="general", attention_scale="normed"),
        dict(input_feeding=True, attention="bahdanau", bidirectional=True),
    ],
    ids=case_id,
)
def test_gradients_equal_stepwise_reference(case):
    model = make_model(seed=2, **case)
    source, target_in, target_out = batch(seed=2)

    def gradients(logits_fn):
        with tf.GradientTape() as tape:
            loss, count = sequence_loss(target_out, logits_fn(), label_smoothing=0.1)
            loss = loss / count
        return loss, tape.gradient(loss, model.trainable_variables)

    loss, fast = gradients(lambda: model((source, target_in)))
    ref_loss, slow = gradients(lambda: stepwise_logits(model, source, target_in))
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    for variable, g_fast, g_slow in zip(model.trainable_variables, fast, slow, strict=True):
        assert g_fast is not None, variable.path
        g_fast, g_slow = tf.convert_to_tensor(g_fast), tf.convert_to_tensor(g_slow)
        scale = float(tf.reduce_max(tf.abs(g_slow))) + 1e-6
        np.testing.assert_allclose(g_fast / scale, g_slow / scale, atol=2e-5, err_msg=variable.path)


@pytest.mark.parametrize("input_feeding", [True, False])
def test_positions_give_the_non_pad_logits_loss_and_gradients(input_feeding):
    """`positions` (what training passes: the non-pad targets) projects only those rows: the
    same logits, loss and gradients as projecting every position and masking."""
    model = make_model(seed=4, input_feeding=input_feeding, attention="general")
    source, target_in, target_out = batch(seed=4)
    keep = target_out != PAD_ID
    assert not keep.all()  # the batch has padding to skip

    def run(positions):
        with tf.GradientTape() as tape:
            logits = model((source, target_in), positions=positions)
            labels = target_out if positions is None else tf.boolean_mask(target_out, positions)
            loss, count = sequence_loss(labels, logits, 0.1)
        return logits, loss, count, tape.gradient(loss, model.trainable_variables)

    full, loss, count, grads = run(None)
    rows, rows_loss, rows_count, rows_grads = run(tf.constant(keep))
    assert rows.shape == (keep.sum(), V_TGT)
    np.testing.assert_allclose(rows, tf.boolean_mask(full, keep), atol=1e-6)
    np.testing.assert_allclose(rows_loss, loss, rtol=1e-6)
    assert float(rows_count) == float(count) == keep.sum()
    for variable, a, b in zip(model.trainable_variables, rows_grads, grads, strict=True):
        np.testing.assert_allclose(
            tf.convert_to_tensor(a), tf.convert_to_tensor(b), atol=1e-6, err_msg=variable.path
        )


def test_every_weight_gets_a_gradient():
    model = make_model(bridge="dense", attention="bahdanau", encoder_layers=2, decoder_layers=2)
    source, target_in, target_out = batch()
    with tf.GradientTape() as tape:
        loss, _ = sequence_loss(target_out, model((source, target_in), training=True))
    for variable, grad in zip(
        model.trainable_variables, tape.gradient(loss, model.trainable_variables), strict=True
    ):
        assert grad is not None and float(tf.reduce_sum(tf.abs(grad))) > 0, variable.path


@pytest.mark.parametrize("attention_dropout", [0.0, 0.3])
@pytest.mark.parametrize("input_feeding", [True, False])
def test_gradients_with_active_dropout_match_finite_differences(input_feeding, attention_dropout):
    """With dropout masks held fixed (seed states restored), the gradient of call(training=True)
    along random directions equals the central difference of the loss."""
    model = make_model(
        seed=3,
        dropout=0.3,
        attention_dropout=attention_dropout,
        input_feeding=input_feeding,
        encoder_layers=2,
        decoder_layers=2,
    )
    source, target_in, target_out = batch(seed=3)
    seeds = [v.numpy() for v in model.non_trainable_variables]  # the dropout seed states
    weights = [v.numpy() for v in model.trainable_variables]

    def loss_at(offsets, tape=None):
        for variable, seed in zip(model.non_trainable_variables, seeds, strict=True):
            variable.assign(seed)
        for variable, w, d in zip(model.trainable_variables, weights, offsets, strict=True):
            variable.assign(w + d)
        loss, count = sequence_loss(target_out, model((source, target_in), training=True), 0.1)
        return loss / count

    zeros = [np.zeros_like(w) for w in weights]
    with tf.GradientTape() as tape:
        loss = loss_at(zeros)
    grads = [
        tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, model.trainable_variables)
    ]
    assert float(loss_at(zeros)) == float(loss)  # the masks really are reproduced
    rng = np.random.default_rng(4)
    eps = 1e-2
    for _ in range(3):
        direction = [rng.normal(size=w.shape).astype("float32") for w in weights]
        norm = np.sqrt(sum(float((d**2).sum()) for d in direction))
        direction = [d / norm for d in direction]
        plus = float(loss_at([eps * d for d in direction]))
        minus = float(loss_at([-eps * d for d in direction]))
        numeric = (plus - minus) / (2 * eps)
        analytic = sum(float((g * d).sum()) for g, d in zip(grads, direction, strict=True))
        np.testing.assert_allclose(analytic, numeric, rtol=2e-2, atol=1e-4)


@pytest.mark.parametrize("input_feeding", [True, False])
def test_dropout_only_in_training(input_feeding):
    model = make_model(dropout=0.4, input_feeding=input_feeding, encoder_layers=2, decoder_layers=2)
    plain = make_model(dropout=0.0, input_feeding=input_feeding, encoder_layers=2, decoder_layers=2)
    assert_dropout_only_in_training(model, plain)


def assert_dropout_only_in_training(model, plain):
    """`model` (with dropout) equals `plain` (same weights, none) at inference, in call() and
    step() alike; in training it is noisy, a new draw each call, with finite gradients."""
    plain.set_weights(model.get_weights())
    source, target_in, target_out = batch()
    inference = model((source, target_in))
    np.testing.assert_allclose(inference, plain((source, target_in)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        inference, stepwise_logits(model, source, target_in), rtol=1e-5, atol=1e-5
    )
    with tf.GradientTape() as tape:
        first = model((source, target_in), training=True)
        loss, _ = sequence_loss(target_out, first)
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(np.isfinite(g.numpy()).all() for g in map(tf.convert_to_tensor, grads))
    second = model((source, target_in), training=True)
    assert not np.allclose(first, inference) and not np.allclose(first, second)


SITES = dict(
    embedding_dropout=0.1,
    hidden_dropout=0.5,
    output_dropout=0.3,
    memory_dropout=0.2,
    word_dropout=0.4,
    attention_dropout=0.3,
)


def test_unset_site_rates_build_the_same_dropout_state_as_before():
    """Per-site rates equal to model.dropout: exactly the seed states of the single-rate model
    (so resumed checkpoints keep their layout), and the same masks drawn from them."""
    layers = dict(encoder_layers=2, decoder_layers=2)
    base = make_model(dropout=0.3, **layers)
    same = make_model(
        dropout=0.3, embedding_dropout=0.3, hidden_dropout=0.3, output_dropout=0.3, **layers
    )
    seeds = base.non_trainable_variables
    assert [v.shape for v in same.non_trainable_variables] == [v.shape for v in seeds]
    for target, seed in zip(same.non_trainable_variables, seeds, strict=True):
        target.assign(seed)
    source, target_in, _ = batch()
    np.testing.assert_array_equal(
        base((source, target_in), training=True), same((source, target_in), training=True)
    )
    separate = make_model(dropout=0.3, **SITES, **layers)
    assert len(separate.non_trainable_variables) > len(seeds)


@pytest.mark.parametrize("input_feeding", [True, False])
def test_site_dropouts_only_in_training_and_zero_rates_change_nothing(input_feeding):
    layers = dict(encoder_layers=2, decoder_layers=2, input_feeding=input_feeding)
    model = make_model(dropout=0.0, **SITES, **layers)
    plain = make_model(dropout=0.0, **layers)
    assert_dropout_only_in_training(model, plain)
    source, target_in, _ = batch()
    zero = make_model(dropout=0.0, **{key: 0.0 for key in SITES}, **layers)
    zero.set_weights(plain.get_weights())
    np.testing.assert_allclose(
        zero((source, target_in), training=True), plain((source, target_in)), rtol=1e-6
    )


@pytest.mark.parametrize(
    "site,rate",
    [(site, 0.6) for site in SITES],
)
def test_each_site_drops_at_its_rate(site, rate):
    """Only the named site is noisy, and it zeroes about `rate` of its units (or words)."""
    model = make_model(**{site: rate}, encoder_layers=2, decoder_layers=2, units=64)
    applied = {}  # (owner, site) -> the rate of the layer that site really calls
    for name, owner in [("encoder", model.encoder), ("decoder", model.decoder)]:
        for key, value in owner._rates().items():
            layer = owner.site_dropouts.get(key, owner.dropout_layer)
            assert value == (layer.rate if value else 0.0)
            applied[(name, key)] = value
    sites = {
        "embedding_dropout": {("encoder", "embedding"), ("decoder", "embedding")},
        "hidden_dropout": {("encoder", "hidden"), ("decoder", "hidden")},
        "output_dropout": {("decoder", "output")},
        "memory_dropout": {("encoder", "memory")},
        "word_dropout": set(),
        "attention_dropout": set(),  # the attention layer's own (tests/unit/test_attention.py)
    }[site]
    assert {key for key, value in applied.items() if value} == sites
    assert all(applied[key] == rate for key in sites)
    assert model.decoder.attention_layer.dropout == (rate if site == "attention_dropout" else 0)
    if site == "word_dropout":
        ids = np.full((200, 30), 5, "int32")
        embedded = model.decoder._embed(ids, training=True).numpy()  # (200, 30, E)
        dropped = np.all(embedded == 0, axis=-1).mean()
        assert abs(dropped - rate) < 0.03
        np.testing.assert_array_equal(
            model.decoder._embed(ids, training=False)[0, 0], model.decoder.embedding(ids)[0, 0]
        )


# === Loss ===


def numpy_smoothed_ce(labels, logits, eps):
    logits = logits.astype("float64")
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, labels[..., None], -1)[..., 0]
    loss = (1 - eps) * nll + eps * (-logp.mean(-1))
    mask = labels != PAD_ID
    return (loss * mask).sum(), mask.sum()


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_sequence_loss_matches_numpy_and_keras(eps):
    rng = np.random.default_rng(5)
    logits = (3 * rng.normal(size=(4, 6, 11))).astype("float32")
    labels = rng.integers(1, 11, size=(4, 6)).astype("int32")
    labels[0, 3:] = PAD_ID
    labels[2, 1:] = PAD_ID
    loss_sum, count = sequence_loss(labels, logits, label_smoothing=eps)
    ref_sum, ref_count = numpy_smoothed_ce(labels, logits, eps)
    assert loss_sum.dtype == tf.float32 and count.dtype == tf.float32
    np.testing.assert_allclose(loss_sum, ref_sum, rtol=1e-5)
    assert float(count) == ref_count == 24 - 3 - 5
    keras_ce = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=eps, reduction=None
    )(tf.one_hot(labels, 11), logits)
    np.testing.assert_allclose(loss_sum, np.sum(keras_ce.numpy() * (labels != PAD_ID)), rtol=1e-5)
    traced = tf.function(sequence_loss)(labels, logits, tf.constant(eps))  # a tensor eps
    np.testing.assert_allclose(traced[0], ref_sum, rtol=1e-5)
    held = sequence_loss(labels, logits, tf.Variable(eps))  # a variable eps (a schedule)
    np.testing.assert_allclose(held[0], ref_sum, rtol=1e-5)


def test_sequence_loss_keeps_the_digits_of_a_confident_prediction():
    # Logits near 1e4 (float32 spacing 1e-3 there) with the label 8 above the other six: the
    # loss is log(1 + 6 e^-8) = 2.0e-3 per row, computed on logits shifted by their maximum;
    # adding the maximum back before subtracting the label's logit would leave it 0 or 1e-3 off.
    logits = np.zeros((2, 7), np.float32) + 1.0e4
    labels = np.array([3, 5], np.int32)
    logits[np.arange(2), labels] += 8.0
    loss_sum, _ = sequence_loss(labels, logits, 0.0)
    np.testing.assert_allclose(loss_sum, 2 * np.log1p(6 * np.exp(-8.0)), rtol=1e-4)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_sequence_loss_gradient_matches_keras_and_any_leading_shape(eps):
    """The one-softmax-pass form has the gradient of the smoothed cross-entropy itself, and
    (N,) labels with (N, V) logits (the non-pad positions only) give the same sums."""
    rng = np.random.default_rng(7)
    logits = tf.constant((2 * rng.normal(size=(3, 5, 9))).astype("float32"))
    labels = rng.integers(1, 9, size=(3, 5)).astype("int32")
    labels[1, 2:] = PAD_ID
    keras_ce = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=eps, reduction=None
    )
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(logits)
        ours, _ = sequence_loss(labels, logits, eps)
        reference = tf.reduce_sum(keras_ce(tf.one_hot(labels, 9), logits) * (labels != PAD_ID))
    np.testing.assert_allclose(
        tape.gradient(ours, logits), tape.gradient(reference, logits), atol=1e-6
    )
    keep = labels != PAD_ID
    flat_sum, flat_count = sequence_loss(labels[keep], tf.boolean_mask(logits, keep), eps)
    np.testing.assert_allclose(flat_sum, ours, rtol=1e-6)
    assert float(flat_count) == keep.sum()


def test_sequence_loss_accepts_half_precision_logits():
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(2, 3, 7)).astype("float32")
    labels = np.array([[4, 5, 0], [6, 0, 0]], "int32")
    full, _ = sequence_loss(labels, logits, 0.1)
    half, _ = sequence_loss(labels, tf.cast(logits, tf.float16), 0.1)
    assert half.dtype == tf.float32
    np.testing.assert_allclose(half, full, rtol=1e-2)


# === Config, tying, sharing, errors ===


def test_defaults_equal_model_config():
    parameters = inspect.signature(Seq2Seq.__init__).parameters
    defaults = {n: p.default for n, p in parameters.items() if p.default is not p.empty}
    for name, value in dataclasses.asdict(ModelConfig()).items():
        assert defaults[name] == value, name


def test_from_model_config_builds_and_copies_every_field():
    config = ModelConfig(embedding_dim=8, units=12, attention="bahdanau", bidirectional=True)
    model = Seq2Seq.from_model_config(config, 30, 40)
    assert model.built and len(model.trainable_variables) > 0
    stored = model.get_config()
    for name, value in dataclasses.asdict(config).items():
        assert stored[name] == value, name
    assert (stored["source_vocab_size"], stored["target_vocab_size"]) == (30, 40)


def test_config_round_trip_gives_same_logits(tmp_path):
    model = make_model(
        bidirectional=True,
        attention="concat",
        bridge="dense",
        share_embeddings=True,
        source_vocab_size=V_TGT,
    )
    source, target_in, _ = batch()
    expected = model((source, target_in))
    clone = Seq2Seq.from_config(model.get_config())
    clone.build()
    clone.set_weights(model.get_weights())
    assert clone.get_config() == model.get_config()
    np.testing.assert_allclose(clone((source, target_in)), expected, rtol=1e-6)

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, Seq2Seq)
    np.testing.assert_allclose(loaded((source, target_in)), expected, rtol=1e-6)


def _size(model):
    return len(model.trainable_variables), sum(
        int(np.prod(v.shape)) for v in model.trainable_variables
    )


def test_tying_and_sharing_remove_the_expected_variables():
    kwargs = dict(embedding_dim=16, units=16, source_vocab_size=V_TGT)
    count, params = _size(make_model(**kwargs))
    assert _size(make_model(tie_output_embeddings=True, **kwargs)) == (
        count - 1,
        params - 16 * V_TGT,
    )
    assert _size(make_model(share_embeddings=True, **kwargs)) == (count - 1, params - V_TGT * 16)
    both = make_model(tie_output_embeddings=True, share_embeddings=True, **kwargs)
    assert _size(both) == (count - 2, params - 2 * 16 * V_TGT)
    # One matrix really serves as source embedding, target embedding and output projection.
    assert both.encoder.embedding is both.decoder.embedding
    assert both.decoder.output_projection.tied_embedding is both.decoder.embedding


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(tie_output_embeddings=True, embedding_dim=8, units=16),
            "model.tie_output_embeddings needs model.embedding_dim == model.units",
        ),
        (dict(share_embeddings=True), "model.share_embeddings needs one vocabulary"),
        (
            dict(encoder_layers=2, decoder_layers=1, bridge="copy"),
            "model.bridge 'copy' needs model.encoder_layers == model.decoder_layers",
        ),
        (dict(encoder_layers=2, decoder_layers=3, bridge="dense"), "model.bridge 'dense' needs"),
        (dict(bidirectional=True, units=15), "model.units must be even"),
        (dict(attention="luong"), "model.attention: 'luong' is not one of"),
        (dict(bridge="mlp"), "model.bridge: 'mlp' is not one of"),
        (dict(bidirectional_merge="mul"), "model.bidirectional_merge: 'mul' is not one of"),
        (dict(dropout=1.0), r"model.dropout must be in \[0, 1\)"),
        (dict(units=0), "model.units must be a positive integer"),
    ],
)
def test_bad_settings_raise_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Seq2Seq(V_SRC, V_TGT, **{**TINY, **kwargs})


def test_attention_scale_message_names_the_attention_value():
    with pytest.raises(ConfigError) as raised:
        Seq2Seq(V_SRC, V_TGT, **{**TINY, "attention": "concat", "attention_scale": "sqrt"})
    assert str(raised.value) == (
        "model.attention_scale 'sqrt' applies to dot and general attention, not 'concat'; use none"
    )


def test_every_model_setting_reaches_the_encoder_or_the_decoder():
    from nmt import model as model_module

    handed_on = (
        model_module._SHARED_SETTINGS
        + model_module._ENCODER_SETTINGS
        + model_module._DECODER_SETTINGS
    )
    assert len(set(handed_on)) == len(handed_on)
    rest = {"encoder_layers", "decoder_layers", "share_embeddings"}  # num_layers, the embedding
    assert set(handed_on) | rest == {f.name for f in dataclasses.fields(ModelConfig)}


def test_different_depths_with_bridge_none():
    model = make_model(encoder_layers=3, decoder_layers=2, bridge="none")
    source, target_in, _ = batch()
    _, _, (layer_states, feed) = model.encode(source)
    assert len(layer_states) == 2
    assert all(float(tf.reduce_max(tf.abs(s))) == 0.0 for pair in layer_states for s in pair)
    assert float(tf.reduce_max(tf.abs(feed))) == 0.0


def test_copy_bridge_passes_encoder_final_states():
    model = make_model(bidirectional=True, encoder_layers=2, decoder_layers=2, bridge="copy")
    source, _, _ = batch()
    _, _, final_states = model.encoder(source)
    _, _, (layer_states, _) = model.encode(source)
    for (h, c), (eh, ec) in zip(layer_states, final_states, strict=True):
        np.testing.assert_array_equal(h, eh)
        np.testing.assert_array_equal(c, ec)
    # Concat merge: [forward final; backward final], the backward final being at position 0.
    fw, bw = model.encoder.rnn_layers[0].forward_layer, model.encoder.rnn_layers[0].backward_layer
    emb = model.encoder.embedding(source)
    mask = source != PAD_ID
    _, fw_h, _ = fw(emb, mask=mask)
    _, bw_h, _ = bw(emb, mask=mask)
    np.testing.assert_allclose(final_states[0][0], tf.concat([fw_h, bw_h], -1), rtol=1e-6)


# === Precision ===


@pytest.fixture
def policy(request):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(request.param)
    yield request.param
    keras.config.set_dtype_policy(previous)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"], indirect=True)
@pytest.mark.parametrize("input_feeding", [True, False])
def test_mixed_precision_forward_backward(policy, input_feeding):
    model = Seq2Seq(
        V_SRC,
        V_TGT,
        **{**TINY, "dropout": 0.1, "input_feeding": input_feeding},
        bidirectional=True,
        attention="bahdanau",
        bridge="dense",
    )
    model.build()
    assert model.compute_dtype == policy.split("_")[1]
    assert all(v.dtype == "float32" for v in model.variables if v.trainable)
    source, target_in, target_out = batch()
    with tf.GradientTape() as tape:
        logits = model((source, target_in), training=True)
        loss, count = sequence_loss(target_out, logits, 0.1)
    grads = tape.gradient(loss, model.trainable_variables)
    assert logits.dtype == tf.float32 and np.isfinite(logits.numpy()).all()
    assert loss.dtype == tf.float32 and np.isfinite(float(loss))
    for variable, grad in zip(model.trainable_variables, grads, strict=True):
        assert grad is not None and grad.dtype == tf.float32, variable.path
        assert np.isfinite(tf.convert_to_tensor(grad).numpy()).all(), variable.path
    _, _, (layer_states, feed) = model.encode(source)
    assert feed.dtype == policy.split("_")[1]
    for h, c in layer_states:  # the LSTM keeps its cell state c in float32
        assert h.dtype == policy.split("_")[1] and c.dtype == tf.float32
    step_logits = stepwise_logits(model, source, target_in)
    assert step_logits.dtype == tf.float32
    np.testing.assert_allclose(step_logits, model((source, target_in)), atol=0.1)


# === Graphs ===


def test_call_and_step_trace_with_unknown_shapes():
    model = make_model(input_feeding=True, bidirectional=True, attention="general")
    ids = tf.TensorSpec([None, None], tf.int32)
    call = tf.function(lambda s, t: model((s, t)), input_signature=[ids, ids])
    source, target_in, _ = batch()
    np.testing.assert_allclose(
        call(source, target_in), model((source, target_in)), rtol=1e-5, atol=1e-6
    )
    short = call(source[:2, :3], target_in[:2, :2])
    assert tuple(short.shape) == (2, 2, V_TGT)

    memory, mask, state = model.encode(source)
    bundle = model.prepare_memory(memory, mask)
    spec = lambda t: tf.TensorSpec([None, *t.shape[1:]], t.dtype)  # noqa: E731
    step = tf.function(
        lambda ids, state, bundle: model.step(ids, state, bundle),
        input_signature=[
            tf.TensorSpec([None], tf.int32),
            tf.nest.map_structure(spec, state),
            tf.nest.map_structure(spec, bundle),
        ],
    )
    traced = step(target_in[:, 0], state, bundle)
    eager = model.step(target_in[:, 0], state, bundle)
    for a, b in zip(tf.nest.flatten(traced), tf.nest.flatten(eager), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("input_feeding", [True, False])
def test_jit_compiled_training_step(input_feeding):
    model = make_model(input_feeding=input_feeding, dropout=0.2)
    source, target_in, target_out = batch()

    def train_step(source, target_in, target_out, training):
        with tf.GradientTape() as tape:
            logits = model((source, target_in), training=training)
            loss, count = sequence_loss(target_out, logits, 0.1)
            loss = loss / count
        return loss, tape.gradient(loss, model.trainable_variables)

    jitted = tf.function(train_step, jit_compile=True)
    loss, grads = jitted(source, target_in, target_out, False)
    ref_loss, ref_grads = train_step(source, target_in, target_out, False)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    for g, r in zip(grads, ref_grads, strict=True):
        g, r = tf.convert_to_tensor(g), tf.convert_to_tensor(r)
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)
    if not input_feeding:
        return  # the random dropout masks inside the input-feeding loop are the XLA risk
    loss, grads = jitted(source, target_in, target_out, True)
    assert np.isfinite(float(loss))
    assert all(np.isfinite(tf.convert_to_tensor(g).numpy()).all() for g in grads)
