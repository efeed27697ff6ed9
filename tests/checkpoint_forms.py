"""A model saved in every form users' checkpoints come in, for the loader tests.

- a training dict whose `state_dict` keys carry `module.` (the public Wav2Lip and SyncNet
  files were saved from DataParallel), with the optimizer state beside it;
- a bare state dict;
- a dict in torch's pre-1.6 (non-zip) format;
- TorchScript, made by `script` (torch.jit.script, or a trace for models it cannot script).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

FORMS = ("training_dict", "bare", "legacy_format", "torchscript")


def save_accepted_forms(
    root: Path, model: Any, script: Callable[[Any], Any]
) -> dict[str, Path]:  # Any: a torch module and a ScriptModule (torch is imported lazily)
    import torch

    state = model.state_dict()
    forms = {
        "training_dict": root / "train.pth",
        "bare": root / "bare.pth",
        "legacy_format": root / "legacy.pth",
        "torchscript": root / "scripted.pt",
    }
    prefixed = {f"module.{k}": v for k, v in state.items()}
    torch.save({"state_dict": prefixed, "global_step": 3, "optimizer": {}}, forms["training_dict"])
    torch.save(state, forms["bare"])
    torch.save({"state_dict": state}, forms["legacy_format"], _use_new_zipfile_serialization=False)
    script(model).save(str(forms["torchscript"]))
    return forms
