"""A randomly initialised Wav2Lip generator and its checkpoint, built once per session.

Random weights paint noise, so tests check mechanics (loading, shapes, where pixels change),
never what the mouth looks like. torch is a dev dependency: these fixtures skip only where it
is not importable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

SEED = 1234


@pytest.fixture(scope="session")
def wav2lip_model() -> Any:  # Any: a Wav2LipGenerator (torch is imported lazily)
    torch = pytest.importorskip("torch")
    from talkingface.engines.wav2lip.model import Wav2LipGenerator

    torch.manual_seed(SEED)
    model = Wav2LipGenerator()
    for module in model.modules():  # trained-looking batch-norm statistics, not 0 and 1
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(scope="session")
def wav2lip_checkpoint(tmp_path_factory: pytest.TempPathFactory, wav2lip_model: Any) -> Path:
    """The public files' form: a training dict whose state_dict keys carry `module.`."""
    torch = pytest.importorskip("torch")
    path = tmp_path_factory.mktemp("wav2lip") / "wav2lip.pth"
    state = {f"module.{k}": v for k, v in wav2lip_model.state_dict().items()}
    torch.save({"state_dict": state, "global_step": 0, "global_epoch": 0}, path)
    return path
