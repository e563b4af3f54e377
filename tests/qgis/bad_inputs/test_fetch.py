"""Bad inputs to mus:fetchpanoramas: each a clear error before any request, or a per-point
status; an estimate asks nothing; nothing fetched before is lost."""

from __future__ import annotations

import pytest
from qgis import processing
from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsGeometry,
    QgsPointXY,
    QgsProcessingException,
    QgsProject,
    QgsVectorLayer,
)

from tests.fakes.imagery_services import FakeImageryServices, grid_images
from tests.qgis.helpers import RecordingFeedback, auth_config, point_layer

ALG = "mus:fetchpanoramas"
STREETVIEW, MAPILLARY, KARTAVIEW, LOCAL, PANORAMAX = range(5)


def fetch(parameters: dict, feedback=None):
    return processing.run(ALG, parameters, feedback=feedback or RecordingFeedback())


def near(images, count):
    return point_layer([(im.lon + 4e-5, im.lat) for im in images[:count]])


def from_kartaview(layer, images, cache, feedback=None, **extra) -> dict:
    """Fetch for ``layer`` from a fake KartaView serving ``images``; ``extra`` parameters win."""
    with FakeImageryServices(images) as fake:
        parameters = {
            "INPUT": layer,
            "SOURCE": KARTAVIEW,
            "SERVICE_URL": fake.kartaview_url,
            "CACHE_FOLDER": str(cache),
            "OUTPUT": "memory:",
        }
        return fetch({**parameters, **extra}, feedback)


# -- errors before any request ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"SOURCE": STREETVIEW, "AUTH": "zzzzzzz"}, "no authentication configuration zzzzzzz"),
        ({"SOURCE": MAPILLARY, "AUTH": "nope123"}, "set MUS_MAPILLARY_TOKEN"),
        ({"SOURCE": KARTAVIEW, "CACHE_FOLDER": "FILE"}, r"cache folder .* is a file"),
        (
            {"SOURCE": KARTAVIEW, "OUTPUT": "UNDER_A_FILE"},
            r"does not exist and cannot be made .*choose another place for the output",
        ),
        (
            {"SOURCE": KARTAVIEW, "DATE_FROM": "2024-01-01", "DATE_TO": "2020-01-01"},
            r"'Captured from' \(2024-01-01\) is after 'Captured until' \(2020-01-01\)",
        ),
        ({"SOURCE": LOCAL}, "Local photos need a folder of geotagged images"),
        ({"SOURCE": LOCAL, "PHOTO_FOLDER": "MISSING"}, "does not exist"),
    ],
)
def test_a_bad_setting_is_a_clear_error_before_any_request(
    mus_provider, tmp_path, monkeypatch, extra, message
):
    monkeypatch.delenv("MUS_STREETVIEW_KEY", raising=False)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine", encoding="utf-8")
    replacements = {
        "FILE": str(a_file),
        "UNDER_A_FILE": str(a_file / "out" / "fetched.gpkg"),
        "MISSING": str(tmp_path / "no such folder"),
    }
    extra = {k: replacements.get(v, v) if isinstance(v, str) else v for k, v in extra.items()}
    images = grid_images(2)
    with FakeImageryServices(images) as fake:
        urls = {STREETVIEW: fake.streetview_url, MAPILLARY: fake.mapillary_url}
        parameters = {
            "INPUT": near(images, 2),
            "SERVICE_URL": urls.get(extra["SOURCE"], fake.kartaview_url),
            "CACHE_FOLDER": str(tmp_path / "cache"),
            "OUTPUT": "memory:",
            **extra,
        }
        with pytest.raises(QgsProcessingException, match=message):
            fetch(parameters)
        assert fake.requests == []
    assert a_file.read_text(encoding="utf-8") == "mine"


def test_a_locked_authentication_database_names_the_master_password(
    mus_provider, tmp_path, monkeypatch
):
    auth_id = auth_config("AIzaLOCKED-key")
    manager = QgsApplication.authManager()
    manager.clearMasterPassword()
    try:
        with pytest.raises(QgsProcessingException, match=r"is the master password set\?"):
            fetch(
                {
                    "INPUT": point_layer([(12.5, 41.9)]),
                    "SOURCE": STREETVIEW,
                    "AUTH": auth_id,
                    "SERVICE_URL": "http://127.0.0.1:9",
                    "CACHE_FOLDER": str(tmp_path),
                    "OUTPUT": "memory:",
                }
            )
    finally:
        assert manager.setMasterPassword("mus-test-master", True)


