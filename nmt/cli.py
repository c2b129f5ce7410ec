"""The `nmt` command line. Commands are thin: parse, call one library function, print.

TensorFlow is imported lazily inside commands so that `nmt --help` stays fast.
"""

from __future__ import annotations

import sys

import click

from nmt.errors import NmtError
from nmt.version import __version__


class _Group(click.Group):
    """Turns user errors into one line on stderr and exit code 2 (`--debug` shows the trace)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (NmtError, OSError) as e:
            if ctx.params.get("debug"):
                raise
            click.echo(f"nmt: error: {e}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("nmt: interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nmt")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def cli(debug: bool) -> None:
    """Train, evaluate, translate with and export LSTM translation models."""


def main() -> None:  # pragma: no cover - console entry point alternative
    sys.exit(cli())


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
@click.option(
    "--model",
    "model_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Model directory written by `nmt train`.",
)
@click.option("--checkpoint", default="best", show_default=True, help=_CHECKPOINT_HELP)
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
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
def translate_command(
    input_path,
    output_path,
    model_dir,
    checkpoint,
    beam_size,
    length_penalty,
    n_best,
    batch_tokens,
    with_scores,
    alignments,
    plot_dir,
    plot_lines,
    quiet,
):
    """Translate FILE (- for stdin): exactly one output line per input line."""
    try:
        lines = [int(x) for x in plot_lines.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(
            "expected comma-separated line numbers", param_hint="--plot-lines"
        ) from None
    from nmt.translator import translate_file

    report = translate_file(
        model_dir,
        input_path,
        output_path,
        checkpoint=checkpoint,
        beam_size=beam_size,
        length_penalty=length_penalty,
        n_best=n_best,
        batch_tokens=batch_tokens,
        with_scores=with_scores,
        alignments=alignments,
        plot_dir=plot_dir,
        plot_lines=lines,
        progress=not quiet,
    )
    if output_path != "-" and not quiet:
        click.echo(
            f"translated {report.lines} lines in {report.seconds:.1f} s -> {output_path}", err=True
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
    for m in names:
        if m not in METRICS:
            raise click.BadParameter(
                f"unknown metric {m!r} (choose from {', '.join(METRICS)})", param_hint="--metrics"
            )
    return names


@cli.command("evaluate")
@click.option("--model", "model_dir", required=True, type=click.Path(file_okay=False))
@click.option("--src", "source_path", required=True, type=click.Path(dir_okay=False))
@click.option("--ref", "reference_path", required=True, type=click.Path(dir_okay=False))
@click.option("--checkpoint", default="best", show_default=True, help=_CHECKPOINT_HELP)
@click.option("--beam", "beam_size", type=click.IntRange(min=1))
@click.option("--length-penalty", type=click.FloatRange(min=0.0))
@click.option(
    "--hyp-out",
    "hypothesis_path",
    type=click.Path(dir_okay=False),
    help="Also write the translations here.",
)
@_METRICS
@click.option("--json", "as_json", is_flag=True, help="Print scores as JSON.")
def evaluate_command(
    model_dir,
    source_path,
    reference_path,
    checkpoint,
    beam_size,
    length_penalty,
    hypothesis_path,
    metrics,
    as_json,
):
    """Translate --src with a model and score it against --ref with sacreBLEU."""
    names = _metric_list(metrics)
    from nmt.evaluation import evaluate_model

    _print_scores(
        evaluate_model(
            model_dir,
            source_path,
            reference_path,
            checkpoint=checkpoint,
            beam_size=beam_size,
            length_penalty=length_penalty,
            metrics=names,
            hypothesis_path=hypothesis_path,
        ),
        as_json,
    )


@cli.command("score")
@click.argument("hypothesis_path", metavar="HYP", type=click.Path(dir_okay=False))
@click.argument("reference_path", metavar="REF", type=click.Path(dir_okay=False))
@_METRICS
@click.option("--json", "as_json", is_flag=True, help="Print scores as JSON.")
def score_command(hypothesis_path, reference_path, metrics, as_json):
    """Score detokenized hypotheses HYP against references REF (sacreBLEU, cased, 13a)."""
    names = _metric_list(metrics)
    from nmt.evaluation import score_files

    _print_scores(score_files(hypothesis_path, reference_path, names), as_json)
