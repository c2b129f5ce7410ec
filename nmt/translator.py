"""Text in, text out: pieces -> ids -> in-graph search -> pieces -> text.

`make_search_fn` is the one piece of graph code that both `nmt translate` and the SavedModel
export run, so the two give the same translations for the same model, beam and inputs.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nmt import constants, fileio
from nmt.config import DecodeConfig
from nmt.errors import DataError


@dataclass
class Hypothesis:
    text: str
    score: float  # log-probability divided by the GNMT length penalty
    source_pieces: list[str] = field(default_factory=list)
    target_pieces: list[str] = field(default_factory=list)
    attention: np.ndarray | None = None  # (target pieces, source pieces + EOS)
    length: int = 0  # number of target pieces, EOS excluded

    def alignment(self) -> str:
        """Hard alignment in Pharaoh format (`source-target` piece indices) from attention."""
        if self.attention is None or not self.target_pieces:
            return ""
        n_src = len(self.source_pieces)
        weights = self.attention[: len(self.target_pieces), :n_src]  # drop the EOS column
        if n_src == 0:
            return ""
        return " ".join(f"{int(s)}-{t}" for t, s in enumerate(weights.argmax(axis=-1)))


def make_search_fn(
    model,
    *,
    beam_size: int,
    n_best: int = 1,
    max_length_a: float,
    max_length_b: float,
    min_length: int = 0,
    return_attention: bool = False,
    shortlist=None,
    sampling_topk: int = 1,
    sampling_temperature: float = 1.0,
) -> Callable:
    """Build `fn(source_ids (B, S) int32, source_lengths (B,) int32, length_penalty: float,
    prefix=None, seeds=None)` -> search.SearchResult, graph-safe for `tf.function` with
    unknown shapes.

    `prefix`: (target ids (B, P) int32, lengths (B,) int32) that every output of a row starts
    with (search's forced prefix); `seeds` int32 (B,): one per row, needed when sampling
    (`sampling_topk` != 1, beam_size 1; see nmt/search.py).

    `length_penalty` is a Python number, fixed when the function is traced (beam_search
    takes it as a constant); the function needs no AutoGraph conversion. Outputs hold at
    most floor(max_length_a + max_length_b * source length) pieces (at least 1) and, up to
    that limit, at least `min_length`. With a `shortlist.Shortlist`, each batch decodes over
    its ids s (K,): the output layer's columns are gathered once (`model.output_subset`),
    before the search loop, and the search maps the picked columns back through s.
    """
    import tensorflow as tf

    from nmt import search

    if sampling_topk != 1 and beam_size != 1:
        raise ValueError(f"sampling needs beam_size 1, got {beam_size}")

    def fn(source_ids, source_lengths, length_penalty, prefix=None, seeds=None):
        batch_size = tf.shape(source_ids)[0]
        memory, memory_mask, initial_state = model.encode(source_ids, training=False)
        bundle = model.prepare_memory(memory, memory_mask)
        limits = {
            "bos_id": constants.BOS_ID,
            "eos_id": constants.EOS_ID,
            "max_lengths": _max_lengths(source_lengths, max_length_a, max_length_b),  # (B,)
            "min_length": min_length,
            "return_attention": return_attention,
        }
        if prefix is not None:
            limits.update(prefix_ids=prefix[0], prefix_lengths=prefix[1])
        vocab_ids, options = _decode_vocabulary(model, shortlist, source_ids, prefix)
        if beam_size == 1:
            return search.greedy_search(
                _model_step_fn(model, bundle, options),
                initial_state,
                batch_size,
                vocab_ids=vocab_ids,
                sampling_topk=sampling_topk,
                sampling_temperature=sampling_temperature,
                seeds=seeds,
                **limits,
            )
        return search.beam_search(
            _model_step_fn(model, search.tile_beams(bundle, beam_size), options),
            initial_state,
            batch_size,
            beam_size=beam_size,
            length_penalty=length_penalty,
            n_best=n_best,
            vocab_ids=vocab_ids,
            **limits,
        )

    return fn


def _max_lengths(source_lengths, max_length_a: float, max_length_b: float):
    """floor(max_length_a + max_length_b * source length), at least 1: int32 (B,)."""
    import tensorflow as tf

    lengths = tf.cast(source_lengths, tf.float32)
    max_lengths = tf.cast(tf.floor(max_length_a + max_length_b * lengths), tf.int32)  # (B,)
    return tf.maximum(max_lengths, 1)


def _decode_vocabulary(model, shortlist, source_ids, prefix):
    """(vocab_ids int32 (K,) or None, model.step options): a batch's shortlist, if any, with
    the prefix's ids joined to it, and the output layer's columns for those ids."""
    import tensorflow as tf

    if shortlist is None:
        return None, {}
    vocab_ids = shortlist.ids(source_ids)  # (K,)
    if prefix is not None:  # the prefix's ids join the shortlist
        listed = tf.concat([vocab_ids, tf.reshape(prefix[0], [-1])], 0)
        vocab_ids = tf.sort(tf.unique(listed).y)  # (K',)
    return vocab_ids, {"output": model.output_subset(vocab_ids)}


def _model_step_fn(model, bundle, options):
    """search's step function over `model.step` with the memory `bundle` (tiled for beams)."""

    def step_fn(ids, step, state):
        return model.step(ids, state, bundle, training=False, **options)

    return step_fn


def _padded(rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(ids int32 (B, W) padded with PAD_ID, lengths int32 (B,)) of id lists."""
    lengths = np.array([len(r) for r in rows], np.int32)
    ids = np.full((len(rows), int(lengths.max(initial=0))), constants.PAD_ID, np.int32)
    for row, r in enumerate(rows):
        ids[row, : len(r)] = r
    return ids, lengths


def line_seed(seed: int, line: int) -> int:
    """The sampling seed of input line `line` (from 1) under `--seed seed`, an int32.

    A hash of both (MurmurHash3's finaliser), so that a line's sample depends on the seed and
    its line number only, not on the batch it is decoded in.
    """
    x = (seed * 0x9E3779B1 + line) & 0xFFFFFFFF
    for shift, mult in ((16, 0x85EBCA6B), (13, 0xC2B2AE35)):
        x = ((x ^ (x >> shift)) * mult) & 0xFFFFFFFF
    x ^= x >> 16
    return x - (1 << 32) if x >= 1 << 31 else x


def _print_warning(message: str) -> None:
    print(f"nmt: warning: {message}", file=sys.stderr)


class Translator:
    """Translates lists or streams of sentences with a loaded model.

    Batches are made of inputs sorted by length (at most `batch_tokens` source tokens including
    padding) and results come back in input order. An empty or blank input gives an empty
    output; an input longer than `max_source_length` pieces is truncated with a warning.
    With a `shortlist.Shortlist` every batch decodes over its shortlist (see make_search_fn).
    """

    def __init__(
        self,
        model,
        vocab,
        decode_config: DecodeConfig | None = None,
        *,
        warn: Callable[[str], None] | None = None,
        shortlist=None,
    ):
        self.model = model
        self.shortlist = shortlist
        self.vocab = vocab
        self.decode_config = decode_config or DecodeConfig()
        self._source_sp = vocab.processor("source")
        self._target_sp = vocab.processor("target")
        self._fns: dict = {}
        self._warn = warn if warn is not None else _print_warning

    # === Graph functions ===

    def _search_fn(self, beam_size: int, n_best: int, return_attention: bool, alpha: float,
                   sampling: tuple[int, float] = (1, 1.0), prefix: bool = False):  # fmt: skip
        """The traced search for one setting: `fn(source_ids (B, S), source_lengths (B,)
        [, prefix_ids (B, P), prefix_lengths (B,)] [, seeds (B,)])`.

        Traced once per setting (unknown B and S). The length penalty is a Python constant
        of the graph, as in the export, and AutoGraph is off: search and model code use
        explicit graph control flow, and converting them took most of the start-up time.
        `sampling`: (topk, temperature); topk 1 is greedy (no seeds argument).
        """
        alpha = float(alpha) if beam_size > 1 else 0.0  # greedy search has no penalty
        topk, temperature = int(sampling[0]), float(sampling[1]) if sampling[0] != 1 else 1.0
        key = (beam_size, n_best, return_attention, alpha, topk, temperature, prefix)
        if key not in self._fns:
            import tensorflow as tf

            search = make_search_fn(
                self.model,
                beam_size=beam_size,
                n_best=n_best,
                max_length_a=self.decode_config.max_length_a,
                max_length_b=self.decode_config.max_length_b,
                min_length=self.decode_config.min_length,
                return_attention=return_attention,
                shortlist=self.shortlist,
                sampling_topk=topk,
                sampling_temperature=temperature,
            )
            rows = tf.TensorSpec([None], tf.int32)
            signature = [tf.TensorSpec([None, None], tf.int32), rows]
            if prefix:
                signature += [tf.TensorSpec([None, None], tf.int32), rows]
            if topk != 1:
                signature.append(rows)

            def fn(source_ids, source_lengths, *extra):
                forced = (extra[0], extra[1]) if prefix else None
                seeds = extra[-1] if topk != 1 else None
                return search(source_ids, source_lengths, alpha, forced, seeds)

            self._fns[key] = tf.function(fn, input_signature=signature, autograph=False)
        return self._fns[key]

    def tracing_count(self) -> int:
        """How many times the search functions were traced (one per setting used)."""
        return sum(fn.experimental_get_tracing_count() for fn in self._fns.values())

    # === Text ===

    def encode(
        self, line: str, line_number: int | None = None, source: str | None = None
    ) -> list[int]:
        """Source ids for one line (pieces + EOS), truncated to max_source_length pieces.

        A truncation is reported through `warn`, naming `source:line_number` when given.
        """
        ids = self._source_sp.encode(line)
        limit = self.decode_config.max_source_length
        if len(ids) > limit:
            if line_number is None:
                where = "an input"
            else:
                where = f"{source}:{line_number}" if source else f"line {line_number}"
            self._warn(
                f"{where}: {len(ids)} pieces, translating only the first {limit} "
                "(decode.max_source_length)"
            )
            ids = ids[:limit]
        return ids + [constants.EOS_ID] if ids else []

    def _batches(self, encoded: list[list[int]], batch_tokens: int) -> Iterator[list[int]]:
        order = sorted((i for i, ids in enumerate(encoded) if ids), key=lambda i: -len(encoded[i]))
        batch: list[int] = []
        for i in order:
            width = len(encoded[batch[0]]) if batch else len(encoded[i])
            if batch and (len(batch) + 1) * width > batch_tokens:
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    def translate_encoded(
        self,
        encoded: list[list[int]],
        *,
        beam_size: int | None = None,
        length_penalty: float | None = None,
        n_best: int = 1,
        return_attention: bool = False,
        prefixes: Sequence[list[int]] | None = None,
        sampling: tuple[int, float] = (1, 1.0),
        seeds: Sequence[int] | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[list[Hypothesis]]:
        """Translate id lists (pieces + EOS; [] for an empty input) -> n_best hypotheses each.

        `prefixes`: target ids each output starts with (`encode_prefix`; one per input);
        `sampling`: (topk, temperature), topk 1 = greedy (see nmt/search.py), with one seed
        per input (`line_seed`; default: line_seed(0, index + 1)); `on_batch(rows)` is called
        after each batch.
        """
        beam_size = beam_size or self.decode_config.beam_size
        self._check_beam(beam_size, sampling)
        if length_penalty is None:
            length_penalty = self.decode_config.length_penalty
        n_best = min(n_best, beam_size)
        fn = self._search_fn(beam_size, n_best, return_attention, length_penalty, sampling,
                             prefixes is not None)  # fmt: skip
        if sampling[0] != 1 and seeds is None:
            seeds = [line_seed(0, i + 1) for i in range(len(encoded))]
        results: list[list[Hypothesis]] = [
            [Hypothesis("", 0.0) for _ in range(n_best)] if not ids else [] for ids in encoded
        ]
        for batch in self._batches(encoded, self.decode_config.batch_tokens):
            args = [_padded([encoded[i] for i in batch])]
            if prefixes is not None:
                args.append(_padded([prefixes[i] for i in batch]))
            if sampling[0] != 1:
                args.append((np.array([seeds[i] for i in batch], np.int32),))
            out = fn(*(x for arg in args for x in arg))
            for row, hyps in enumerate(self._hypotheses(out, args[0], n_best, return_attention)):
                results[batch[row]] = hyps
            if on_batch is not None:
                on_batch(len(batch))
        return results

    def _check_beam(self, beam_size: int, sampling: tuple[int, float]) -> None:
        if beam_size > self.vocab.target_size:
            raise DataError(
                f"beam size {beam_size} exceeds the target vocabulary size {self.vocab.target_size}"
            )
        if self.shortlist is not None and beam_size > self.shortlist.min_size:
            raise DataError(
                f"beam size {beam_size} exceeds the {self.shortlist.min_size} ids a shortlist "
                "is sure to hold; raise --shortlist-frequent"
            )
        if sampling[0] != 1 and beam_size != 1:
            raise DataError(f"sampling decodes with beam size 1, not {beam_size}")

    def _hypotheses(self, out, source, n_best: int, return_attention: bool):
        """n_best Hypothesis per row of one batch's search result; source = (ids, lengths)."""
        ids = out.ids.numpy()  # (B, n_best, T)
        out_lengths = out.lengths.numpy()  # (B, n_best)
        scores = out.scores.numpy()  # (B, n_best)
        attention = out.attention.numpy() if return_attention else None
        source_ids, lengths = source
        for row in range(ids.shape[0]):
            hyps = []
            for k in range(n_best):
                target = ids[row, k, : out_lengths[row, k]].tolist()
                hyp = Hypothesis(
                    self._target_sp.decode(target), float(scores[row, k]), length=len(target)
                )
                if return_attention:
                    hyp.source_pieces = [
                        self._source_sp.id_to_piece(int(t))
                        for t in source_ids[row, : lengths[row] - 1]
                    ]
                    hyp.target_pieces = [self._target_sp.id_to_piece(t) for t in target]
                    # search records no attention for the final EOS step
                    hyp.attention = attention[row, k, : len(target), : lengths[row]]
                hyps.append(hyp)
            yield hyps

    def encode_prefix(self, text: str) -> list[int]:
        """Target ids (pieces, no EOS) that an output forced to start with `text` starts with."""
        return self._target_sp.encode(text)

    def warm_up(self, **options) -> None:
        """Trace and run the search once (on one one-token input) for translate_encoded's
        `options`, so that the first real batch does not pay for it."""
        if options.get("prefixes") is not None:
            options["prefixes"] = [[]]
        if options.get("seeds") is not None:
            options["seeds"] = [0]
        self.translate_encoded([[constants.EOS_ID]], **options)

    def translate_hypotheses(self, lines: list[str], **options) -> list[list[Hypothesis]]:
        return self.translate_encoded([self.encode(line) for line in lines], **options)

    def translate(
        self, lines: list[str], beam_size: int | None = None, length_penalty: float | None = None
    ) -> list[str]:
        """Detokenized best translation of each line (one output per input)."""
        hyps = self.translate_hypotheses(lines, beam_size=beam_size, length_penalty=length_penalty)
        return [h[0].text for h in hyps]


# === Files ===

iter_text_lines = fileio.iter_lines  # (line number, text) of a UTF-8 file or stdin ('-')


def check_utf8(path: str | Path) -> int:
    """Validate a whole file before any output is written; returns its line count."""
    return sum(1 for _ in fileio.iter_lines(path))


# What str.splitlines() splits on: \n \v \f \r \x1c \x1d \x1e \x85 \u2028 \u2029.
_LINE_BREAKS = {ord(c): " " for c in "\n\v\f\r\x1c\x1d\x1e\x85\u2028\u2029"}


def _one_line(text: str) -> str:
    """`text` with every character that some reader takes as a line break made a space."""
    return text.translate(_LINE_BREAKS)


def format_hypotheses(
    index: int, hyps: list[Hypothesis], *, n_best: int, with_scores: bool, alignments: bool
) -> list[str]:
    """Output lines for one input: one line, or n_best lines as `index ||| text ||| score`."""
    lines = []
    for hyp in hyps[:n_best]:
        fields = [_one_line(hyp.text)]
        if with_scores or n_best > 1:
            fields.append(f"{hyp.score:.6f}")
        if alignments:
            fields.append(hyp.alignment())
        if n_best > 1:
            fields.insert(0, str(index))
        lines.append(" ||| ".join(fields))
    return lines


_MAX_PLOT_INCHES = 60  # at 100 dpi: at most 6000 x 6000 pixels for very long lines


def plot_attention(hyp: Hypothesis, path: str | Path) -> Path:
    """Write a PNG heatmap of target x source attention for one hypothesis.

    Rows are the target pieces, columns the source pieces and the source EOS.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if hyp.attention is None or not hyp.target_pieces:
        raise ValueError("hypothesis has no attention weights or no target pieces")
    src = hyp.source_pieces + [constants.EOS_PIECE]
    tgt = hyp.target_pieces
    weights = hyp.attention[: len(tgt), : len(src)]
    width = min(_MAX_PLOT_INCHES, max(4, 0.45 * len(src) + 2))
    height = min(_MAX_PLOT_INCHES, max(3, 0.4 * len(tgt) + 1.5))
    fig, ax = plt.subplots(figsize=(width, height))
    ax.imshow(weights, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(src)), src, rotation=90)
    ax.set_yticks(range(len(tgt)), tgt)
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    ax.set_title(f"score {hyp.score:.3f}" if math.isfinite(hyp.score) else "")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