# -- outputs ------------------------------------------------------------------------------------
def test_an_output_folder_that_does_not_exist_is_made_and_said(mus_provider, tmp_path):
    images = grid_images(2)
    output = tmp_path / "Città nuova" / "run 1" / "fetched.gpkg"
    feedback = RecordingFeedback()
    with FakeImageryServices(images) as fake:
        result = fetch(
            {
                "INPUT": near(images, 2),
                "SOURCE": KARTAVIEW,
                "SERVICE_URL": fake.kartaview_url,
                "CACHE_FOLDER": str(tmp_path / "cache"),
                "OUTPUT": str(output),
            },
            feedback,
        )
    assert result["WITH_IMAGERY"] == 2 and output.is_file()
    assert f"Made the output folder {output.parent}." in feedback.lines


def test_estimate_only_asks_nothing_and_reports_cost(mus_provider, tmp_path, monkeypatch):
    monkeypatch.delenv("MUS_STREETVIEW_KEY", raising=False)  # no key needed to learn the price
    images = grid_images(5)
    feedback = RecordingFeedback()
    with FakeImageryServices(images) as fake:
        result = fetch(
            {
                "INPUT": near(images, 5),
                "SOURCE": STREETVIEW,
                "SERVICE_URL": fake.streetview_url,
                "CACHE_FOLDER": str(tmp_path / "cache"),
                "ESTIMATE_ONLY": True,
                "PRICE_PER_1000": 10.0,
                "OUTPUT": "memory:",
            },
            feedback,
        )
        assert fake.requests == []
    assert result["ESTIMATED_REQUESTS"] == 5 + 5 * 4
    assert result["ESTIMATED_COST_USD"] == pytest.approx(20 * 10.0 / 1000)
    assert result["ESTIMATED_MEGABYTES"] > 0
    statuses = {row["fetch_status"] for row in result["OUTPUT"].getFeatures()}
    assert statuses == {"not tried: estimate only"}
    assert any("USD 0.20" in line for line in feedback.lines)


# -- what the layer says -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "id_values", [[101, 102, 103], ["via-a", "via-b", "via-c"], [1.5, 2.5, 3.5]]
)
def test_duplicate_of_names_the_point_by_the_layers_id(mus_provider, tmp_path, id_values):
    images = grid_images(2)
    kind = {int: "integer", str: "string", float: "double"}[type(id_values[0])]
    layer = QgsVectorLayer(f"Point?crs=EPSG:4326&field=id:{kind}", "pts", "memory")
    coordinates = [(images[0].lon + 4e-5, images[0].lat), (images[1].lon, images[1].lat)]
    coordinates.append((images[0].lon - 4e-5, images[0].lat))  # a second point on image 0
    features = []
    for value, (lon, lat) in zip(id_values, coordinates, strict=True):
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(lon, lat)))
        feature.setAttributes([value])
        features.append(feature)
    assert layer.dataProvider().addFeatures(features)[0]
    result = from_kartaview(layer, images, tmp_path)
    rows = {row["id"]: row for row in result["OUTPUT"].getFeatures()}
    expected = id_values[0] if not isinstance(id_values[0], float) else str(id_values[0])
    assert rows[id_values[2]]["duplicate_of"] == expected  # a decimal id is kept whole, as text
    assert not rows[id_values[0]]["duplicate_of"]  # NULL: it holds the image itself


def test_panoramax_needs_no_key_and_carries_each_instances_licence(mus_provider, tmp_path):
    images = grid_images(3)
    with FakeImageryServices(images) as fake:
        result = fetch(
            {
                "INPUT": near(images, 3),
                "SOURCE": PANORAMAX,
                "SERVICE_URL": fake.panoramax_url,
                "CACHE_FOLDER": str(tmp_path),
                "OUTPUT": "memory:",
            }
        )
    rows = list(result["OUTPUT"].getFeatures())
    assert [row["fetch_status"] for row in rows] == ["ok"] * 3
    assert {row["licence"] for row in rows} == {"etalab-2.0 (localhost)"}
    assert all(row["source"] == "panoramax" and row["is_panorama"] == 1 for row in rows)


