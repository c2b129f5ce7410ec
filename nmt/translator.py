"""Text in, text out: pieces -> ids -> in-graph search -> pieces -> text.

`make_search_fn` is the one piece of graph code that both `nmt translate` and the SavedModel
export run, so the two give the same translations for the same model, beam and inputs.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nmt import constants
from nmt.config import DecodeConfig
from nmt.errors import DataError


@dataclass
class Hypothesis:
    text: str
    score: float  # log-probability divided by the GNMT length penalty
    source_pieces: list[str] = field(default_factory=list)
    target_pieces: list[str] = field(default_factory=list)
    attention: np.ndarray | None = None  # (target pieces + EOS, source pieces + EOS)

    def alignment(self) -> str:
        """Hard alignment in Pharaoh format (`source-target` piece indices) from attention."""
        if self.attention is None or not self.target_pieces:
            return ""
        n_src = len(self.source_pieces)
        weights = self.attention[: len(self.target_pieces), :n_src]  # drop EOS row/column
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
    return_attention: bool = False,
) -> Callable:
    """Build `fn(source_ids (B, S) int32, source_lengths (B,) int32, length_penalty ())`
    -> search.SearchResult, graph-safe for `tf.function` with unknown shapes."""
    import tensorflow as tf

    from nmt import search

    def fn(source_ids, source_lengths, length_penalty):
        batch_size = tf.shape(source_ids)[0]
        memory, memory_mask, initial_state = model.encode(source_ids, training=False)
        bundle = model.prepare_memory(memory, memory_mask)
        lengths = tf.cast(source_lengths, tf.float32)
        max_lengths = tf.cast(tf.floor(max_length_a + max_length_b * lengths), tf.int32)  # (B,)
        max_lengths = tf.maximum(max_lengths, 1)
        if beam_size == 1:

            def step_fn(ids, step, state):
                return model.step(ids, state, bundle, training=False)

            return search.greedy_search(
                step_fn,
                initial_state,
                batch_size,
                bos_id=constants.BOS_ID,
                eos_id=constants.EOS_ID,
                max_lengths=max_lengths,
                return_attention=return_attention,
            )
        tiled = search.tile_beams(bundle, beam_size)

        def beam_step_fn(ids, step, state):
            return model.step(ids, state, tiled, training=False)

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
            return_attention=return_attention,
        )

    return fn


class Translator:
    """Translates lists or streams of sentences with a loaded model.

    Batches are made of inputs sorted by length (at most `batch_tokens` source tokens including
    padding) and results come back in input order. An empty or blank input gives an empty
    output; an input longer than `max_source_length` pieces is truncated with a warning.
    """

    def __init__(self, model, vocab, decode_config: DecodeConfig | None = None, *, warn=None):
        import sentencepiece as spm

        self.model = model
        self.vocab = vocab
        self.decode_config = decode_config or DecodeConfig()
        self._source_sp = spm.SentencePieceProcessor(model_file=str(vocab.source_model_path))
        self._target_sp = spm.SentencePieceProcessor(model_file=str(vocab.target_model_path))
        self._fns: dict = {}
        self._warn = warn or (lambda message: print(f"nmt: warning: {message}", file=sys.stderr))

    # === Graph functions ===

    def _search_fn(self, beam_size: int, n_best: int, return_attention: bool):
        key = (beam_size, n_best, return_attention)
        if key not in self._fns:
            import tensorflow as tf

            fn = make_search_fn(
                self.model,
                beam_size=beam_size,
                n_best=n_best,
                max_length_a=self.decode_config.max_length_a,
                max_length_b=self.decode_config.max_length_b,
                return_attention=return_attention,
            )
            self._fns[key] = tf.function(
                fn,
                input_signature=[
                    tf.TensorSpec([None, None], tf.int32),
                    tf.TensorSpec([None], tf.int32),
                    tf.TensorSpec([], tf.float32),
                ],
                reduce_retracing=True,
            )
        return self._fns[key]

    # === Text ===

    def encode(self, line: str, line_number: int | None = None) -> list[int]:
        """Source ids for one line (pieces + EOS), truncated to max_source_length pieces."""
        ids = self._source_sp.encode(line)
        limit = self.decode_config.max_source_length
        if len(ids) > limit:
            where = f"line {line_number}" if line_number is not None else "an input"
            self._warn(f"{where} has {len(ids)} pieces; translating its first {limit}")
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
        if length_penalty is None:
            length_penalty = self.decode_config.length_penalty
        n_best = min(n_best, beam_size)
        fn = self._search_fn(beam_size, n_best, return_attention)
        results: list[list[Hypothesis]] = [
            [Hypothesis("", 0.0)] * n_best if not ids else [] for ids in encoded
        ]
        for batch in self._batches(encoded, self.decode_config.batch_tokens):
            width = max(len(encoded[i]) for i in batch)
            source = np.zeros((len(batch), width), np.int32)  # (B, S) padded with PAD_ID
            for row, i in enumerate(batch):
                source[row, : len(encoded[i])] = encoded[i]
            lengths = np.array([len(encoded[i]) for i in batch], np.int32)
            out = fn(
                tf.constant(source), tf.constant(lengths), tf.constant(length_penalty, tf.float32)
            )
            ids = out.ids.numpy()  # (B, n_best, T)
            out_lengths = out.lengths.numpy()  # (B, n_best)
            scores = out.scores.numpy()  # (B, n_best)
            attention = out.attention.numpy() if return_attention else None
            for row, i in enumerate(batch):
                hyps = []
                for k in range(n_best):
                    target = ids[row, k, : out_lengths[row, k]].tolist()
                    hyp = Hypothesis(self._target_sp.decode(target), float(scores[row, k]))
                    if return_attention:
                        hyp.source_pieces = [
                            self._source_sp.id_to_piece(t) for t in encoded[i][:-1]
                        ]
                        hyp.target_pieces = [self._target_sp.id_to_piece(t) for t in target]
                        hyp.attention = attention[row, k, : len(target) + 1, : lengths[row]]
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


def iter_text_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, text) for each line of a UTF-8 file, or of stdin for '-'.

    Only '\\n' ends a line (a trailing '\\r' is dropped), so control characters such as
    form feeds or U+2028 inside a line never split it.
    """
    name = "<stdin>" if str(path) == "-" else str(path)
    if str(path) == "-":
        stream = sys.stdin.buffer
    else:
        p = Path(path)
        if not p.exists():
            raise DataError(f"{p}: file not found")
        if p.is_dir():
            raise DataError(f"{p}: is a directory, expected a text file")
        stream = p.open("rb")
    try:
        for number, raw in enumerate(stream, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{name}:{number}: invalid UTF-8 at byte {e.start}") from None
            if text.endswith("\n"):
                text = text[:-1]
            if text.endswith("\r"):
                text = text[:-1]
            yield number, text
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def check_utf8(path: str | Path) -> int:
    """Validate a whole file before any output is written; returns its line count."""
    return sum(1 for _ in iter_text_lines(path))


def _one_line(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")


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


def translate_file(
    model_dir: str | Path,
    input_path: str,
    output_path: str = "-",
    *,
    checkpoint: str = "best",
    beam_size: int | None = None,
    length_penalty: float | None = None,
    n_best: int = 1,
    batch_tokens: int | None = None,
    with_scores: bool = False,
    alignments: bool = False,
    plot_dir: str | None = None,
    plot_lines: Iterable[int] = (),
    chunk_lines: int = 5000,
    progress: bool = True,
) -> TranslateReport:
    """Translate a file (or stdin) line by line into a file (or stdout), in input order.

    The output file is written to a temporary file beside it and moved into place only when
    every line is translated, so a failure leaves any previous file untouched.
    """
    from nmt.checkpoints import load_model

    start = time.perf_counter()
    if input_path != "-":
        total = check_utf8(input_path)
    else:
        total = None
    loaded = load_model(model_dir, checkpoint)
    decode = loaded.config.decode
    if batch_tokens:
        decode.batch_tokens = batch_tokens
    beam_size = beam_size or decode.beam_size
    if n_best > beam_size:
        raise DataError(f"--n-best {n_best} cannot exceed the beam size {beam_size}")
    plot_lines = set(plot_lines)
    want_attention = alignments or bool(plot_dir and plot_lines)
    translator = Translator(loaded.model, loaded.vocab, decode)

    if output_path == "-":
        out, tmp_name = sys.stdout, None
    else:
        target = Path(output_path)
        if target.is_dir():
            raise DataError(f"{target}: is a directory, expected an output file")
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
        out = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
    done = 0
    try:
        chunk: list[tuple[int, str]] = []

        def flush():
            nonlocal done
            encoded = [translator.encode(text, number) for number, text in chunk]
            hyps = translator.translate_encoded(
                encoded,
                beam_size=beam_size,
                length_penalty=length_penalty,
                n_best=n_best,
                return_attention=want_attention,
            )
            for (number, _), h in zip(chunk, hyps, strict=True):
                for line in format_hypotheses(
                    number - 1, h, n_best=n_best, with_scores=with_scores, alignments=alignments
                ):
                    out.write(line + "\n")
                if plot_dir and number in plot_lines:
                    plot_attention(h[0], Path(plot_dir) / f"attention_line{number}.png")
            out.flush()
            done += len(chunk)
            if progress:
                rate = done / max(time.perf_counter() - start, 1e-9)
                of = f"/{total}" if total is not None else ""
                print(
                    f"\rnmt translate: {done}{of} lines, {rate:.1f} lines/s",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
            chunk.clear()

        for number, text in iter_text_lines(input_path):
            chunk.append((number, text))
            if len(chunk) >= chunk_lines:
                flush()
        if chunk:
            flush()
        if progress:
            print(file=sys.stderr)
        if tmp_name is not None:
            out.close()
            os.replace(tmp_name, output_path)
            tmp_name = None
    finally:
        if tmp_name is not None:
            out.close()
            Path(tmp_name).unlink(missing_ok=True)
    return TranslateReport(done, time.perf_counter() - start, output_path)


def plot_attention(hyp: Hypothesis, path: str | Path) -> Path:
    """Write a PNG heatmap of target x source attention for one hypothesis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if hyp.attention is None:
        raise ValueError("hypothesis has no attention weights")
    src = hyp.source_pieces + [constants.EOS_PIECE]
    tgt = hyp.target_pieces + [constants.EOS_PIECE]
    weights = hyp.attention[: len(tgt), : len(src)]
    fig, ax = plt.subplots(figsize=(max(4, 0.45 * len(src) + 2), max(3, 0.4 * len(tgt) + 1.5)))
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
