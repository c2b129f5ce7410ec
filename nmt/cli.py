"""The `nmt` command line. Commands are thin: parse, call one library function, print.

TensorFlow is imported lazily inside commands so that `nmt --help` stays fast.
"""

from __future__ import annotations

import signal

import click

from nmt.errors import NmtError
from nmt.precision import PRECISIONS
from nmt.serving import options as serve_options
from nmt.version import __version__


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def describe_error(error: BaseException) -> str:
    """One line naming the problem: an NmtError's message, `PATH: reason` for an OSError."""
    if isinstance(error, NmtError):
        return _one_line(str(error))
    if isinstance(error, OSError):
        reason = error.strerror or str(error) or type(error).__name__
        if error.filename is not None:
            where = str(error.filename)
            if error.filename2 is not None:
                where += f" -> {error.filename2}"
            return _one_line(f"{where}: {reason}")
        return _one_line(reason)
    return _one_line(f"{type(error).__name__}: {error}")


def _usage_error(error: click.UsageError) -> click.exceptions.Exit:
    """Print a usage error as one line (click's own format takes four) and exit 2."""
    hint = f" (see '{error.ctx.command_path} --help')" if error.ctx is not None else ""
    click.echo(f"nmt: error: {_one_line(error.format_message())}{hint}", err=True)
    return click.exceptions.Exit(2)


