"""Vocabulary shortlists for decoding: score only the target pieces a batch can plausibly need.

As Marian's lexical shortlists (`--shortlist`) and CTranslate2's vocabulary map (`vmap`) do
it. For a batch with source ids X, the shortlist is the sorted set

    s(X) = {PAD, UNK, BOS, EOS}  U  F_N  U  U_{x in X} T_k(x)          (K = |s(X)| ids)

with F_N the N most frequent target pieces of the training data and T_k(x) the k target
pieces t with the highest lexical translation probability p(t | x). The output layer and the
softmax then run over those K ids only (`OutputProjection.subset` gathers W_o[:, s] and
b_o[s] once per batch, before the search loop: an (N, units) x (units, K) product per step
instead of (units, V)), and the searches map the picked columns back to vocabulary ids
(`search.beam_search(..., vocab_ids=s)`). EOS is always in the set, so hypotheses can end
and min-length blocking works; a token outside s(X) is never produced.

p(t | s) is IBM Model 1 (Brown et al. 1993) trained by a few EM iterations on the model's
training data, tokenized with its SentencePiece model(s), with a NULL source word that takes
the target pieces no source piece explains:

    E-step, each target piece t_j of a pair with source pieces s_0 = NULL, s_1..s_m:
        c(t_j, s_i) += p(t_j | s_i) / sum_i' p(t_j | s_i')
    M-step:  p(t | s) = c(t, s) / sum_t' c(t', s)

starting from uniform p (so the first E-step counts co-occurrences, split over each
target piece's sources). `nmt shortlist --model DIR` learns it and writes DIR/shortlist.npz
atomically (`learn_table`, `make_shortlist`); `nmt translate/evaluate/export --shortlist`
load it (`for_decoding`). Nothing here imports TensorFlow except `Shortlist.ids`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nmt import constants, fileio
from nmt.errors import ConfigError, DataError

FORMAT = 1
SPECIAL_IDS = (constants.PAD_ID, constants.UNK_ID, constants.BOS_ID, constants.EOS_ID)
DEFAULT_STORED_TOP_K = 100  # targets kept per source piece in the file; decoding uses <= this
DEFAULT_ITERATIONS = 5
TOKENIZE_CHUNK = 2048
# Alignment links per EM chunk: about 10 arrays of 8 bytes a link, so ~0.8 GB at 10M.
CHUNK_LINKS = 10_000_000


def vocab_digest(vocab) -> str:
    """sha256 of the source and target SentencePiece models: a table belongs to one vocabulary."""
    digest = hashlib.sha256(vocab.source_proto)
    digest.update(b"\0")
    digest.update(vocab.target_proto)
    return digest.hexdigest()


# === The learned table ===


@dataclass(frozen=True)
class Table:
    """What `nmt shortlist` learns (DIR/shortlist.npz).

    targets   int32 (V_src, k): row x holds the k target ids t with the highest p(t | x),
              best first, padded with PAD_ID where x had fewer (all PAD for unseen x)
    probs     float32 (V_src, k): those p(t | x), 0 for padding
    frequent  int32 (V_tgt - 4,): every non-special target id, most frequent first
    """

    targets: np.ndarray
    probs: np.ndarray
    frequent: np.ndarray
    digest: str  # `vocab_digest` of the vocabulary it was learned with
    pairs: int  # sentence pairs used
    iterations: int

    @property
    def top_k(self) -> int:
        return int(self.targets.shape[1])

    def save(self, path: str | Path) -> Path:
        """Write the table to `path` atomically (a temporary file renamed into place)."""
        buffer = io.BytesIO()
        np.savez(buffer, format=np.int64(FORMAT), targets=self.targets, probs=self.probs,
                 frequent=self.frequent, digest=np.str_(self.digest),
                 pairs=np.int64(self.pairs), iterations=np.int64(self.iterations))  # fmt: skip
        return fileio.write_atomic(path, buffer.getvalue(), what="the shortlist", fsync=True)

    @classmethod
    def load(cls, path: str | Path) -> Table:
        """Read a table written by `save`; DataError naming `path` when it is not one."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if int(data["format"]) != FORMAT:
                    raise DataError(f"{path}: shortlist format {int(data['format'])}, not {FORMAT}")
                return cls(
                    targets=data["targets"].astype(np.int32),
                    probs=data["probs"].astype(np.float32),
                    frequent=data["frequent"].astype(np.int32),
                    digest=str(data["digest"]),
                    pairs=int(data["pairs"]),
                    iterations=int(data["iterations"]),
                )
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            # np.load: EOFError for an empty file, BadZipFile / zlib.error for a damaged one,
            # and for bytes of no known format a ValueError about pickles (never loaded here)
            why = "not an .npz file" if "pickle" in str(e) else fileio.reason(e)
            raise DataError(f"{path}: cannot read the shortlist ({why})") from None


