"""How every CLI command ends on failure: one clear error line and an exit status, no traceback.

cli.py and cli_service.py both wrap their commands in user_errors(); it lives here so that
neither has to import the other for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from talkingface.cli_signals import interrupts
from talkingface.errors import ErrorCode, TalkingFaceError, UnexpectedError

_err = Console(stderr=True, soft_wrap=True)

_INPUT_CODES = {
    ErrorCode.INPUT_NOT_FOUND,
    ErrorCode.INPUT_INVALID_MEDIA,
    ErrorCode.NO_FACE,
    ErrorCode.MULTIPLE_FACES,
    ErrorCode.INPUT_TOO_LARGE,
    ErrorCode.OUTPUT_INVALID,
    ErrorCode.INPUT_INVALID,
    ErrorCode.JOB_NOT_FOUND,
    ErrorCode.JOB_STATE,
    ErrorCode.PERMISSION_DENIED,
    ErrorCode.UNKNOWN_ENGINE,
    ErrorCode.CONFIG_INVALID,
}


@contextmanager
def user_errors() -> Iterator[None]:
    """Show our errors as one clear line (exit 2 for bad input, 1 otherwise), no traceback;
    after Ctrl-C or SIGTERM, exit 128 + the signal's number whatever the work did with it."""
    try:
        yield
        if interrupts.received:  # its KeyboardInterrupt was swallowed on the way
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        _exit_interrupted()
    except TalkingFaceError as exc:
        if interrupts.received:  # e.g. the render stopped on the cancel the signal set
            _exit_interrupted()
        _print_error(exc)
        raise typer.Exit(2 if exc.code in _INPUT_CODES else 1) from None
    except Exception as exc:
        if interrupts.received:
            _exit_interrupted()
        _err.print_exception(show_locals=False)
        _print_error(UnexpectedError.from_exception(exc))
        raise typer.Exit(1) from None


def _exit_interrupted() -> NoReturn:
    _err.print(f"[bold red]{interrupts.describe()}[/]", highlight=False)
    raise typer.Exit(interrupts.exit_code) from None


def _print_error(exc: TalkingFaceError) -> None:
    """One line, never wrapped, markup-safe (messages contain brackets and file names)."""
    _err.print(f"[bold red]error[/] {escape(exc.one_line())}", highlight=False, soft_wrap=True)
