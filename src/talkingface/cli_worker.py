"""`talkingface worker`: start this machine as a node of the Ray cluster the ray executor uses.

It wraps `ray start` (Ray's own node launcher) with the options a talkingface node needs, and
prints the exact command first, so an operator can run or adapt it by hand (systemd, a
container entry point). The actors come later: `talkingface serve --executor ray` places them
on the nodes, one per GPU, or `workers.count` CPU actors (docs/cluster-ray.md).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from talkingface.cli_errors import user_errors
from talkingface.errors import ConfigError

err = Console(stderr=True, soft_wrap=True, highlight=False)
DEFAULT_HEAD_PORT = 6379


def ray_start_command(
    address: str | None,
    *,
    head: bool = False,
    port: int = DEFAULT_HEAD_PORT,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    resources: dict[str, float] | None = None,
    block: bool = False,
    ray_bin: str = "ray",
) -> list[str]:
    """The `ray start` command line for a head node, or for a node joining `address`."""
    if head == (address is not None):
        raise ConfigError(
            "Give the address of the cluster's head node to join (talkingface worker "
            "10.0.0.5:6379), or --head to start the first node; not both, not neither.",
            details={"address": address, "head": head},
        )
    command = [ray_bin, "start"]
    command += ["--head", "--port", str(port)] if head else ["--address", str(address)]
    if num_cpus is not None:
        command += ["--num-cpus", str(num_cpus)]
    if num_gpus is not None:
        command += ["--num-gpus", str(num_gpus)]
    if resources:
        command += ["--resources", json.dumps(resources, separators=(",", ":"))]
    if block:
        command.append("--block")
    return command


def parse_resources(specs: list[str]) -> dict[str, float]:
    """NAME=AMOUNT pairs (--resource talkingface=2) as Ray's custom resources."""
    resources: dict[str, float] = {}
    for spec in specs:
        name, sep, amount = spec.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError(spec)
            resources[name.strip()] = float(amount)
        except ValueError as exc:
            raise ConfigError(
                f"Bad --resource {spec!r}: write NAME=AMOUNT, e.g. --resource talkingface=1.",
                details={"resource": spec},
            ) from exc
    return resources


def _ray_bin() -> str:
    """The `ray` launcher installed beside this Python (the ray extra), else on PATH."""
    beside = Path(sys.executable).parent / "ray"
    found = str(beside) if beside.exists() else shutil.which("ray")
    if found is None:
        raise ConfigError(
            "The `ray` command is not installed: pip install 'talkingface[ray]' on this node "
            "(the same Ray and Python versions as the rest of the cluster).",
            details={"command": "ray"},
        )
    return found


def worker(
    address: Annotated[
        str | None,
        typer.Argument(help="The head node to join, HOST:PORT (the GCS port, 6379 by default)."),
    ] = None,
    head: Annotated[
        bool, typer.Option("--head", help="Start the cluster's first (head) node here.")
    ] = False,
    port: Annotated[int, typer.Option(help="With --head: the port to listen on.")] = (
        DEFAULT_HEAD_PORT
    ),
    num_cpus: Annotated[
        int | None, typer.Option(help="CPUs this node offers (default: all Ray detects).")
    ] = None,
    num_gpus: Annotated[
        int | None, typer.Option(help="GPUs this node offers (default: all Ray detects).")
    ] = None,
    resource: Annotated[
        list[str] | None,
        typer.Option(
            help="A custom resource NAME=AMOUNT (repeatable); actors need those named in "
            "workers.ray_actor_resources, e.g. --resource talkingface=2."
        ),
    ] = None,
    block: Annotated[
        bool, typer.Option(help="Stay in the foreground until the node stops (systemd).")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the `ray start` command; run nothing.")
    ] = False,
) -> None:
    """Join this machine to the Ray cluster of `serve --executor ray` (wraps `ray start`)."""
    with user_errors():
        command = ray_start_command(
            address,
            head=head,
            port=port,
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            resources=parse_resources(resource or []),
            block=block,
            ray_bin="ray" if dry_run else _ray_bin(),
        )
    if dry_run:
        typer.echo(shlex.join(command))  # stdout: a script can capture it
        raise typer.Exit(0)
    err.print(f"running: {shlex.join(command)}")
    status = subprocess.run(command, check=False).returncode
    if status == 0 and not block:
        joined = f"the cluster at {address}" if address else f"a new cluster on port {port}"
        err.print(
            f"this node is part of {joined}; stop it with `ray stop`. Serve with: talkingface "
            f"serve --executor ray --ray-address {address or f'<this host>:{port}'}"
        )
    raise typer.Exit(status)