def _alignment_links(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], null: int):
    """Every (source position, target position) link of every pair, NULL first in each source.

    Returns (source ids (E,), target ids (E,), target-token index (E,), target ids (G,)),
    E = sum over pairs of (m + 1) * n, G = sum of n (m, n: source and target lengths).
    """
    sources = [np.concatenate(([null], np.asarray(s, np.int64))) for s, _ in pairs]
    targets = [np.asarray(t, np.int64) for _, t in pairs]
    src_len = np.array([len(s) for s in sources], np.int64)  # (P,)
    tgt_len = np.array([len(t) for t in targets], np.int64)  # (P,)
    src_flat = np.concatenate(sources) if sources else np.zeros(0, np.int64)
    tgt_flat = np.concatenate(targets) if targets else np.zeros(0, np.int64)
    src_start = np.concatenate([[0], np.cumsum(src_len)[:-1]]).astype(np.int64)  # (P,)
    tgt_pair = np.repeat(np.arange(len(pairs)), tgt_len)  # (G,)
    fan = src_len[tgt_pair]  # (G,) sources of each target token
    token = np.repeat(np.arange(len(tgt_flat)), fan)  # (E,)
    group_start = np.concatenate([[0], np.cumsum(fan)[:-1]]).astype(np.int64)  # (G,)
    offset = np.arange(len(token)) - group_start[token]  # (E,) source position in its pair
    src = src_flat[src_start[tgt_pair[token]] + offset]  # (E,)
    return src, tgt_flat[token], token, tgt_flat


def ibm1(pairs, null: int, target_size: int, iterations: int, chunk_links: int = CHUNK_LINKS):
    """IBM Model 1 EM (see the module docstring) over the pairs, a chunk of them at a time.

    Returns (source ids (P,), target ids (P,), p(t | s) float64 (P,)) over the P distinct
    co-occurring (s, t) pairs, and the target-piece counts (target_size,). `null` is the
    NULL source id (= the source vocabulary size). Memory: the P pairs plus the links of
    one chunk (about `chunk_links`; a corpus of fewer links keeps them between iterations,
    a larger one rebuilds each chunk's at every iteration), not Σ(m + 1)·n for the corpus.
    """
    chunks = _pair_chunks(pairs, chunk_links)
    kept = _alignment_links(chunks[0], null) if len(chunks) == 1 else None  # built once

    def links_of(chunk):
        return kept if kept is not None else _alignment_links(chunk, null)

    seen, target_counts = [], np.zeros(target_size, np.int64)
    for chunk in chunks:
        src, tgt, _, target_tokens = links_of(chunk)
        seen.append(np.unique(src * target_size + tgt))
        target_counts += np.bincount(target_tokens, minlength=target_size)[:target_size]
    unique = np.unique(np.concatenate(seen)) if seen else np.zeros(0, np.int64)  # (P,)
    pair_src, pair_tgt = unique // target_size, unique % target_size
    prob = np.ones(len(unique))  # uniform start
    for _ in range(iterations):
        counts = np.zeros(len(unique))
        for chunk in chunks:
            src, tgt, token, target_tokens = links_of(chunk)
            link = np.searchsorted(unique, src * target_size + tgt)  # (E,)
            weight = prob[link]  # (E,)
            norm = np.bincount(token, weight, minlength=len(target_tokens))  # (G,) over sources
            counts += np.bincount(link, weight / norm[token], minlength=len(unique))  # (P,)
        totals = np.bincount(pair_src, counts, minlength=null + 1)  # (V_src + 1,)
        prob = counts / totals[pair_src]
    return pair_src, pair_tgt, prob, target_counts


