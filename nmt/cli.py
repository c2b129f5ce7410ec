"""The `nmt` command line. Commands are thin: parse, call one library function, print.

TensorFlow is imported lazily inside commands so that `nmt --help` stays fast. How errors
are reported (one line, exit codes) is nmt/cli_errors.py's; the options that several
commands share are in nmt/cli_options.py.
"""

from __future__ import annotations

import signal

import click

from nmt.cli_errors import Group
from nmt.cli_options import (
    beam_options,
    decode_precision_option,
    ensemble_options,
    metric_list,
    metrics_option,
    shortlist_options,
)
from nmt.precision import PRECISIONS
from nmt.serving import options as serve_options
from nmt.version import __version__


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
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
@ensemble_options
@beam_options
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
@decode_precision_option
@shortlist_options
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
def translate_command(input_path, output_path, model_dirs, checkpoints, plot_lines, quiet,
                      **options):  # fmt: skip
    """Translate FILE (- for stdin): exactly one output line per input line.

    From stdin or a pipe to stdout, lines are translated and written as they arrive.
    Several --model or --checkpoint options decode with an ensemble of them.
    """
    lines = _line_numbers(plot_lines)
    from nmt.translation_job import translate_file

    report = translate_file(model_dirs, input_path, output_path, checkpoint=checkpoints,
                            plot_lines=lines, progress=not quiet, **options)  # fmt: skip
    if output_path != "-" and not quiet:
        click.echo(
            f"translated {report.lines} lines in {report.seconds:.1f} s "
            f"({report.lines_per_second:.1f} lines/s after {report.startup_seconds:.1f} s of "
            f"start-up) -> {output_path}",
            err=True,
        )


def _line_numbers(text: str) -> list[int]:
    """--plot-lines: comma-separated 1-based line numbers (BadParameter if not)."""
    try:
        lines = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(
            "expected comma-separated line numbers", param_hint="--plot-lines"
        ) from None
    if any(n < 1 for n in lines):
        raise click.BadParameter("line numbers start at 1", param_hint="--plot-lines")
    return lines


def _print_scores(scores, as_json: bool) -> None:
    if as_json:
        import json

        click.echo(json.dumps({s.metric: s.to_dict() for s in scores}, indent=2))
    else:
        for s in scores:
            click.echo(f"{s.text}\n  signature: {s.signature}")


@cli.command("evaluate")
@ensemble_options
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
@metrics_option
@decode_precision_option
@shortlist_options
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
    names = metric_list(metrics)
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
@metrics_option
@click.option("--lowercase", "-lc", is_flag=True, help="Case-insensitive (sacreBLEU's -lc).")
@click.option("--json", "as_json", is_flag=True, help="Print scores as JSON.")
def score_command(hypothesis_path, reference_path, metrics, lowercase, as_json):
    """Score detokenized hypotheses HYP against references REF (sacreBLEU, cased, 13a)."""
    names = metric_list(metrics)
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
@beam_options
@click.option("--overwrite", is_flag=True, help="Replace an existing version directory.")
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="float32",
    show_default=True,
    help="Arithmetic of the exported graph wherever it is served (auto: this machine's choice).",
)
@shortlist_options
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


if __name__ == "__main__":  # `python -m nmt.cli`, the same as `python -m nmt`
    cli(prog_name="nmt")
