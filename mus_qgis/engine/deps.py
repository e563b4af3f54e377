"""Readable errors for Python packages that QGIS's own Python may lack."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

# Import name -> name on PyPI, where they differ.
_PYPI_NAMES = {"open_clip": "open_clip_torch", "PIL": "pillow", "sklearn": "scikit-learn"}

# On Linux QGIS links the system's PROJ and GEOS; these packages' wheels bundle second copies that
# clash with them inside QGIS, so they are built from source against the system libraries there.
_BUILT_FROM_SOURCE_ON_LINUX = ("pyproj", "shapely")

_REQUIREMENTS_CANDIDATES = (
    Path(__file__).resolve().parents[1] / "requirements.txt",  # inside the installed plugin
    Path(__file__).resolve().parents[2] / "requirements.txt",  # in a source checkout
)


def _pinned(pypi_name: str) -> str:
    """The requirement line for a package as the project pins it, or the bare name."""
    for candidate in _REQUIREMENTS_CANDIDATES:
        if candidate.is_file():
            for line in candidate.read_text(encoding="utf-8").splitlines():
                spec = line.split("#", 1)[0].strip()
                match = re.match(r"([A-Za-z0-9_.\-]+)", spec)
                if match and match.group(1).lower().replace("-", "_") == pypi_name.lower().replace(
                    "-", "_"
                ):
                    return spec
            break
    return pypi_name


def install_command(pypi_names: list[str]) -> str:
    """The command that installs packages into the Python that QGIS runs, on this platform."""
    specs = " ".join(f'"{_pinned(name)}"' for name in pypi_names)
    if sys.platform.startswith("win"):
        return f"python -m pip install {specs}   (in the OSGeo4W Shell)"
    if sys.platform == "darwin":
        python = Path(sys.prefix) / "bin" / "python3"
        return f"{python} -m pip install --user {specs}"
    from_source = [name for name in pypi_names if name in _BUILT_FROM_SOURCE_ON_LINUX]
    no_binary = f"--no-binary {','.join(from_source)} " if from_source else ""
    return f"/usr/bin/python3 -m pip install --user --break-system-packages {no_binary}{specs}"


def require(*modules: str) -> None:
    """Import each module or raise one :class:`MissingDependencyError` naming all that failed."""
    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(_PYPI_NAMES.get(module, module))
    if missing:
        from .errors import MissingDependencyError

        raise MissingDependencyError(missing, install_command(missing))
