"""Options that several `nmt` commands share, as click decorators, and their checks.

`ensemble_options` (repeatable --model and --checkpoint: translate, evaluate), `beam_options`
(--beam and --length-penalty: translate, export), `decode_precision_option` (--precision to
decode in: translate, evaluate), `shortlist_options` (--shortlist and its sizes: translate,
evaluate, export), `metrics_option` and `metric_list` (--metrics: evaluate, score). Nothing
here imports TensorFlow.
"""

from __future__ import annotations

import click

from nmt.precision import PRECISIONS


def ensemble_options(command):
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


def beam_options(command):
    """--beam and --length-penalty (config defaults): translate, export."""
    command = click.option("--length-penalty", type=click.FloatRange(min=0.0),
                           help="GNMT length penalty alpha.")(command)  # fmt: skip
    return click.option("--beam", "beam_size", type=click.IntRange(min=1),
                        help="Beam size (config default).")(command)  # fmt: skip


decode_precision_option = click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="float32",
    show_default=True,
    help="Arithmetic to decode in; auto = mixed_bfloat16 on CPUs with bfloat16 units "
    "(AVX512-BF16/AMX), mixed_float16 on a GPU, else float32.",
)


def shortlist_options(command):
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


metrics_option = click.option(
    "--metrics", default="bleu,chrf", show_default=True, help="Comma-separated: bleu, chrf, ter."
)


def metric_list(metrics: str) -> tuple[str, ...]:
    """The names given to --metrics, each one of nmt.evaluation's (BadParameter if not)."""
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
