"""A worker's per-process objects: made once while the settings stay, replaced when they change."""

from __future__ import annotations

from pydantic import BaseModel

from talkingface.per_configuration import OnePerConfiguration


class _Settings(BaseModel):
    bucket: str


def test_one_object_per_configuration_and_a_changed_one_replaces_it() -> None:
    made: list[str] = []

    def make(settings: _Settings) -> object:
        made.append(settings.bucket)
        return object()

    cache = OnePerConfiguration(make)
    first = cache.get(_Settings(bucket="a"))
    assert cache.get(_Settings(bucket="a")) is first  # equal settings, not the same instance
    other = cache.get(_Settings(bucket="b"))
    assert other is not first
    assert cache.get(_Settings(bucket="a")) is not first  # "a" was replaced, not kept beside
    assert made == ["a", "b", "a"]
