"""mus:fetchpanoramas through processing.run, against fake services and real local photos."""

from __future__ import annotations

import csv

import pytest
from qgis import processing
from qgis.core import (
    QgsApplication,
    QgsProcessingException,
    QgsProject,
    QgsVectorLayer,
)

from tests.conftest import IMAGES, TINY_MODEL_CONFIG
from tests.fakes.imagery_services import GOOD_KEY, GOOD_TOKEN, FakeImageryServices, grid_images
from tests.qgis.helpers import RecordingFeedback, auth_config, point_layer

ALG = "mus:fetchpanoramas"
SECRET = "c2VjcmV0LXNpZ25pbmc="


def test_street_view_with_an_auth_config_and_nothing_secret_left(mus_provider, tmp_path):
    images = grid_images(4)
    coordinates = [(im.lon + 4e-5, im.lat) for im in images] + [
        (images[0].lon, images[0].lat),
        (12.0, 41.0),
    ]
    layer = point_layer(coordinates, with_empty=True)
    output = tmp_path / "fetched.gpkg"
    with FakeImageryServices(images) as fake:
        result = processing.run(
            ALG,
            {
                "INPUT": layer,
                "SOURCE": 0,
                "AUTH": auth_config(GOOD_KEY, SECRET),
                "SERVICE_URL": fake.streetview_url,
                "CACHE_FOLDER": str(tmp_path / "cache"),
                "OUTPUT": str(output),
            },
            feedback=RecordingFeedback(),
        )
        assert sum(fake.downloads.values()) == 4 * 4
    assert result["WITH_IMAGERY"] == 5 and result["WITHOUT_IMAGERY"] == 2
    assert result["SHARED"] == 1
    fetched = QgsVectorLayer(str(output), "fetched", "ogr")
    rows = list(fetched.getFeatures())
    assert len(rows) == 7  # no point dropped
    by_name = {row["name"]: row for row in rows}
    first = by_name["p0"]
    assert first["fetch_status"] == "ok" and first["source"] == "streetview"
    assert first["image_id"] == "img00000" and first["captured"] == "2019-05-01"
    assert first["headings"] == "90;180;270;0" and len(first["image_paths"].split(";")) == 4
    assert first["licence"] and first["creator"] == "Google"
    assert by_name["p4"]["duplicate_of"] is not None
    assert by_name["p4"]["image_paths"] == first["image_paths"]
    assert by_name["p5"]["fetch_status"] == "no imagery"
    assert by_name["no geometry"]["fetch_status"] == "no geometry"
    every_value = " ".join(str(v) for row in rows for v in row.attributes())
    assert GOOD_KEY not in every_value and SECRET not in every_value
    project_file = tmp_path / "project.qgs"
    project = QgsProject()
    assert project.addMapLayer(fetched)
    assert project.write(str(project_file))
    text = project_file.read_text(encoding="utf-8")
    assert GOOD_KEY not in text and SECRET not in text


def test_refused_key_fails_at_once_with_a_clear_error(mus_provider, tmp_path):
    images = grid_images(30)
    with FakeImageryServices(images) as fake:
        with pytest.raises(QgsProcessingException, match="refused") as raised:
            processing.run(
                ALG,
                {
                    "INPUT": point_layer([(im.lon, im.lat) for im in images]),
                    "SOURCE": 1,
                    "AUTH": auth_config("MLY|wrong-token"),
                    "SERVICE_URL": fake.mapillary_url,
                    "CACHE_FOLDER": str(tmp_path),
                    "OUTPUT": "memory:",
                },
            )
        assert len(fake.requests) == 1
    assert "wrong-token" not in str(raised.value)


def test_mapillary_token_from_the_environment_for_headless_runs(
    mus_provider, tmp_path, monkeypatch
):
    monkeypatch.setenv("MUS_MAPILLARY_TOKEN", GOOD_TOKEN)
    images = grid_images(3)
    with FakeImageryServices(images) as fake:
        result = processing.run(
            ALG,
            {
                "INPUT": point_layer([(im.lon, im.lat) for im in images]),
                "SOURCE": 1,
                "VIEWS": 4,
                "SERVICE_URL": fake.mapillary_url,
                "CACHE_FOLDER": str(tmp_path),
                "OUTPUT": "memory:",
            },
        )
    layer = result["OUTPUT"]
    rows = list(layer.getFeatures())
    assert all(row["fetch_status"] == "ok" and row["is_panorama"] == 1 for row in rows)
    assert all(len(row["image_paths"].split(";")) == 1 for row in rows)
    assert rows[0]["image_heading"] == 30.0 and rows[0]["licence"] == "CC BY-SA 4.0"


