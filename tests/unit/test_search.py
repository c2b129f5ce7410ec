"""nmt.search: pieces vs numpy, scripted cases, agreement with a plain numpy beam search."""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np
import pytest
import tensorflow as tf

from nmt import search, search_options
from nmt.constants import BOS_ID, EOS_ID

# Scripted vocabulary: 0 pad, 1 unk, 2 <s>, 3 </s>, then words A..F.
A, B, C, D, E, F = range(4, 10)
V_SCRIPT = 10
FLOOR = 1e-6  # probability of words a script does not list


def lp(length, alpha):
    return ((5.0 + np.asarray(length, np.float64)) / 6.0) ** alpha


def log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def softmax(x):
    return np.exp(log_softmax(x))


def beam(step_fn, state, batch, k, max_lengths, alpha=0.0, n_best=1, attention=False, min_length=0,
         vocab_ids=None, **options):  # fmt: skip
    result = search.beam_search(
        step_fn,
        state,
        batch,
        beam_size=k,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        max_lengths=tf.constant(max_lengths, tf.int32),
        length_penalty=alpha,
        n_best=n_best,
        min_length=min_length,
        return_attention=attention,
        vocab_ids=vocab_ids,
        **options,
    )
    return {f: (None if x is None else x.numpy()) for f, x in result._asdict().items()}


def greedy(step_fn, state, batch, max_lengths, attention=False, min_length=0, vocab_ids=None,
           **options):  # fmt: skip
    result = search.greedy_search(
        step_fn,
        state,
        batch,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        max_lengths=tf.constant(max_lengths, tf.int32),
        min_length=min_length,
        return_attention=attention,
        vocab_ids=vocab_ids,
        **options,
    )
    return {f: (None if x is None else x.numpy()) for f, x in result._asdict().items()}


def hyp(result, row, i):
    """Tokens of hypothesis i of a row, cut at its length."""
    return tuple(result["ids"][row, i, : result["lengths"][row, i]].tolist())


# ----------------------------------------------------------------------------- pieces


def test_tile_beams_repeats_each_row_contiguously():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 2, 4)).astype(np.float32)
    y = np.arange(3, dtype=np.int32)
    out = search.tile_beams({"x": tf.constant(x), "y": [tf.constant(y)]}, 4)
    np.testing.assert_array_equal(out["x"].numpy(), np.repeat(x, 4, axis=0))
    np.testing.assert_array_equal(out["y"][0].numpy(), [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.5])
def test_length_penalty_is_gnmt(alpha):
    lengths = np.array([[0, 1, 5], [10, 37, 200]], np.int32)
    got = search.length_penalty(tf.constant(lengths), alpha).numpy()
    np.testing.assert_allclose(got, ((5.0 + lengths) / 6.0) ** alpha, rtol=1e-6)
    assert got.dtype == np.float32


