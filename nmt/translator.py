"""Text in, text out: pieces -> ids -> in-graph search -> pieces -> text.

`make_search_fn` is the one piece of graph code that both `nmt translate` and the SavedModel
export run, so the two give the same translations for the same model, beam and inputs.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
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
) -> Callable:
    """Build `fn(source_ids (B, S) int32, source_lengths (B,) int32, length_penalty: float)`
    -> search.SearchResult, graph-safe for `tf.function` with unknown shapes.

    `length_penalty` is a Python number, fixed when the function is traced (beam_search
    takes it as a constant); the function needs no AutoGraph conversion. Outputs hold at
    most floor(max_length_a + max_length_b * source length) pieces (at least 1) and, up to
    that limit, at least `min_length`. With a `shortlist.Shortlist`, each batch decodes over
    its ids s (K,): the output layer's columns are gathered once (`model.output_subset`),
    before the search loop, and the search maps the picked columns back through s.
    """
    import tensorflow as tf

    from nmt import search

    def fn(source_ids, source_lengths, length_penalty):
        batch_size = tf.shape(source_ids)[0]
        memory, memory_mask, initial_state = model.encode(source_ids, training=False)
        bundle = model.prepare_memory(memory, memory_mask)
        lengths = tf.cast(source_lengths, tf.float32)
        max_lengths = tf.cast(tf.floor(max_length_a + max_length_b * lengths), tf.int32)  # (B,)
        max_lengths = tf.maximum(max_lengths, 1)
        vocab_ids, options = None, {}
        if shortlist is not None:
            vocab_ids = shortlist.ids(source_ids)  # (K,)
            options = {"output": model.output_subset(vocab_ids)}
        if beam_size == 1:

            def step_fn(ids, step, state):
                return model.step(ids, state, bundle, training=False, **options)

            return search.greedy_search(
                step_fn,
                initial_state,
                batch_size,
                bos_id=constants.BOS_ID,
                eos_id=constants.EOS_ID,
                max_lengths=max_lengths,
                min_length=min_length,
                return_attention=return_attention,
                vocab_ids=vocab_ids,
            )
        tiled = search.tile_beams(bundle, beam_size)

        def beam_step_fn(ids, step, state):
            return model.step(ids, state, tiled, training=False, **options)

        return search.beam_search(
            beam_step_fn,
            initial_state,
            batch_size,
            beam_size=beam_size,
            bos_id=constants.BOS_ID,
            eos_id=constants.EOS_ID,
            max_lengths=max_lengths,
            length_penalty=length_penalty,
            n_best=n_best,
            min_length=min_length,
            return_attention=return_attention,
            vocab_ids=vocab_ids,
        )

    return fn


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

    def _search_fn(self, beam_size: int, n_best: int, return_attention: bool, alpha: float):
        """The traced search for one setting: `fn(source_ids (B, S), source_lengths (B,))`.

        Traced once per setting (unknown B and S). The length penalty is a Python constant
        of the graph, as in the export, and AutoGraph is off: search and model code use
        explicit graph control flow, and converting them took most of the start-up time.
        """
        alpha = float(alpha) if beam_size > 1 else 0.0  # greedy search has no penalty
        key = (beam_size, n_best, return_attention, alpha)
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
            )

            def fn(source_ids, source_lengths):
                return search(source_ids, source_lengths, alpha)

            self._fns[key] = tf.function(
                fn,
                input_signature=[
                    tf.TensorSpec([None, None], tf.int32),
                    tf.TensorSpec([None], tf.int32),
                ],
                autograph=False,
            )
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
    ) -> list[list[Hypothesis]]:
        """Translate id lists (pieces + EOS; [] for an empty input) -> n_best hypotheses each."""
        import tensorflow as tf

        beam_size = beam_size or self.decode_config.beam_size
        if beam_size > self.vocab.target_size:
            raise DataError(
                f"beam size {beam_size} exceeds the target vocabulary size {self.vocab.target_size}"
            )
        if self.shortlist is not None and beam_size > self.shortlist.min_size:
            raise DataError(
                f"beam size {beam_size} exceeds the {self.shortlist.min_size} ids a shortlist "
                "is sure to hold; raise --shortlist-frequent"
            )
        if length_penalty is None:
            length_penalty = self.decode_config.length_penalty
        n_best = min(n_best, beam_size)
        fn = self._search_fn(beam_size, n_best, return_attention, length_penalty)
        results: list[list[Hypothesis]] = [
            [Hypothesis("", 0.0) for _ in range(n_best)] if not ids else [] for ids in encoded
        ]
        for batch in self._batches(encoded, self.decode_config.batch_tokens):
            width = max(len(encoded[i]) for i in batch)
            source = np.zeros((len(batch), width), np.int32)  # (B, S) padded with PAD_ID
            for row, i in enumerate(batch):
                source[row, : len(encoded[i])] = encoded[i]
            lengths = np.array([len(encoded[i]) for i in batch], np.int32)
            out = fn(tf.constant(source), tf.constant(lengths))
            ids = out.ids.numpy()  # (B, n_best, T)
            out_lengths = out.lengths.numpy()  # (B, n_best)
            scores = out.scores.numpy()  # (B, n_best)
            attention = out.attention.numpy() if return_attention else None
            for row, i in enumerate(batch):
                hyps = []
                for k in range(n_best):
                    target = ids[row, k, : out_lengths[row, k]].tolist()
                    hyp = Hypothesis(
                        self._target_sp.decode(target), float(scores[row, k]), length=len(target)
                    )
                    if return_attention:
                        hyp.source_pieces = [
                            self._source_sp.id_to_piece(t) for t in encoded[i][:-1]
                        ]
                        hyp.target_pieces = [self._target_sp.id_to_piece(t) for t in target]
                        # search records no attention for the final EOS step
                        hyp.attention = attention[row, k, : len(target), : lengths[row]]
                    hyps.append(hyp)
                results[i] = hyps
        return results

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


@dataclass
class TranslateReport:
    lines: int
    seconds: float
    output: str


class _Progress:
    """`nmt translate: N/TOTAL lines, R lines/s` on one stderr line; warnings end it first."""

    def __init__(self, enabled: bool, total: int | None):
        self.enabled, self.total, self.shown = enabled, total, False
        self.start = time.perf_counter()

    def warn(self, message: str) -> None:
        self.end()
        print(f"nmt: warning: {message}", file=sys.stderr, flush=True)

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        rate = done / max(time.perf_counter() - self.start, 1e-9)
        of = f"/{self.total}" if self.total is not None else ""
        print(f"\rnmt translate: {done}{of} lines, {rate:.1f} lines/s", end="",
              file=sys.stderr, flush=True)  # fmt: skip
        self.shown = True

    def end(self) -> None:
        if self.shown:
            print(file=sys.stderr)
            self.shown = False


def translate_file(
    model_dir: str | Path | Sequence[str | Path],
    input_path: str,
    output_path: str = "-",
    *,
    checkpoint: str | Sequence[str] = "best",
    beam_size: int | None = None,
    length_penalty: float | None = None,
    n_best: int = 1,
    batch_tokens: int | None = None,
    min_length: int | None = None,
    with_scores: bool = False,
    alignments: bool = False,
    plot_dir: str | None = None,
    plot_lines: Iterable[int] = (),
    chunk_lines: int = 5000,
    progress: bool = True,
    shortlist: bool | None = None,
    shortlist_top_k: int | None = None,
    shortlist_frequent: int | None = None,
    precision: str = "float32",
) -> TranslateReport:
    """Translate a file (or stdin) line by line into a file (or stdout), in input order.

    Before the model is loaded: the output is checked (`fileio.check_output_file`: its
    directory, and that it is not the input) and the whole input is read and checked for
    valid UTF-8; stdin or a pipe is read once (kept in a temporary file), so the
    translation sees the lines that were checked. The output is written with
    `fileio.open_output`: a file is moved into place only when every line is translated.
    Output is UTF-8 whatever the locale. Warnings (truncated lines, lines that cannot be
    plotted) go to stderr. Several model directories or checkpoints decode as an ensemble
    (`ensemble.load_ensemble`); `precision` is the dtype policy to decode in (`nmt.precision`).
    `shortlist*`: see `shortlist.configure` (None: the config's).
    """
    from nmt import shortlist as shortlists
    from nmt.ensemble import load_ensemble

    start = time.perf_counter()
    fileio.check_output_file(output_path, option="-o", inputs=[(str(input_path), input_path)])
    with fileio.LineSource(input_path) as source:
        total = sum(1 for _ in source)
        beam_size = _check_decode_options(model_dir, checkpoint, beam_size, n_best, min_length)
        loaded = load_ensemble(model_dir, checkpoint, precision)
        decode, table = shortlists.prepare(loaded, shortlist, shortlist_top_k, shortlist_frequent)
        if batch_tokens:
            decode.batch_tokens = batch_tokens
        if min_length is not None:
            decode.min_length = int(min_length)
        shown = _Progress(progress, total)
        translator = Translator(
            loaded.model, loaded.vocab, decode, warn=shown.warn, shortlist=table
        )
        options = {"beam_size": beam_size, "length_penalty": length_penalty, "n_best": n_best,
                   "with_scores": with_scores, "alignments": alignments}  # fmt: skip
        plots = (set(plot_lines), Path(plot_dir)) if plot_dir else (set(), None)
        with fileio.open_output(output_path, what="the translation", warn=shown.warn) as out:
            done = _translate_lines(translator, source, out, options, plots, chunk_lines, shown)
        shown.end()
    missing = sorted(n for n in plots[0] if n > done)
    if missing:
        shown.warn(f"{source.name} has {done} lines: nothing to plot for line(s) {missing}")
    return TranslateReport(done, time.perf_counter() - start, output_path)


def _check_decode_options(model_dir, checkpoint, beam_size, n_best, min_length) -> int:
    """The beam size to decode with, once --n-best and --min-length are found to fit it; read
    from the (first) model's saved config, before TensorFlow is imported."""
    from nmt.checkpoints import read_config
    from nmt.ensemble import pair_members

    if min_length is not None and min_length < 0:
        raise DataError(f"--min-length must be >= 0, got {min_length}")
    beam_size = beam_size or read_config(pair_members(model_dir, checkpoint)[0][0]).decode.beam_size
    if n_best > beam_size:
        raise DataError(f"--n-best {n_best} cannot exceed the beam size {beam_size}")
    return beam_size


def _translate_lines(translator, source, out, options, plots, chunk_lines, shown) -> int:
    """Translate `source` chunk by chunk into `out`; returns the number of lines."""
    plot_lines, plot_dir = plots
    n_best = options["n_best"]
    done = 0
    chunk: list[tuple[int, str]] = []

    def flush():
        nonlocal done
        encoded = [translator.encode(text, number, source.name) for number, text in chunk]
        hyps = translator.translate_encoded(
            encoded,
            beam_size=options["beam_size"],
            length_penalty=options["length_penalty"],
            n_best=n_best,
            return_attention=options["alignments"] or bool(plot_lines),
        )
        for (number, _), h in zip(chunk, hyps, strict=True):
            for line in format_hypotheses(number - 1, h, n_best=n_best,
                                          with_scores=options["with_scores"],
                                          alignments=options["alignments"]):  # fmt: skip
                out.write(line + "\n")
            if number in plot_lines:
                _plot_line(h[0], number, source.name, plot_dir, shown.warn)
        out.flush()
        done += len(chunk)
        shown.update(done)
        chunk.clear()

    for number, text in source:
        chunk.append((number, text))
        if len(chunk) >= chunk_lines:
            flush()
    if chunk:
        flush()
    return done


def _plot_line(hyp: Hypothesis, number: int, name: str, plot_dir: Path, warn) -> None:
    if hyp.attention is None:
        warn(f"{name}:{number}: empty line, no attention plot")
    elif not hyp.target_pieces:
        warn(f"{name}:{number}: empty translation, no attention plot")
    else:
        plot_attention(hyp, plot_dir / f"attention_line{number}.png")


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
