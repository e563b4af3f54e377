"""Pixels a provider's terms do not let a study keep: deleted once their embedding is stored.

Google's Maps Platform terms restrict storing Street View imagery; the other sources' licences
let the images be kept. A source's rule is data (``keep_pixels`` in
resources/imagery/sources.json). Once CLIP-classify has stored a location's embedding, the
images of such a source are deleted from the plugin's imagery cache: the layer keeps the image
ids and the store keeps the embeddings, so another label set (with the same model and views) is
scored from the store without the images. Only files the fetch wrote (under
``imagery/<source>/`` of a cache folder) are ever deleted, never a user's own photos.
Plain Python: QGIS's process runs it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from .imagery_sources import imagery_source_infos


def pixels_to_delete(rows) -> list[str]:
    """The files to delete: for each (source name, image paths, classification status) whose
    source's terms ask it and whose embedding is stored (status "ok"), the fetched files."""
    infos = imagery_source_infos()
    out = []
    for source, paths, status in rows:
        info = infos.get(source or "")
        if info is None or info.keep_pixels or status != "ok":
            continue
        for path in paths:
            parts = Path(path).parts
            fetched = any(parts[i : i + 2] == ("imagery", source) for i in range(len(parts) - 1))
            if fetched and path not in out:
                out.append(path)
    return out


def delete_pixels(paths: list[str]) -> tuple[int, list[str]]:
    """Delete the files (and their image folders, once empty); returns how many went and the
    messages of those that could not be deleted."""
    deleted, failed = 0, []
    for path in paths:
        file = Path(path)
        try:
            file.unlink()
            deleted += 1
        except FileNotFoundError:
            continue  # already gone (a second run): nothing to do
        except OSError as exc:
            failed.append(f"{path}: {exc.strerror or exc}")
            continue
        with contextlib.suppress(OSError):  # its own folder, when nothing else is in it
            file.parent.rmdir()
    return deleted, failed
