"""In-graph greedy and beam search over a step function.

Search never sees the model. It drives a *step function*

    step_fn(ids, step, state) -> (logits, new_state, attention)

    ids        int32 (N,)       previous output token of every hypothesis (BOS at step 0)
    step       int32 scalar     0-based position of the token being predicted
    state      nest, leading N  everything that must follow a hypothesis when beams are reordered
    logits     float (N, V)     any float dtype; cast to float32 before log_softmax
    new_state  same nest structure and shapes as `state`
    attention  float (N, S) or None

with N = batch for greedy search and N = batch * beam_size for beam search. Tensors that do not
depend on the hypothesis (encoder memory, source mask) are captured by the closure; for beam
search the caller tiles them with `tile_beams` (row b becomes rows b*K .. b*K+K-1).

Vocabulary shortlists (nmt/shortlist.py): with `vocab_ids` int32 (K,) the step function's
logits have K columns, column j scoring vocabulary id vocab_ids[j] (the ids sorted, EOS among
them). The searches then rank, block and pick columns, and map each picked column back,
token = vocab_ids[column], for the ids they feed to step_fn and the ids they return; the
softmax is over the K columns. Without `vocab_ids` (None) column j is id j (K = V).

Both searches run as a single `tf.while_loop` (`search_loop.search_loop`, nmt/search_loop.py)
and work eagerly or traced by `tf.function` with unknown batch size, source length and
maximum length. Ensembles need nothing more: `ensemble_step_fn` makes one step function of
several members' (probabilities averaged).

Conventions shared by both searches:

* A hypothesis y_1 .. y_L is scored with the model's log-probabilities of its tokens *and* of the
  EOS that ends it: log_probs = sum_{i=1..L+1} log p(y_i | y_<i), y_{L+1} = EOS.
* Maximum length (forced EOS): row b may hold at most max_lengths[b] tokens. At step
  t == max_lengths[b] every live hypothesis of row b can only take EOS, scored with the model's
  own log p(EOS) (log_softmax over all of step_fn's columns). So every returned hypothesis
  ended on a scored EOS, and a row that never chose EOS returns its best hypotheses cut at
  max_lengths[b].
* Minimum length: while step < min_length (and before the row's forced EOS) EOS gets
  log-probability -inf, so no hypothesis ends before min_length tokens; the other tokens keep
  the model's own log-probabilities (no renormalisation). Forced EOS wins when
  max_lengths[b] < min_length.
* Returned `lengths` exclude EOS; `ids` hold the tokens only, padded with 0 after `lengths`.
* scores = log_probs / length_penalty(lengths + 1, alpha): the GNMT length penalty (Wu et al.
  2016, "Google's Neural Machine Translation System", arXiv:1609.08144) over the number of
  scored tokens (the tokens plus their EOS). Greedy search has no penalty: scores == log_probs.
* Finished hypotheses stay in the batch until the loop ends: step_fn still runs on them (with
  EOS as their input id) and its outputs for them are ignored.
* Forced target prefix (`prefix_ids` int32 (B, P) vocabulary ids, `prefix_lengths` int32 (B,)):
  while step < prefix_lengths[b] every column of row b but prefix_ids[b, step] gets
  log-probability -inf (`force_prefix`), so every hypothesis starts with the prefix, which keeps
  the model's own log-probabilities in the scores and counts towards lengths and min_length.
  max_lengths[b] is raised to prefix_lengths[b] so that the whole prefix fits. Returned ids
  include the prefix.
* Sampling (greedy_search only, `sampling_topk` != 1): the token is drawn from the softmax of
  the log-probabilities divided by `sampling_temperature`, restricted to the `sampling_topk`
  best (0: all columns); topk 1 is greedy. Draws use the Gumbel-max trick over hashed noise
  (`uniform_noise`), so a row's draws depend only on its `seeds` entry, the step and the
  column: the same seed gives the same output whatever else is in the batch. Scores stay the
  model's log-probabilities of the drawn tokens (no temperature, no top-k renormalisation).
* XLA: `tf.function(jit_compile=True)` works with return_attention=False; the attention history
  is a dynamically sized TensorArray, which XLA does not compile.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import tensorflow as tf

from nmt.search_loop import Setup, search_loop, setup, to_vocab
from nmt.search_options import check_sampling, sample_columns

StepFn = Callable[[tf.Tensor, tf.Tensor, Any], "tuple[tf.Tensor, Any, tf.Tensor | None]"]

_NEG_INF = float("-inf")


class SearchResult(NamedTuple):
    """Hypotheses per batch row, best first (n = n_best; 1 for greedy search).

    ids        int32 (B, n, T)  tokens, 0 after `lengths` (EOS not included); T = max(max_lengths)
    lengths    int32 (B, n)     number of tokens, EOS excluded
    scores     float32 (B, n)   ranking score: log_probs / length_penalty(lengths + 1, alpha)
    log_probs  float32 (B, n)   sum of the log-probabilities of the tokens and the final EOS
    attention  float32 (B, n, T, S) or None: the attention row produced when each token was
               predicted; zeros after `lengths`
    """

    ids: tf.Tensor
    lengths: tf.Tensor
    scores: tf.Tensor
    log_probs: tf.Tensor
    attention: tf.Tensor | None


# ----------------------------------------------------------------------------- small pieces


def tile_beams(nest: Any, beam_size: int) -> Any:
    """Repeat every row of every tensor `beam_size` times contiguously: (B, ...) -> (B*K, ...).

    Row b of the input becomes rows b*K .. b*K + K - 1 of the output.
    """
    return tf.nest.map_structure(lambda x: tf.repeat(x, beam_size, axis=0), nest)


def length_penalty(lengths: Any, alpha: Any) -> tf.Tensor:
    """GNMT length penalty lp(|Y|) = ((5 + |Y|) / 6) ** alpha, float32, same shape as `lengths`.

    alpha = 0 gives 1 (no normalisation); larger alpha favours longer hypotheses.
    """
    lengths = tf.cast(lengths, tf.float32)
    return tf.pow((5.0 + lengths) / 6.0, tf.cast(alpha, tf.float32))


def top_k_over_beams(scores: tf.Tensor, k: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Best k (beam, word) pairs of each row of `scores` (B, K, V).

    Returns (top scores float (B, k), beam index int32 (B, k), word index int32 (B, k)), best
    first; equal scores keep the lower flat index beam * V + word first (tf.math.top_k order).
    """
    shape = tf.shape(scores)
    vocab = shape[2]
    flat = tf.reshape(scores, [shape[0], shape[1] * vocab])  # (B, K*V)
    top, index = tf.math.top_k(flat, k=k)  # (B, k)
    return top, index // vocab, index % vocab


