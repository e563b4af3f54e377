"""mus:classifyclip through processing.run, headless, with the tiny model and real photos."""

from __future__ import annotations

import json

import pytest
from qgis import processing
from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsVectorLayer,
)

from tests.conftest import TINY_MODEL_CONFIG
from tests.qgis.helpers import RecordingFeedback, photo_points

ALG = "mus:classifyclip"


def test_classifies_every_point_and_keeps_the_ones_without_image(
    mus_provider, tmp_path, tiny_parameters
):
    output = tmp_path / "classified.gpkg"
    feedback = RecordingFeedback()
    result = processing.run(
        ALG,
        {
            "INPUT": photo_points(tmp_path),
            "LABEL_SET": 0,
            "TOP_K": 3,
            **tiny_parameters,
            "OUTPUT": str(output),
        },
        feedback=feedback,
    )
    assert result["CLASSIFIED"] == 6 and result["FAILED"] == 2
    layer = QgsVectorLayer(str(output), "out", "ogr")
    assert layer.isValid() and layer.featureCount() == 8
    names = layer.fields().names()
    for name in (
        "pid",
        "image_paths",
        "bearing",
        "status",
        "label_1",
        "label_3",
        "code_1",
        "score_1",
        "prob_3",
        "margin",
        "n_images",
        "clip_status",
    ):
        assert name in names
    rows = {f["pid"]: f for f in layer.getFeatures()}
    urban_atlas_codes = {"11100", "12100", "14100", "50000"}
    for pid in range(6):
        row = rows[pid]
        assert row["clip_status"] == "ok"
        assert row["score_1"] >= row["score_2"] >= row["score_3"]
        assert 0.0 <= row["margin"] <= 1.0
        assert len(row["code_1"]) == 5 and row["code_1"][0] in "12345"
    assert rows[4]["n_images"] == 2 and rows[0]["n_images"] == 1
    assert rows[6]["clip_status"] == f"error: image {tmp_path / 'gone.jpg'} does not exist"
    assert not rows[6]["label_1"]
    assert rows[7]["clip_status"] == "no image" and rows[7]["n_images"] == 0
    assert rows[0]["status"] == "fetched"  # the input's own fields are kept
    assert urban_atlas_codes  # the Urban Atlas codes are five digits

    settings = json.loads(result["SETTINGS"])
    assert settings["label_set"] == "urban_atlas_2018" and settings["labels"] == 27
    assert settings["model_identity"].startswith("mus-tiny-vit/file-")
    assert settings["views"] == "views4-fov90-pitch0"
    # The settings travel inside the GeoPackage.
    reloaded = QgsVectorLayer(str(output), "again", "ogr")
    assert settings["label_set_hash"] in reloaded.metadata().abstract()


def test_second_label_set_reads_no_image(mus_provider, tmp_path, tiny_parameters):
    layer = photo_points(tmp_path)
    processing.run(ALG, {"INPUT": layer, **tiny_parameters, "OUTPUT": "memory:"})
    feedback = RecordingFeedback()
    processing.run(
        ALG,
        {"INPUT": layer, "LABEL_SET": 10, **tiny_parameters, "OUTPUT": "memory:"},
        feedback=feedback,
    )
    assert any("0 images decoded" in line for line in feedback.lines), feedback.lines