class _Group(click.Group):
    """Every error is one line on stderr (`--debug` shows the traceback instead):

    - user errors (NmtError, OSError, bad options): `nmt: error: ...`, exit code 2;
    - anything else is a bug: `nmt: internal error: ...`, exit code 1;
    - Ctrl-C: exit code 130; a closed stdout pipe (`| head`): click's quiet exit.
    """

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:
            if "--debug" in args:
                raise
            raise _usage_error(e) from None

    def invoke(self, ctx: click.Context):
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:
            if debug:
                raise
            raise _usage_error(e) from None
        except click.ClickException:
            raise
        except BrokenPipeError:
            raise  # click exits quietly when the reader of stdout went away
        except (NmtError, OSError) as e:
            if debug:
                raise
            click.echo(f"nmt: error: {describe_error(e)}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt as e:
            signum = getattr(e, "signum", signal.SIGINT)
            click.echo(f"nmt: interrupted ({signal.Signals(signum).name})", err=True)
            ctx.exit(128 + signum)
        except Exception as e:
            if debug:
                raise
            click.echo(
                f"nmt: internal error: {describe_error(e)} (run `nmt --debug ...` for the "
                "traceback and report it)",
                err=True,
            )
            ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nmt")
@click.option(
    "--verbose",
    is_flag=True,
    help="Show TensorFlow's own log lines and warnings (hidden by default).",
)
@click.option(
    "--debug", is_flag=True, help="Show full tracebacks on errors (and all that --verbose shows)."
)
def cli(verbose: bool, debug: bool) -> None:
    """Train, evaluate, translate with and export LSTM translation models."""
    ctx = click.get_current_context()
    if not (verbose or debug):
        from nmt.quiet import silence_tensorflow

        ctx.call_on_close(silence_tensorflow())
    _stop_on_sigterm(ctx)


def _stop_on_sigterm(ctx: click.Context) -> None:
    """SIGTERM ends a command like Ctrl-C (its clean-up runs; exit 143), not by a kill."""
    import threading

    from nmt.interrupts import Aborted

    if threading.current_thread() is not threading.main_thread():
        return

    def terminate(signum, frame):
        raise Aborted(signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    ctx.call_on_close(lambda: signal.signal(signal.SIGTERM, previous))


_CHECKPOINT_HELP = "Which weights: best (by dev BLEU), last, or a checkpoint path."


def _ensemble_options(command):
    """Repeatable --model and --checkpoint: several decode as an ensemble (nmt.ensemble)."""
    command = click.option(
        "--checkpoint",
        "checkpoints",
        multiple=True,
        help="Which weights: best (by dev BLEU), last, or a checkpoint path [default: best]. "
        "Repeatable: with one --model, an ensemble of its checkpoints; with several, one for "
        "all or one per --model.",
    )(command)
    return click.option(
        "--model",
        "model_dirs",
        required=True,
        multiple=True,
        type=click.Path(file_okay=False),
        help="Model directory written by `nmt train`. Repeat it to decode with an ensemble "
        "(per-step probabilities averaged; the models must share vocabularies).",
    )(command)


_DECODE_PRECISION = click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="float32",
    show_default=True,
    help="Arithmetic to decode in; auto = mixed_bfloat16 on CPUs with bfloat16 units "
    "(AVX512-BF16/AMX), mixed_float16 on a GPU, else float32.",
)


def _shortlist_options(command):
    """--shortlist/--no-shortlist, --shortlist-top-k, --shortlist-frequent (nmt.shortlist)."""
    for option in reversed([
        click.option("--shortlist/--no-shortlist", default=None,
                     help="Decode over a vocabulary shortlist: MODEL/shortlist.npz, made by "
                     "`nmt shortlist` [default: decode.shortlist, off]."),
        click.option("--shortlist-top-k", type=click.IntRange(min=1),
                     help="Targets per source piece (decode.shortlist_top_k); implies "
                     "--shortlist."),
        click.option("--shortlist-frequent", type=click.IntRange(min=0),
                     help="Most frequent target pieces always kept "
                     "(decode.shortlist_frequent); implies --shortlist."),
    ]):  # fmt: skip
        command = option(command)
    return command


@cli.command("translate")
@click.argument("input_path", metavar="FILE", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "-o",
    "--output",
    "output_path",
    default="-",
    show_default=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Output file, - for stdout.",
)
@_ensemble_options
@click.option("--beam", "beam_size", type=click.IntRange(min=1), help="Beam size (config default).")
@click.option("--length-penalty", type=click.FloatRange(min=0.0), help="GNMT length penalty alpha.")
@click.option(
    "--n-best",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Hypotheses per input; above 1 each is written as `index ||| text ||| score`.",
)
@click.option("--batch-tokens", type=click.IntRange(min=1), help="Source tokens per batch.")
@click.option(
    "--min-length",
    type=click.IntRange(min=0),
    help="No output shorter than this many pieces (up to the maximum length); config default.",
)
@click.option("--with-scores", is_flag=True, help="Append ` ||| score` to each line.")
@click.option("--alignments", is_flag=True, help="Append ` ||| hard alignments` (src-tgt pieces).")
@click.option(
    "--plot-attention",
    "plot_dir",
    type=click.Path(file_okay=False),
    help="Write attention heatmaps (PNG) for --plot-lines into this directory.",
)
@click.option(
    "--plot-lines",
    default="1",
    show_default=True,
    help="Comma-separated 1-based input line numbers to plot.",
)
@_DECODE_PRECISION
@_shortlist_options
@click.option(
    "--prefix",
    help="Force every translation to start with this target text (included in the output).",
)
@click.option(
    "--prefix-file",
    type=click.Path(dir_okay=False, allow_dash=False),
    help="Like --prefix, one prefix per input line (an empty line: no prefix).",
)
@click.option(
    "--sampling-topk",
    type=click.IntRange(min=0),
    help="Sample each word from the K most probable (0: from all); 1 = greedy "
    "[default: decode.sampling_topk, 1]. Sampling decodes with beam 1.",
)
@click.option(
    "--sampling-temperature",
    type=click.FloatRange(min=0.0, min_open=True),
    help="Divide the log-probabilities by T before sampling (below 1: closer to greedy) "
    "[default: decode.sampling_temperature, 1].",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    help="Seed of the sampling: the same seed gives the same samples [default: random].",
)
@click.option("--quiet", is_flag=True, help="No progress and no summary on stderr.")
def translate_command(
    input_path,
    output_path,
    model_dirs,
    checkpoints,
    beam_size,
    length_penalty,
    n_best,
    batch_tokens,
    min_length,
    with_scores,
    alignments,
    plot_dir,
    plot_lines,
    precision,
    prefix,
    prefix_file,
    sampling_topk,
    sampling_temperature,
    seed,
    quiet,
    **shortlist,
):
    """Translate FILE (- for stdin): exactly one output line per input line.

    From stdin or a pipe to stdout, lines are translated and written as they arrive.
    Several --model or --checkpoint options decode with an ensemble of them.
    """
    try:
        lines = [int(x) for x in plot_lines.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(
            "expected comma-separated line numbers", param_hint="--plot-lines"
        ) from None
    if any(n < 1 for n in lines):
        raise click.BadParameter("line numbers start at 1", param_hint="--plot-lines")
    from nmt.translation_job import translate_file

    report = translate_file(
        model_dirs,
        input_path,
        output_path,
        checkpoint=checkpoints,
        beam_size=beam_size,
        length_penalty=length_penalty,
        n_best=n_best,
        batch_tokens=batch_tokens,
        min_length=min_length,
        with_scores=with_scores,
        alignments=alignments,
        plot_dir=plot_dir,
        plot_lines=lines,
        progress=not quiet,
        precision=precision,
        prefix=prefix,
        prefix_file=prefix_file,
        sampling_topk=sampling_topk,
        sampling_temperature=sampling_temperature,
        seed=seed,
        **shortlist,
    )
    if output_path != "-" and not quiet:
        click.echo(
            f"translated {report.lines} lines in {report.seconds:.1f} s "
            f"({report.lines_per_second:.1f} lines/s after {report.startup_seconds:.1f} s of "
            f"start-up) -> {output_path}",
            err=True,
        )


def _print_scores(scores, as_json: bool) -> None:
    if as_json:
        import json

        click.echo(json.dumps({s.metric: s.to_dict() for s in scores}, indent=2))
    else:
        for s in scores:
            click.echo(f"{s.text}\n  signature: {s.signature}")


_METRICS = click.option(
    "--metrics", default="bleu,chrf", show_default=True, help="Comma-separated: bleu, chrf, ter."
)


def _metric_list(metrics: str) -> tuple[str, ...]:
    from nmt.evaluation import METRICS

    names = tuple(m.strip().lower() for m in metrics.split(",") if m.strip())
    if not names:
        raise click.BadParameter("give at least one metric", param_hint="--metrics")
    for m in names:
        if m not in METRICS:
            raise click.BadParameter(
                f"unknown metric {m!r} (choose from {', '.join(METRICS)})", param_hint="--metrics"
            )
    return names


@cli.command("evaluate")
@_ensemble_options
@click.option("--src", "source_path", required=True, type=click.Path(dir_okay=False))
@click.option("--ref", "reference_path", required=True, type=click.Path(dir_okay=False))
@click.option("--beam", "beam_size", type=click.IntRange(min=1))
@click.option("--length-penalty", type=click.FloatRange(min=0.0))
@click.option(
    "--hyp-out",
    "hypothesis_path",
    type=click.Path(dir_okay=False),
    help="Also write the translations here.",
)
@_METRICS
@_DECODE_PRECISION
@_shortlist_options
@click.option("--json", "as_json", is_flag=True, help="Print scores as JSON.")
def evaluate_command(
    model_dirs,
    checkpoints,
    source_path,
    reference_path,
    beam_size,
    length_penalty,
    hypothesis_path,
    metrics,
    precision,
    as_json,
    **shortlist,
):
    """Translate --src with a model (or an ensemble) and score it against --ref with sacreBLEU."""
    names = _metric_list(metrics)
    from nmt.evaluation import evaluate_model

    _print_scores(
        evaluate_model(
            model_dirs,
            source_path,
            reference_path,
            checkpoint=checkpoints,
            beam_size=beam_size,
            length_penalty=length_penalty,
            metrics=names,
            hypothesis_path=hypothesis_path,
            precision=precision,
            **shortlist,
        ),
        as_json,
    )


@cli.command("score")
@click.argument("hypothesis_path", metavar="HYP", type=click.Path(dir_okay=False))
@click.argument("reference_path", metavar="REF", type=click.Path(dir_okay=False))
@_METRICS
@click.option("--lowercase", "-lc", is_flag=True, help="Case-insensitive (sacreBLEU's -lc).")
@click.option("--json", "as_json", is_flag=True, help="Print scores as JSON.")
def score_command(hypothesis_path, reference_path, metrics, lowercase, as_json):
    """Score detokenized hypotheses HYP against references REF (sacreBLEU, cased, 13a)."""
    names = _metric_list(metrics)
    from nmt.evaluation import score_files

    _print_scores(score_files(hypothesis_path, reference_path, names, lowercase), as_json)


@cli.command("vocab")
@click.option("--source", "sources", multiple=True, type=click.Path(dir_okay=False),
              help="Source training text (plain or .gz); repeatable.")  # fmt: skip
@click.option("--target", "targets", multiple=True, type=click.Path(dir_okay=False),
              help="Target training text (plain or .gz); repeatable.")  # fmt: skip
@click.option("--output", default="vocab", show_default=True, type=click.Path(file_okay=False),
              help="Directory for joint.model or source.model + target.model.")  # fmt: skip
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Take defaults from this config's vocab section and data.train_*.")  # fmt: skip
@click.option("--model-type", type=click.Choice(["unigram", "bpe"]))
@click.option("--size", type=int, help="Pieces per model (config default 8000).")
@click.option("--character-coverage", type=float)
@click.option("--joint/--separate", default=None, help="One shared model or one per side.")
@click.option("--seed", type=int)
@click.option("--input-sentence-size", type=int, help="Sentences sampled for training; 0 = all.")
def vocab_command(sources, targets, output, config_path, model_type, size, character_coverage,
                  joint, seed, input_sentence_size):  # fmt: skip
    """Train SentencePiece model(s) with nmt's special ids (pad 0, unk 1, bos 2, eos 3)."""
    import dataclasses

    from nmt.config import Config, load_config

    config = load_config(config_path) if config_path else Config()
    given = {"model_type": model_type, "size": size, "character_coverage": character_coverage,
             "joint": joint, "seed": seed, "input_sentence_size": input_sentence_size}  # fmt: skip
    vocab_config = dataclasses.replace(
        config.vocab, **{k: v for k, v in given.items() if v is not None}
    )
    dataclasses.replace(config, vocab=vocab_config).validate()
    sources = list(sources) or ([config.data.train_source] if config.data.train_source else [])
    targets = list(targets) or ([config.data.train_target] if config.data.train_target else [])
    if not sources or not targets:
        raise click.UsageError("give --source and --target (or a --config with data.train_*)")
    from nmt.vocab import train_vocab

    options = {"size": "--size {}", "character_coverage": "--character-coverage {}"}
    vocab = train_vocab(vocab_config, sources, targets, output, options=options)
    kind = f"{vocab_config.model_type}, seed {vocab_config.seed}"
    click.echo(f"wrote {vocab.source_model_path} ({vocab.source_size} pieces, {kind})")
    if not vocab.joint:
        click.echo(f"wrote {vocab.target_model_path} ({vocab.target_size} pieces, {kind})")


@cli.command("demo-data")
@click.option("--output", required=True, type=click.Path(file_okay=False),
              help="Directory for {train,dev,test}.{en,de,align} (align: word alignments, "
                   "Pharaoh i-j).")  # fmt: skip
@click.option("--seed", default=1234, show_default=True, type=int)
@click.option("--train", default=20_000, show_default=True, type=click.IntRange(min=0))
@click.option("--dev", default=500, show_default=True, type=click.IntRange(min=0))
@click.option("--test", default=500, show_default=True, type=click.IntRange(min=0))
def demo_data_command(output, seed, train, dev, test):
    """Write the built-in synthetic English -> German task (seeded, learnable in minutes)."""
    from nmt.demo_data import write_demo_data

    written = write_demo_data(output, seed=seed, train=train, dev=dev, test=test)
    counts = {"train": train, "dev": dev, "test": test}
    for name, path in written.items():
        click.echo(f"wrote {path} ({counts[name.split('.')[0]]} lines)")


@cli.command("export")
@click.option("--model", "model_dir", required=True, type=click.Path(file_okay=False))
@click.option(
    "--output",
    "export_base",
    required=True,
    type=click.Path(file_okay=False),
    help="Export base directory; the model is written to OUTPUT/N (TF Serving layout).",
)
@click.option("--version", type=click.IntRange(min=1), help="Version N (default: next free).")
@click.option("--checkpoint", default="best", show_default=True, help=_CHECKPOINT_HELP)
@click.option("--beam", "beam_size", type=click.IntRange(min=1), help="Beam size (config default).")
@click.option("--length-penalty", type=click.FloatRange(min=0.0), help="GNMT length penalty alpha.")
@click.option("--overwrite", is_flag=True, help="Replace an existing version directory.")
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="float32",
    show_default=True,
    help="Arithmetic of the exported graph wherever it is served (auto: this machine's choice).",
)
@_shortlist_options
def export_command(
    model_dir,
    export_base,
    version,
    checkpoint,
    beam_size,
    length_penalty,
    overwrite,
    precision,
    **shortlist,
):
    """Export a SavedModel (text in, text out, beam search inside) for TF Serving."""
    from nmt.export import export_model

    path = export_model(
        model_dir,
        export_base,
        version=version,
        checkpoint=checkpoint,
        beam_size=beam_size,
        length_penalty=length_penalty,
        overwrite=overwrite,
        precision=precision,
        **shortlist,
    )
    click.echo(str(path))


@cli.command("shortlist")
@click.option("--model", "model_dir", required=True, type=click.Path(file_okay=False),
              help="A model directory of `nmt train`; writes MODEL/shortlist.npz.")  # fmt: skip
@click.option("--source", type=click.Path(dir_okay=False),
              help="Source training text [default: the model's data.train_source].")  # fmt: skip
@click.option("--target", type=click.Path(dir_okay=False),
              help="Target training text [default: the model's data.train_target].")  # fmt: skip
@click.option("--top-k", default=100, show_default=True, type=click.IntRange(min=1),
              help="Targets kept per source piece (the most --shortlist-top-k).")  # fmt: skip
@click.option("--iterations", default=5, show_default=True, type=click.IntRange(min=1),
              help="EM iterations of IBM model 1.")  # fmt: skip
def shortlist_command(model_dir, source, target, top_k, iterations):
    """Learn a model's vocabulary shortlist (p(t|s) by IBM model 1) for --shortlist."""
    from nmt.shortlist import make_shortlist

    made = make_shortlist(
        model_dir, source=source, target=target, top_k=top_k, iterations=iterations
    )
    click.echo(f"wrote {made.path} ({made.pairs} pairs, {made.table.top_k} targets per source "
               f"piece, {made.seconds:.1f} s)")  # fmt: skip


def _model_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from nmt.serving.options import model_name_problem

    problem = model_name_problem(value)
    if problem is not None:
        raise click.UsageError(f"--model-name {value!r}: {problem}", ctx)
    return value


@cli.command("serve")
@click.option(
    "--export-dir",
    "export_base",
    required=True,
    type=click.Path(file_okay=False),
    help="Export base written by `nmt export` (holds versions 1/, 2/, ...).",
)
@click.option("--model-name", default=serve_options.DEFAULT_MODEL_NAME, show_default=True,
              callback=_model_name,
              help="Name in /v1/models/NAME (TF Serving's --model_name).")  # fmt: skip
@click.option("--port", default=serve_options.DEFAULT_PORT, show_default=True,
              type=click.IntRange(0, 65535))  # fmt: skip
@click.option("--host", default=serve_options.DEFAULT_HOST, show_default=True,
              help="Address to listen on.")  # fmt: skip
@click.option("--max-request-bytes", default=serve_options.DEFAULT_MAX_REQUEST_BYTES,
              show_default=True, type=click.IntRange(min=1),
              help="Larger request bodies get HTTP 413.")  # fmt: skip
@click.option("--max-batch-size", default=serve_options.DEFAULT_MAX_BATCH_SIZE,
              show_default=True, type=click.IntRange(min=1))  # fmt: skip
@click.option("--batch-timeout-ms", default=serve_options.DEFAULT_BATCH_TIMEOUT_MS,
              show_default=True, type=click.FloatRange(min=0.0),
              help="How long a batch waits for more requests.")  # fmt: skip
@click.option("--poll-seconds", "--file-system-poll-wait-seconds", "poll_seconds",
              default=serve_options.DEFAULT_POLL_SECONDS, show_default=True,
              type=click.FloatRange(min=0.0),
              help="How often the export base is checked for new versions (0: only at "
                   "start).")  # fmt: skip
@click.option("--all-versions", is_flag=True, help="Serve every version, not just the latest.")
@click.option("--quiet", is_flag=True, help="No access log on stderr.")
def serve_command(export_base, **options):
    """Serve an export over the TF Serving REST API until SIGTERM or Ctrl-C.

    A new version directory under the export base is served without a restart, and the
    one it replaces unloaded once idle. A page at / translates what you type.
    """
    from nmt.serve import serve

    serve(export_base, **options, ready=lambda message: click.echo(f"nmt serve: {message}"))
    click.echo("nmt serve: stopped", err=True)


@cli.command("train")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="YAML config; relative data paths in it are relative to the current directory.",
)
@click.option(
    "--model-dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Model directory: created, or resumed when it holds a model with the same config.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Override a config value (repeatable), e.g. --set train.max_steps=2000.",
)
@click.option("--precision", type=click.Choice(PRECISIONS), help="Overrides train.precision.")
@click.option("--jit", is_flag=True, help="XLA-compile the train step (train.jit).")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="CPU threads for TensorFlow (default: all cores); run trials side by side with it.",
)
def train_command(config_path, model_dir, overrides, precision, jit, threads):
    """Train a model, or resume training the one in --model-dir."""
    from nmt.config import load_config

    overrides = list(overrides)
    if precision:
        overrides.append(f"train.precision={precision}")
    if jit:
        overrides.append("train.jit=true")
    config = load_config(config_path, overrides)
    from nmt.training import train

    result = train(config, model_dir, threads=threads)
    if result.stop_reason == "interrupted":
        import shlex

        from nmt.interrupts import exit_code, signal_name

        again = ["nmt", "train", "--config", config_path, "--model-dir", model_dir]
        again += [a for o in overrides for a in ("--set", o)]
        click.echo(
            f"nmt: interrupted ({signal_name(result.signal)}) at step {result.step}; saved "
            f"{result.last_checkpoint}; resume with: {shlex.join(again)}",
            err=True,
        )
        click.get_current_context().exit(exit_code(result.signal))
    best = ""
    if result.best_bleu is not None:
        best = f"; best BLEU {result.best_bleu:.2f} at step {result.best_step}"
    click.echo(
        f"trained to step {result.step} ({result.stop_reason}); "
        f"last checkpoint {result.last_checkpoint}{best}"
    )


@cli.command("average")
@click.option(
    "--model",
    "model_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Model directory written by `nmt train`.",
)
@click.option(
    "--last", "last_n", required=True, type=click.IntRange(min=1), help="Checkpoints to average."
)
@click.option(
    "--output",
    type=click.Path(file_okay=False),
    help="Directory for the averaged checkpoint [default: MODEL/averaged].",
)
def average_command(model_dir, last_n, output):
    """Average the weights of the last N checkpoints into one checkpoint."""
    from nmt.averaging import average_checkpoints

    prefix = average_checkpoints(model_dir, last_n, output)
    click.echo(f"averaged the last {last_n} checkpoints -> {prefix}")
