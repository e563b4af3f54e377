"""Where a fetched image lives in a source's cache folder."""

from __future__ import annotations

import hashlib


def image_folder_name(image_id: str) -> str:
    """A folder name for an image id (ids of local photos are paths)."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in image_id)[-80:]
    return (
        cleaned
        if cleaned == image_id
        else f"{cleaned}-{hashlib.sha1(image_id.encode()).hexdigest()[:8]}"
    )
