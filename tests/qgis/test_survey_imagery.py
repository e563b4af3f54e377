"""mus:surveyimagery, and mus:fetchpanoramas across sources by date, through processing.run
against fake services that hold several providers' images from several years."""

from __future__ import annotations

from datetime import date

import pytest
from qgis import processing
from qgis.core import QgsProcessing, QgsProcessingException, QgsVectorLayer

from tests.fakes.imagery_services import GOOD_TOKEN, FakeImageryServices
from tests.fakes.imagery_study import expected_pick, served_within, study_world
from tests.qgis.helpers import RecordingFeedback, auth_config, point_layer


def _layer(points):
    return point_layer([(p.lon, p.lat) for p in points])


def _urls(fake, *names) -> str:
    urls = {
        "streetview": fake.streetview_url,
        "mapillary": fake.mapillary_url,
        "kartaview": fake.kartaview_url,
        "panoramax": fake.panoramax_url,
    }
    return " ".join(f"{name}={urls[name]}" for name in names)


def test_the_survey_writes_what_each_source_has_and_the_gaps(mus_provider, tmp_path, monkeypatch):
    monkeypatch.setenv("MUS_MAPILLARY_TOKEN", GOOD_TOKEN)
    monkeypatch.delenv("MUS_STREETVIEW_KEY", raising=False)
    points, images = study_world()
    report = tmp_path / "survey.html"
    with FakeImageryServices(images) as fake:
        result = processing.run(
            "mus:surveyimagery",
            {
                "INPUT": _layer(points),
                "SOURCES": [
                    0,
                    1,
                    2,
                    4,
                ],  # Street View (no key here), Mapillary, KartaView, Panoramax
                "SERVICE_URL": _urls(fake, "streetview", "mapillary", "kartaview", "panoramax"),
                "CACHE_FOLDER": str(tmp_path / "cache"),
                "OUTPUT": str(tmp_path / "survey.gpkg"),
                "GAPS": str(tmp_path / "gaps.gpkg"),
                "REPORT": str(report),
            },
            feedback=RecordingFeedback(),
        )
        assert sum(fake.downloads.values()) == 0  # metadata only
        assert fake.count("/maps/api/streetview") == 0  # no key: not asked
    rows = list(QgsVectorLayer(str(tmp_path / "survey.gpkg"), "survey", "ogr").getFeatures())
    assert len(rows) == len(points) * 4
    names = {f"p{i}": point for i, point in enumerate(points)}
    for row in rows:
        point = names[row["name"]]
        if row["source"] == "streetview":
            assert row["survey_status"].startswith("not tried: Google Street View needs a key")
            continue
        served = served_within(images, row["source"], point)
        assert row["images"] == len(served)
        assert row["years"] == (" ".join(sorted({image.captured[:4] for image in served})) or None)
    gaps = [
        f["name"] for f in QgsVectorLayer(str(tmp_path / "gaps.gpkg"), "g", "ogr").getFeatures()
    ]
    assert gaps == ["p6"] and result["GAP_COUNT"] == 1 and result["POINTS"] == 7
    assert result["REQUESTS"] == 7 * 3
    text = report.read_text(encoding="utf-8")
    assert "<h1>Imagery survey</h1>" in text and "<svg" in text
    assert "<tr><td>2016</td>" in text and "<tr><td>2019</td>" in text
    assert "Google Street View: not tried: Google Street View needs a key" in text
    assert text.count("fill='#d7191c'") == 1  # one gap on the map


def test_the_fetch_by_date_takes_each_point_the_image_nearest_in_time(
    mus_provider, tmp_path, monkeypatch
):
    monkeypatch.setenv("MUS_MAPILLARY_TOKEN", GOOD_TOKEN)
    points, images = study_world()
    cache = str(tmp_path / "cache")
    with FakeImageryServices(images) as fake:
        processing.run(
            "mus:surveyimagery",
            {
                "INPUT": _layer(points),
                "SOURCES": [1, 4],
                "SERVICE_URL": _urls(fake, "mapillary", "panoramax"),
                "CACHE_FOLDER": cache,
                "OUTPUT": QgsProcessing.TEMPORARY_OUTPUT,
                "GAPS": QgsProcessing.TEMPORARY_OUTPUT,
            },
        )
        listed = len(fake.requests)
        result = processing.run(
            "mus:fetchpanoramas",
            {
                "INPUT": _layer(points),
                "SOURCE": [1, 4],
                "TARGET_DATE": "2019-01-01",
                "SERVICE_URL": _urls(fake, "mapillary", "panoramax"),
                "CACHE_FOLDER": cache,
                "OUTPUT": str(tmp_path / "fetched.gpkg"),
            },
            feedback=RecordingFeedback(),
        )
        # The survey's lists served the pick: only image requests were made after it.
        later = fake.requests[listed:]
        assert all("/images" not in path and "/search" not in path for path, _, _ in later)
    rows = {
        f["name"]: f
        for f in QgsVectorLayer(str(tmp_path / "fetched.gpkg"), "f", "ogr").getFeatures()
    }
    for index, point in enumerate(points):
        row = rows[f"p{index}"]
        expected = expected_pick(point, images, ("mapillary", "panoramax"), date(2019, 1, 1))
        if expected is None:
            assert row["fetch_status"] == "no imagery"
            continue
        assert row["image_id"] == expected.image_id and row["fetch_status"] == "ok"
        assert "from 2019-01-01: the nearest in time of" in row["pick_reason"]
    assert rows["p0"]["source"] == "panoramax" and rows["p1"]["source"] == "mapillary"
    assert result["WITH_IMAGERY"] == 6


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"SOURCE": [1, 4], "SERVICE_URL": "http://127.0.0.1:9/x"}, "give each its address"),
        ({"SOURCE": [4], "SERVICE_URL": "mapillary=http://127.0.0.1:9/x"}, "not among the"),
        ({"SOURCE": [0, 1], "AUTH": "KEYED"}, "One key was chosen for 2 sources"),
    ],
)
def test_several_sources_with_one_address_or_one_key_are_clear_errors(
    mus_provider, tmp_path, parameters, message
):
    if parameters.get("AUTH") == "KEYED":
        parameters = {**parameters, "AUTH": auth_config("some-key")}
    with pytest.raises(QgsProcessingException, match=message):
        processing.run(
            "mus:fetchpanoramas",
            {
                "INPUT": point_layer([(11.88, 43.466)]),
                "CACHE_FOLDER": str(tmp_path),
                "OUTPUT": QgsProcessing.TEMPORARY_OUTPUT,
                **parameters,
            },
        )
