"""Readable errors for missing packages."""

import pytest

from mus_qgis.engine.deps import install_command, require
from mus_qgis.engine.errors import MissingDependencyError


def test_require_names_every_missing_package_and_the_install_command(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "osmnx", None)
    with pytest.raises(MissingDependencyError) as error:
        require("json", "osmnx", "mus_no_such_module_xyz")
    assert error.value.packages == ["osmnx", "mus_no_such_module_xyz"]
    message = str(error.value)
    assert "osmnx" in message and "pip install" in message
    assert '"osmnx==2.1.1"' in message  # the project's pin, from requirements.txt


def test_import_names_map_to_pypi_names():
    assert '"open_clip_torch==3.3.0"' in install_command(["open_clip_torch"])


def test_linux_builds_the_packages_that_share_qgis_libraries_from_source(monkeypatch):
    monkeypatch.setattr("sys.platform", "linux")
    command = install_command(["osmnx", "shapely", "pyproj"])
    assert "--no-binary shapely,pyproj " in command
    assert '"shapely==2.1.2"' in command
    assert "--no-binary" not in install_command(["osmnx"])


def test_require_passes_when_everything_imports():
    require("json", "shapely")
