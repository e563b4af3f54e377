"""Readable errors for missing packages."""

import sys

import pytest

from mus_qgis.engine.deps import install_command, require
from mus_qgis.shared.errors import MissingDependencyError


def test_require_names_every_missing_package_and_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "osmnx", None)
    with pytest.raises(MissingDependencyError) as error:
        require("json", "osmnx", "mus_no_such_module_xyz")
    assert error.value.packages == ["osmnx", "mus_no_such_module_xyz"]
    message = str(error.value)
    assert "Set up the engine" in message and "mus:setupengine" in message
    assert f'{sys.executable} -m pip install "osmnx==2.1.1"' in message  # the engine's pin


def test_import_names_map_to_pypi_names():
    assert '"open_clip_torch==3.3.0"' in install_command(["open_clip_torch"])
    assert "--no-binary" not in install_command(["shapely", "pyproj"])


def test_require_passes_when_everything_imports():
    require("json", "shapely")