def gather_beams(nest: Any, indices: tf.Tensor) -> Any:
    """Pick beams per row: leaves (B, K, ...) and `indices` int (B, k) -> leaves (B, k, ...)."""
    return tf.nest.map_structure(lambda x: tf.gather(x, indices, batch_dims=1), nest)


def reorder_state(nest: Any, beam_indices: tf.Tensor) -> Any:
    """Reorder flat beam rows: leaves (B*K, ...) and parent beams int (B, K) -> (B*K, ...).

    Output row b*K + j is input row b*K + beam_indices[b, j] (one flat gather per leaf).
    """
    shape = tf.shape(beam_indices)
    offsets = tf.range(shape[0])[:, None] * shape[1]  # (B, 1)
    flat = tf.reshape(offsets + beam_indices, [-1])  # (B*K,)
    return tf.nest.map_structure(lambda x: tf.gather(x, flat), nest)


def gather_attention(
    history: tf.Tensor, path: tf.Tensor, lengths: tf.Tensor, beam_size: int
) -> tf.Tensor:
    """Attention of final hypotheses from the per-step history.

    history  float (steps, B*K, S): attention returned by step_fn at each step, per beam slot
    path     int (B, n, T): path[b, i, t] = beam slot (0..K-1) whose step-t output produced
             token t of hypothesis i of row b
    lengths  int (B, n): positions t >= lengths[b, i] are zeroed (also those >= steps)
    Returns float (B, n, T, S) with out[b, i, t] = history[t, b*K + path[b, i, t]].
    """
    shape = tf.shape(path)
    steps = tf.shape(history)[0]
    positions = tf.range(shape[2])  # (T,)
    rows = tf.range(shape[0])[:, None, None] * beam_size + path  # (B, n, T)
    times = tf.broadcast_to(tf.minimum(positions, steps - 1), shape)  # (B, n, T)
    attention = tf.gather_nd(history, tf.stack([times, rows], axis=-1))  # (B, n, T, S)
    keep = positions[None, None, :] < tf.cast(lengths, tf.int32)[:, :, None]  # (B, n, T)
    return tf.where(keep[..., None], attention, tf.zeros_like(attention))


