"""`nmt translate`'s work: a file or a stream of lines in, one output line per input line out.

Two ways through, by what the input and the output are:

* checked (a regular input file, or any `-o FILE`): the whole input is read and checked for
  valid UTF-8 before the model is loaded (`fileio.LineSource`: stdin or a pipe is read once
  and kept), then translated in chunks of `chunk_lines`; a file output is moved into place
  only when every line is translated (`fileio.open_output`).
* streamed (stdin, a pipe or a FIFO, to stdout): lines are translated as they arrive, in
  batches of what is available (`fileio.LineStream`), and each batch's lines are written and
  flushed as soon as it is done, in input order; so `nmt translate -` answers an interactive
  line at once, and a pipe's first lines come out before its last are read. An invalid line
  stops the command there (exit 2, `FILE:LINE: invalid UTF-8`), after the lines before it.

Progress (lines, lines/s from the first batch on, so without start-up) is a
`click.progressbar` on stderr, shown only when stderr is a terminal and the translation is
not written to that terminal or typed into it.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from nmt import fileio
from nmt.errors import DataError
from nmt.translator import Hypothesis, Translator, format_hypotheses, line_seed, plot_attention


@dataclass
class TranslateReport:
    lines: int
    seconds: float  # the whole command, start-up included
    output: str
    startup_seconds: float = 0.0  # checks, model loading and tracing, before the first line

    @property
    def lines_per_second(self) -> float:
        return self.lines / max(self.seconds - self.startup_seconds, 1e-9)


class Progress:
    """Lines done and lines/s (since `start()`) as a `click.progressbar` on stderr, or nothing.

    `warn` prints a warning on a line of its own; the bar is drawn again on the next update.
    """

    def __init__(self, enabled: bool, total: int | None):
        self.enabled, self.total, self.done = enabled, total, 0
        self.bar = None
        self.started = time.perf_counter()

    def start(self) -> None:
        import click

        self.started = time.perf_counter()
        if not self.enabled:
            return
        source = {"length": self.total} if self.total is not None else {"iterable": iter(())}
        self.bar = click.progressbar(
            **source, label="nmt translate", file=sys.stderr, show_pos=True,
            show_eta=self.total is not None, item_show_func=self._rate, update_min_steps=1,
        )  # fmt: skip
        self.bar.__enter__()

    def _rate(self, _item) -> str:
        rate = self.done / max(time.perf_counter() - self.started, 1e-9)
        return f"{rate:.1f} lines/s"

    def update(self, lines: int) -> None:
        self.done += lines
        if self.bar is not None:
            self.bar.update(lines)

    def warn(self, message: str) -> None:
        if self.bar is not None:
            print(file=sys.stderr, flush=True)
        print(f"nmt: warning: {message}", file=sys.stderr, flush=True)

    def end(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def show_progress(wanted: bool, input_path: str, output_path: str) -> bool:
    """Whether to draw progress: asked for, stderr a terminal, and neither the output nor the
    input that terminal (the bar would cut into the translations or the typing)."""
    if not wanted or not _isatty(sys.stderr):
        return False
    if str(output_path) == fileio.STDOUT and _isatty(sys.stdout):
        return False
    return not (str(input_path) == fileio.STDIN and _isatty(sys.stdin))


@dataclass
class Job:
    """What each line is translated with (everything but the lines)."""

    translator: Translator
    options: dict  # translate_encoded's: beam_size, length_penalty, n_best, sampling, ...
    with_scores: bool = False
    alignments: bool = False
    plot_lines: frozenset = frozenset()
    plot_dir: Path | None = None
    prefixes: Sequence[str] | str | None = None  # one text for all lines, or one per line
    prefix_name: str = ""
    seed: int = 0


def translate_lines(
    job: Job, batches: Iterable[list[tuple[int, str]]], name: str, out, progress: Progress
) -> int:
    """Translate each batch of (line number, text) into `out`, flushed after each; returns
    the number of lines."""
    done = 0
    n_best = job.options["n_best"]
    for chunk in batches:
        encoded = [job.translator.encode(text, number, name) for number, text in chunk]
        options = dict(job.options, on_batch=progress.update)
        if job.prefixes is not None:
            options["prefixes"] = [job.translator.encode_prefix(_prefix(job, n)) for n, _ in chunk]
        if options["sampling"][0] != 1:
            options["seeds"] = [line_seed(job.seed, number) for number, _ in chunk]
        hyps = job.translator.translate_encoded(encoded, **options)
        for (number, _), h in zip(chunk, hyps, strict=True):
            for line in format_hypotheses(number - 1, h, n_best=n_best,
                                          with_scores=job.with_scores,
                                          alignments=job.alignments):  # fmt: skip
                out.write(line + "\n")
            if number in job.plot_lines:
                _plot_line(h[0], number, name, job.plot_dir, progress.warn)
        out.flush()
        done += len(chunk)
    return done


def _prefix(job: Job, number: int) -> str:
    if isinstance(job.prefixes, str):
        return job.prefixes
    if number > len(job.prefixes):
        raise DataError(
            f"{job.prefix_name} has {len(job.prefixes)} lines, fewer than the input: one "
            "prefix per input line"
        )
    return job.prefixes[number - 1]


def chunks(source: Iterable[tuple[int, str]], size: int) -> Iterator[list[tuple[int, str]]]:
    chunk: list[tuple[int, str]] = []
    for item in source:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _plot_line(hyp: Hypothesis, number: int, name: str, plot_dir: Path, warn) -> None:
    if hyp.attention is None:
        warn(f"{name}:{number}: empty line, no attention plot")
    elif not hyp.target_pieces:
        warn(f"{name}:{number}: empty translation, no attention plot")
    else:
        plot_attention(hyp, plot_dir / f"attention_line{number}.png")


def run_job(
    make_job: Callable[[Callable[[str], None]], Job],
    input_path: str,
    output_path: str,
    *,
    chunk_lines: int,
    progress: bool,
) -> TranslateReport:
    """Check, load (`make_job(warn)`), warm up and translate `input_path` into `output_path`."""
    start = time.perf_counter()
    fileio.check_input(input_path)
    streamed = str(output_path) == fileio.STDOUT and not fileio.is_regular_file(input_path)
    if streamed:
        with fileio.LineStream(input_path, chunk_lines) as stream:
            shown = Progress(show_progress(progress, input_path, output_path), None)
            job = _ready(make_job, shown, None, stream.name)
            startup = time.perf_counter() - start
            done = _write(job, stream.batches(), stream.name, output_path, shown)
        name = stream.name
    else:
        with fileio.LineSource(input_path) as source:
            total = sum(1 for _ in source)
            shown = Progress(show_progress(progress, input_path, output_path), total)
            job = _ready(make_job, shown, total, source.name)
            startup = time.perf_counter() - start
            done = _write(job, chunks(source, chunk_lines), source.name, output_path, shown)
        name = source.name
    _check_counts(job, done, name)
    missing = sorted(n for n in job.plot_lines if n > done)
    if missing:
        shown.warn(f"{name} has {done} lines: nothing to plot for line(s) {missing}")
    return TranslateReport(done, time.perf_counter() - start, output_path, startup)


def _write(job: Job, batches, name: str, output_path: str, shown: Progress) -> int:
    """translate_lines into `fileio.open_output(output_path)`; the bar ends either way."""
    try:
        with fileio.open_output(output_path, what="the translation", warn=shown.warn) as out:
            return translate_lines(job, batches, name, out, shown)
    finally:
        shown.end()


def _ready(make_job, shown: Progress, total: int | None, name: str) -> Job:
    """The job, its line counts checked (a known total) and its search traced and run once."""
    job = make_job(shown.warn)
    if total is not None:
        _check_counts(job, total, name)
    options = {k: v for k, v in job.options.items() if k != "on_batch"}
    options["return_attention"] = job.options.get("return_attention", False)
    job.translator.warm_up(
        **options,
        prefixes=[] if job.prefixes is not None else None,
        seeds=[] if options["sampling"][0] != 1 else None,
    )
    shown.start()
    return job


def _check_counts(job: Job, lines: int, name: str) -> None:
    """A prefix file must have one line per input line."""
    if job.prefixes is None or isinstance(job.prefixes, str) or len(job.prefixes) == lines:
        return
    raise DataError(
        f"{job.prefix_name} has {len(job.prefixes)} lines but {name} has {lines}: "
        "one prefix per input line"
    )


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
    prefix: str | None = None,
    prefix_file: str | None = None,
    sampling_topk: int | None = None,
    sampling_temperature: float | None = None,
    seed: int | None = None,
):
    """Translate a file (or stdin) line by line into a file (or stdout), in input order;
    returns a `TranslateReport`.

    Before the model is loaded: the output is checked (`fileio.check_output_file`: its
    directory, and that it is not the input), the decode options are checked against the
    model's config, and, unless the input is streamed (stdin or a pipe to stdout, see
    nmt/translation_job.py), the whole input is read and checked for valid UTF-8; stdin or
    a pipe is read once either way. The output is written with `fileio.open_output`: a file
    is moved into place only when every line is translated. Output is UTF-8 whatever the
    locale. Warnings (truncated lines, lines that cannot be plotted) go to stderr. Several
    model directories or checkpoints decode as an ensemble (`ensemble.load_ensemble`);
    `precision` is the dtype policy to decode in (`nmt.precision`). `shortlist*`: see
    `shortlist.configure` (None: the config's). `prefix` (one text for every line) or
    `prefix_file` (one line per input line): what each output starts with. `sampling_*`
    (None: the config's decode.sampling_*): topk 1 is greedy; sampling decodes with beam 1
    and draws each line with `line_seed(seed, line)` (`seed` None: a random one).
    """
    inputs = [(str(input_path), input_path)]
    fileio.check_output_file(output_path, option="-o", inputs=inputs)
    if prefix is not None and prefix_file is not None:
        raise DataError("give --prefix or --prefix-file, not both")
    if prefix_file is not None:
        fileio.check_distinct_inputs([(f"FILE {input_path}", input_path),
                                      (f"--prefix-file {prefix_file}", prefix_file)])  # fmt: skip
    prefixes = fileio.read_lines(prefix_file) if prefix_file is not None else prefix
    settings = _check_decode_options(
        model_dir, checkpoint, beam_size, n_best, min_length, sampling_topk, sampling_temperature
    )
    plots = frozenset(plot_lines) if plot_dir else frozenset()
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little") >> 1

    options = {"beam_size": settings["beam_size"], "length_penalty": length_penalty,
               "n_best": n_best, "sampling": settings["sampling"],
               "return_attention": alignments or bool(plots)}  # fmt: skip
    shortlist_options = (shortlist, shortlist_top_k, shortlist_frequent)

    def make_job(warn) -> Job:
        translator = _load_translator(model_dir, checkpoint, precision, shortlist_options,
                                      batch_tokens, min_length, warn)  # fmt: skip
        return Job(
            translator, options, with_scores=with_scores, alignments=alignments,
            plot_lines=plots, plot_dir=Path(plot_dir) if plot_dir else None,
            prefixes=prefixes, prefix_name=f"--prefix-file {prefix_file}", seed=seed,
        )  # fmt: skip

    return run_job(make_job, input_path, output_path, chunk_lines=chunk_lines, progress=progress)


def _load_translator(
    model_dir, checkpoint, precision, shortlist_options, batch_tokens, min_length, warn
) -> Translator:
    """The model (or ensemble) loaded and its Translator, decoding with the config's settings
    but for the shortlist (`shortlist.prepare`), --batch-tokens and --min-length."""
    from nmt import shortlist as shortlists
    from nmt.ensemble import load_ensemble

    loaded = load_ensemble(model_dir, checkpoint, precision)
    decode, table = shortlists.prepare(loaded, *shortlist_options)
    if batch_tokens:
        decode.batch_tokens = batch_tokens
    if min_length is not None:
        decode.min_length = int(min_length)
    return Translator(loaded.model, loaded.vocab, decode, warn=warn, shortlist=table)


def _check_decode_options(
    model_dir, checkpoint, beam_size, n_best, min_length, sampling_topk, sampling_temperature
) -> dict:
    """{"beam_size", "sampling": (topk, temperature)} to decode with, once --n-best,
    --min-length and sampling are found to fit; defaults from the (first) model's saved
    config, read before TensorFlow is imported. Sampling decodes with beam 1 unless --beam
    says otherwise, which is an error."""
    from nmt.ensemble import pair_members
    from nmt.modeldir import read_config

    if min_length is not None and min_length < 0:
        raise DataError(f"--min-length must be >= 0, got {min_length}")
    if sampling_topk is not None and sampling_topk < 0:
        raise DataError(f"--sampling-topk must be >= 0 (0: every word), got {sampling_topk}")
    if sampling_temperature is not None and not 0 < sampling_temperature < math.inf:
        raise DataError(
            f"--sampling-temperature must be > 0 and finite, got {sampling_temperature}"
        )
    decode = read_config(pair_members(model_dir, checkpoint)[0][0]).decode
    topk = decode.sampling_topk if sampling_topk is None else sampling_topk
    temperature = decode.sampling_temperature
    temperature = temperature if sampling_temperature is None else sampling_temperature
    if topk != 1:
        if beam_size is not None and beam_size != 1:
            raise DataError(f"sampling (--sampling-topk {topk}) decodes with --beam 1, not "
                            f"--beam {beam_size}")  # fmt: skip
        beam_size = 1
    beam_size = beam_size or decode.beam_size
    if n_best > beam_size:
        raise DataError(f"--n-best {n_best} cannot exceed the beam size {beam_size}")
    return {"beam_size": beam_size, "sampling": (int(topk), float(temperature))}