def test_top_k_over_beams_matches_numpy():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(3, 4, 7)).astype(np.float32)
    top, beam_index, word_index = search.top_k_over_beams(tf.constant(scores), 5)
    flat = scores.reshape(3, 28)
    order = np.argsort(-flat, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(top.numpy(), np.take_along_axis(flat, order, 1))
    np.testing.assert_array_equal(beam_index.numpy(), order // 7)
    np.testing.assert_array_equal(word_index.numpy(), order % 7)


def test_top_k_over_beams_ties_keep_lower_flat_index():
    scores = np.full((1, 3, 4), -np.inf, np.float32)
    scores[0, 2, 1] = scores[0, 1, 3] = scores[0, 0, 2] = 0.5
    top, beam_index, word_index = search.top_k_over_beams(tf.constant(scores), 4)
    np.testing.assert_array_equal(beam_index.numpy(), [[0, 1, 2, 0]])
    np.testing.assert_array_equal(word_index.numpy(), [[2, 3, 1, 0]])
    np.testing.assert_array_equal(top.numpy(), [[0.5, 0.5, 0.5, -np.inf]])


def test_reorder_state_gathers_flat_parent_rows():
    rng = np.random.default_rng(2)
    batch, k = 3, 4
    h = rng.normal(size=(batch * k, 5)).astype(np.float32)
    c = rng.normal(size=(batch * k, 2, 2)).astype(np.float32)
    parents = rng.integers(0, k, size=(batch, k)).astype(np.int32)
    out = search.reorder_state((tf.constant(h), {"c": tf.constant(c)}), tf.constant(parents))
    rows = [b * k + parents[b, j] for b in range(batch) for j in range(k)]
    np.testing.assert_array_equal(out[0].numpy(), h[rows])
    np.testing.assert_array_equal(out[1]["c"].numpy(), c[rows])


def test_gather_beams_picks_per_row():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 100, size=(2, 5, 6)).astype(np.int32)
    index = np.array([[4, 0, 4], [1, 3, 2]], np.int32)
    got = search.gather_beams(tf.constant(x), tf.constant(index)).numpy()
    np.testing.assert_array_equal(got, np.stack([x[0][index[0]], x[1][index[1]]]))


def test_gather_attention_follows_path_and_masks():
    rng = np.random.default_rng(4)
    steps, batch, k, n, t, s = 4, 2, 3, 2, 6, 5  # t > steps: positions beyond history
    history = rng.random(size=(steps, batch * k, s)).astype(np.float32)
    path = rng.integers(0, k, size=(batch, n, t)).astype(np.int32)
    lengths = np.array([[4, 0], [2, 3]], np.int32)
    got = search.gather_attention(
        tf.constant(history), tf.constant(path), tf.constant(lengths), k
    ).numpy()
    want = np.zeros((batch, n, t, s), np.float32)
    for b in range(batch):
        for i in range(n):
            for pos in range(lengths[b, i]):
                want[b, i, pos] = history[pos, b * k + path[b, i, pos]]
    np.testing.assert_array_equal(got, want)


# ----------------------------------------------------------------------------- scripted model


class Script:
    """A fake model over V_SCRIPT words: next-word probabilities looked up by the whole prefix.

    `probs` maps a prefix (tuple of words, without BOS) to {word: probability}; words not
    listed get FLOOR; prefixes not listed put all their mass on EOS. The step function keeps
    the prefix's trie node in its state (so the logits depend on the beam's history and beam
    reordering must move it) and returns attention one_hot((step + previous id) % S).
    """

    def __init__(self, probs: dict[tuple, dict[int, float]], sources: int = 7):
        self.probs = probs
        self.sources = sources
        prefixes = sorted(probs, key=lambda p: (len(p), p))
        self.node = {p: i for i, p in enumerate(prefixes)}
        self.sink = len(prefixes)  # every unlisted prefix
        self.root = len(prefixes) + 1  # before BOS
        table = np.zeros((len(prefixes) + 2, V_SCRIPT))
        child = np.full((len(prefixes) + 2, V_SCRIPT), self.sink)
        for p, i in self.node.items():
            table[i] = self._logits(probs[p])
            for w in range(V_SCRIPT):
                child[i, w] = self.node.get(p + (w,), self.sink)
        table[self.sink] = self._logits({EOS_ID: 1.0})
        table[self.root] = table[self.sink]
        child[self.root, BOS_ID] = self.node.get((), self.sink)
        self.table = table.astype(np.float32)
        self.child = child.astype(np.int32)

    @staticmethod
    def _logits(p):
        out = np.full(V_SCRIPT, FLOOR)
        for w, q in p.items():
            out[w] = q
        return np.log(out)

    def state(self, batch):
        return {"node": tf.fill([batch], self.root)}

    def step(self, ids, step, state):
        node = tf.gather_nd(tf.constant(self.child), tf.stack([state["node"], ids], axis=-1))
        logits = tf.gather(tf.constant(self.table), node)  # (N, V)
        attention = tf.one_hot((step + ids) % self.sources, self.sources)  # (N, S)
        return logits, {"node": node}, attention

    def logp(self, prefix, word):
        node = self.node.get(tuple(prefix), self.sink)
        return float(log_softmax(self.table[node])[word])

    def log_prob(self, tokens):
        """Score of tokens + EOS, as search defines it."""
        tokens = list(tokens)
        return sum(self.logp(tokens[:i], w) for i, w in enumerate(tokens + [EOS_ID]))

    def attention(self, tokens, width):
        rows = np.zeros((width, self.sources), np.float32)
        for t in range(len(tokens)):
            rows[t, (t + ([BOS_ID] + list(tokens))[t]) % self.sources] = 1.0
        return rows


BEAM_BEATS_GREEDY = Script(
    {
        (): {A: 0.5, B: 0.45, C: 0.05},
        (A,): {A: 0.3, B: 0.3, C: 0.4},
        (A, C): {EOS_ID: 1.0},
        (B,): {C: 0.95, D: 0.05},
        (B, C): {EOS_ID: 1.0},
    }
)


def test_beam_finds_better_sequence_than_greedy():
    s = BEAM_BEATS_GREEDY
    g = greedy(s.step, s.state(1), 1, [10])
    b = beam(s.step, s.state(1), 1, 2, [10])
    assert hyp(g, 0, 0) == (A, C)
    assert hyp(b, 0, 0) == (B, C)
    np.testing.assert_allclose(g["log_probs"][0, 0], s.log_prob((A, C)), rtol=1e-5)
    np.testing.assert_allclose(b["log_probs"][0, 0], s.log_prob((B, C)), rtol=1e-5)
    assert b["log_probs"][0, 0] > g["log_probs"][0, 0] + 0.5
    one = beam(s.step, s.state(1), 1, 1, [10])
    assert hyp(one, 0, 0) == (A, C)


LENGTH_CASE = Script(
    {
        (): {A: 1.0},
        (A,): {EOS_ID: 0.55, B: 0.45},
        (A, B): {B: 0.9, EOS_ID: 0.1},
        (A, B, B): {EOS_ID: 0.95, C: 0.05},
    }
)


@pytest.mark.parametrize("alpha, best, second", [(0.0, (A,), (A, B, B)), (2.0, (A, B, B), (A,))])
def test_length_penalty_changes_the_winner(alpha, best, second):
    s = LENGTH_CASE
    r = beam(s.step, s.state(1), 1, 2, [10], alpha=alpha, n_best=2)
    assert [hyp(r, 0, 0), hyp(r, 0, 1)] == [best, second]
    for i, tokens in enumerate([best, second]):
        np.testing.assert_allclose(r["log_probs"][0, i], s.log_prob(tokens), rtol=1e-5)
        want = s.log_prob(tokens) / lp(len(tokens) + 1, alpha)
        np.testing.assert_allclose(r["scores"][0, i], want, rtol=1e-5)


# [b] finishes at step 1, is pushed out of the beam at step 2 by [a c d] and [a c e], which
# both end below it: it must still come first.
EVICTED_EARLY_EOS = Script(
    {
        (): {A: 0.7, B: 0.3},
        (A,): {C: 0.99},
        (B,): {EOS_ID: 0.9, C: 0.1},
        (A, C): {D: 0.5, E: 0.49},
        (A, C, D): {EOS_ID: 0.6, F: 0.4},
        (A, C, E): {EOS_ID: 0.6, F: 0.4},
    }
)


def test_early_eos_is_kept_after_eviction_and_ranked():
    s = EVICTED_EARLY_EOS
    calls = tf.Variable(0)

    def counted(ids, step, state):
        calls.assign_add(1)
        return s.step(ids, step, state)

    r = beam(counted, s.state(1), 1, 2, [20], n_best=2, attention=True)
    assert [hyp(r, 0, 0), hyp(r, 0, 1)] == [(B,), (A, C, D)]
    want = [s.log_prob((B,)), s.log_prob((A, C, D))]
    np.testing.assert_allclose(r["log_probs"][0], want, rtol=1e-5)
    np.testing.assert_allclose(r["scores"][0], want, rtol=1e-5)
    assert int(calls.numpy()) == 4  # steps 0..3: the beam went on after [b] finished
    assert r["ids"].shape == (1, 2, 20) and r["attention"].shape == (1, 2, 20, 7)
    for i, tokens in enumerate([(B,), (A, C, D)]):
        np.testing.assert_array_equal(r["attention"][0, i], s.attention(tokens, 20))


def test_attention_follows_reordered_beams():
    # Step 0 puts [a] in slot 0 and [b] in slot 1; the best [b c] takes its step-1 attention
    # from slot 1 and then moves to slot 0, so any slot mix-up changes its attention rows.
    s = BEAM_BEATS_GREEDY
    r = beam(s.step, s.state(2), 2, 2, [20, 1], n_best=2, attention=True)
    assert r["attention"].shape == (2, 2, 20, 7)
    assert [hyp(r, 0, 0), hyp(r, 0, 1)] == [(B, C), (A, C)]
    assert [hyp(r, 1, 0), hyp(r, 1, 1)] == [(A,), (B,)]
    for row, i in itertools.product(range(2), range(2)):
        np.testing.assert_array_equal(r["attention"][row, i], s.attention(hyp(r, row, i), 20))


def test_max_lengths_cut_rows_with_forced_eos():
    probs = {(): {A: 0.6, B: 0.4}, (A,): {A: 0.7, C: 0.3}, (B,): {B: 0.9, C: 0.1}}
    for prefix in [(A, A), (A, C), (B, B), (B, C)]:
        probs[prefix] = {A: 0.55, B: 0.45}
    s = Script(probs)  # EOS is (almost) impossible before 3 words, certain after
    max_lengths = [0, 1, 2, 5]
    r = beam(s.step, s.state(4), 4, 2, max_lengths, n_best=2)
    assert r["ids"].shape == (4, 2, 5)
    assert hyp(r, 0, 0) == () and r["scores"][0, 1] == -np.inf  # one distinct hypothesis
    assert [hyp(r, 1, 0), hyp(r, 1, 1)] == [(A,), (B,)]
    assert [hyp(r, 2, 0), hyp(r, 2, 1)] == [(A, A), (B, B)]
    assert r["lengths"][3].tolist() == [3, 3]  # ended by the model's own EOS after 3 words
    for row, width in enumerate(max_lengths):
        for i in range(2):
            tokens = hyp(r, row, i)
            assert len(tokens) <= width
            assert not r["ids"][row, i, len(tokens) :].any()
            if r["scores"][row, i] > -np.inf:
                # the forced EOS is scored with the model's log p(EOS)
                np.testing.assert_allclose(r["log_probs"][row, i], s.log_prob(tokens), rtol=1e-5)
    g = greedy(s.step, s.state(4), 4, max_lengths)
    assert [hyp(g, row, 0) for row in range(4)] == [(), (A,), (A, A), (A, A, A)]
    np.testing.assert_allclose(g["log_probs"][2, 0], s.log_prob((A, A)), rtol=1e-5)


def test_min_length_blocks_eos_until_reached():
    # EOS is almost certain after one word; with min_length 3 no hypothesis may end before 3
    # words, and scores keep the model's own (not renormalised) log-probabilities.
    probs = {(): {A: 0.6, B: 0.4}}
    for prefix in [(A,), (B,), (A, A), (A, C), (B, B), (B, C)]:
        probs[prefix] = {EOS_ID: 0.9, A: 0.06, C: 0.04}
    s = Script(probs)
    assert hyp(beam(s.step, s.state(1), 1, 2, [10]), 0, 0) == (A,)
    r = beam(s.step, s.state(3), 3, 2, [10, 10, 2], n_best=2, min_length=3)
    for row in range(2):
        assert all(r["lengths"][row] >= 3), r["lengths"][row]
        for i in range(2):
            tokens = hyp(r, row, i)
            np.testing.assert_allclose(r["log_probs"][row, i], s.log_prob(tokens), rtol=1e-5)
    assert hyp(r, 0, 0) == (A, A, A)
    # A row whose max length is below min_length still ends with its forced, scored EOS.
    assert r["lengths"][2].tolist() == [2, 2] and np.all(np.isfinite(r["log_probs"][2]))
    np.testing.assert_allclose(r["log_probs"][2, 0], s.log_prob(hyp(r, 2, 0)), rtol=1e-5)
    g = greedy(s.step, s.state(3), 3, [10, 10, 2], min_length=3)
    assert [hyp(g, row, 0) for row in range(3)] == [(A, A, A), (A, A, A), (A, A)]
    np.testing.assert_allclose(g["log_probs"][0, 0], s.log_prob((A, A, A)), rtol=1e-5)
    # min_length as a tensor (as the translator passes it) gives the same result.
    t = beam(s.step, s.state(3), 3, 2, [10, 10, 2], n_best=2, min_length=tf.constant(3))
    np.testing.assert_array_equal(t["ids"], r["ids"])


def test_empty_batch_gives_empty_results():
    s = BEAM_BEATS_GREEDY
    r = beam(s.step, s.state(0), 0, 2, [], n_best=2, attention=True)
    assert r["ids"].shape == (0, 2, 0) and r["scores"].shape == (0, 2)
    assert r["attention"].shape == (0, 2, 0, 7)
    g = greedy(s.step, s.state(0), 0, [], attention=True)
    assert g["ids"].shape == (0, 1, 0) and g["attention"].shape == (0, 1, 0, 7)


def test_mixed_precision_logits_are_cast():
    s = EVICTED_EARLY_EOS

    def half(ids, step, state):
        logits, state, attention = s.step(ids, step, state)
        return tf.cast(logits, tf.float16), state, attention

    r = beam(half, s.state(1), 1, 2, [20], n_best=2)
    assert r["scores"].dtype == np.float32
    assert [hyp(r, 0, 0), hyp(r, 0, 1)] == [(B,), (A, C, D)]
    g = greedy(half, s.state(1), 1, [20])
    assert g["log_probs"].dtype == np.float32 and hyp(g, 0, 0) == (A, C, D)


def test_bad_arguments_raise():
    s = EVICTED_EARLY_EOS
    with pytest.raises(ValueError, match="n_best"):
        beam(s.step, s.state(1), 1, 2, [5], n_best=3)
    with pytest.raises(ValueError, match="beam_size"):
        beam(s.step, s.state(1), 1, 0, [5])

    def no_attention(ids, step, state):
        logits, state, _ = s.step(ids, step, state)
        return logits, state, None

    with pytest.raises(ValueError, match="attention=None"):
        beam(no_attention, s.state(1), 1, 2, [5], attention=True)
    assert beam(no_attention, s.state(1), 1, 2, [5])["attention"] is None


# ----------------------------------------------------------------------------- ensembles

# Alone, P decodes [a d] and Q decodes [c]. The mean of their probabilities prefers b at
# step 0 (0.49 > 0.255) and then d (0.55 > 0.45), where P alone would take e after b.
ENSEMBLE_P = Script({(): {A: 0.5, B: 0.49, C: 0.01}, (A,): {D: 0.9, EOS_ID: 0.1},
                     (B,): {D: 0.2, E: 0.8}})  # fmt: skip
ENSEMBLE_Q = Script({(): {C: 0.5, B: 0.49, A: 0.01}, (B,): {D: 0.9, E: 0.1}})


def ensemble_log_prob(scripts, tokens):
    """sum_t log mean_i p_i(y_t | y_<t) over tokens + EOS: the ensemble's log-probability."""
    tokens = list(tokens) + [EOS_ID]
    return sum(
        np.log(np.mean([np.exp(s.logp(tokens[:t], w)) for s in scripts]))
        for t, w in enumerate(tokens)
    )


def _rolled(script):
    """The script's step function with its attention moved one source position right."""

    def step_fn(ids, step, state):
        logits, state, attention = script.step(ids, step, state)
        return logits, state, tf.roll(attention, 1, axis=-1)

    return step_fn


def test_average_log_probs_is_log_of_mean_probability():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(2, 4, 9)) * 3
    got = search.average_log_probs([tf.constant(x, tf.float32), tf.constant(y, tf.float16)])
    assert got.dtype == tf.float32
    want = np.log((softmax(x) + softmax(y.astype(np.float16).astype(np.float64))) / 2)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.exp(got.numpy()).sum(-1), 1.0, rtol=1e-6)
    same = search.average_log_probs([tf.constant(x, tf.float32)] * 3)
    np.testing.assert_allclose(same.numpy(), log_softmax(x), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="at least one"):
        search.ensemble_step_fn([])