# ----------------------------------------------------------------------------- ensembles


def average_log_probs(logits: Sequence[tf.Tensor]) -> tf.Tensor:
    """Log of the mean of the members' probabilities: N tensors float (N_hyp, V) -> float32.

        log p(w) = logsumexp_i log_softmax(logits_i)(w) - log N

    (fairseq's ensemble rule). The result is normalised (logsumexp over V is 0 up to
    rounding), so the searches' own log_softmax leaves it as it is.
    """
    members = [tf.nn.log_softmax(tf.cast(x, tf.float32), axis=-1) for x in logits]
    if len(members) == 1:
        return members[0]
    stacked = tf.stack(members, axis=0)  # (N, N_hyp, V)
    return tf.reduce_logsumexp(stacked, axis=0) - tf.math.log(float(len(members)))


def ensemble_step_fn(step_fns: Sequence[StepFn]) -> StepFn:
    """One step function for several members that predict the same target vocabulary.

    Its state is a tuple with one state per member (each member reorders its own state when
    beams are reordered); its logits are `average_log_probs` of the members' logits, and its
    attention is the mean of the members' attention rows (None when any member has none):

        log p(w | y_<t) = logsumexp_i log p_i(w | y_<t) - log N,  a = (1/N) sum_i a_i
    """
    step_fns = list(step_fns)
    if not step_fns:
        raise ValueError("an ensemble needs at least one step function")

    def step_fn(ids, step, state):
        if len(state) != len(step_fns):
            raise ValueError(f"ensemble state has {len(state)} members, expected {len(step_fns)}")
        outputs = [fn(ids, step, member) for fn, member in zip(step_fns, state, strict=True)]
        attention = [out[2] for out in outputs]
        if any(a is None for a in attention):
            mean_attention = None
        else:
            mean_attention = tf.add_n([tf.cast(a, tf.float32) for a in attention]) / len(attention)
        logits = average_log_probs([out[0] for out in outputs])
        return logits, tuple(out[1] for out in outputs), mean_attention

    return step_fn


# ----------------------------------------------------------------------------- greedy


def _greedy_column(log_probs, step, sampling):
    """The column (B,) each row takes: the argmax, or a draw; sampling = (topk, temp, seeds)."""
    topk, temperature, seeds = sampling
    if topk == 1:
        return tf.argmax(log_probs, axis=-1, output_type=tf.int32)  # (B,)
    return sample_columns(log_probs, step, seeds, int(topk), float(temperature))  # (B,)


