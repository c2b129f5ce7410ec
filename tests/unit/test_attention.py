"""Attention: every score against a numpy oracle, masking, batched == per-step, layer contract."""

import json

import keras
import numpy as np
import pytest

from nmt.layers.attention import SCORES, Attention, attention_health

B, S, T, DQ, DM = 3, 5, 4, 6, 7
LENGTHS = np.array([5, 2, 1])


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def reference(score, query, memory, mask, weights, scale="none"):
    """Numpy oracle for one query (B, Dq), written from the equations in the docstring."""
    if scale == "normed":  # weights: [W_a,] g, W_c
        keys = memory @ weights[0] if score == "general" else memory
        scores = weights[-2] * np.einsum("bd,bsd->bs", _unit(query), _unit(keys))
    elif score == "dot":
        scores = np.einsum("bd,bsd->bs", query, memory)
    elif score == "general":
        (w_a,) = weights[:1]  # (Dm, Dq)
        scores = np.einsum("bd,bsd->bs", query, memory @ w_a)
    elif score == "concat":
        w_a, v = weights[:2]  # (Dq + Dm, A), (A,)
        scores = np.zeros(mask.shape)
        for b in range(query.shape[0]):
            for s in range(memory.shape[1]):
                joined = np.concatenate([query[b], memory[b, s]])  # [h_t; h_s]
                scores[b, s] = v @ np.tanh(joined @ w_a)
    else:
        w1, w2, v = weights[:3]
        scores = np.tanh((query @ w1)[:, None, :] + memory @ w2) @ v
    if scale == "sqrt":
        scores = scores / np.sqrt(query.shape[-1])
    scores = np.where(mask, scores, -np.inf)
    probs = _softmax(scores)
    context = np.einsum("bs,bsd->bd", probs, memory)
    w_c = weights[-1]  # (Dm + Dq, Dq)
    h_tilde = np.tanh(np.concatenate([context, query], -1) @ w_c)
    return context, probs, h_tilde


def make(score, rng, units=None, scale="none"):
    layer = Attention(score, units=units, scale=scale)
    dq = DM if score == "dot" else DQ
    layer.build((None, dq), (None, None, DM))
    layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()])
    return layer, dq


def inputs(rng, dq):
    query = rng.normal(size=(B, dq)).astype("float32")
    memory = rng.normal(size=(B, S, DM)).astype("float32")
    mask = np.arange(S)[None, :] < LENGTHS[:, None]
    return query, memory, mask


CASES = [(score, "none") for score in SCORES] + [
    (score, scale) for score in ("dot", "general") for scale in ("sqrt", "normed")
]