def test_scripted_pair_prefers_what_neither_member_does():
    p, q = ENSEMBLE_P, ENSEMBLE_Q
    both = search.ensemble_step_fn([p.step, _rolled(q)])
    state = (p.state(1), q.state(1))
    assert hyp(greedy(p.step, p.state(1), 1, [10]), 0, 0) == (A, D)
    assert hyp(greedy(q.step, q.state(1), 1, [10]), 0, 0) == (C,)
    g = greedy(both, state, 1, [10], attention=True)
    assert hyp(g, 0, 0) == (B, D)
    np.testing.assert_allclose(g["log_probs"][0, 0], ensemble_log_prob([p, q], (B, D)), rtol=1e-5)

    # Beam 3: [b d] 0.2695, then [c] 0.255 (finished at step 1), then [b e] 0.2205.
    r = beam(both, state, 1, 3, [10], n_best=3, alpha=0.6, attention=True)
    best = [(B, D), (C,), (B, E)]
    assert [hyp(r, 0, i) for i in range(3)] == best
    for i, tokens in enumerate(best):
        want = ensemble_log_prob([p, q], tokens)
        np.testing.assert_allclose(r["log_probs"][0, i], want, rtol=1e-5)
        np.testing.assert_allclose(r["scores"][0, i], want / lp(len(tokens) + 1, 0.6), rtol=1e-5)
        mean = (p.attention(tokens, 10) + np.roll(q.attention(tokens, 10), 1, axis=-1)) / 2
        np.testing.assert_allclose(r["attention"][0, i], mean, atol=1e-6)  # the members' mean


