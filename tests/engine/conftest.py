"""Engine tests run without QGIS: importing qgis or Qt from here on fails loudly. And the
fixtures of the engine set-up's tests: what the internet would serve, from 127.0.0.1."""

import os
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

for _name in ("qgis", "PyQt5", "PyQt6", "sip"):
    sys.modules[_name] = None  # type: ignore[assignment]


# The environment `make install` set up with uv (the Makefile's ENGINE): its tools folder keeps
# the real uv wheel of this machine, verified against resources/engine/uv.json.
MAKE_ENGINE = ROOT / ".engine"


@pytest.fixture(scope="session")
def real_uv_wheel() -> Path:
    wheels = sorted((MAKE_ENGINE / "tools").glob("uv-*/uv-*.whl"))
    assert wheels, f"No uv wheel under {MAKE_ENGINE / 'tools'}: run `make install` first."
    return wheels[-1]


@pytest.fixture(scope="session")
def shared_uv_cache() -> str:
    """uv's cache `make install` filled: a set-up here installs the engine without downloading
    it again (uv's cache is keyed by index, so the tests use the same index as make)."""
    return os.environ.get("MUS_UV_CACHE_DIR") or str(Path.home() / ".cache" / "mus_qgis" / "uv")


@pytest.fixture(scope="session")
def standin_python(tmp_path_factory):
    """python-build-standalone's archive of this machine's Python, and its downloads entry."""
    from tests.fakes.setup_services import standin_python_archive

    return standin_python_archive(tmp_path_factory.mktemp("pbs"))


@pytest.fixture
def setup_services(standin_python, real_uv_wheel):
    """The stand-in server, serving the real uv wheel and the stand-in Python."""
    from tests.fakes.setup_services import FakeSetupServices

    archive, entries = standin_python
    services = FakeSetupServices(archive, entries)
    services.add("uv", real_uv_wheel.name, real_uv_wheel.read_bytes())
    services.find_links[real_uv_wheel.name] = real_uv_wheel.read_bytes()
    services.start()
    yield services
    services.stop()
