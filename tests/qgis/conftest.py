"""QGIS tests: a headless QGIS (pytest-qgis) with Processing and the mus provider registered."""

from __future__ import annotations

import gc

import pytest
from qgis.core import QgsApplication, QgsFeature, QgsGeometry, QgsPointXY, QgsVectorLayer

from tests.conftest import AREZZO_PHOTOS, PANORAMAS, TINY_MODEL_CONFIG


@pytest.fixture(scope="session")
def mus_provider(qgis_processing):
    """The mus provider, removed again before QGIS exits: unloading it lets go of what QGIS kept
    of the failed runs (their frames and the layers in them, see base.releasing_failures), while
    GDAL is still there to close their files."""
    from mus_qgis.processing.base import release_failed_runs
    from mus_qgis.processing.provider import MusProvider

    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("mus")
    added = provider is None
    if added:
        provider = MusProvider()
        assert registry.addProvider(provider)
    yield provider
    if added:
        assert registry.removeProvider(provider)
    release_failed_runs()
    gc.collect()  # what the released frames held in reference cycles


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


# The street inspector's tests (headless and desktop) share one classified layer.
FETCHED = (
    "Point?crs=EPSG:4326&field=pid:integer&field=image_paths:string&field=bearing:double"
    "&field=source:string&field=image_id:string&field=captured:string&field=creator:string"
    "&field=licence:string&field=fetch_status:string"
)


@pytest.fixture(scope="session")
def classified_path(mus_provider, tiny_checkpoint, tmp_path_factory):
    """Points as Fetch panoramas leaves them, classified by the tiny model into a GeoPackage."""
    folder = tmp_path_factory.mktemp("inspector")
    layer = QgsVectorLayer(FETCHED, "fetched", "memory")
    rows = [
        (f"{AREZZO_PHOTOS[0]};{AREZZO_PHOTOS[1]}", 0.0, "mapillary", "4711", "2016-05-01"),
        (str(PANORAMAS[0]), 45.0, "local", "", "2019-06-30"),
        (str(AREZZO_PHOTOS[2]), 90.0, "mapillary", "4712", "2017-03-02"),
        (str(AREZZO_PHOTOS[3]), 10.0, "mapillary", "4713", "2017-03-02"),
        (None, None, "", "", ""),
        (str(folder / "gone.jpg"), 0.0, "mapillary", "4714", "2018-01-01"),
    ]
    features = []
    for index, (paths, bearing, source, image_id, captured) in enumerate(rows):
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(11.88 + index * 1e-3, 43.467)))
        status = "ok" if paths else "no imagery: none within 50 m"
        creator, licence = ("ana", "CC BY-SA 4.0") if source == "mapillary" else ("", "")
        feature.setAttributes(
            [index, paths, bearing, source, image_id, captured, creator, licence, status]
        )
        features.append(feature)
    assert layer.dataProvider().addFeatures(features)[0]
    output = folder / "classified.gpkg"
    from qgis import processing

    processing.run(
        "mus:classifyclip",
        {
            "INPUT": layer,
            "LABEL_SET": 0,
            "MODEL": str(TINY_MODEL_CONFIG),
            "CHECKPOINT": str(tiny_checkpoint),
            "DEVICE": 1,
            "CACHE_FOLDER": str(folder / "cache"),
            "OUTPUT": str(output),
        },
    )
    return str(output)
