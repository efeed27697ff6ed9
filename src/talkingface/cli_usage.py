"""How the `talkingface` entry point runs the Typer app: with --json on the command line, a
usage error (an unknown option, `--state bogus`) is a JSON error object on stdout too."""

from __future__ import annotations

import sys

import click
import typer

from talkingface.cli_errors import EXIT_USAGE, print_error
from talkingface.errors import ErrorCode


def run_app(app: typer.Typer, *, prog_name: str) -> None:
    """Run `app` on sys.argv and exit with its status (click's own error output unless the
    command line asks for --json)."""
    args = sys.argv[1:]
    if "--json" not in args:
        app(args=args, prog_name=prog_name)
        return
    try:
        status = app(args=args, prog_name=prog_name, standalone_mode=False)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx is not None else prog_name
        message = f"{exc.format_message()} (see `{command} --help`)"
        print_error(ErrorCode.INPUT_INVALID.value, message, stage=None, as_json=True)
        raise SystemExit(EXIT_USAGE) from None
    except click.ClickException as exc:
        print_error(ErrorCode.INPUT_INVALID.value, exc.format_message(), stage=None, as_json=True)
        raise SystemExit(exc.exit_code) from None
    except click.Abort:
        raise SystemExit(1) from None
    raise SystemExit(status if isinstance(status, int) else 0)