def test_own_labels_templates_and_styled_output(
    mus_provider, tmp_path, tiny_parameters, qgis_new_project, load_results_headless
):
    labels = tmp_path / "mine.csv"
    labels.write_text(
        "label,code,colour\npiazza,P,#ff0000\nchurch,C,#00ff00\nalley,A,#0000ff\n", encoding="utf-8"
    )
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    result = processing.runAndLoadResults(
        ALG,
        {
            "INPUT": photo_points(tmp_path),
            "LABEL_FILE": str(labels),
            "TEMPLATES": "a photo of a {label}\na street with a {label}",
            "TOP_K": 2,
            **tiny_parameters,
            "OUTPUT": QgsProcessing.TEMPORARY_OUTPUT,
        },
        context=context,
    )
    layer = QgsProject.instance().mapLayer(result["OUTPUT"])
    assert "label_2" in layer.fields().names() and "label_3" not in layer.fields().names()
    renderer = layer.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer)
    assert renderer.classAttribute() == "label_1"
    colours = {c.value(): c.symbol().color().name() for c in renderer.categories()}
    present = {f["label_1"] for f in layer.getFeatures() if f["label_1"]}
    assert present and present <= set(colours)
    for value, colour in (("piazza", "#ff0000"), ("church", "#00ff00"), ("alley", "#0000ff")):
        if value in present:
            assert colours[value] == colour
    # The catch-all for points without a usable image, listed only when there is one.
    unlabelled = any(not f["label_1"] for f in layer.getFeatures())
    assert ("" in colours) == unlabelled
    assert json.loads(layer.customProperty("mus_qgis/classification"))["templates"] == [
        "a photo of a {label}",
        "a street with a {label}",
    ]
    assert "mine" in layer.metadata().title()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"TEMPLATES": "a photo of a street"}, r"\{label\}"),
        ({"TEMPLATES": "a panoramic street image of {city}"}, r"\{city\}"),
        ({"MODEL": "ViT-B-23", "CHECKPOINT": ""}, "Did you mean"),
        (
            {"MODEL": "ViT-B-32", "CHECKPOINT": "", "PRETRAINED": "laion2b_s34b_b79k"},
            "checkpoint file",
        ),
        ({"IMAGE_FIELD": "no_such_field"}, "no field 'no_such_field'"),
    ],
)
def test_bad_settings_are_clear_errors(mus_provider, tmp_path, tiny_parameters, changes, message):
    parameters = {"INPUT": photo_points(tmp_path), **tiny_parameters, "OUTPUT": "memory:"}
    parameters.update(changes)
    with pytest.raises(QgsProcessingException, match=message):
        processing.run(ALG, parameters)


def test_empty_label_file_is_a_clear_error(mus_provider, tmp_path, tiny_parameters):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(QgsProcessingException, match="empty"):
        processing.run(
            ALG,
            {
                "INPUT": photo_points(tmp_path),
                "LABEL_FILE": str(empty),
                **tiny_parameters,
                "OUTPUT": "memory:",
            },
        )


def test_untrained_model_is_said_plainly(mus_provider, tmp_path):
    feedback = RecordingFeedback()
    processing.run(
        ALG,
        {
            "INPUT": photo_points(tmp_path),
            "MODEL": str(TINY_MODEL_CONFIG),
            "PRETRAINED": "",
            "DEVICE": 1,
            "CACHE_FOLDER": str(tmp_path),
            "OUTPUT": "memory:",
        },
        feedback=feedback,
    )
    assert any("random, untrained weights" in line for line in feedback.lines)


def test_cancel_is_honoured(mus_provider, tmp_path, tiny_parameters):
    feedback = QgsProcessingFeedback()
    feedback.cancel()
    with pytest.raises(QgsProcessingException, match="Canceled by the user"):
        processing.run(
            ALG,
            {"INPUT": photo_points(tmp_path), **tiny_parameters, "OUTPUT": "memory:"},
            feedback=feedback,
        )


def test_progress_never_goes_back_and_reaches_100_only_at_the_end(
    mus_provider, tmp_path, tiny_parameters
):
    """The bar stood at 100 % while the algorithm still wrote and styled its output (seconds
    on a large layer): whatever the algorithm says after the engine's job must come before 100."""
    events: list[tuple[str, object]] = []

    class Recording(RecordingFeedback):
        def pushInfo(self, info):
            if not info.startswith("Results:"):  # QGIS's own line, once the algorithm returned
                events.append(("log", info))
            super().pushInfo(info)

    feedback = Recording()
    feedback.progressChanged.connect(lambda percent: events.append(("progress", percent)))
    processing.run(
        ALG,
        {"INPUT": photo_points(tmp_path), **tiny_parameters, "OUTPUT": "memory:"},
        feedback=feedback,
    )
    shown = [value for kind, value in events if kind == "progress"]
    assert shown and shown == sorted(shown), shown
    assert any(0 < percent < 100 for percent in shown)  # the engine's own steps were shown
    assert events[-1] == ("progress", 100) and shown.count(100) == 1, events[-6:]