def _greedy_advance(v, log_probs, state, g: Setup, sampling):
    """The next loop values of `greedy_search` from the step's log_probs (B, V) and state."""
    step, finished = v["step"], v["finished"]
    forced = step >= g.max_lengths  # (B,)
    column = _greedy_column(log_probs, step, sampling)  # (B,)
    column = tf.where(finished | forced, tf.cast(g.eos_column, tf.int32), column)  # (B,)
    word_log_prob = tf.gather(log_probs, column[:, None], batch_dims=1)[:, 0]  # (B,)
    now_finished = finished | tf.equal(column, g.eos_column)  # (B,)
    word = to_vocab(column, g.vocab_ids)  # (B,) vocabulary ids
    writes = tf.equal(g.positions, step)[None, :] & tf.logical_not(now_finished)[:, None]
    return {
        "step": step + 1,
        "ids": word,
        "state": state,
        "finished": now_finished,
        "log_probs": tf.where(finished, v["log_probs"], v["log_probs"] + word_log_prob),
        "lengths": tf.where(now_finished, v["lengths"], step + 1),
        "tokens": tf.where(writes, word[:, None], v["tokens"]),  # (B, T)
    }


def _greedy_result(final, g: Setup, return_attention: bool) -> SearchResult:
    attention = None
    lengths = final["lengths"][:, None]  # (B, 1)
    if return_attention:
        path = tf.zeros([g.batch, 1, g.longest], tf.int32)  # (B, 1, T)
        attention = gather_attention(final["history"].stack(), path, lengths, 1)
    return SearchResult(
        ids=final["tokens"][:, None, :],  # (B, 1, T)
        lengths=lengths,
        scores=final["log_probs"][:, None],
        log_probs=final["log_probs"][:, None],
        attention=attention,
    )


def greedy_search(
    step_fn: StepFn,
    initial_state: Any,
    batch_size: Any,
    *,
    bos_id: int,
    eos_id: int,
    max_lengths: Any,
    min_length: Any = 0,
    return_attention: bool = False,
    vocab_ids: Any = None,
    prefix_ids: Any = None,
    prefix_lengths: Any = None,
    sampling_topk: int = 1,
    sampling_temperature: float = 1.0,
    seeds: Any = None,
) -> SearchResult:
    """Pick the most probable token at every step (argmax of the log-probabilities), or draw it.

    initial_state: nest with leading dim B. A row stops at its first EOS (or at the forced EOS
    of step max_lengths[b], see the module docstring); finished rows keep feeding EOS to
    step_fn, add 0 to their score and no tokens. The loop ends when every row has finished.
    Returns a SearchResult with n = 1 and scores == log_probs (no length penalty).
    `vocab_ids`, `prefix_*`, `sampling_*`: see the module docstring; `seeds` int (B,), needed
    when sampling_topk != 1.
    """
    check_sampling(sampling_topk, sampling_temperature, seeds)
    g = setup(batch_size, max_lengths, eos_id, vocab_ids, prefix_ids, prefix_lengths)
    if sampling_topk != 1:
        seeds = tf.ensure_shape(tf.reshape(tf.cast(seeds, tf.int32), [-1]), [None])  # (B,)
    batch = g.batch
    loop = {
        "step": tf.constant(0, tf.int32),
        "ids": tf.fill([batch], tf.constant(bos_id, tf.int32)),  # (B,)
        "state": initial_state,
        "finished": tf.zeros([batch], tf.bool),  # (B,)
        "log_probs": tf.zeros([batch], tf.float32),  # (B,)
        "lengths": tf.zeros([batch], tf.int32),  # (B,)
        "tokens": tf.zeros([batch, g.longest], tf.int32),  # (B, T)
    }
    sampling = (sampling_topk, sampling_temperature, seeds)
    final = search_loop(
        step_fn,
        loop,
        functools.partial(_greedy_advance, g=g, sampling=sampling),
        longest=g.longest,
        limits=(min_length, g.max_lengths, g.eos_column, g.prefix),
        return_attention=return_attention,
    )
    return _greedy_result(final, g, return_attention)


# ----------------------------------------------------------------------------- beam


