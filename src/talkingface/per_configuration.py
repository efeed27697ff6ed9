"""One object per process for the current settings: a worker's S3 client, its receipt maker.

A worker process keeps one configuration for its life, so each cache holds one entry, and a
changed configuration (a test, a reload) replaces it rather than adding a second.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from pydantic import BaseModel

Config = TypeVar("Config", bound=BaseModel)
Made = TypeVar("Made")


class OnePerConfiguration(Generic[Config, Made]):
    """`make(settings)`, made once and kept while the settings stay the same."""

    def __init__(self, make: Callable[[Config], Made]) -> None:
        self._make = make
        self._made: dict[str, Made] = {}

    def get(self, settings: Config) -> Made:
        config = settings.model_dump_json()
        if config not in self._made:
            self._made.clear()
            self._made[config] = self._make(settings)
        return self._made[config]
