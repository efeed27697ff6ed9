"""Options the client-side CLI commands share: the server, its API key, --json, --force."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from talkingface import vocabulary
from talkingface.client import DEFAULT_SERVER

# `-h` as well as `--help`, on every command and group (subcommands inherit it)
CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"]}  # Any: click's

ServerOpt = Annotated[
    str, typer.Option("--server", envvar="TALKINGFACE_SERVER", help="The talkingface server URL.")
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="TALKINGFACE_API_KEY",
        help="API key for a server with api.keys set.",
        show_envvar=True,
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print JSON (errors too: one object on stdout).")
]
ForceOpt = Annotated[bool, typer.Option("--force", "-f", help="Replace an existing output file.")]
# generate and submit render the same way: one declaration of each render option
LoopOpt = Annotated[
    vocabulary.LoopMode | None,
    typer.Option(help="Template shorter than the audio: pingpong (default) or restart."),
]
FacePolicyOpt = Annotated[
    vocabulary.FacePolicy | None,
    typer.Option(help="Several faces: largest (default) or strict (fail)."),
]

__all__ = ["CONTEXT_SETTINGS", "DEFAULT_SERVER", "ApiKeyOpt", "ForceOpt", "JsonOpt", "ServerOpt"]