class _Beam(NamedTuple):
    """Beam search's constants besides `Setup`."""

    k: int  # beam size K
    n_best: int  # n
    alpha: float  # the length penalty's alpha
    eos: tf.Tensor  # int32 (): EOS's column
    neg_inf: tf.Tensor  # float32 (): -inf


def _check_beam(beam_size, n_best) -> None:
    if not isinstance(beam_size, numbers.Integral) or beam_size < 1:
        raise ValueError(f"beam_size must be a positive integer, got {beam_size!r}")
    if not isinstance(n_best, numbers.Integral) or not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best must be an integer in 1..beam_size={beam_size}, got {n_best!r}")


def _beam_start(initial_state, bos_id: int, g: Setup, b: _Beam, return_attention: bool):
    """The loop values of step 0: only slot 0 of each row live, nothing finished."""
    batch, k, n_best, longest = g.batch, b.k, b.n_best, g.longest
    first_live = tf.where(tf.range(k) == 0, 0.0, _NEG_INF)  # (K,)
    loop = {
        "step": tf.constant(0, tf.int32),
        "ids": tf.fill([batch * k], tf.constant(bos_id, tf.int32)),  # (B*K,)
        "state": tile_beams(initial_state, k),
        "raw": tf.tile(first_live[None, :], [batch, 1]),  # (B, K)
        "finished": tf.zeros([batch, k], tf.bool),  # (B, K)
        "lengths": tf.zeros([batch, k], tf.int32),  # (B, K)
        "tokens": tf.zeros([batch, k, longest], tf.int32),  # (B, K, T)
        "done_scores": tf.fill([batch, n_best], b.neg_inf),  # (B, n)
        "done_raw": tf.fill([batch, n_best], b.neg_inf),  # (B, n)
        "done_lengths": tf.zeros([batch, n_best], tf.int32),  # (B, n)
        "done_tokens": tf.zeros([batch, n_best, longest], tf.int32),  # (B, n, T)
    }
    if return_attention:
        loop["path"] = tf.zeros([batch, k, longest], tf.int32)  # (B, K, T)
        loop["done_path"] = tf.zeros([batch, n_best, longest], tf.int32)  # (B, n, T)
    return loop


def _beam_candidates(v, log_probs, g: Setup, b: _Beam):
    """The K best candidates of each row, best first, from log_probs (B*K, V).

    Returns (scores float32 (B, K), parent slot int32 (B, K), word column int32 (B, K), its
    log-probability (B, K)). A row's K best candidates hold at most K words of any one slot,
    and within a slot the order of raw + log p(w) is that of log p(w): one top-k per slot over
    V, then one over the (B, K, K) survivors; ties keep the order of a flat (B, K*V) top-k.
    Finished and forced slots offer one candidate, their EOS, in column 0.
    """
    step, raw, finished, lengths = v["step"], v["raw"], v["finished"], v["lengths"]  # (B, K)
    batch, k, eos = g.batch, b.k, b.eos
    slot_log_probs, slot_words = tf.math.top_k(log_probs, k=k)  # (B*K, K)
    slot_log_probs = tf.reshape(slot_log_probs, [batch, k, k])  # (B, K, K)
    slot_words = tf.reshape(slot_words, [batch, k, k])  # (B, K, K)
    eos_log_prob = tf.reshape(tf.gather(log_probs, eos, axis=1), [batch, k])  # (B, K)

    alive_norm = length_penalty(step + 1, b.alpha)  # ()
    eos_only = (finished | (step >= g.max_lengths)[:, None])[:, :, None]  # (B, K, 1)
    eos_score = tf.where(
        finished,
        raw / length_penalty(lengths + 1, b.alpha),
        (raw + eos_log_prob) / alive_norm,
    )  # (B, K)
    first = tf.equal(tf.range(k), 0)  # (K,)
    candidates = tf.where(
        eos_only,
        tf.where(first, eos_score[:, :, None], b.neg_inf),
        (raw[:, :, None] + slot_log_probs) / alive_norm,
    )  # (B, K, K)
    candidate_words = tf.where(eos_only, eos, slot_words)  # (B, K, K)
    candidate_log_probs = tf.where(eos_only, eos_log_prob[:, :, None], slot_log_probs)
    scores, parent, rank = top_k_over_beams(candidates, k)  # (B, K) each
    picked = tf.stack([parent, rank], axis=-1)  # (B, K, 2)
    word = tf.gather_nd(candidate_words, picked, batch_dims=1)  # (B, K) columns
    word_log_prob = tf.gather_nd(candidate_log_probs, picked, batch_dims=1)  # (B, K)
    return scores, parent, word, word_log_prob