def _pair_chunks(pairs, chunk_links: int) -> list:
    """The pairs in consecutive chunks of about `chunk_links` links ((m + 1) * n each)."""
    chunks, chunk, size = [], [], 0
    for pair in pairs:
        chunk.append(pair)
        size += (len(pair[0]) + 1) * len(pair[1])
        if size >= chunk_links:
            chunks.append(chunk)
            chunk, size = [], 0
    if chunk or not chunks:
        chunks.append(chunk)
    return chunks


def _top_targets(pair_src, pair_tgt, prob, source_size: int, top_k: int):
    """(targets int32 (V_src, k), probs float32 (V_src, k)): best k targets of each source id."""
    targets = np.full((source_size, top_k), constants.PAD_ID, np.int32)
    probs = np.zeros((source_size, top_k), np.float32)
    keep = pair_src < source_size  # the NULL row is left out
    pair_src, pair_tgt, prob = pair_src[keep], pair_tgt[keep], prob[keep]
    order = np.lexsort((pair_tgt, -prob, pair_src))  # by source, best first, then lower id
    pair_src, pair_tgt, prob = pair_src[order], pair_tgt[order], prob[order]
    first = np.searchsorted(pair_src, pair_src, side="left")  # start of each source's run
    rank = np.arange(len(pair_src)) - first
    kept = rank < top_k
    targets[pair_src[kept], rank[kept]] = pair_tgt[kept]
    probs[pair_src[kept], rank[kept]] = prob[kept]
    return targets, probs


def frequency_order(counts: np.ndarray) -> np.ndarray:
    """Every non-special target id by its count (target_size,), most frequent first (ties:
    lower id first), int32."""
    order = np.argsort(-counts, kind="stable")
    return order[~np.isin(order, SPECIAL_IDS)].astype(np.int32)


def learn_table(
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    source_size: int,
    target_size: int,
    *,
    digest: str = "",
    top_k: int = DEFAULT_STORED_TOP_K,
    iterations: int = DEFAULT_ITERATIONS,
    chunk_links: int = CHUNK_LINKS,
) -> Table:
    """Learn a Table from (source ids, target ids) pairs (pieces only, no BOS/EOS); the EM
    works through them `chunk_links` alignment links at a time (`ibm1`)."""
    if top_k < 1:
        raise ConfigError(f"--top-k must be positive, got {top_k}")
    if iterations < 1:
        raise ConfigError(f"--iterations must be positive, got {iterations}")
    top_k = min(top_k, target_size)  # no source piece has more targets than there are
    *links, target_counts = ibm1(pairs, source_size, target_size, iterations, chunk_links)
    targets, probs = _top_targets(*links, source_size, top_k)
    return Table(targets, probs, frequency_order(target_counts), digest, len(pairs),
                 iterations)  # fmt: skip


# === Learning it for a model directory ===


def _tokenized_pairs(vocab, source: str, target: str, max_length: int, *, what: str):
    """(source ids, target ids) of every pair with both sides 1..max_length pieces long."""
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    chunk: list[tuple[str, str]] = []

    def flush():
        src = vocab.encode_source([s for s, _ in chunk], add_eos=False)
        tgt = vocab.encode_target([t for _, t in chunk])
        # int32 arrays: a fraction of the memory of lists of Python ints
        pairs.extend((np.asarray(s, np.int32), np.asarray(t, np.int32))
                     for s, t in zip(src, tgt, strict=True)
                     if 0 < len(s) <= max_length and 0 < len(t) <= max_length)  # fmt: skip
        chunk.clear()

    source_lines, target_lines = fileio.iter_lines(source), fileio.iter_lines(target)
    for (_, s), t in _zip_lines(source_lines, target_lines, source, target, what):
        chunk.append((s, t))
        if len(chunk) >= TOKENIZE_CHUNK:
            flush()
    flush()
    return pairs