def test_ensemble_beam_search_is_one_traced_while_loop():
    p, q = ENSEMBLE_P, ENSEMBLE_Q

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)])
    def run(max_lengths):
        batch = tf.shape(max_lengths)[0]
        r = search.beam_search(
            search.ensemble_step_fn([p.step, q.step]), (p.state(batch), q.state(batch)), batch,
            beam_size=3, bos_id=BOS_ID, eos_id=EOS_ID, max_lengths=max_lengths, n_best=3,
        )  # fmt: skip
        return r.ids, r.log_probs

    whiles, _ = _while_ops(run.get_concrete_function())
    assert len(whiles) == 1
    ids, log_probs = run(tf.constant([10, 10]))
    assert ids.numpy()[1, 0, :2].tolist() == [B, D]
    np.testing.assert_allclose(
        log_probs.numpy()[0, 0], ensemble_log_prob([p, q], (B, D)), rtol=1e-5
    )


# ----------------------------------------------------------------------------- random models


class TableModel:
    """logits = table[row, previous id, step]; the state carries the row id (it must follow the
    beams); attention softmax(att[row, previous id, step])."""

    def __init__(self, seed, vocab=11, sources=4, steps=12, batch=6):
        rng = np.random.default_rng(seed)
        table = rng.normal(size=(batch, vocab, steps + 1, vocab)) * 3.0
        table[..., EOS_ID] += np.linspace(-3.0, 3.0, steps + 1)  # ends vary
        self.table = table.astype(np.float32)
        self.att = rng.normal(size=(batch, vocab, steps + 1, sources)).astype(np.float32)

    def tf_state(self, batch):
        return {"row": tf.range(batch)}

    def tf_step(self, ids, step, state):
        index = tf.stack([state["row"], ids], axis=-1)  # (N, 2)
        logits = tf.gather_nd(self.table, index)[:, step]  # (N, V)
        attention = tf.nn.softmax(tf.gather_nd(self.att, index)[:, step])  # (N, S)
        return logits, state, attention

    def np_start(self, row):
        return row

    def np_step(self, prev, t, row):
        return log_softmax(self.table[row, prev, t]), row, softmax(self.att[row, prev, t])


class RnnModel:
    """h' = tanh(E[prev] + h W); logits = h' O + bias[step]; attention softmax(h' A)."""

    def __init__(self, seed, vocab=13, units=6, sources=5, steps=12, batch=3):
        rng = np.random.default_rng(seed)

        def param(*shape, scale=1.0):
            return (rng.normal(size=shape) * scale).astype(np.float32)

        self.E, self.W = param(vocab, units), param(units, units, scale=0.6)
        self.O, self.A = param(units, vocab, scale=3.0), param(units, sources)
        bias = np.zeros((steps + 1, vocab), np.float32)
        bias[:, EOS_ID] = np.linspace(-4.0, 4.0, steps + 1)
        self.bias = bias
        self.h0 = param(batch, units)

    def tf_state(self, batch):
        return {"h": tf.constant(self.h0[:batch]), "extra": [tf.zeros([batch, 2, 3])]}

    def tf_step(self, ids, step, state):
        h = tf.tanh(tf.gather(self.E, ids) + tf.matmul(state["h"], self.W))  # (N, H)
        logits = tf.matmul(h, self.O) + tf.gather(self.bias, step)[None, :]  # (N, V)
        extra = [state["extra"][0] + 1.0]
        return logits, {"h": h, "extra": extra}, tf.nn.softmax(tf.matmul(h, self.A))

    def np_start(self, row):
        return self.h0[row].astype(np.float64)

    def np_step(self, prev, t, h):
        h = np.tanh(self.E[prev] + h @ self.W)
        return log_softmax(h @ self.O + self.bias[t]), h, softmax(h @ self.A)


class Hyp(NamedTuple):
    tokens: tuple
    raw: float
    finished: bool
    state: object
    prev: int
    attention: tuple


def reference_beam_search(model, batch, k, max_lengths, alpha, n_best, vocab, min_length=0):
    """Straightforward per-row beam search with the same rules as nmt.search.beam_search."""
    results, evictions = [], 0
    for row in range(batch):
        start = model.np_start(row)
        slots = [Hyp((), 0.0 if j == 0 else -np.inf, False, start, BOS_ID, ()) for j in range(k)]
        done = []  # (score, raw, tokens, attention), best first
        t = 0
        while t == 0 or not all(h.finished for h in slots):
            candidates = []
            for j, h in enumerate(slots):
                if h.finished:
                    score = h.raw / lp(len(h.tokens) + 1, alpha)
                    candidates.append((score, j * vocab + EOS_ID, j, EOS_ID, h.raw, None, None))
                    continue
                logp, state, att = model.np_step(h.prev, t, h.state)
                words = [EOS_ID] if t >= max_lengths[row] else range(vocab)
                if t < min_length and t < max_lengths[row]:
                    logp = np.where(np.arange(vocab) == EOS_ID, -np.inf, logp)
                for w in words:
                    raw = h.raw + logp[w]
                    score = raw / lp(t + 1, alpha)
                    candidates.append((score, j * vocab + w, j, w, raw, state, att))
            candidates.sort(key=lambda c: (-c[0], c[1]))
            new = []
            for score, _, j, w, raw, state, att in candidates[:k]:
                h = slots[j]
                if h.finished:
                    new.append(h)
                elif w == EOS_ID or t >= max_lengths[row]:
                    done.append((score, raw, h.tokens, h.attention))
                    new.append(Hyp(h.tokens, raw, True, state, EOS_ID, h.attention))
                else:
                    new.append(Hyp(h.tokens + (w,), raw, False, state, w, h.attention + (att,)))
            evictions += sum(h.finished and h not in new for h in slots)
            done = sorted(done, key=lambda d: -d[0])[:n_best]
            slots = new
            t += 1
        done += [(-np.inf, -np.inf, (), ())] * (n_best - len(done))
        results.append(done)
    return results, evictions