def _beam_slots(v, picks, g: Setup, b: _Beam):
    """The new slots from `_beam_candidates`' picks: (raw, finished, lengths, just finished),
    each (B, K). Finished parents stay frozen; masked (-inf) picks stay dead."""
    scores, parent, word, word_log_prob = picks
    step, finished = v["step"], v["finished"]
    parent_finished = tf.gather(finished, parent, batch_dims=1)  # (B, K)
    parent_raw = tf.gather(v["raw"], parent, batch_dims=1)  # (B, K)
    new_raw = tf.where(parent_finished, parent_raw, parent_raw + word_log_prob)  # (B, K)
    new_raw = tf.where(scores > b.neg_inf, new_raw, b.neg_inf)
    new_finished = parent_finished | tf.equal(word, b.eos) | (step >= g.max_lengths)[:, None]
    just_finished = new_finished & tf.logical_not(parent_finished)  # (B, K)
    new_lengths = tf.where(
        parent_finished,
        tf.gather(v["lengths"], parent, batch_dims=1),
        tf.where(just_finished, step, step + 1),
    )  # (B, K)
    return new_raw, new_finished, new_lengths, just_finished


def _beam_advance(v, log_probs, state, g: Setup, b: _Beam, return_attention: bool):
    """The next loop values of `beam_search`: new slots, their tokens, the finished set."""
    step = v["step"]
    scores, parent, word, word_log_prob = picks = _beam_candidates(v, log_probs, g, b)
    raw, finished, lengths, just_finished = _beam_slots(v, picks, g, b)
    at_step = tf.equal(g.positions, step)[None, None, :]  # (1, 1, T)
    writes = at_step & tf.logical_not(finished)[:, :, None]  # (B, K, T)
    word = to_vocab(word, g.vocab_ids)  # (B, K) vocabulary ids
    tokens = tf.where(writes, word[:, :, None], gather_beams(v["tokens"], parent))

    # Finished set: previous best n plus the slots that took EOS at this step.
    pool_scores = tf.concat([v["done_scores"], tf.where(just_finished, scores, b.neg_inf)], 1)
    done_scores, pick = tf.math.top_k(pool_scores, k=b.n_best)  # (B, n)

    def pool(done, new):
        return tf.gather(tf.concat([done, new], axis=1), pick, batch_dims=1)

    out = {
        "step": step + 1,
        "ids": tf.reshape(word, [-1]),  # (B*K,); finished slots feed EOS
        "state": reorder_state(state, parent),
        "raw": raw,
        "finished": finished,
        "lengths": lengths,
        "tokens": tokens,
        "done_scores": done_scores,
        "done_raw": pool(v["done_raw"], raw),
        "done_lengths": pool(v["done_lengths"], lengths),
        "done_tokens": pool(v["done_tokens"], tokens),  # (B, n, T)
    }
    if return_attention:
        path = tf.where(at_step, parent[:, :, None], gather_beams(v["path"], parent))
        out["path"] = path  # (B, K, T)
        out["done_path"] = pool(v["done_path"], path)  # (B, n, T)
    return out


