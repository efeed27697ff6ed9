"""Wav2Lip checkpoints: the public layout, every accepted form, and the failures users meet.

What the shared loader does with any network (damaged files, wrong shapes, extra keys) is
tested once, on a small one, in test_checkpoint_files.py; here, what is Wav2Lip's own: its
layout, the `module.` prefix of the public files, the setting names in the messages."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from talkingface.config import Wav2LipSettings, load_settings
from talkingface.engines.base import get_engine
from talkingface.errors import ConfigError, ErrorCode, InvalidCheckpointError
from tests.checkpoint_forms import save_accepted_forms

torch = pytest.importorskip("torch")

from talkingface.engines.wav2lip.inference import GeneratorRunner, load_generator  # noqa: E402
from talkingface.engines.wav2lip.model import Wav2LipGenerator  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:torch.*")


def _inputs(batch: int = 1) -> tuple[Any, Any]:
    generator = torch.Generator().manual_seed(7)
    mel = torch.rand(batch, 1, 80, 16, generator=generator) * 8 - 4
    faces = torch.rand(batch, 6, 96, 96, generator=generator)
    return mel, faces


def _outputs(model: Any) -> Any:
    with torch.inference_mode():
        return model(*_inputs())


def test_the_engine_crops_what_the_network_takes() -> None:
    from talkingface.engines.wav2lip import engine, model

    assert engine.FACE_SIZE_PX == model.FACE_SIZE_PX


def test_the_state_dict_has_the_public_layout() -> None:
    state = Wav2LipGenerator().state_dict()
    assert len(state) == 352
    assert (
        sum(t.numel() for k, t in state.items() if "num_batches" not in k and "running" not in k)
        == 36_298_035
    )
    assert tuple(state["face_encoder_blocks.0.0.conv_block.0.weight"].shape) == (16, 6, 7, 7)
    assert tuple(state["audio_encoder.0.conv_block.0.weight"].shape) == (32, 1, 3, 3)
    assert tuple(state["face_decoder_blocks.1.0.conv_block.0.weight"].shape) == (1024, 512, 3, 3)
    assert tuple(state["output_block.0.conv_block.1.running_var"].shape) == (32,)
    assert tuple(state["output_block.1.weight"].shape) == (3, 32, 1, 1)


@pytest.fixture(scope="module")
def saved_forms(tmp_path_factory: pytest.TempPathFactory, wav2lip_model: Any) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("forms")
    return save_accepted_forms(root, wav2lip_model, lambda m: torch.jit.trace(m, _inputs(1)))


def test_each_accepted_form_loads_and_gives_identical_outputs(
    saved_forms: dict[str, Path], wav2lip_model: Any
) -> None:
    expected = _outputs(wav2lip_model)
    assert tuple(expected.shape) == (1, 3, 96, 96)
    assert 0 < float(expected.min()) < float(expected.max()) < 1  # sigmoid output, not constant
    for form, path in saved_forms.items():
        loaded = load_generator(Wav2LipSettings(checkpoint=path))
        assert torch.equal(_outputs(loaded), expected), form


@pytest.mark.parametrize(("precision", "grey_levels"), [("fp32", 1), ("bf16", 6)])
def test_the_cpu_runner_matches_the_network(
    wav2lip_checkpoint: Path, wav2lip_model: Any, precision: str, grey_levels: int
) -> None:
    # fp32: batch norms folded into the convolutions, rounding only; bf16: 8-bit mantissas.
    settings = Wav2LipSettings(checkpoint=wav2lip_checkpoint, precision=precision, batch_size=1)
    runner = GeneratorRunner(load_generator(settings), settings)
    mel, faces = _inputs()
    faces_u8 = (faces * 255).round().to(torch.uint8)
    got = runner.run(mel[:, 0].numpy(), faces_u8.permute(0, 2, 3, 1).numpy())
    with torch.inference_mode():
        expected = wav2lip_model(mel, faces_u8.float() / 255).mul(255).round()
    difference = np.abs(got.astype(int) - expected.permute(0, 2, 3, 1).numpy().astype(int))
    assert got.shape == (1, 96, 96, 3) and got.dtype == np.uint8
    assert difference.max() <= grey_levels


def test_a_renamed_key_is_an_invalid_checkpoint_naming_it(
    tmp_path: Path, wav2lip_model: Any
) -> None:
    state = {f"module.{k}": v for k, v in wav2lip_model.state_dict().items()}
    state["module.audio_encoder.3.conv_block.0.weights"] = state.pop(
        "module.audio_encoder.3.conv_block.0.weight"
    )
    path = tmp_path / "renamed.pth"
    torch.save({"state_dict": state}, path)

    with pytest.raises(InvalidCheckpointError) as caught:
        load_generator(Wav2LipSettings(checkpoint=path))

    assert caught.value.code is ErrorCode.INVALID_CHECKPOINT
    assert "'audio_encoder.3.conv_block.0.weight' is missing" in caught.value.message
    assert caught.value.details["path"] == str(path)


def test_an_untrusted_pickle_is_refused_and_loads_once_trusted(
    tmp_path: Path, wav2lip_model: Any
) -> None:
    path = tmp_path / "with_hparams.pth"
    torch.save(
        {"state_dict": wav2lip_model.state_dict(), "hparams": argparse.Namespace(fps=25)}, path
    )

    with pytest.raises(InvalidCheckpointError) as caught:
        load_generator(Wav2LipSettings(checkpoint=path))
    assert caught.value.details["problem"] == "untrusted_pickle"
    assert "engines.wav2lip.trust_checkpoint" in caught.value.message

    trusted = load_generator(Wav2LipSettings(checkpoint=path, trust_checkpoint=True))
    assert torch.equal(trusted.output_block[1].weight, wav2lip_model.output_block[1].weight)


def test_without_a_configured_checkpoint_the_engine_says_which_setting_to_set() -> None:
    engine = get_engine("wav2lip", load_settings().engines)
    with pytest.raises(ConfigError) as caught:
        engine.load()
    assert "engines.wav2lip.checkpoint" in caught.value.message
    assert caught.value.details == {"setting": "engines.wav2lip.checkpoint"}


def test_a_cuda_device_that_is_absent_is_refused_not_replaced(wav2lip_checkpoint: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    settings = load_settings(
        engines={"wav2lip": {"checkpoint": str(wav2lip_checkpoint), "device": "cuda"}}
    )
    with pytest.raises(Exception) as caught:
        get_engine("wav2lip", settings.engines).load()
    assert getattr(caught.value, "code", None) is ErrorCode.DEVICE_UNAVAILABLE
