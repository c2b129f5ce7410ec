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
