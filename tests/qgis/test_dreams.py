"""mus:dreamstreets and mus:mainstreamimage through processing.run, headless, with the tiny CLIP
and the tiny random-weight diffusion pipeline (a model folder, as a downloaded one is)."""

from __future__ import annotations

import json

import pytest
from qgis import processing
from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsFeature,
    QgsGeometry,
    QgsGraduatedSymbolRenderer,
    QgsPointXY,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProject,
    QgsVectorLayer,
)

from tests.conftest import AREZZO_PHOTOS
from tests.qgis.helpers import RecordingFeedback

DREAM_SETTINGS = {"STEPS": 2, "STRENGTH": 0.5, "SIZE": 64, "SEED": 5}


def labelled_points() -> QgsVectorLayer:
    """Two photos with a first label, one without a label, one without an image."""
    layer = QgsVectorLayer(
        "Point?crs=EPSG:4326&field=pid:integer&field=image_paths:string&field=label_1:string",
        "points",
        "memory",
    )
    rows = [
        (str(AREZZO_PHOTOS[0]), "Rome"),
        (str(AREZZO_PHOTOS[1]), "Paris"),
        (str(AREZZO_PHOTOS[2]), None),
        (None, "Rome"),
    ]
    features = []
    for index, (path, label) in enumerate(rows):
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(11.88 + index * 1e-4, 43.467)))
        feature.setAttributes([index, path, label])
        features.append(feature)
    assert layer.dataProvider().addFeatures(features)[0]
    return layer


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("dream-cache"))


def test_dream_streets_writes_readings_and_styles_by_label_change(
    mus_provider, tiny_parameters, tiny_diffusion, cache, tmp_path, load_results_headless
):
    feedback = RecordingFeedback()
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    parameters = {
        "INPUT": labelled_points(),
        "PROMPT": "a street in {label}",
        "LABEL_FIELD": "label_1",
        "DREAM_MODEL": str(tiny_diffusion),
        **DREAM_SETTINGS,
        **tiny_parameters,
        "CACHE_FOLDER": cache,
        "OUTPUT": QgsProcessing.TEMPORARY_OUTPUT,
    }
    result = processing.runAndLoadResults(
        "mus:dreamstreets", parameters, context=context, feedback=feedback
    )
    assert result["DREAMED"] == 2 and result["GENERATED"] == 2
    assert any("The first dream took" in line and "CPU" in line for line in feedback.lines)
    layer = QgsProject.instance().mapLayer(result["OUTPUT"])
    rows = {f["pid"]: f for f in layer.getFeatures()}
    assert rows[0]["dream_prompt"] == "a street in Rome"
    assert rows[1]["dream_prompt"] == "a street in Paris"
    assert rows[0]["dream_status"] == "ok" and rows[0]["dream_paths"].endswith(".png")
    assert rows[0]["label_changed"] in (0, 1) and rows[0]["dream_label"]
    assert rows[0]["drift"] == pytest.approx(rows[0]["dream_to_prompt"] - rows[0]["real_to_prompt"])
    assert "has no label" in rows[2]["dream_status"] and rows[3]["dream_status"] == "no image"
    renderer = layer.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer)
    assert renderer.classAttribute() == "label_changed"
    legend = {c.label() for c in renderer.categories()}
    assert "no dream" in legend and legend & {"first label changed", "same first label"}
    settings = json.loads(result["SETTINGS"])
    assert settings["dream_model"] == "mus-tiny-sd"
    assert settings["dream_model_revision"].startswith("local-")
    QgsProject.instance().removeMapLayer(layer)

    output = tmp_path / "dreams.gpkg"
    again = processing.run("mus:dreamstreets", {**parameters, "OUTPUT": str(output)})
    assert again["GENERATED"] == 0  # every dream from the cache
    saved = QgsVectorLayer(str(output), "dreams", "ogr")
    paths = [f["dream_paths"] for f in saved.getFeatures()]
    assert paths[:2] == [rows[0]["dream_paths"], rows[1]["dream_paths"]]
    # The file carries its run settings: the model and its revision.
    assert f"dream_model_revision: {settings['dream_model_revision']}" in (
        saved.metadata().abstract()
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"STRENGTH": 0.0}, "strength must be above 0 and at most 1"),
        ({"STRENGTH": 1.5}, "STRENGTH .* must be 0 to 1, not 1.5"),
        ({"PROMPT": " "}, "The prompt is empty"),
        ({"DREAM_MODEL": "someone/no-such-model"}, "neither a local folder nor in the cache"),
    ],
)
def test_dream_streets_bad_inputs_are_clear(
    mus_provider, tiny_parameters, tiny_diffusion, cache, change, message
):
    parameters = {
        "INPUT": labelled_points(),
        "DREAM_MODEL": str(tiny_diffusion),
        **DREAM_SETTINGS,
        **tiny_parameters,
        "CACHE_FOLDER": cache,
        "OUTPUT": "memory:",
        **change,
    }
    with pytest.raises(QgsProcessingException, match=message):
        processing.run("mus:dreamstreets", parameters)


def test_mainstream_image_scores_ranks_and_reports(
    mus_provider, tiny_parameters, tiny_diffusion, cache, tmp_path
):
    report = tmp_path / "mainstream.html"
    result = processing.run(
        "mus:mainstreamimage",
        {
            "INPUT": labelled_points(),
            "CITIES": "Rome, Paris",
            "IMAGES": 2,
            "DREAM_MODEL": str(tiny_diffusion),
            "STEPS": 1,
            "SIZE": 64,
            **tiny_parameters,
            "CACHE_FOLDER": cache,
            "OUTPUT": QgsProcessing.TEMPORARY_OUTPUT,
            "REPORT": str(report),
        },
    )
    layer = result["OUTPUT"]
    rows = {f["pid"]: f for f in layer.getFeatures()}
    ranks = sorted(rows[pid]["ms_rank"] for pid in (0, 1, 2))
    assert ranks == [1, 2, 3] and rows[3]["ms_status"] == "no image"
    assert rows[0]["ms_city_image"] in ("Rome", "Paris") and rows[0]["ms_text"] is not None
    assert rows[0]["ms_by_city"].startswith(rows[0]["ms_city_image"] + " ")
    gallery = json.loads(result["GALLERY"])
    assert sorted(gallery) == ["Paris", "Rome"] and all(len(v) == 2 for v in gallery.values())
    text = report.read_text(encoding="utf-8")
    for files in gallery.values():
        for file in files:
            assert file.split("/")[-1] in text
    assert "mus-tiny-sd" in text and "Most mainstream" in text


def test_mainstream_image_output_is_styled(mus_provider):
    from mus_qgis.processing.mainstream_image import style_mainstream_layer

    layer = QgsVectorLayer("Point?crs=EPSG:4326&field=ms_image:double", "m", "memory")
    features = []
    for value in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6):
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(value, 0)))
        feature.setAttributes([value])
        features.append(feature)
    assert layer.dataProvider().addFeatures(features)[0]
    style_mainstream_layer(layer)
    assert isinstance(layer.renderer(), QgsGraduatedSymbolRenderer)
    assert len(layer.renderer().ranges()) == 5