@pytest.mark.parametrize("min_length", [0, 4])
@pytest.mark.parametrize("kind", [TableModel, RnnModel])
def test_beam_search_agrees_with_numpy_reference(kind, min_length):
    batch, evictions = 6, 0
    model = kind(0, batch=batch)
    vocab = model.table.shape[-1] if kind is TableModel else model.O.shape[1]
    rng = np.random.default_rng(1)
    for k in range(1, 6):
        for alpha in (0.0, 0.8):
            n_best = int(rng.integers(1, k + 1))
            max_lengths = rng.integers(0, 9, size=batch).tolist()
            r = beam(
                model.tf_step,
                model.tf_state(batch),
                batch,
                k,
                max_lengths,
                alpha,
                n_best,
                True,
                min_length=min_length,
            )
            want, evicted = reference_beam_search(
                model, batch, k, max_lengths, alpha, n_best, vocab, min_length
            )
            evictions += evicted
            width = max(max_lengths)
            assert r["ids"].shape == (batch, n_best, width)
            for row in range(batch):
                for i, (score, raw, tokens, attention) in enumerate(want[row]):
                    where = f"k={k} alpha={alpha} row={row} i={i}"
                    assert hyp(r, row, i) == tokens, where
                    if score > -np.inf:
                        assert len(tokens) >= min(min_length, max_lengths[row]), where
                    got = (r["scores"][row, i], r["log_probs"][row, i])
                    np.testing.assert_allclose(got, (score, raw), rtol=1e-4, err_msg=where)
                    expected = np.zeros((width, r["attention"].shape[-1]))
                    if tokens:
                        expected[: len(tokens)] = np.stack(attention)
                    np.testing.assert_allclose(r["attention"][row, i], expected, atol=1e-5)
                assert not r["ids"][row][np.arange(width) >= r["lengths"][row][:, None]].any()
    if min_length == 0:
        assert evictions > 0  # the cases exercise finished hypotheses leaving the beam


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_n_best_is_sorted_distinct_and_normalised(seed):
    model, alpha = RnnModel(seed, batch=3), 0.6
    r = beam(model.tf_step, model.tf_state(3), 3, 5, [6, 8, 10], alpha=alpha, n_best=5)
    for row in range(3):
        assert np.all(np.diff(r["scores"][row]) <= 0)
        assert len({hyp(r, row, i) for i in range(5)}) == 5
        want = r["log_probs"][row] / lp(r["lengths"][row] + 1, alpha)
        np.testing.assert_allclose(r["scores"][row], want, rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_greedy_equals_beam_size_one(seed, alpha):
    model = RnnModel(seed, batch=3)
    max_lengths = [3, 7, 11]
    g = greedy(model.tf_step, model.tf_state(3), 3, max_lengths, attention=True)
    b = beam(model.tf_step, model.tf_state(3), 3, 1, max_lengths, alpha=alpha, attention=True)
    np.testing.assert_array_equal(g["ids"], b["ids"])
    np.testing.assert_array_equal(g["lengths"], b["lengths"])
    np.testing.assert_allclose(g["log_probs"], b["log_probs"], rtol=1e-6)
    np.testing.assert_allclose(g["scores"], g["log_probs"])
    np.testing.assert_allclose(g["attention"], b["attention"], atol=1e-6)
    assert g["ids"].shape == (3, 1, 11) and g["attention"].shape == (3, 1, 11, 5)


# ----------------------------------------------------------------------------- tf.function


def _while_ops(concrete):
    """While ops in a traced function, including those nested in its function library."""
    graph_def = concrete.graph.as_graph_def()
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        nodes.extend(function.node_def)
    return [n.op for n in nodes if n.op in ("While", "StatelessWhile")], [n.op for n in nodes]


@pytest.mark.parametrize("use_beam", [True, False])
def test_traced_with_unknown_shapes_single_while_and_early_exit(use_beam):
    rng = np.random.default_rng(7)
    units, vocab = 4, 9
    embed = tf.constant(rng.normal(size=(vocab, units)), tf.float32)
    out = tf.constant(rng.normal(size=(units, vocab)) * 2, tf.float32)
    eos_bias = tf.constant(np.eye(vocab)[EOS_ID] * 6.0, tf.float32)  # ends within a few steps
    calls = tf.Variable(0)
    k = 3 if use_beam else 1

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None, units], tf.float32),  # memory (B, S, H)
            tf.TensorSpec([None], tf.int32),  # max lengths (B,)
        ]
    )
    def translate(memory, max_lengths):
        batch = tf.shape(memory)[0]
        tiled = search.tile_beams(memory, k)  # (B*K, S, H)

        def step_fn(ids, step, state):
            calls.assign_add(1)
            query = tf.tanh(tf.gather(embed, ids) + state["h"])  # (N, H)
            attention = tf.nn.softmax(tf.einsum("nh,nsh->ns", query, tiled))  # (N, S)
            context = tf.einsum("ns,nsh->nh", attention, tiled)  # (N, H)
            logits = tf.matmul(query + context, out) + eos_bias * tf.cast(step, tf.float32)
            return logits, {"h": context}, attention

        state = {"h": tf.zeros([batch, units])}
        kwargs = dict(bos_id=BOS_ID, eos_id=EOS_ID, max_lengths=max_lengths)
        if use_beam:
            r = search.beam_search(
                step_fn, state, batch, beam_size=k, n_best=2, length_penalty=0.6,
                return_attention=True, **kwargs,
            )  # fmt: skip
        else:
            r = search.greedy_search(step_fn, state, batch, return_attention=True, **kwargs)
        return r.ids, r.lengths, r.scores, r.attention

    concrete = translate.get_concrete_function()
    whiles, ops = _while_ops(concrete)
    assert len(whiles) == 1
    assert any(op.startswith("TensorList") for op in ops)  # attention history is recorded

    memory = rng.normal(size=(4, 6, units)).astype(np.float32)
    max_lengths = np.array([40, 50, 45, 60], np.int32)
    ids, lengths, scores, attention = translate(memory, max_lengths)
    steps = int(calls.numpy())
    assert 1 < steps < 20  # one call per step: stopped long before max length
    n = 2 if use_beam else 1
    assert ids.shape == (4, n, 60) and attention.shape == (4, n, 60, 6)
    assert int(lengths.numpy().max()) < steps
    np.testing.assert_allclose(
        attention.numpy().sum(-1), (np.arange(60) < lengths.numpy()[..., None]).astype(float),
        rtol=1e-5,
    )  # fmt: skip
    eager = translate.python_function(tf.constant(memory), tf.constant(max_lengths))
    for traced, plain in zip((ids, lengths, scores, attention), eager, strict=True):
        np.testing.assert_allclose(traced.numpy(), plain.numpy(), rtol=1e-5, atol=1e-6)

    # Another batch and source length reuse the same trace; two max lengths cut at 1 and 0.
    calls.assign(0)
    ids2, lengths2, _, attention2 = translate(memory[:3, :2], np.array([1, 0, 30], np.int32))
    assert int(calls.numpy()) < 20 and translate.experimental_get_tracing_count() == 1
    assert ids2.shape[:2] == (3, n) and attention2.shape[-1] == 2
    assert lengths2.numpy()[0].max() <= 1 and lengths2.numpy()[1, 0] == 0


