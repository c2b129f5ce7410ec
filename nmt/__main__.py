"""`python -m nmt` is the `nmt` command."""

from nmt.cli import cli

cli(prog_name="nmt")
