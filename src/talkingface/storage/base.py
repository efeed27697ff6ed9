"""⑥ Which storage a process uses, chosen once from `storage.url`: the data directory, or an
S3-compatible bucket (imported only then: boto3 is the optional `s3` extra)."""

from __future__ import annotations

from talkingface.config import Settings
from talkingface.storage.local import LocalStorage


def get_storage(settings: Settings) -> LocalStorage:
    """LocalStorage for the default, S3Storage (a LocalStorage plus the bucket) for s3://."""
    if settings.storage.url is None:
        return LocalStorage(settings.data_dir)
    from talkingface.storage.s3 import S3Storage

    return S3Storage(settings.data_dir, settings.storage)


def is_object_url(location: str) -> bool:
    """Whether a result location is an object in a bucket rather than a local path."""
    return location.startswith("s3://")