def test_no_attention_work_when_not_requested():
    model = RnnModel(0, batch=2)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)])
    def run(max_lengths):
        r = search.beam_search(
            model.tf_step, model.tf_state(2), 2, beam_size=3, bos_id=BOS_ID, eos_id=EOS_ID,
            max_lengths=max_lengths, n_best=2,
        )  # fmt: skip
        assert r.attention is None
        return r.ids, r.scores

    whiles, ops = _while_ops(run.get_concrete_function())
    assert len(whiles) == 1
    assert not any(op.startswith("TensorList") for op in ops)
    ids, scores = run(tf.constant([5, 7]))
    eager = beam(model.tf_step, model.tf_state(2), 2, 3, [5, 7], n_best=2)
    np.testing.assert_array_equal(ids.numpy(), eager["ids"])
    np.testing.assert_allclose(scores.numpy(), eager["scores"], rtol=1e-6)


# ----------------------------------------------------------------------------- shortlists


class Shortlisted:
    """A model scoring only the sorted ids `keep`: its tf_step returns their K columns (as a
    shortlist's step function does); np_step is what the numpy reference search sees, the
    full vocabulary with log p = -inf outside `keep` (normalised over `keep`)."""

    def __init__(self, model, vocab, keep):
        self.model = model
        self.keep = np.array(sorted(keep), np.int32)
        self.mask = np.full(vocab, -np.inf)
        self.mask[self.keep] = 0.0

    def tf_state(self, batch):
        return self.model.tf_state(batch)

    def tf_step(self, ids, step, state):
        logits, state, attention = self.model.tf_step(ids, step, state)
        return tf.gather(logits, self.keep, axis=1), state, attention

    def np_start(self, row):
        return self.model.np_start(row)

    def np_step(self, prev, t, state):
        log_probs, state, attention = self.model.np_step(prev, t, state)
        return log_softmax(log_probs + self.mask), state, attention


@pytest.mark.parametrize("min_length", [0, 3])
@pytest.mark.parametrize("kind", [TableModel, RnnModel])
def test_shortlisted_beam_search_agrees_with_numpy_reference(kind, min_length):
    # The search ranks the K columns and maps them back: the same hypotheses, scores and
    # attention as a full-vocabulary search of the model with -inf outside the shortlist.
    # RnnModel embeds the previous id, so feeding columns instead of ids would show.
    batch = 4
    base = kind(2, batch=batch)
    vocab = base.table.shape[-1] if kind is TableModel else base.O.shape[1]
    rng = np.random.default_rng(3)
    for k in range(1, 5):
        keep = {0, 1, 2, EOS_ID, *rng.choice(np.arange(4, vocab), size=3, replace=False)}
        model = Shortlisted(base, vocab, keep)
        max_lengths = rng.integers(0, 8, size=batch).tolist()
        n_best = int(rng.integers(1, k + 1))
        r = beam(model.tf_step, model.tf_state(batch), batch, k, max_lengths, 0.6, n_best,
                 True, min_length=min_length, vocab_ids=tf.constant(model.keep))  # fmt: skip
        want, _ = reference_beam_search(model, batch, k, max_lengths, 0.6, n_best, vocab,
                                        min_length)  # fmt: skip
        for row, i in itertools.product(range(batch), range(n_best)):
            score, raw, tokens, attention = want[row][i]
            assert hyp(r, row, i) == tokens, (k, row, i)
            assert set(tokens) <= keep
            np.testing.assert_allclose((r["scores"][row, i], r["log_probs"][row, i]),
                                       (score, raw), rtol=1e-4)  # fmt: skip
            if tokens:
                np.testing.assert_allclose(r["attention"][row, i, : len(tokens)],
                                           np.stack(attention), atol=1e-5)  # fmt: skip
        g = greedy(model.tf_step, model.tf_state(batch), batch, max_lengths, attention=True,
                   min_length=min_length, vocab_ids=model.keep)  # fmt: skip
        b = beam(model.tf_step, model.tf_state(batch), batch, 1, max_lengths, attention=True,
                 min_length=min_length, vocab_ids=model.keep)  # fmt: skip
        np.testing.assert_array_equal(g["ids"], b["ids"])
        np.testing.assert_allclose(g["log_probs"], b["log_probs"], rtol=1e-6)


@pytest.mark.parametrize("use_beam", [False, True])
def test_a_shortlist_of_every_id_changes_nothing(use_beam):
    model = RnnModel(4, batch=3)
    every = tf.range(model.O.shape[1])

    def run(**options):
        state, lengths = model.tf_state(3), [4, 9, 12]
        if use_beam:
            return beam(model.tf_step, state, 3, 4, lengths, 0.6, 3, True, 2, **options)
        return greedy(model.tf_step, state, 3, lengths, True, 2, **options)

    full, listed = run(), run(vocab_ids=every)
    for name in ("ids", "lengths", "scores", "log_probs", "attention"):
        np.testing.assert_array_equal(listed[name], full[name], err_msg=name)


def columns(step_fn, keep):
    """step_fn with its logits cut to the columns `keep` (a shortlist's step function)."""

    def step(ids, t, state):
        logits, state, attention = step_fn(ids, t, state)
        return tf.gather(logits, keep, axis=1), state, attention

    return step