def _zip_lines(source_lines: Iterable, target_lines: Iterable, source, target, what: str):
    """(source (number, text), target text) in lockstep; DataError when the counts differ."""
    target_iter = iter(target_lines)
    number = 0
    for number, text in source_lines:
        other = next(target_iter, None)
        if other is None:
            raise DataError(f"{what}: {target} ends at line {number - 1} but {source} goes "
                            f"on (line {number}); the two must have one line per pair")  # fmt: skip
        yield (number, text), other[1]
    if next(target_iter, None) is not None:
        raise DataError(f"{what}: {source} ends at line {number} but {target} goes on (line "
                        f"{number + 1}); the two must have one line per pair")  # fmt: skip


@dataclass(frozen=True)
class MadeShortlist:
    path: Path
    pairs: int
    seconds: float
    table: Table


def make_shortlist(
    model_dir: str | Path,
    *,
    source: str | None = None,
    target: str | None = None,
    top_k: int = DEFAULT_STORED_TOP_K,
    iterations: int = DEFAULT_ITERATIONS,
    log: Callable[[str], None] = lambda message: None,
) -> MadeShortlist:
    """Learn the shortlist table of a model directory and write DIR/shortlist.npz atomically.

    The training data is the model's `data.train_source`/`train_target` unless `source` and
    `target` are given; pairs longer than `data.max_length` pieces are skipped, as in
    training. Readers never see a half-written file, so it may run while the model trains.
    """
    from nmt import checkpoints, modeldir

    start = time.perf_counter()
    model_dir = Path(model_dir)
    config = modeldir.read_config(model_dir)
    vocab = checkpoints.load_vocab(model_dir)
    if (source is None) != (target is None):
        raise ConfigError("give --source and --target together")
    source = source or config.data.train_source
    target = target or config.data.train_target
    if not source or not target:
        raise ConfigError(f"{model_dir}: its config names no training data; give --source "
                          "and --target")  # fmt: skip
    for path in (source, target):
        fileio.check_input(path)
    inputs = [(f"--source {source}", source), (f"--target {target}", target)]
    fileio.check_distinct_inputs(inputs)
    output = model_dir / modeldir.SHORTLIST_FILE
    fileio.check_output_file(output, inputs=inputs)
    log(f"reading {source} and {target}")
    pairs = _tokenized_pairs(vocab, source, target, config.data.max_length, what="nmt shortlist")
    if not pairs:
        raise DataError(f"{source}: no sentence pairs to learn a shortlist from")
    log(f"learning p(t|s): IBM model 1, {iterations} EM iterations on {len(pairs)} pairs")
    table = learn_table(pairs, vocab.source_size, vocab.target_size, digest=vocab_digest(vocab),
                        top_k=top_k, iterations=iterations)  # fmt: skip
    path = table.save(output)
    return MadeShortlist(path, len(pairs), time.perf_counter() - start, table)


# === Decoding with it ===