def test_the_key_stored_from_service_keys_serves_when_none_is_chosen(
    mus_provider, tmp_path, monkeypatch
):
    from mus_qgis.processing.service_keys import KEYED_SERVICES, forget_key, store_key

    monkeypatch.delenv("MUS_MAPILLARY_TOKEN", raising=False)
    manager = QgsApplication.authManager()
    if not manager.masterPasswordIsSet():
        assert manager.setMasterPassword("mus-test-master", True)
    images = grid_images(2)
    parameters = {
        "INPUT": point_layer([(im.lon, im.lat) for im in images]),
        "SOURCE": 1,
        "VIEWS": 4,
        "CACHE_FOLDER": str(tmp_path),
        "OUTPUT": "memory:",
    }
    with FakeImageryServices(images) as fake:
        parameters["SERVICE_URL"] = fake.mapillary_url
        with pytest.raises(QgsProcessingException, match="Service keys"):
            processing.run(ALG, parameters)  # none stored yet: the error says where to give one
        store_key(next(s for s in KEYED_SERVICES if s.source == "mapillary"), GOOD_TOKEN)
        try:
            feedback = RecordingFeedback()
            result = processing.run(ALG, parameters, feedback=feedback)
        finally:
            forget_key("mapillary")
    rows = list(result["OUTPUT"].getFeatures())
    assert [row["fetch_status"] for row in rows] == ["ok", "ok"]
    assert any("key stored in Service keys" in line for line in feedback.lines)
    assert GOOD_TOKEN not in "\n".join(feedback.lines)


def test_local_photos_then_classify_chain(mus_provider, tmp_path, tiny_checkpoint):
    with (IMAGES / "image_index.csv").open(encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if "arezzo" in row["path"]]
    layer = point_layer([(float(r["lon"]) + 2e-5, float(r["lat"])) for r in rows])
    fetched = processing.run(
        ALG,
        {
            "INPUT": layer,
            "SOURCE": 3,
            "PHOTO_FOLDER": str(IMAGES),
            "RADIUS": 10,
            "CACHE_FOLDER": str(tmp_path),
            "OUTPUT": "memory:",
        },
    )
    assert fetched["WITH_IMAGERY"] == len(rows)
    classified = processing.run(
        "mus:classifyclip",
        {
            "INPUT": fetched["OUTPUT"],
            "MODEL": str(TINY_MODEL_CONFIG),
            "CHECKPOINT": str(tiny_checkpoint),
            "DEVICE": 1,
            "CACHE_FOLDER": str(tmp_path),
            "OUTPUT": "memory:",
        },
    )
    assert classified["CLASSIFIED"] == len(rows)
    out = list(classified["OUTPUT"].getFeatures())
    assert all(row["clip_status"] == "ok" and row["fetch_status"] == "ok" for row in out)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"SOURCE": 3}, "folder of geotagged images"),
        ({"SOURCE": 0}, "needs a key"),
        ({"SOURCE": 2, "BEARING_FIELD": "azimuth"}, "no field 'azimuth' for the street bearing"),
    ],
)
def test_bad_settings_are_clear_errors(mus_provider, tmp_path, parameters, message, monkeypatch):
    monkeypatch.delenv("MUS_STREETVIEW_KEY", raising=False)
    with pytest.raises(QgsProcessingException, match=message):
        processing.run(
            ALG,
            {
                "INPUT": point_layer([(12.5, 41.9)]),
                **parameters,
                "CACHE_FOLDER": str(tmp_path),
                "OUTPUT": "memory:",
            },
        )


def test_a_layer_without_points_is_a_clear_error(mus_provider, tmp_path):
    with pytest.raises(QgsProcessingException, match="no points"):
        processing.run(
            ALG,
            {
                "INPUT": point_layer([]),
                "SOURCE": 2,
                "CACHE_FOLDER": str(tmp_path),
                "OUTPUT": "memory:",
            },
        )


def test_qgis_proxy_settings_reach_the_client():
    from qgis.core import QgsSettings

    from mus_qgis.processing.base import qgis_proxies

    settings = QgsSettings()
    keys = (
        "proxy/proxyEnabled",
        "proxy/proxyHost",
        "proxy/proxyPort",
        "proxy/proxyUser",
        "proxy/proxyPassword",
        "proxy/proxyType",
    )
    saved = {key: settings.value(key) for key in keys}
    try:
        settings.setValue("proxy/proxyEnabled", False)  # noqa: QGS202 (QgsSettings: no result)
        assert qgis_proxies() is None
        for key, value in zip(
            keys, (True, "proxy.example", "3128", "me", "p@ss", "HttpProxy"), strict=True
        ):
            settings.setValue(key, value)  # noqa: QGS202 (QgsSettings: no result)
        assert qgis_proxies() == {
            "http": "http://me:p%40ss@proxy.example:3128",
            "https": "http://me:p%40ss@proxy.example:3128",
        }
    finally:
        for key, value in saved.items():
            if value is None:
                settings.remove(key)
            else:
                settings.setValue(key, value)  # noqa: QGS202 (QgsSettings: no result)
