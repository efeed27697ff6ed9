"""How the `talkingface` entry point runs the Typer app: with --json on the command line, a
usage error (an unknown option, `--state bogus`) is a JSON error object on stdout too."""

from __future__ import annotations

import sys

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
    except typer.TyperException as exc:  # click's usage errors (typer vendors click)
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else prog_name
        hint = f"see `{command} --help`"
        code = ErrorCode.INPUT_INVALID.value
        print_error(code, exc.format_message(), hint=hint, stage=None, as_json=True)
        raise SystemExit(exc.exit_code or EXIT_USAGE) from None
    except typer.Abort:
        raise SystemExit(1) from None
    raise SystemExit(status if isinstance(status, int) else 0)