def test_the_best_token_outside_the_shortlist_is_never_produced():
    # Greedy takes A (0.5) then C; without A in the shortlist it must go B, C, and score
    # them with probabilities normalised over the shortlist.
    s = BEAM_BEATS_GREEDY
    keep = [0, 1, 2, EOS_ID, B, C, D]
    assert hyp(greedy(s.step, s.state(1), 1, [10]), 0, 0) == (A, C)
    g = greedy(columns(s.step, keep), s.state(1), 1, [10], vocab_ids=keep)
    assert hyp(g, 0, 0) == (B, C)

    def listed_logp(prefix, word):
        return s.logp(prefix, word) - np.log(sum(np.exp(s.logp(prefix, w)) for w in keep))

    want = listed_logp((), B) + listed_logp((B,), C) + listed_logp((B, C), EOS_ID)
    np.testing.assert_allclose(g["log_probs"][0, 0], want, rtol=1e-5)
    b = beam(columns(s.step, keep), s.state(1), 1, 3, [10], n_best=3, vocab_ids=keep)
    assert hyp(b, 0, 0) == (B, C)
    assert all(set(hyp(b, 0, i)) <= set(keep) for i in range(3))


def test_a_shortlist_without_eos_is_refused():
    s = BEAM_BEATS_GREEDY
    keep = [0, 1, 2, A, B, C]
    with pytest.raises(tf.errors.InvalidArgumentError, match="eos_id"):
        greedy(columns(s.step, keep), s.state(1), 1, [10], vocab_ids=keep)
    with pytest.raises(tf.errors.InvalidArgumentError, match="eos_id"):
        beam(columns(s.step, keep), s.state(1), 1, 2, [10], vocab_ids=keep)


# ----------------------------------------------------------------------------- forced prefix


def prefixed(prefixes):
    """prefix_ids (B, P) padded with 0 and prefix_lengths (B,) for lists of tokens."""
    width = max((len(p) for p in prefixes), default=0)
    ids = np.zeros((len(prefixes), width), np.int32)
    for row, p in enumerate(prefixes):
        ids[row, : len(p)] = p
    return {"prefix_ids": ids, "prefix_lengths": np.array([len(p) for p in prefixes], np.int32)}


def test_force_prefix_keeps_only_the_prefix_column_inside_the_prefix():
    rng = np.random.default_rng(8)
    log_probs = rng.normal(size=(3, 6)).astype(np.float32)
    columns = np.array([[4, 2, 0], [5, 0, 0], [1, 3, 0]], np.int32)  # (N, P + 1)
    lengths = np.array([2, 1, 0], np.int32)
    for step in range(3):
        got = search_options.force_prefix(tf.constant(log_probs), tf.constant(step),
                                  tf.constant(columns), tf.constant(lengths)).numpy()  # fmt: skip
        for row in range(3):
            if step < lengths[row]:
                want = np.full(6, -np.inf, np.float32)
                want[columns[row, step]] = log_probs[row, columns[row, step]]
            else:
                want = log_probs[row]
            np.testing.assert_array_equal(got[row], want, err_msg=(step, row))


def test_prefix_forces_the_start_and_the_search_continues_from_it():
    s = BEAM_BEATS_GREEDY  # greedy decodes [a c], beam 2 decodes [b c]
    rows = prefixed([(B,), (), (A,), (A, B, D)])  # the last is longer than its max length
    max_lengths = [10, 10, 10, 1]
    g = greedy(s.step, s.state(4), 4, max_lengths, **rows)
    assert [hyp(g, row, 0) for row in range(4)] == [(B, C), (A, C), (A, C), (A, B, D)]
    b = beam(s.step, s.state(4), 4, 2, max_lengths, n_best=2, **rows)
    assert [hyp(b, row, 0) for row in range(4)] == [(B, C), (B, C), (A, C), (A, B, D)]
    assert hyp(b, 2, 1) == (A, A)  # both start with the prefix ([a b] ties with [a a])
    assert hyp(b, 0, 1) == (B, D)  # the other continuation of [b], not [a c]
    for result, n in ((g, 1), (b, 2)):
        for row, i in itertools.product(range(4), range(n)):
            tokens = hyp(result, row, i)
            if result["scores"][row, i] == -np.inf:  # row 3 has one hypothesis
                continue
            # scores are the model's own log-probabilities of the prefix and what follows
            np.testing.assert_allclose(result["log_probs"][row, i], s.log_prob(tokens),
                                       rtol=1e-5)  # fmt: skip
    assert b["ids"].shape[-1] == 10 and b["scores"][3, 1] == -np.inf


def test_prefix_counts_towards_min_length():
    probs = {(): {A: 0.6, B: 0.4}}
    for prefix in [(A,), (B,), (A, A), (B, A), (A, A, A), (B, A, A)]:
        probs[prefix] = {EOS_ID: 0.9, A: 0.1}
    s = Script(probs)
    rows = prefixed([(B, A)])
    assert hyp(greedy(s.step, s.state(1), 1, [10], **rows), 0, 0) == (B, A)
    got = greedy(s.step, s.state(1), 1, [10], min_length=3, **rows)
    assert hyp(got, 0, 0) == (B, A, A)
    assert hyp(beam(s.step, s.state(1), 1, 2, [10], min_length=3, **rows), 0, 0) == (B, A, A)


def test_prefix_with_a_shortlist_maps_ids_to_columns_and_must_be_listed():
    s = BEAM_BEATS_GREEDY
    keep = [0, 1, 2, EOS_ID, A, C, D]  # B is not listed
    step = columns(s.step, keep)
    g = greedy(step, s.state(1), 1, [10], vocab_ids=keep, **prefixed([(C, D)]))
    assert hyp(g, 0, 0) == (C, D)
    b = beam(step, s.state(1), 1, 2, [10], vocab_ids=keep, **prefixed([(A,)]))
    assert hyp(b, 0, 0) == (A, C)
    for run in (lambda: greedy(step, s.state(1), 1, [10], vocab_ids=keep, **prefixed([(B,)])),
                lambda: beam(step, s.state(1), 1, 2, [10], vocab_ids=keep,
                             **prefixed([(B,)])),):  # fmt: skip
        with pytest.raises(tf.errors.InvalidArgumentError, match="prefix"):
            run()


# ----------------------------------------------------------------------------- sampling

THREE_WORDS = Script({(): {A: 0.5, B: 0.3, C: 0.2}})  # then EOS


def sample(script, rows, topk, temperature, seed=0, **options):
    seeds = np.arange(seed, seed + rows, dtype=np.int32)
    return greedy(script.step, script.state(rows), rows, [5] * rows, sampling_topk=topk,
                  sampling_temperature=temperature, seeds=seeds, **options)  # fmt: skip


