"""Readable errors for Python packages that the engine's Python lacks."""

from __future__ import annotations

import importlib
import re
import sys

from ..shared.resources import ENGINE_REQUIREMENTS

# Import name -> name on PyPI, where they differ.
_PYPI_NAMES = {"open_clip": "open_clip_torch", "PIL": "pillow", "sklearn": "scikit-learn"}


def _pinned(pypi_name: str) -> str:
    """The requirement line for a package as the engine pins it, or the bare name."""
    wanted = pypi_name.lower().replace("-", "_")
    for line in ENGINE_REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        spec = line.split("#", 1)[0].strip()
        match = re.match(r"([A-Za-z0-9_.\-]+)", spec)
        if match and match.group(1).lower().replace("-", "_") == wanted:
            return spec
    return pypi_name


def install_command(pypi_names: list[str]) -> str:
    """The command that installs packages into the Python running the engine (this one)."""
    specs = " ".join(f'"{_pinned(name)}"' for name in pypi_names)
    return f"{sys.executable} -m pip install {specs}"


def require(*modules: str) -> None:
    """Import each module or raise one :class:`MissingDependencyError` naming all that failed."""
    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(_PYPI_NAMES.get(module, module))
    if missing:
        from ..shared.errors import MissingDependencyError

        raise MissingDependencyError(missing, install_command(missing))
