"""Imports PyTorch on demand, with an error that says how to install it (the `neural` extra)."""

from __future__ import annotations

import importlib
from types import ModuleType

from talkingface.errors import ConfigError


def require_torch(what: str) -> ModuleType:
    """The torch module; a clear CONFIG_INVALID when this install lacks it."""
    try:
        return importlib.import_module("torch")
    except ImportError as exc:
        raise ConfigError(
            f"{what} needs PyTorch, which this installation lacks; "
            "install the neural extra: pip install 'talkingface[neural]'.",
            details={"missing_package": "torch", "extra": "neural"},
            cause=exc,
        ) from exc
