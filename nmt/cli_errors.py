"""How the `nmt` command line reports errors: one line on stderr and an exit code.

`Group` is the click group class of `nmt` (nmt/cli.py); `describe_error` the one line
for an error. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import signal

import click

from nmt.errors import NmtError


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


class Group(click.Group):
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
