"""A point's image paths as a layer field holds them: one path, or several joined by ``;``."""

from __future__ import annotations

import os

PATH_SEPARATOR = ";"


def parse_image_paths(value, base_folder: str | None = None) -> tuple[str, ...]:
    """The image paths in a field value: one path, or several joined by ``;``.

    Relative paths are taken relative to ``base_folder`` when one is given.
    """
    if value is None:
        return ()
    text = str(value).strip()
    if not text or text.upper() == "NULL":
        return ()
    paths = [part.strip() for part in text.split(PATH_SEPARATOR) if part.strip()]
    if base_folder:
        paths = [p if os.path.isabs(p) else os.path.join(base_folder, p) for p in paths]
    return tuple(paths)
