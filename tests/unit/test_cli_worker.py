"""`talkingface worker`: the `ray start` command it runs for a head node or a joining node."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from talkingface.cli import app
from talkingface.cli_worker import parse_resources, ray_start_command
from talkingface.errors import ConfigError


def test_a_joining_node_runs_ray_start_with_the_address_and_its_resources() -> None:
    command = ray_start_command(
        "10.0.0.5:6379", num_gpus=2, resources={"talkingface": 2.0}, block=True
    )
    assert command == [
        "ray",
        "start",
        "--address",
        "10.0.0.5:6379",
        "--num-gpus",
        "2",
        "--resources",
        '{"talkingface":2.0}',
        "--block",
    ]


def test_a_head_node_listens_on_its_port() -> None:
    assert ray_start_command(None, head=True, port=6400, num_cpus=4) == [
        "ray",
        "start",
        "--head",
        "--port",
        "6400",
        "--num-cpus",
        "4",
    ]


@pytest.mark.parametrize(("address", "head"), [(None, False), ("10.0.0.5:6379", True)])
def test_either_an_address_or_head_is_required(address: str | None, head: bool) -> None:
    with pytest.raises(ConfigError, match="--head"):
        ray_start_command(address, head=head)


def test_resources_are_name_equals_amount() -> None:
    assert parse_resources(["talkingface=2", "big_gpu=0.5"]) == {
        "talkingface": 2.0,
        "big_gpu": 0.5,
    }
    with pytest.raises(ConfigError, match="NAME=AMOUNT"):
        parse_resources(["talkingface"])


def test_dry_run_prints_the_command_on_stdout_and_runs_nothing() -> None:
    result = CliRunner().invoke(
        app, ["worker", "127.0.0.1:6379", "--resource", "talkingface=1", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        "ray start --address 127.0.0.1:6379 --resources '{\"talkingface\":1.0}'"
    )
