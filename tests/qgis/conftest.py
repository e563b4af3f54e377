"""QGIS tests: a headless QGIS (pytest-qgis) with Processing and the mus provider registered."""

from __future__ import annotations

import pytest
from qgis.core import QgsApplication


@pytest.fixture(scope="session")
def mus_provider(qgis_processing):
    from mus_qgis.processing.provider import MusProvider

    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("mus")
    if provider is None:
        provider = MusProvider()
        assert registry.addProvider(provider)
    return provider


@pytest.fixture
def load_results_headless(monkeypatch):
    """processing.runAndLoadResults with no desktop, as in qgis_process: QGIS 3.44's result
    loader hands ``iface.layerTreeView()`` to C++, and pytest-qgis's stand-in iface answers with
    a mock that the C++ side refuses. (3.22 and 3.40 do not ask the iface.)"""
    from processing.gui import Postprocessing

    monkeypatch.setattr(Postprocessing, "iface", None, raising=False)


@pytest.fixture
def tiny_parameters(tiny_checkpoint, tmp_path):
    """CLIP-classify's model parameters for the tiny random-weight model, on the CPU."""
    from tests.conftest import TINY_MODEL_CONFIG

    return {
        "MODEL": str(TINY_MODEL_CONFIG),
        "CHECKPOINT": str(tiny_checkpoint),
        "DEVICE": 1,
        "CACHE_FOLDER": str(tmp_path / "cache"),
    }