@pytest.mark.parametrize("score,scale", CASES)
def test_matches_numpy_reference(score, scale):
    rng = np.random.default_rng(0)
    layer, dq = make(score, rng, units=5, scale=scale)
    query, memory, mask = inputs(rng, dq)
    context, weights = layer(query, memory, memory_mask=mask)
    params = layer.parameters("float32")
    h_tilde = layer.attentional_hidden(context, query, params)
    ref_context, ref_weights, ref_h = reference(
        score, query, memory, mask, layer.get_weights(), scale=scale
    )
    np.testing.assert_allclose(weights, ref_weights, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(context, ref_context, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h_tilde, ref_h, rtol=1e-5, atol=1e-5)
    assert weights.dtype == "float32"


@pytest.mark.parametrize("score", SCORES)
def test_masked_positions_get_exactly_zero_and_rows_sum_to_one(score):
    rng = np.random.default_rng(1)
    layer, dq = make(score, rng)
    query, memory, mask = inputs(rng, dq)
    memory[~mask] = 1e3  # large padding values must not leak into the weights
    _, weights = layer(query, memory, memory_mask=mask)
    weights = np.asarray(weights)
    assert np.all(weights[~mask] == 0.0)
    assert np.all(weights[mask] > 0.0)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(weights[2], [1.0, 0, 0, 0, 0])  # one real position


@pytest.mark.parametrize("score", SCORES)
def test_batched_queries_equal_per_step_queries(score):
    rng = np.random.default_rng(2)
    layer, dq = make(score, rng)
    _, memory, mask = inputs(rng, dq)
    queries = rng.normal(size=(B, T, dq)).astype("float32")
    keys = layer.prepare(memory)
    context, weights = layer(queries, memory, memory_mask=mask, keys=keys)
    assert tuple(context.shape) == (B, T, DM) and tuple(weights.shape) == (B, T, S)
    for t in range(T):
        step_context, step_weights = layer(queries[:, t], memory, memory_mask=mask)
        np.testing.assert_allclose(context[:, t], step_context, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(weights[:, t], step_weights, rtol=1e-5, atol=1e-7)


def test_precomputed_keys_depend_on_memory_only():
    rng = np.random.default_rng(3)
    expected = {"dot": 0, "general": 1, "concat": 1, "bahdanau": 1}
    for score in SCORES:
        layer, dq = make(score, rng, units=5, scale="none")
        _, memory, _ = inputs(rng, dq)
        keys = layer.prepare(memory)
        assert len(keys) == expected[score]
        for key in keys:
            assert key.shape[:2] == (B, S)


def test_scaled_dot_keys_are_the_scaled_memory():
    rng = np.random.default_rng(3)
    layer, dq = make("dot", rng, scale="sqrt")
    _, memory, _ = inputs(rng, dq)
    (keys,) = layer.prepare(memory)
    np.testing.assert_allclose(keys, memory / np.sqrt(dq), rtol=1e-6)


def test_no_mask_attends_everywhere():
    rng = np.random.default_rng(4)
    layer, dq = make("general", rng, scale="none")
    query, memory, _ = inputs(rng, dq)
    _, weights = layer(query, memory)
    _, ref, _ = reference("general", query, memory, np.ones((B, S), bool), layer.get_weights())
    np.testing.assert_allclose(weights, ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("score", ("dot", "general"))
def test_scaled_scores_start_near_uniform_at_the_multi30k_width(score):
    """Pins the scale: with 512-wide states and Glorot weights, unscaled scores start spread
    over several units (a peaked softmax from step 0), scaled ones well under one."""
    rng = np.random.default_rng(5)
    width, length = 512, 20
    query = np.tanh(rng.normal(size=(64, width))).astype("float32")
    memory = np.tanh(rng.normal(size=(64, length, width))).astype("float32")
    spreads = {}
    for scale in ("none", "sqrt"):
        keras.utils.set_random_seed(0)
        layer = Attention(score, scale=scale)
        layer.build((None, width), (None, None, width))
        params = layer.parameters("float32")
        scores = np.asarray(layer.scores(query, memory, layer.prepare(memory), params))
        spreads[scale] = scores.std(axis=-1).mean()
    np.testing.assert_allclose(spreads["sqrt"], spreads["none"] / np.sqrt(width), rtol=1e-4)
    assert spreads["none"] > 3.0 and spreads["sqrt"] < 0.5


def test_scale_arguments_and_legacy_configs():
    assert Attention("general").get_config()["scale"] == "none"
    config = Attention("general", name="att").get_config()
    del config["scale"]  # a layer saved before scales existed was unscaled
    assert Attention.from_config(config).scale == "none"
    with pytest.raises(ValueError, match="one of none, sqrt, normed"):
        Attention("general", scale="cosine")
    with pytest.raises(ValueError, match="scale 'sqrt' applies to dot and general, not 'bahdanau'"):
        Attention("bahdanau", scale="sqrt")
    with pytest.raises(ValueError, match="scale 'normed' applies to dot and general, not 'concat'"):
        Attention("concat", scale="normed")
    normed = Attention("general", scale="normed")
    normed.build((None, 16), (None, None, 8))
    assert float(normed.score_gain.numpy()) == pytest.approx(4.0)  # sqrt(D_q) to start


def test_errors():
    with pytest.raises(ValueError, match="one of dot, general, concat, bahdanau"):
        Attention("luong")
    with pytest.raises(ValueError, match="dot attention needs query width == memory width"):
        Attention("dot").build((None, 4), (None, None, 5))


@pytest.mark.parametrize("score", SCORES)
def test_config_round_trip_and_weight_count(score):
    layer = Attention(score, units=3, name="att")
    config = layer.get_config()
    clone = Attention.from_config(config)
    assert json.dumps(clone.get_config(), sort_keys=True) == json.dumps(config, sort_keys=True)
    layer.build((None, DM), (None, None, DM))
    expected = {"dot": 1, "general": 2, "concat": 3, "bahdanau": 4}[score]
    assert len(layer.trainable_weights) == expected
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, Attention) and restored.score == score


def test_attention_health_of_uniform_collapsed_and_masked_weights():
    lengths = np.array([4, 2])
    memory_mask = np.arange(4)[None, :] < lengths[:, None]  # (2, 4)
    uniform = memory_mask[:, None, :] / lengths[:, None, None]  # (2, 1, 4)
    collapsed = np.zeros((2, 1, 4))
    collapsed[0, 0, 3] = collapsed[1, 0, 1] = 1.0  # all on EOS
    weights = np.concatenate([uniform, collapsed], axis=1).astype("float32")  # (2, 2, 4)
    target_mask = np.array([[True, True], [True, False]])  # sentence 2's collapsed row is padding
    entropy, final, uniform_entropy, peak, count = (
        float(x) for x in attention_health(weights, memory_mask, target_mask)
    )
    assert count == 3
    np.testing.assert_allclose(entropy, np.log(4) + 0.0 + np.log(2), rtol=1e-6)
    np.testing.assert_allclose(final, 2 / 4 + 1.0 + 1.0, rtol=1e-6)
    np.testing.assert_allclose(uniform_entropy, 2 * np.log(4) + np.log(2), rtol=1e-6)
    # sentence 1: position 3 got 1/4 + 1 of its 2 rows; sentence 2: each position 1/2 of 1 row
    np.testing.assert_allclose(peak, 1.25 + 0.5, rtol=1e-6)


def test_attention_health_peak_share_sees_a_collapse_onto_the_first_position():
    """The final mass misses attention that sits on the first source position (where the
    backward LSTM ends); the peak share sees it, and a diagonal alignment has a low one."""
    S = T = 5
    memory_mask = np.ones((2, S), bool)
    target_mask = np.ones((2, T), bool)
    first = np.zeros((T, S))
    first[:, 0] = 1.0
    diagonal = np.eye(T, S)
    weights = np.stack([first, diagonal]).astype("float32")  # (2, T, S)
    _, final, _, peak, count = (
        float(x) for x in attention_health(weights, memory_mask, target_mask)
    )
    np.testing.assert_allclose(final, 0.0 + 2.0, atol=1e-6)  # only the diagonal's last 2 rows
    np.testing.assert_allclose(peak / count, (1.0 + 1 / S) / 2, rtol=1e-6)


def test_attention_warning_names_where_the_attention_collapsed():
    from nmt.training import attention_warning

    healthy = {"attention_final_mass": 0.16, "attention_peak": 0.16, "attention_entropy": 1.2}
    assert attention_warning(healthy) is None
    last = attention_warning({**healthy, "attention_final_mass": 0.99})
    assert "99% of it on the last 2 source positions" in last
    assert "--set train.coverage_loss=0.2" in last  # the remedy measured in BENCHMARKS.md
    first = attention_warning({**healthy, "attention_peak": 0.81, "attention_entropy": 0.04})
    assert "81% of each sentence's on one source position" in first and "0.04 nats" in first
    assert attention_warning({"attention_entropy": 1.0}) is None  # older train_state entries