@pytest.mark.parametrize(
    "topk, temperature, want",
    [
        (0, 1.0, {A: 0.5, B: 0.3, C: 0.2}),
        (0, 0.5, {A: 0.25 / 0.38, B: 0.09 / 0.38, C: 0.04 / 0.38}),  # p ** (1 / T)
        (2, 1.0, {A: 0.625, B: 0.375}),
        (2, 2.0, {A: 0.5**0.5 / (0.5**0.5 + 0.3**0.5), B: 0.3**0.5 / (0.5**0.5 + 0.3**0.5)}),
    ],
)
def test_sampling_draws_from_the_tempered_top_k_distribution(topk, temperature, want):
    rows = 4000
    r = sample(THREE_WORDS, rows, topk, temperature)
    first = r["ids"][:, 0, 0]
    assert set(np.unique(first)) <= set(want)
    for word, p in want.items():
        tolerance = 4 * np.sqrt(p * (1 - p) / rows)
        assert abs(np.mean(first == word) - p) < tolerance, (word, np.mean(first == word), p)
    assert (r["lengths"] == 1).mean() > 0.99  # then EOS (the words at FLOOR: rarely, at T 2)
    # Scores are the model's log-probabilities (no temperature, no top-k renormalisation).
    for row in range(20):
        np.testing.assert_allclose(r["log_probs"][row, 0], THREE_WORDS.log_prob(hyp(r, row, 0)),
                                   rtol=1e-5)  # fmt: skip


def test_sampling_is_reproducible_per_row_whatever_the_batch():
    s = BEAM_BEATS_GREEDY
    seeds = np.array([3, 17, 3, 99, -5, 2**31 - 1], np.int32)

    def run(rows):
        return greedy(s.step, s.state(len(rows)), len(rows), [6] * len(rows), sampling_topk=0,
                      seeds=seeds[rows])  # fmt: skip

    every = run(list(range(6)))
    again = run(list(range(6)))
    np.testing.assert_array_equal(every["ids"], again["ids"])
    assert hyp(every, 0, 0) == hyp(every, 2, 0)  # equal seeds, equal draws
    for row in range(6):  # a row alone, or among others in another order: the same draw
        alone = run([row])
        np.testing.assert_array_equal(alone["ids"][0], every["ids"][row])
    mixed = run([5, 1, 3])
    np.testing.assert_array_equal(mixed["ids"], every["ids"][[5, 1, 3]])
    # Different seeds give different samples (4000 rows of 3 words cannot all agree).
    a = sample(THREE_WORDS, 4000, 0, 1.0, seed=0)["ids"]
    b = sample(THREE_WORDS, 4000, 0, 1.0, seed=4000)["ids"]
    assert (a[:, 0, 0] != b[:, 0, 0]).mean() > 0.5  # independent draws disagree 62% of the time


def test_sampling_top_1_is_greedy_and_honours_min_length_prefix_and_forced_eos():
    s = BEAM_BEATS_GREEDY
    plain = greedy(s.step, s.state(2), 2, [10, 10])
    top1 = greedy(s.step, s.state(2), 2, [10, 10], sampling_topk=1, sampling_temperature=3.0)
    np.testing.assert_array_equal(top1["ids"], plain["ids"])  # no seeds needed, no noise
    probs = {(): {A: 0.5, B: 0.5}}
    for prefix in [(A,), (B,), (C,), (A, A), (A, B), (B, A), (B, B), (C, A), (C, B)]:
        probs[prefix] = {EOS_ID: 0.5, A: 0.25, B: 0.25}
    r = sample(Script(probs), 200, 0, 1.0, min_length=3, **prefixed([(C,)] * 200))
    assert (r["lengths"] == 3).all() and (r["ids"][:, 0, 0] == C).all()  # max length 5 > 3
    r = greedy(Script(probs).step, Script(probs).state(50), 50, [2] * 50, sampling_topk=0,
               seeds=np.arange(50), min_length=4)  # fmt: skip
    assert (r["lengths"] == 2).all() and np.isfinite(r["log_probs"]).all()  # forced EOS wins


def test_uniform_noise_is_in_the_open_unit_interval_and_per_row():
    seeds = tf.constant([0, 1, 2, -1], tf.int32)
    u = search_options.uniform_noise(seeds, tf.constant(3), 5000).numpy()
    assert u.shape == (4, 5000) and u.dtype == np.float32
    assert (u > 0).all() and (u < 1).all()
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.005
    np.testing.assert_array_equal(
        search_options.uniform_noise(tf.constant([2, 0]), tf.constant(3), 5000).numpy(), u[[2, 0]]
    )
    assert not np.array_equal(search_options.uniform_noise(seeds, tf.constant(4), 5000).numpy(), u)


def test_sampling_top_k_keeps_exactly_k_columns():
    s = Script({(): {A: 0.4, B: 0.3, C: 0.3}})  # B and C tie: top-k keeps the lower id
    first = sample(s, 500, 2, 1.0)["ids"][:, 0, 0]
    assert set(first.tolist()) == {A, B}
    first = sample(s, 500, 1000, 1.0)["ids"][:, 0, 0]  # k above the vocabulary: all of it
    assert {A, B, C} <= set(first.tolist())


def test_bad_sampling_arguments_raise():
    s = THREE_WORDS
    with pytest.raises(ValueError, match="sampling_topk"):
        sample(s, 2, -1, 1.0)
    with pytest.raises(ValueError, match="sampling_temperature"):
        sample(s, 2, 0, 0.0)
    with pytest.raises(ValueError, match="seeds"):
        greedy(s.step, s.state(1), 1, [5], sampling_topk=0)


@pytest.mark.parametrize("use_beam", [False, True])
def test_sampling_and_prefix_trace_into_one_while_loop(use_beam):
    s = BEAM_BEATS_GREEDY
    spec = tf.TensorSpec([None], tf.int32)

    @tf.function(input_signature=[spec, tf.TensorSpec([None, None], tf.int32), spec, spec])
    def run(max_lengths, prefix_ids, prefix_lengths, seeds):
        batch = tf.shape(max_lengths)[0]
        options = dict(bos_id=BOS_ID, eos_id=EOS_ID, max_lengths=max_lengths,
                       prefix_ids=prefix_ids, prefix_lengths=prefix_lengths)  # fmt: skip
        if use_beam:
            r = search.beam_search(s.step, s.state(batch), batch, beam_size=2, **options)
        else:
            r = search.greedy_search(s.step, s.state(batch), batch, sampling_topk=0,
                                     seeds=seeds, **options)  # fmt: skip
        return r.ids, r.lengths

    whiles, _ = _while_ops(run.get_concrete_function())
    assert len(whiles) == 1
    rows = prefixed([(B,), ()])
    ids, lengths = run(tf.constant([10, 10]), rows["prefix_ids"], rows["prefix_lengths"],
                       tf.constant([1, 2]))  # fmt: skip
    assert ids.numpy()[0, 0, 0] == B and lengths.numpy()[0, 0] == 2
    run(tf.constant([4]), np.zeros((1, 0), np.int32), tf.constant([0]), tf.constant([7]))
    assert run.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("temperature", [0, -1.0, float("inf"), float("nan"), "1"])
def test_sampling_refuses_a_temperature_that_is_not_positive_and_finite(temperature):
    with pytest.raises(ValueError, match="sampling_temperature must be > 0 and finite"):
        search_options.check_sampling(0, temperature, seeds=tf.constant([1]))