def beam_search(
    step_fn: StepFn,
    initial_state: Any,
    batch_size: Any,
    *,
    beam_size: int,
    bos_id: int,
    eos_id: int,
    max_lengths: Any,
    length_penalty: float = 0.0,
    n_best: int = 1,
    min_length: Any = 0,
    return_attention: bool = False,
    vocab_ids: Any = None,
    prefix_ids: Any = None,
    prefix_lengths: Any = None,
) -> SearchResult:
    """Beam search with frozen finished beams and a per-row set of finished hypotheses.

    initial_state has leading dim B (untiled); it is tiled to B*K here. Each row keeps K beam
    slots, each alive or finished. With alpha = `length_penalty`, lp = `length_penalty()`, raw_k
    the log-prob sum of slot k and L_k its length, step t scores the K*V candidates of a row as

        alive slot k, word w:  (raw_k + log p(w | slot k)) / lp(t + 1)
        finished slot k:       raw_k / lp(L_k + 1) for one candidate (its EOS column), others -inf
        alive slot at t == max_lengths[b]: only its EOS candidate (forced EOS)

    (every candidate of an alive slot has t + 1 scored tokens, so alpha does not change which
    word a slot prefers). The K best candidates become the new slots (`top_k_over_beams`,
    `reorder_state`). A finished slot is frozen: it extends with nothing at +0, is never
    re-expanded, and keeps its place only while it beats the alive candidates. A slot that
    takes EOS joins the row's finished set, the n_best best finished hypotheses by score, which
    is what is returned, so a finished hypothesis pushed out of the beam is not lost. At step 0
    only slot 0 is live (the others start at -inf), so the K first beams are distinct. The
    loop stops when every slot of every row has finished, at the latest after step
    max(max_lengths). Needs V >= beam_size so that every row can fill its beam. A row with
    fewer than n_best distinct hypotheses (e.g. max_lengths[b] == 0) pads the rest with
    scores and log_probs of -inf.

    Cost per step: the row's K best candidates hold at most K words of one slot, so one
    top-k over V per slot and one over the (B, K*K) survivors replace a top-k over (B, K*V);
    the only (B*K, V) tensor is the log_softmax. Memory: O(B*K*V) for it plus O(B*K*T) for the
    token (and beam-path) histories; with return_attention the per-step attention (B*K, S) is
    recorded and gathered once at the end along each hypothesis' beam path (O(steps*B*K*S));
    without it no attention work is done. With `vocab_ids` (K,) (a shortlist, see the module
    docstring) V is K: every (B*K, V) tensor above is (B*K, K) and needs K >= beam_size.
    With a prefix (`prefix_ids`, `prefix_lengths`, see the module docstring) a row keeps one
    live slot until its prefix is complete.
    """
    _check_beam(beam_size, n_best)
    g = setup(batch_size, max_lengths, eos_id, vocab_ids, prefix_ids, prefix_lengths)
    eos = tf.cast(g.eos_column, tf.int32)  # EOS's column of the log-probabilities
    b = _Beam(
        int(beam_size), int(n_best), float(length_penalty), eos, tf.constant(_NEG_INF, tf.float32)
    )
    slot_prefix = None if g.prefix is None else tile_beams(g.prefix, b.k)  # (B*K, P + 1), (B*K,)
    final = search_loop(
        step_fn,
        _beam_start(initial_state, bos_id, g, b, return_attention),
        functools.partial(_beam_advance, g=g, b=b, return_attention=return_attention),
        longest=g.longest,
        limits=(min_length, tf.repeat(g.max_lengths, b.k), b.eos, slot_prefix),  # (B*K,) lengths
        return_attention=return_attention,
    )
    attention = None
    if return_attention:
        attention = gather_attention(
            final["history"].stack(), final["done_path"], final["done_lengths"], b.k
        )  # (B, n, T, S)
    return SearchResult(
        ids=final["done_tokens"],
        lengths=final["done_lengths"],
        scores=final["done_scores"],
        log_probs=final["done_raw"],
        attention=attention,
    )
