"""The shared checkpoint loader: every accepted form loads, and bad files fail clearly."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from talkingface.errors import ErrorCode, InvalidCheckpointError
from talkingface.neural.checkpoint_files import load_into, read_checkpoint
from tests.checkpoint_forms import FORMS, save_accepted_forms

torch = pytest.importorskip("torch")
# The test writes a TorchScript file the way the public ones were made.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script`:DeprecationWarning")


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(16, 2)
    ).eval()


def _outputs(model: torch.nn.Module) -> torch.Tensor:
    with torch.inference_mode():
        return model(torch.linspace(0, 1, 48).reshape(1, 3, 4, 4))


def _saved_forms(tmp_path: Path, model: torch.nn.Module) -> dict[str, Path]:
    return save_accepted_forms(tmp_path, model, torch.jit.script)


@pytest.mark.parametrize("form", FORMS)
def test_each_accepted_form_loads_into_a_fresh_model_with_identical_outputs(
    tmp_path: Path, form: str
) -> None:
    source = _model()
    path = _saved_forms(tmp_path, source)[form]
    fresh = _model(seed=1)
    assert not torch.equal(_outputs(fresh), _outputs(source))

    load_into(fresh, read_checkpoint(path), what="test net")

    assert torch.equal(_outputs(fresh), _outputs(source))


def test_torchscript_is_returned_as_a_script_module(tmp_path: Path) -> None:
    path = _saved_forms(tmp_path, _model())["torchscript"]
    assert isinstance(read_checkpoint(path), torch.jit.ScriptModule)


def test_a_renamed_key_is_named_in_the_error(tmp_path: Path) -> None:
    state = _model().state_dict()
    state["1.renamed_weight"] = state.pop("1.weight")
    path = tmp_path / "renamed.pth"
    torch.save({"state_dict": state}, path)

    with pytest.raises(InvalidCheckpointError) as caught:
        load_into(_model(), read_checkpoint(path), what="test net")

    assert caught.value.code is ErrorCode.INVALID_CHECKPOINT
    assert "'1.weight' is missing" in caught.value.message
    assert caught.value.details == {"key": "1.weight", "problem": "missing_key"}


def test_an_extra_key_and_a_wrong_shape_are_named(tmp_path: Path) -> None:
    state = _model().state_dict()
    with pytest.raises(InvalidCheckpointError, match=r"unexpected key 'extra\.bias'"):
        load_into(_model(), {**state, "extra.bias": torch.zeros(1)}, what="test net")
    state["3.weight"] = torch.zeros(2, 17)
    with pytest.raises(InvalidCheckpointError) as caught:
        load_into(_model(), state, what="test net")
    assert "'3.weight' has shape [2, 17], expected [2, 16]" in caught.value.message
    assert caught.value.details["problem"] == "shape_mismatch"


def test_a_pickle_needing_arbitrary_code_is_refused_unless_trusted(tmp_path: Path) -> None:
    path = tmp_path / "with_args.pth"
    state = _model().state_dict()
    torch.save({"state_dict": state, "args": argparse.Namespace(lr=1e-4)}, path)

    with pytest.raises(InvalidCheckpointError) as caught:
        read_checkpoint(path)
    assert caught.value.details["problem"] == "untrusted_pickle"
    assert "argparse.Namespace" in caught.value.message
    assert "trust_checkpoint" in caught.value.message
    assert "--trust-checkpoint" in caught.value.message

    trusted = read_checkpoint(path, trust=True)
    assert isinstance(trusted, dict) and trusted.keys() == state.keys()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing", "empty_dict"])
def test_a_damaged_or_missing_file_is_an_invalid_checkpoint(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "model.pth"
    torch.save({"state_dict": _model().state_dict()}, path)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint at all " * 40)
    elif damage == "missing":
        path = tmp_path / "absent.pth"
    else:
        torch.save({}, path)

    with pytest.raises(InvalidCheckpointError) as caught:
        read_checkpoint(path)

    assert caught.value.code is ErrorCode.INVALID_CHECKPOINT
    assert path.name in caught.value.message
