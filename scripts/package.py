"""Build dist/mus_qgis.zip, the archive QGIS's "Install from ZIP" accepts.

The archive holds one folder, mus_qgis/, with the plugin code plus the top-level files QGIS and the
plugin read at run time (metadata.txt, resources/, LICENSE, README.md, and docs/algorithms/, the
pages the dialogs' Help buttons open; the engine's requirements.txt is inside mus_qgis/engine).
With --stage DIR the same tree is also unpacked into DIR/mus_qgis, a folder to put on
QGIS_PLUGINPATH.

Uses only the standard library, so it runs with any Python 3.
"""

from __future__ import annotations

import argparse
import shutil
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "mus_qgis"
EXTRA = ("metadata.txt", "resources", "LICENSE", "README.md", "docs/algorithms")
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache"}


def plugin_files() -> list[tuple[Path, str]]:
    """(file on disk, name inside the archive) for everything the plugin ships."""
    files = []
    for source in [ROOT / PLUGIN, *(ROOT / name for name in EXTRA)]:
        paths = [source] if source.is_file() else sorted(source.rglob("*"))
        for path in paths:
            if path.is_file() and not SKIP_DIRS & set(path.relative_to(ROOT).parts):
                if path.suffix in (".pyc", ".pyo"):
                    continue
                inside = path.relative_to(ROOT / PLUGIN if source == ROOT / PLUGIN else ROOT)
                files.append((path, f"{PLUGIN}/{inside.as_posix()}"))
    return files


def build_zip(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, name in plugin_files():
            archive.write(path, name)
    return target


def stage(folder: Path) -> Path:
    plugin_dir = folder / PLUGIN
    if plugin_dir.exists():
        shutil.rmtree(plugin_dir)
    for path, name in plugin_files():
        destination = folder / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)
    return plugin_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip", type=Path, default=ROOT / "dist" / f"{PLUGIN}.zip")
    parser.add_argument("--stage", type=Path, help="also unpack the plugin into this folder")
    args = parser.parse_args()
    print(f"wrote {build_zip(args.zip)}")
    if args.stage:
        print(f"staged {stage(args.stage)}")


if __name__ == "__main__":
    main()
