"""How every CLI command ends on failure: one clear error and an exit status, no traceback.

Without --json the error is one line on stderr: `error CODE [stage]: message (hint: …)`. With
--json it is one JSON object on stdout (where the command's JSON would have gone), shaped
like the API's errors: {"error": {"code", "message", "hint", "stage"}}. Exit 2 for a problem
with the input or the command line, 1 otherwise. cli.py and cli_service.py both wrap their
commands in user_errors(); it lives here so that neither has to import the other for it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from talkingface.cli_signals import interrupts
from talkingface.errors import ErrorCode, TalkingFaceError, UnexpectedError

_err = Console(stderr=True, soft_wrap=True)

EXIT_FAILED = 1
EXIT_USAGE = 2  # bad input or command line, as click exits on a usage error

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
    ErrorCode.AUTH_REQUIRED,
}
_INPUT_CODE_NAMES = {code.value for code in _INPUT_CODES} | {
    "TEMPLATE_NOT_FOUND",  # the server's template codes (they may be newer than this client)
    "TEMPLATE_IN_USE",
}

# What to do next, by code (the message says what is wrong); a server code the client does
# not know yet keys by its string.
HINTS: dict[str, str] = {
    "AUTH_REQUIRED": "set TALKINGFACE_API_KEY or --api-key",
    "SERVER_UNREACHABLE": "start one with `talkingface serve`, or pass --server URL "
    "(or set TALKINGFACE_SERVER)",
    "JOB_NOT_FOUND": "`talkingface jobs list` shows the jobs and their ids",
    "JOB_STATE": "`talkingface jobs show ID` shows the job's state",
    "TEMPLATE_NOT_FOUND": "`talkingface templates list` shows the templates and their ids",
    "TEMPLATE_IN_USE": "wait for the jobs that use it to finish, or delete them first",
    "QUEUE_FULL": "retry later",
    "DOWNLOADS_BUSY": "retry later",
    "INPUT_INVALID": "see the command's --help",
}


def error_object(code: str, message: str, *, hint: str | None, stage: str | None) -> dict[str, Any]:
    """The --json error document (Any: JSON values)."""
    return {"error": {"code": code, "message": message, "hint": hint, "stage": stage}}


@contextmanager
def user_errors(*, as_json: bool = False) -> Iterator[None]:
    """Show our errors as one clear line, or with `as_json` one JSON object on stdout (exit 2
    for bad input, 1 otherwise), no traceback; after Ctrl-C or SIGTERM, exit 128 + the
    signal's number whatever the work did with it."""
    try:
        yield
        if interrupts.received:  # its KeyboardInterrupt was swallowed on the way
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        _exit_interrupted()
    except TalkingFaceError as exc:
        if interrupts.received:  # e.g. the render stopped on the cancel the signal set
            _exit_interrupted()
        fail(exc, as_json=as_json)
    except Exception as exc:
        if interrupts.received:
            _exit_interrupted()
        if not as_json:
            _err.print_exception(show_locals=False)
        fail(UnexpectedError.from_exception(exc), as_json=as_json)


def fail(exc: TalkingFaceError, *, as_json: bool) -> NoReturn:
    """Report `exc` (see the module docstring) and exit with its status."""
    code = exc.code.value
    server_code = exc.details.get("server_code")  # a code newer than this client knows
    if isinstance(server_code, str):
        code = server_code
    stage = exc.stage.value if exc.stage else None
    hint = exc.details.get("hint")
    hint = hint if isinstance(hint, str) else HINTS.get(code)
    print_error(code, exc.message, hint=hint, stage=stage, as_json=as_json)
    raise typer.Exit(EXIT_USAGE if code in _INPUT_CODE_NAMES else EXIT_FAILED) from None


def print_error(
    code: str, message: str, *, hint: str | None, stage: str | None, as_json: bool
) -> None:
    if as_json:
        typer.echo(json.dumps(error_object(code, message, hint=hint, stage=stage)))
        return
    where = f" [{stage}]" if stage else ""
    tail = f" (hint: {hint})" if hint and hint not in message else ""
    line = f"{code}{where}: {message}{tail}"  # one line, never wrapped, markup-safe
    _err.print(f"[bold red]error[/] {escape(line)}", highlight=False, soft_wrap=True)


def _exit_interrupted() -> NoReturn:
    _err.print(f"[bold red]{interrupts.describe()}[/]", highlight=False)
    raise typer.Exit(interrupts.exit_code) from None
