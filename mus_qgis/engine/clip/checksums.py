"""The checksum each stored vector carries, in the SQLite store and in the Arrow shards alike."""

from __future__ import annotations

import hashlib


def vector_checksum(key: str, views: int, blob: bytes) -> str:
    """Ties a vector's bytes to its key and view count: an edited, swapped or cut vector fails."""
    digest = hashlib.blake2b(f"{key}\0{views}\0".encode(), digest_size=16)
    digest.update(blob)
    return digest.hexdigest()
