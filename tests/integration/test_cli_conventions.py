"""CLI conventions a user relies on without a server: --version, -h, completion, --force,
JSON errors, OUTPUT_INVALID before any work, SERVER_UNREACHABLE, choices checked by the CLI."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from talkingface.cli import app
from tests.integration.service_fixtures import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A per-test template cache, and the talkingface logger restored after the CLI set it up."""
    monkeypatch.setenv("TALKINGFACE_CACHE__DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TALKINGFACE_CONFIG", raising=False)
    monkeypatch.delenv("TALKINGFACE_SERVER", raising=False)
    logger = logging.getLogger("talkingface")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def _invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def _run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed entry point's code path (`python -m talkingface`), in a subprocess."""
    command = [sys.executable, "-m", "talkingface", *map(str, args)]
    environment = {**os.environ, **(env or {})}
    return subprocess.run(
        command, capture_output=True, text=True, env=environment, cwd=REPO_ROOT, timeout=120
    )


def _json_error(stdout: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(stdout)
    assert set(document) == {"error"}, document
    assert set(document["error"]) >= {"code", "message", "hint"}, document
    return document["error"]  # type: ignore[no-any-return]


def _unreachable() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens on a port just released


def test_version_prints_the_package_version() -> None:
    result = _invoke("--version")

    assert result.exit_code == 0
    assert result.stdout.strip() == f"talkingface {version('talkingface')}"


def _command_paths(group: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield prefix
    for name, command in getattr(group, "commands", {}).items():
        yield from _command_paths(command, (*prefix, name))


def test_every_command_answers_dash_h_like_dash_dash_help() -> None:
    paths = list(_command_paths(typer.main.get_command(app)))
    assert ("templates", "rm") in paths and ("jobs", "delete") in paths

    for path in paths:
        short, long = _invoke(*path, "-h"), _invoke(*path, "--help")
        assert short.exit_code == 0, (path, short.output)
        assert "Usage" in short.stdout and short.stdout == long.stdout, path


def test_shell_completion_is_installed_and_completes_commands_and_choices() -> None:
    # Typer picks the shell to print for from the process's ancestors: run it from bash, as a
    # user would, not from whatever runs pytest (make runs a recipe with quotes under sh).
    script = subprocess.run(
        [
            "bash",
            "-c",
            '"$0" -m talkingface --show-completion; status=$?; exit $status',
            sys.executable,
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    words = _run(
        env={
            "_TALKINGFACE_COMPLETE": "complete_bash",
            "COMP_WORDS": "talkingface jobs list --state ",
            "COMP_CWORD": "4",
        }
    )
    commands = _run(
        env={
            "_TALKINGFACE_COMPLETE": "complete_bash",
            "COMP_WORDS": "talkingface tem",
            "COMP_CWORD": "1",
        }
    )

    assert script.returncode == 0 and "_TALKINGFACE_COMPLETE" in script.stdout
    assert "--install-completion" in _invoke("--help").stdout
    assert words.stdout.split() == ["queued", "running", "succeeded", "failed", "canceled"]
    assert commands.stdout.split() == ["templates"]


def test_an_unknown_state_is_refused_by_the_cli_listing_the_valid_ones() -> None:
    text = _invoke("jobs", "list", "--state", "bogus", "--server", _unreachable())
    as_json = _run("jobs", "list", "--state", "bogus", "--json", "--server", _unreachable())

    assert text.exit_code == 2
    assert "queued" in text.output and "canceled" in text.output
    assert "SERVER_UNREACHABLE" not in text.output  # refused before any request
    assert as_json.returncode == 2 and as_json.stderr == ""
    error = _json_error(as_json.stdout)
    assert error["code"] == "INPUT_INVALID" and "--state" in error["message"]
    assert "succeeded" in error["message"] and "jobs list --help" in error["hint"]


def test_an_unreachable_server_is_named_with_a_hint_to_start_one() -> None:
    server = _unreachable()

    text = _invoke("jobs", "list", "--server", server)
    as_json = _invoke("stats", "--json", "--server", server)
    unknown_host = _invoke("jobs", "list", "--server", "http://no-such-host.invalid:8383")

    assert text.exit_code == 1
    line = text.stderr.strip()
    assert line.startswith("error SERVER_UNREACHABLE") and server in line
    assert "talkingface serve" in line and len(text.stderr.strip().splitlines()) == 1
    error = _json_error(as_json.stdout)
    assert error["code"] == "SERVER_UNREACHABLE" and server in error["message"]
    assert "talkingface serve" in error["hint"] and as_json.stderr == ""
    assert "SERVER_UNREACHABLE" in unknown_host.stderr and "no-such-host" in unknown_host.stderr


def test_submit_output_without_wait_is_an_error_not_ignored(
    speech_wav: Path, template_clip: Path, tmp_path: Path
) -> None:
    args = ("submit", "-a", speech_wav, "-v", template_clip, "-o", tmp_path / "r.mp4")

    text = _invoke(*args, "--server", _unreachable())
    as_json = _invoke(*args, "--json", "--server", _unreachable())

    assert text.exit_code == 2 and "needs --wait" in text.stderr
    assert "SERVER_UNREACHABLE" not in text.stderr  # nothing was submitted
    error = _json_error(as_json.stdout)
    assert as_json.exit_code == 2 and error["code"] == "INPUT_INVALID"


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ((), "either as -v/--video"),
        (("--template-id", "0" * 32, "-v", "x.mp4"), "either as -v/--video"),
        (("--template-id", "0" * 32, "--metadata", "no-equals"), "not KEY=VALUE"),
        (("--template-id", "0" * 32, "--label", "x" * 201), "keep it to 200"),
    ],
    ids=["no-template", "both", "bad-metadata", "long-label"],
)
def test_submit_refuses_bad_options_before_contacting_the_server(
    speech_wav: Path, extra: tuple[str, ...], says: str
) -> None:
    result = _invoke("submit", "-a", speech_wav, *extra, "--server", _unreachable())

    assert result.exit_code == 2, result.output
    assert "INPUT_INVALID" in result.stderr and says in result.stderr


def test_generate_errors_with_json_are_one_json_object_on_stdout(
    template_clip: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.wav"
    result = _invoke(
        "generate", "-a", missing, "-v", template_clip, "-o", tmp_path / "o.mp4", "--json"
    )

    assert result.exit_code == 2
    assert result.stderr == ""
    error = _json_error(result.stdout)
    assert error["code"] == "INPUT_NOT_FOUND" and "missing.wav" in error["message"]


def test_generate_does_not_overwrite_an_existing_output_without_force(
    speech_wav: Path, template_clip: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out.mp4"
    output.write_bytes(b"precious")
    args = ("generate", "-a", speech_wav, "-v", template_clip, "-o", output)

    refused = _invoke(*args)
    refused_json = _invoke(*args, "--json")
    forced = _invoke(*args, "--force")

    assert refused.exit_code == 2
    assert refused.stderr.startswith("error OUTPUT_INVALID") and "--force" in refused.stderr
    assert _json_error(refused_json.stdout)["hint"].startswith("pass --force")
    assert forced.exit_code == 0, forced.output
    assert output.read_bytes()[4:8] == b"ftyp"  # replaced by the MP4
    duration = r"(\d\.\d\d s|\d\.\d s|\d+ s|\d+ min( \d+ s)?)"  # with units
    summary = rf"^{duration}, 512x512 @ 25 fps, \d+ frames in {duration} \(real-time factor"
    assert re.search(summary, forced.stdout, re.M), forced.stdout


def test_demo_and_evaluate_do_not_overwrite_their_named_outputs(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    directory.mkdir()
    (directory / "result.mp4").write_bytes(b"earlier result")
    sheet = tmp_path / "sheet.png"
    sheet.write_bytes(b"earlier sheet")

    demo = _invoke("demo", "--dir", directory)
    evaluate = _invoke("evaluate", "--video", directory / "result.mp4", "--contact-sheet", sheet)

    assert demo.exit_code == 2 and "OUTPUT_INVALID" in demo.stderr and "--force" in demo.stderr
    assert sorted(p.name for p in directory.iterdir()) == ["result.mp4"]  # no inputs made
    assert evaluate.exit_code == 2 and "OUTPUT_INVALID" in evaluate.stderr
    assert sheet.read_bytes() == b"earlier sheet"


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A read-only tmpfs (needs root to mount; the special file systems below do not)."""
    mount_point = tmp_path / "read-only"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr!r}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


OUTPUTS = {
    "proc": lambda tmp, ro: Path("/proc/result.mp4"),
    "sys": lambda tmp, ro: Path("/sys/result.mp4"),
    "dev-full": lambda tmp, ro: Path("/dev/full"),
    "directory": lambda tmp, ro: tmp,
    "read-only-mount": lambda tmp, ro: ro() / "result.mp4",
}


@pytest.mark.parametrize("where", list(OUTPUTS))
@pytest.mark.parametrize("command", ["generate", "submit", "demo"])
def test_an_unwritable_output_fails_with_output_invalid_before_any_work(
    request: pytest.FixtureRequest, tmp_path: Path, command: str, where: str
) -> None:
    speech_wav: Path = request.getfixturevalue("speech_wav")
    template_clip: Path = request.getfixturevalue("template_clip")
    output = OUTPUTS[where](tmp_path, lambda: request.getfixturevalue("read_only_dir"))
    if command == "generate":
        args: tuple[str | Path, ...] = ("generate", "-a", speech_wav, "-v", template_clip)
        args += ("-o", output)
    elif command == "submit":  # refused before the (unreachable) server is even asked
        args = ("submit", "-a", speech_wav, "-v", template_clip, "--wait", "-o", output)
        args += ("--server", _unreachable())
    elif where == "directory":  # demo writes DIR/result.mp4: make that a folder
        (tmp_path / "demo" / "result.mp4").mkdir(parents=True)
        args = ("demo", "--dir", tmp_path / "demo")
    else:
        args = ("demo", "--dir", output.parent)

    result = _invoke(*args)

    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error OUTPUT_INVALID"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # no progress bar
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
