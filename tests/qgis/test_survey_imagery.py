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


# CORINE Land Cover: its many labels split the shared photos even under random weights (the
# shorter sets give every photo the same first label).
LABEL_SET = 1


def _two_photos_labelled_apart(tiny_parameters) -> tuple[str, str]:
    """Two of the shared photos that the tiny model labels differently (found here, so the test
    holds whatever random weights this torch makes from the seed)."""
    from qgis.core import QgsFeature, QgsGeometry, QgsPointXY

    from tests.conftest import AREZZO_PHOTOS

    layer = QgsVectorLayer(
        "Point?crs=EPSG:4326&field=pid:integer&field=image_paths:string", "photos", "memory"
    )
    features = []
    for index, photo in enumerate(AREZZO_PHOTOS[:9]):
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(11.88 + index * 1e-4, 43.467)))
        feature.setAttributes([index, str(photo)])
        features.append(feature)
    assert layer.dataProvider().addFeatures(features)[0]
    classified = processing.run(
        "mus:classifyclip",
        {"INPUT": layer, "LABEL_SET": LABEL_SET, **tiny_parameters, "OUTPUT": "memory:"},
    )["OUTPUT"]
    labels = {f["pid"]: f["label_1"] for f in classified.getFeatures()}
    other = next(i for i in range(1, 9) if labels[i] != labels[0])
    return str(AREZZO_PHOTOS[0]), str(AREZZO_PHOTOS[other])


def test_the_same_streets_at_two_moments_show_exactly_where_the_imagery_changed(
    mus_provider, tmp_path, tiny_parameters, monkeypatch
):
    from tests.fakes.imagery_services import FakeImage
    from tests.fakes.imagery_study import LAT0, LON0, offset

    monkeypatch.setenv("MUS_MAPILLARY_TOKEN", GOOD_TOKEN)
    before, after = _two_photos_labelled_apart(tiny_parameters)
    changed = {1, 4}
    coordinates, images = [], []
    for i in range(6):
        lon, lat = offset(LON0, LAT0, 60.0 * i, 0.0)
        coordinates.append((lon, lat))
        for year, east in (("2016", 4.0), ("2022", -4.0)):
            photo = after if year == "2022" and i in changed else before
            images.append(
                FakeImage(
                    f"mly-{i}-{year}",
                    *offset(lon, lat, east, 0.0),
                    captured=f"{year}-05-01",
                    is_pano=False,
                    services=("mapillary",),
                    photo=photo,
                )
            )
    with FakeImageryServices(images) as fake:
        fetched = processing.run(
            "mus:fetchpanoramas",
            {
                "INPUT": point_layer(coordinates),
                "SOURCE": [1],
                "MOMENTS": "every year",
                "SERVICE_URL": fake.mapillary_url,
                "CACHE_FOLDER": str(tmp_path / "cache"),
                "OUTPUT": str(tmp_path / "moments.gpkg"),
            },
        )
    rows = list(QgsVectorLayer(fetched["OUTPUT"], "m", "ogr").getFeatures())
    assert sorted((r["name"], r["moment"]) for r in rows) == sorted(
        (f"p{i}", year) for i in range(6) for year in ("2016", "2022")
    )
    classified = processing.run(
        "mus:classifyclip",
        {
            "INPUT": fetched["OUTPUT"],
            "LABEL_SET": LABEL_SET,
            **tiny_parameters,
            "OUTPUT": str(tmp_path / "classified.gpkg"),
        },
    )
    report = tmp_path / "change.html"
    result = processing.run(
        "mus:labelchange",
        {
            "INPUT": classified["OUTPUT"],
            "POINT_FIELD": "name",
            "OUTPUT": str(tmp_path / "change.gpkg"),
            "REPORT": str(report),
        },
    )
    change = list(QgsVectorLayer(str(tmp_path / "change.gpkg"), "c", "ogr").getFeatures())
    assert len(change) == 6 and result["COMPARED"] == 6
    assert {f["point"] for f in change if f["changed"] == 1} == {f"p{i}" for i in changed}
    assert result["CHANGED"] == 2 and (result["FIRST"], result["SECOND"]) == ("2016", "2022")
    for feature in change:
        assert feature["certainty"] == pytest.approx(min(feature["prob_a"], feature["prob_b"]))
    text = report.read_text(encoding="utf-8")
    assert "Label change, 2016 to 2022" in text and "Labels per moment" in text
    assert "Classified by " in text and "mus-tiny-vit.pt weights" in text  # which model read it
    assert "<td>2022</td>" in text  # each moment's labels
    assert "Mapillary: 12 images by street_mapper, CC BY-SA 4.0" in text  # credited


def test_street_view_pixels_go_once_embedded_and_the_store_scores_them_again(
    mus_provider, tmp_path, tiny_parameters, monkeypatch
):
    from tests.fakes.imagery_services import GOOD_KEY, grid_images

    monkeypatch.setenv("MUS_STREETVIEW_KEY", GOOD_KEY)
    images = grid_images(3)
    cache = tmp_path / "imagery-cache"
    with FakeImageryServices(images) as fake:
        fetched = processing.run(
            "mus:fetchpanoramas",
            {
                "INPUT": point_layer([(im.lon + 4e-5, im.lat) for im in images]),
                "SOURCE": [0],
                "SERVICE_URL": fake.streetview_url,
                "CACHE_FOLDER": str(cache),
                "OUTPUT": str(tmp_path / "fetched.gpkg"),
            },
        )["OUTPUT"]
    views = sorted((cache / "imagery" / "streetview").rglob("*.jpg"))
    assert len(views) == 3 * 4

    def classify(label_set, name, **more):
        feedback = RecordingFeedback()
        result = processing.run(
            "mus:classifyclip",
            {
                "INPUT": fetched,
                "LABEL_SET": label_set,
                **tiny_parameters,
                **more,
                "OUTPUT": str(tmp_path / f"{name}.gpkg"),
            },
            feedback=feedback,
        )
        rows = list(QgsVectorLayer(result["OUTPUT"], name, "ogr").getFeatures())
        return rows, feedback

    first, feedback = classify(LABEL_SET, "first")
    assert [row["clip_status"] for row in first] == ["ok"] * 3
    assert not any(path.exists() for path in views)  # no pixel left behind
    assert any("Deleted 12 Street View images" in line for line in feedback.lines)
    # The same label set again, and another, from the store alone.
    again, _ = classify(LABEL_SET, "again")
    assert [row["clip_status"] for row in again] == ["ok"] * 3
    for before, after in zip(first, again):
        assert after["label_1"] == before["label_1"]
        assert after["score_1"] == pytest.approx(before["score_1"], abs=1e-6)
    other, _ = classify(0, "other")
    assert [row["clip_status"] for row in other] == ["ok"] * 3
