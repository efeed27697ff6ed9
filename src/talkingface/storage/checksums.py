"""⑥ A result's SHA-256: computed once by the worker, recorded on the job, sent on download
(`ETag`, `Repr-Digest`) and checked by the client."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

CHUNK_BYTES = 1 << 20


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def etag_of(sha256_hex: str) -> str:
    """A strong ETag naming the content: the quoted hex digest."""
    return f'"{sha256_hex}"'


def repr_digest_of(sha256_hex: str) -> str:
    """RFC 9530 `Repr-Digest` for the whole representation: `sha-256=:<base64>:`."""
    return f"sha-256=:{base64.b64encode(bytes.fromhex(sha256_hex)).decode()}:"


def sha256_from_repr_digest(header: str | None) -> str | None:
    """The hex SHA-256 in a `Repr-Digest` header, or None when it carries none."""
    for member in (header or "").split(","):
        name, _, value = member.strip().partition("=")
        if name.strip().lower() == "sha-256" and value.startswith(":") and value.endswith(":"):
            try:
                return base64.b64decode(value[1:-1], validate=True).hex()
            except ValueError:
                return None
    return None


def digest_headers(sha256_hex: str | None) -> dict[str, str]:
    """ETag and Repr-Digest for a result whose checksum is known (none otherwise)."""
    if sha256_hex is None:
        return {}
    return {"etag": etag_of(sha256_hex), "repr-digest": repr_digest_of(sha256_hex)}


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 §13.1.2 weak comparison of an If-None-Match list (or `*`) with our ETag."""
    if if_none_match is None:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False