def test_points_in_a_projected_crs_find_the_same_imagery(mus_provider, tmp_path):
    images = grid_images(3)
    layer = QgsVectorLayer("Point?crs=EPSG:32633&field=name:string", "utm", "memory")
    to_utm = QgsCoordinateTransform(
        QgsCoordinateReferenceSystem("EPSG:4326"),
        QgsCoordinateReferenceSystem("EPSG:32633"),
        QgsProject.instance(),
    )
    features = []
    for image in images:
        feature = QgsFeature(layer.fields())
        point = to_utm.transform(QgsPointXY(image.lon + 4e-5, image.lat))
        feature.setGeometry(QgsGeometry.fromPointXY(point))
        feature.setAttributes([image.image_id])
        features.append(feature)
    assert layer.dataProvider().addFeatures(features)[0]
    result = from_kartaview(layer, images, tmp_path)
    rows = list(result["OUTPUT"].getFeatures())
    assert [row["image_id"] for row in rows] == [row["name"] for row in rows]
    assert result["OUTPUT"].crs().authid() == "EPSG:32633"  # written back in the layer's CRS


def test_a_service_url_that_is_no_address_is_a_clear_error(mus_provider, tmp_path):
    with pytest.raises(QgsProcessingException, match=r"'not a web address' is not a web address"):
        fetch(
            {
                "INPUT": point_layer([(12.5, 41.9), (12.51, 41.9)]),
                "SOURCE": KARTAVIEW,
                "SERVICE_URL": "not a web address",
                "CACHE_FOLDER": str(tmp_path),
                "OUTPUT": "memory:",
            }
        )


def test_the_style_colours_a_status_by_its_kind_whatever_its_reason(mus_provider):
    from qgis.core import QgsExpression, QgsExpressionContext, QgsExpressionContextUtils

    from mus_qgis.processing.fetch_panoramas import STATUS_KIND, style_fetch_layer

    layer = QgsVectorLayer("Point?crs=EPSG:4326&field=fetch_status:string", "f", "memory")
    style_fetch_layer(layer)  # empty: every kind is in the legend
    kinds = {category.value() for category in layer.renderer().categories()}
    expression = QgsExpression(STATUS_KIND)
    for status, kind in [
        ("ok", "ok"),
        ("no imagery", "no imagery"),
        ("no imagery: 1 photo within 15 m unusable (empty file (0 bytes): 1)", "no imagery"),
        ("not tried: estimate only", "not tried"),
        ("error: HTTP 500 from https://example.org: oops", "error"),
    ]:
        feature = QgsFeature(layer.fields())
        feature.setAttributes([status])
        context = QgsExpressionContext(QgsExpressionContextUtils.globalProjectLayerScopes(layer))
        context.setFeature(feature)
        assert expression.evaluate(context) == kind and kind in kinds, status


def test_a_street_view_price_does_not_make_a_free_source_cost(mus_provider, tmp_path):
    images = grid_images(3)
    feedback = RecordingFeedback()
    with FakeImageryServices(images) as fake:
        result = fetch(
            {
                "INPUT": near(images, 3),
                "SOURCE": KARTAVIEW,
                "SERVICE_URL": fake.kartaview_url,
                "CACHE_FOLDER": str(tmp_path),
                "ESTIMATE_ONLY": True,
                "PRICE_PER_1000": 12.0,
                "OUTPUT": "memory:",
            },
            feedback,
        )
    assert result["ESTIMATED_COST_USD"] == 0.0 and result["ESTIMATED_REQUESTS"] == 6
    assert not [line for line in feedback.lines if "USD " in line]  # no price in the estimate


def test_the_fetch_legend_lists_only_the_kinds_of_status_present(mus_provider):
    from mus_qgis.processing.fetch_panoramas import style_fetch_layer

    layer = QgsVectorLayer("Point?crs=EPSG:4326&field=fetch_status:string", "f", "memory")
    features = []
    for status in ("ok", "no imagery: 1 photo within 15 m unusable (…)", "ok"):
        feature = QgsFeature(layer.fields())
        feature.setAttributes([status])
        features.append(feature)
    assert layer.dataProvider().addFeatures(features)[0]
    style_fetch_layer(layer)
    assert [c.value() for c in layer.renderer().categories()] == ["ok", "no imagery"]
