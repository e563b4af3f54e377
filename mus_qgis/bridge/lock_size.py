"""How much a resolved engine (a pylock.toml) downloads: run by the new environment's Python.

``python lock_size.py pylock.toml`` prints one JSON object: the number of packages, the bytes
of their files (the largest wheel where a package lists several, so the figure is an upper bound),
the largest packages, and the packages whose size neither the lock nor the server tells.

It runs in the engine environment being built (Python 3.11+, which reads TOML), never in QGIS's
Python, and imports nothing but the standard library: nothing is installed yet when it runs.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import tomllib

HEAD_TIMEOUT_S = 15


def _size_from_server(url: str) -> int | None:
    """A file's size where the index left it out of the lock (PyTorch's index lists none)."""
    if url.startswith("file:"):
        url = urllib.request.url2pathname(url[len("file:") :])
        return Path(url).stat().st_size if Path(url).is_file() else None
    try:
        request = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(request, timeout=HEAD_TIMEOUT_S) as answer:
            length = answer.headers.get("Content-Length")
    except (OSError, ValueError):
        return None
    return int(length) if length and length.isdigit() else None


def _file_size(entry: dict, lock_folder: Path) -> int | None:
    if isinstance(entry.get("size"), int):
        return entry["size"]
    if entry.get("path"):
        path = (lock_folder / entry["path"]).resolve()
        return path.stat().st_size if path.is_file() else None
    if entry.get("url"):
        return _size_from_server(entry["url"])
    return None


def download_size(lock_file: Path) -> dict:
    lock = tomllib.loads(lock_file.read_text(encoding="utf-8"))
    total, unknown, sizes = 0, [], []
    for package in lock.get("packages", []):
        files = package.get("wheels") or ([package["sdist"]] if package.get("sdist") else [])
        known = [s for s in (_file_size(f, lock_file.parent) for f in files) if s is not None]
        if files and not known:
            unknown.append(package["name"])
            continue
        size = max(known, default=0)
        total += size
        sizes.append((size, package["name"], package.get("version", "")))
    sizes.sort(reverse=True)
    return {
        "packages": len(lock.get("packages", [])),
        "bytes": total,
        "largest": [[name, version, size] for size, name, version in sizes[:5]],
        "unknown": unknown,
    }


if __name__ == "__main__":
    print(json.dumps(download_size(Path(sys.argv[1]))))
