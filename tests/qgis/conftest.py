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
