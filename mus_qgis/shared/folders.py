"""Folders the engine writes to (caches, stores, outputs): checked before the work, so that a
path that is a file or cannot be written gives one clear message instead of a traceback later."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

from .errors import MusError


def refuse_a_file(path: str | Path, what: str) -> Path:
    """``path`` unless it names a file where a folder belongs; ``what`` names it for the user."""
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise MusError(
            f"The {what} {folder} is a file, not a folder: choose a folder (or move the file)."
        )
    return folder


def writable_folder(path: str | Path, what: str) -> Path:
    """``path`` as a folder that exists and takes new files; ``what`` names it for the user."""
    folder = refuse_a_file(path, what)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MusError(
            f"The {what} {folder} cannot be created ({exc.strerror}): choose a folder you can "
            "write to."
        ) from None
    # A real write, not os.access: permissions are not the only reason (a read-only mount, an
    # immutable folder, a full disk, an administrator's account) a write is refused.
    probe = folder / f".mus-write-check-{uuid.uuid4().hex[:8]}"
    try:
        probe.write_bytes(b"")
    except OSError as exc:
        raise MusError(
            f"The {what} {folder} cannot be written to ({exc.strerror}): choose a folder you "
            "can write to. Nothing in it was changed."
        ) from None
    finally:
        if probe.exists():
            os.remove(probe)
    return folder


def folder_size(folder: Path) -> int:
    """Bytes of the files under a folder; links are not followed (a venv's python is one)."""
    total = 0
    for base, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(base, name)
            with contextlib.suppress(OSError):
                if not os.path.islink(path):
                    total += os.path.getsize(path)
    return total