@dataclass(frozen=True)
class Shortlist:
    """The decoding side: `ids(source_ids)` is s(X) of the module docstring.

    targets  int32 (V_src, k): T_k(x) of each source id x (PAD-padded)
    always   int32 (n,): the special ids and the N most frequent target ids
    """

    targets: np.ndarray
    always: np.ndarray
    target_size: int

    @property
    def min_size(self) -> int:
        """The fewest ids a batch's shortlist can hold (the beam size may not exceed it)."""
        return int(len(self.always))

    def ids(self, source_ids):
        """s(X) for source ids int (B, S) (padding included): sorted int32 (K,), a graph op."""
        import tensorflow as tf

        rows = tf.gather(tf.constant(self.targets), tf.reshape(source_ids, [-1]))  # (B*S, k)
        candidates = tf.concat([tf.reshape(rows, [-1]), tf.constant(self.always)], 0)  # (M,)
        hits = tf.scatter_nd(candidates[:, None], tf.ones_like(candidates), [self.target_size])
        return tf.cast(tf.where(hits > 0)[:, 0], tf.int32)  # (K,) ascending

    def describe(self) -> dict:
        return {"top_k": int(self.targets.shape[1]), "frequent": self.min_size - len(SPECIAL_IDS)}


def for_table(table: Table, target_size: int, top_k: int, frequent: int) -> Shortlist:
    """The Shortlist with the first `top_k` targets per source id and `frequent` ids."""
    always = np.concatenate([np.array(SPECIAL_IDS, np.int32), table.frequent[:frequent]])
    return Shortlist(np.ascontiguousarray(table.targets[:, :top_k]), always, int(target_size))


def configure(decode, shortlist: bool | None = None, top_k: int | None = None,
              frequent: int | None = None):  # fmt: skip
    """A copy of DecodeConfig `decode` with the command-line shortlist options applied:
    `top_k` or `frequent` given implies the shortlist; `shortlist=False` turns it off."""
    decode = dataclasses.replace(decode)
    if top_k is not None:
        if top_k < 1:
            raise ConfigError(f"--shortlist-top-k must be positive, got {top_k}")
        decode.shortlist_top_k = int(top_k)
    if frequent is not None:
        if frequent < 0:
            raise ConfigError(f"--shortlist-frequent must be >= 0, got {frequent}")
        decode.shortlist_frequent = int(frequent)
    if shortlist is not None:
        decode.shortlist = bool(shortlist)
    elif top_k is not None or frequent is not None:
        decode.shortlist = True
    return decode


def for_decoding(model_dir: str | Path, vocab, decode) -> Shortlist | None:
    """The Shortlist that DecodeConfig `decode` asks for (None when `decode.shortlist` is off).

    DataError (one line, exit 2) when DIR has no shortlist.npz (naming the command that
    makes it), when it was learned for another vocabulary, or when it keeps fewer than
    `decode.shortlist_top_k` targets per source piece.
    """
    from nmt.modeldir import SHORTLIST_FILE

    if not decode.shortlist:
        return None
    path = Path(model_dir) / SHORTLIST_FILE
    remake = f"make one with `nmt shortlist --model {model_dir}`"
    if not path.is_file():
        raise DataError(f"{model_dir}: no shortlist ({SHORTLIST_FILE}) for --shortlist; {remake}")
    table = Table.load(path)
    if table.digest != vocab_digest(vocab) or table.targets.shape[0] != vocab.source_size:
        raise DataError(f"{path}: learned for another vocabulary than the model's; {remake}")
    complete = table.top_k >= vocab.target_size  # rows as wide as the vocabulary cover any k
    if decode.shortlist_top_k > table.top_k and not complete:
        raise DataError(
            f"{path}: keeps {table.top_k} targets per source piece, fewer than "
            f"--shortlist-top-k {decode.shortlist_top_k}; remake it with "
            f"`nmt shortlist --model {model_dir} --top-k {decode.shortlist_top_k}`"
        )
    return for_table(table, vocab.target_size, decode.shortlist_top_k, decode.shortlist_frequent)


def prepare(loaded, shortlist: bool | None = None, top_k: int | None = None,
            frequent: int | None = None):  # fmt: skip
    """(DecodeConfig, Shortlist or None) for a `checkpoints.LoadedModel` (or an ensemble's,
    whose first member's directory holds the table) and the command-line options."""
    decode = configure(loaded.config.decode, shortlist, top_k, frequent)
    return decode, for_decoding(loaded.model_dir, loaded.vocab, decode)
