"""Reads model checkpoints safely (the loader shared by the neural engines and scorers).

Accepted files: a training dict holding `state_dict` (the public Wav2Lip files, whose keys
carry DataParallel's `module.` prefix), a bare state dict, or a TorchScript archive. Pickles
are read with `weights_only=True`; one that needs arbitrary unpickling is refused unless the
operator trusts it, because unpickling can run any code the file's author chose.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from talkingface.errors import InvalidCheckpointError
from talkingface.neural.torch_runtime import require_torch

if TYPE_CHECKING:
    import torch

TRUST_HINT = (
    "set trust_checkpoint = true for this engine in the server settings "
    "(e.g. engines.wav2lip.trust_checkpoint) or pass --trust-checkpoint"
)
_PREFIX = "module."


def read_checkpoint(
    path: Path, *, trust: bool = False
) -> dict[str, torch.Tensor] | torch.jit.ScriptModule:
    """The state dict in `path` (prefix stripped), or the TorchScript module it holds."""
    torch = require_torch("Loading a model checkpoint")
    path = Path(path)
    if not path.is_file():
        raise _invalid(path, "the file does not exist or is not a regular file", "missing")
    if _is_torchscript(path):
        return _load_torchscript(torch, path)
    loaded = _load_pickle(torch, path, trust=trust)
    return _state_from(torch, path, loaded)


def load_into(
    module: torch.nn.Module,
    state: Mapping[str, torch.Tensor] | torch.jit.ScriptModule,
    *,
    what: str,
) -> None:
    """Copy `state` into `module`, refusing the first missing, unexpected or misshapen key."""
    torch = require_torch(what)
    if isinstance(state, torch.jit.ScriptModule):
        state = strip_prefix(state.state_dict())
    state = cast("Mapping[str, Any]", state)  # a ScriptModule was converted above
    expected = module.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise _mismatch(what, f"key {key!r} is missing", key=key, problem="missing_key")
        found = state[key]
        if not isinstance(found, torch.Tensor):
            raise _mismatch(what, f"{key!r} is not a tensor", key=key, problem="not_a_tensor")
        if tuple(found.shape) != tuple(tensor.shape):
            raise _mismatch(
                what,
                f"{key!r} has shape {list(found.shape)}, expected {list(tensor.shape)}",
                key=key,
                problem="shape_mismatch",
                found_shape=list(found.shape),
                expected_shape=list(tensor.shape),
            )
    for key in state:
        if key not in expected:
            raise _mismatch(what, f"unexpected key {key!r}", key=key, problem="unexpected_key")
    module.load_state_dict(dict(state), strict=True)


def strip_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    """`state` with DataParallel's `module.` prefix removed from every key that has it."""
    return {k.removeprefix(_PREFIX): v for k, v in state.items()}


def _is_torchscript(path: Path) -> bool:
    # torch.save archives hold `<name>/data.pkl`; TorchScript ones also hold `constants.pkl`
    # and the model's code under `<name>/code/`.
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(name.endswith("/constants.pkl") for name in names)


def _load_torchscript(torch: Any, path: Path) -> torch.jit.ScriptModule:  # Any: the module
    try:
        with warnings.catch_warnings():  # deprecated for new models; still how these ship
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError, OSError) as exc:
        raise _invalid(path, "the TorchScript archive cannot be read", "corrupt", exc) from exc


def _load_pickle(torch: Any, path: Path, *, trust: bool) -> object:  # Any: the torch module
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Unsupported global" in text:
            culprit = text.split("Unsupported global:", 1)[1].split(" was ", 1)[0].strip()
            raise InvalidCheckpointError(
                f"Checkpoint {path.name} holds Python objects ({culprit}) that only arbitrary "
                f"unpickling can load, which can run code from the file; if you trust its "
                f"source, {TRUST_HINT}.",
                details={"path": str(path), "problem": "untrusted_pickle", "global": culprit},
                cause=exc,
            ) from exc
        raise _invalid(path, "the safe loader cannot read it", "corrupt", exc) from exc
    except (RuntimeError, ValueError, KeyError, EOFError, OSError, AttributeError) as exc:
        raise _invalid(path, "it is truncated or not a PyTorch checkpoint", "corrupt", exc) from exc


def _state_from(torch: Any, path: Path, loaded: object) -> dict[str, torch.Tensor]:
    if isinstance(loaded, torch.nn.Module):  # a whole pickled model, loaded only when trusted
        loaded = loaded.state_dict()
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not loaded:
        raise _invalid(path, "it holds no state dict (nor a dict with 'state_dict')", "no_state")
    state = strip_prefix(loaded)
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise _invalid(path, f"its entry {key!r} is not a tensor", "not_a_state_dict")
    return state


def _invalid(
    path: Path, why: str, problem: str, cause: BaseException | None = None
) -> InvalidCheckpointError:
    return InvalidCheckpointError(
        f"Checkpoint {path.name} cannot be loaded: {why}; point the setting at a complete "
        "checkpoint file (a .pth state dict or a TorchScript .pt).",
        details={"path": str(path), "problem": problem},
        cause=cause,
    )


def _mismatch(what: str, why: str, **details: Any) -> InvalidCheckpointError:  # Any: JSON-safe
    return InvalidCheckpointError(
        f"The checkpoint does not fit the {what} architecture: {why}; use a checkpoint made "
        f"for {what}.",
        details=details,
    )
