"""Where the plugin's data files are, in a source checkout and in an installed plugin alike."""

from __future__ import annotations

import configparser
from functools import lru_cache
from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parents[1]
# What the engine's environment installs: read by its set-up (the bridge) and by the engine.
ENGINE_REQUIREMENTS = PLUGIN_DIR / "engine" / "requirements.txt"


def _first_existing(name: str) -> Path:
    # `make package` copies top-level files into the plugin folder; a checkout keeps them beside it.
    installed = PLUGIN_DIR / name
    return installed if installed.exists() else PLUGIN_DIR.parent / name


def resource_path(*parts: str) -> Path:
    """A path under the plugin's ``resources/`` folder."""
    return _first_existing("resources").joinpath(*parts)


def help_page_name(algorithm_name: str) -> str:
    """The file of an algorithm's help page in ``docs/algorithms``."""
    return f"{algorithm_name}.html"


def help_page(algorithm_name: str) -> Path:
    """An algorithm's help page (``docs/algorithms``, made by ``scripts/help_pages.py``):
    shipped with the plugin, so that Help works offline."""
    return _first_existing("docs") / "algorithms" / help_page_name(algorithm_name)


@lru_cache(maxsize=1)
def plugin_metadata() -> dict[str, str]:
    """The ``[general]`` section of metadata.txt."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(_first_existing("metadata.txt"), encoding="utf-8")
    return dict(parser["general"]) if parser.has_section("general") else {}


def plugin_version() -> str:
    return plugin_metadata().get("version", "unknown")
