"""mus:trainprobe and CLIP-classify's trained probe, headless, with the tiny model, real photos.

The weights are random, so what is checked is the plumbing a user relies on: corrections read
from label_user, embeddings found again in the store by image path (photos and a panorama aimed
along its street), the probe's fields beside the zero-shot ones, no corrected point scored by a
probe that saw it, the probe file next to the store, and CLIP-classify scoring with it exactly as
the re-scored layer does, without reading an image again.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from qgis import processing
from qgis.core import QgsProcessingException, QgsVectorLayer

from mus_qgis.bridge.layer_settings import classification_settings
from mus_qgis.bridge.qgis_enums import make_field
from mus_qgis.shared.labels import builtin_label_sets
from tests.conftest import TINY_MODEL_CONFIG
from tests.qgis.helpers import RecordingFeedback, photo_points

CORRECTIONS = {0: 1, 1: 1, 2: 4, 3: 4, 5: 1}  # point → index of its right label in the set


@pytest.fixture(scope="module")
def classified(mus_provider, tiny_checkpoint, tmp_path_factory):
    """Arezzo photos and a panorama classified with the tiny model; five points corrected."""
    folder = tmp_path_factory.mktemp("probe")
    model = {
        "MODEL": str(TINY_MODEL_CONFIG),
        "CHECKPOINT": str(tiny_checkpoint),
        "DEVICE": 1,
        "CACHE_FOLDER": str(folder / "cache"),
    }
    output = folder / "classified.gpkg"
    processing.run(
        "mus:classifyclip",
        {"INPUT": photo_points(folder), "LABEL_SET": 0, "TOP_K": 2, **model, "OUTPUT": str(output)},
    )
    layer = QgsVectorLayer(str(output), "classified", "ogr")
    texts = builtin_label_sets()[0]
    labels = _labels_of(texts.name)
    assert layer.dataProvider().addAttributes([make_field("label_user", "string")])
    layer.updateFields()
    index = layer.fields().lookupField("label_user")
    pid = {f["pid"]: f.id() for f in layer.getFeatures()}
    changes = {pid[point]: {index: labels[label]} for point, label in CORRECTIONS.items()}
    assert layer.dataProvider().changeAttributeValues(changes)
    return folder, model, output, labels


def _labels_of(name: str) -> list[str]:
    from mus_qgis.shared.labels import builtin_label_set

    return builtin_label_set(name).texts


@pytest.fixture(scope="module")
def trained(classified):
    folder, model, output, _ = classified
    feedback = RecordingFeedback()
    result = processing.run(
        "mus:trainprobe",
        {
            "INPUT": str(output),
            "CHECKPOINT": model["CHECKPOINT"],
            "DEVICE": 1,
            "CACHE_FOLDER": model["CACHE_FOLDER"],
            "TOP_K": 2,
            "OUTPUT": str(folder / "rescored.gpkg"),
            "REPORT": str(folder / "probe.html"),
        },
        feedback=feedback,
    )
    return result, feedback


def test_corrections_train_a_probe_that_rescores_every_point(classified, trained):
    folder, _, _, labels = classified
    result, feedback = trained
    layer = QgsVectorLayer(result["OUTPUT"], "rescored", "ogr")
    assert layer.featureCount() == 8
    names = layer.fields().names()
    for name in ("label_1", "prob_1", "margin", "label_user", "probe_label_1", "probe_label_2"):
        assert name in names
    for name in ("probe_code_1", "probe_prob_2", "probe_margin", "probe_scored_by"):
        assert name in names
    rows = {f["pid"]: f for f in layer.getFeatures()}
    for pid, row in rows.items():
        if pid in CORRECTIONS:  # scored by the fold that was trained without it
            assert row["probe_scored_by"].startswith("cross-validation")
        if pid < 6:
            assert row["probe_status"] == "ok" and row["probe_label_1"] in labels
            assert row["probe_margin"] == pytest.approx(row["probe_prob_1"] - row["probe_prob_2"])
    assert {rows[p]["probe_scored_by"] for p in (4,)} == {"probe"}
    assert "gone.jpg was never embedded" in rows[6]["probe_status"]
    assert rows[7]["probe_status"] == "no image" and not rows[7]["probe_label_1"]
    # The probe lives next to the store, and says what it was trained on.
    probe = result["PROBE_FILE"]
    assert probe.endswith(".npz") and folder / "cache" / "embeddings" in Path(probe).parents
    meta = json.loads(Path(probe).with_suffix(".json").read_text(encoding="utf-8"))
    assert len(meta["trained_on"]) == 5 and meta["label_set"] == builtin_label_sets()[0].name
    # The accuracies, beside each other, in the log, the outputs and the report.
    assert 0.0 <= result["PROBE_ACCURACY"] <= 1.0 and 0.0 <= result["ZERO_SHOT_ACCURACY"] <= 1.0
    assert any("Cross-validated (leave-one-out) on 5 corrected points" in x for x in feedback.lines)
    report = Path(result["REPORT"]).read_text(encoding="utf-8")
    assert f"<td>probe</td><td>{result['PROBE_ACCURACY']:.1%}</td>" in report
    assert f"<td>zero-shot (the prompts)</td><td>{result['ZERO_SHOT_ACCURACY']:.1%}</td>" in report


def test_classify_with_the_probe_gives_the_rescored_labels(classified, trained):
    folder, model, _, _ = classified
    result, _ = trained
    output = folder / "with_probe.gpkg"
    feedback = RecordingFeedback()
    run = processing.run(
        "mus:classifyclip",
        {
            "INPUT": photo_points(folder),
            "LABEL_SET": 0,
            "TOP_K": 2,
            "PROBE": result["PROBE_FILE"],
            **model,
            "OUTPUT": str(output),
        },
        feedback=feedback,
    )
    assert any("0 images decoded" in line for line in feedback.lines)
    assert json.loads(run["SETTINGS"])["probe"]["trained_points"] == 5
    by_probe = {f["pid"]: f for f in QgsVectorLayer(str(output), "p", "ogr").getFeatures()}
    rescored = {f["pid"]: f for f in QgsVectorLayer(result["OUTPUT"], "r", "ogr").getFeatures()}
    for pid in (4,):  # not corrected: the same probe, the same stored embedding
        assert by_probe[pid]["label_1"] == rescored[pid]["probe_label_1"]
        assert by_probe[pid]["prob_1"] == pytest.approx(rescored[pid]["probe_prob_1"], abs=1e-6)


def test_a_probe_for_another_label_set_is_refused_by_classify(classified, trained):
    folder, model, _, _ = classified
    result, _ = trained
    with pytest.raises(QgsProcessingException, match="trained for the label set"):
        processing.run(
            "mus:classifyclip",
            {
                "INPUT": photo_points(folder),
                "LABEL_SET": 1,
                "PROBE": result["PROBE_FILE"],
                **model,
                "OUTPUT": "memory:",
            },
        )


def test_a_correction_that_is_not_a_label_is_named(classified, tmp_path):
    _, model, output, _ = classified
    layer = QgsVectorLayer(str(output), "classified", "ogr")
    copy = tmp_path / "typo.gpkg"
    processing.run("native:savefeatures", {"INPUT": layer, "OUTPUT": str(copy)})
    typo = QgsVectorLayer(str(copy), "typo", "ogr")
    settings = json.dumps(classification_settings(layer))
    typo.setCustomProperty("mus_qgis/classification", settings)
    index = typo.fields().lookupField("label_user")
    first = next(typo.getFeatures())
    assert typo.dataProvider().changeAttributeValues({first.id(): {index: "Harbour area"}})
    with pytest.raises(QgsProcessingException, match="'Harbour area' \\(point"):
        processing.run(
            "mus:trainprobe",
            {
                "INPUT": typo,
                "CHECKPOINT": model["CHECKPOINT"],
                "DEVICE": 1,
                "CACHE_FOLDER": model["CACHE_FOLDER"],
                "OUTPUT": "memory:",
            },
        )


def test_a_layer_that_clip_classify_did_not_write_is_refused(mus_provider, tmp_path):
    with pytest.raises(QgsProcessingException, match="carries no CLIP-classify run settings"):
        processing.run(
            "mus:trainprobe",
            {"INPUT": photo_points(tmp_path), "OUTPUT": "memory:"},
        )


def test_the_image_and_bearing_fields_come_from_the_run_settings(
    mus_provider, tiny_checkpoint, tmp_path
):
    """CLIP-classify read the images from 'foto' and aimed the panorama along 'azimut' from its
    heading 'prua': the probe finds the same stored embeddings without being told any of these
    fields (the run settings say them); a field given is an override."""
    layer = photo_points(tmp_path)
    fields = layer.fields()
    assert layer.dataProvider().renameAttributes(
        {fields.lookupField("image_paths"): "foto", fields.lookupField("bearing"): "azimut"}
    )
    assert layer.dataProvider().addAttributes([make_field("prua", "double")])
    layer.updateFields()
    heading = layer.fields().lookupField("prua")
    assert layer.dataProvider().changeAttributeValues(
        {f.id(): {heading: 10.0} for f in layer.getFeatures()}
    )
    model = {
        "MODEL": str(TINY_MODEL_CONFIG),
        "CHECKPOINT": str(tiny_checkpoint),
        "DEVICE": 1,
        "CACHE_FOLDER": str(tmp_path / "cache"),
    }
    output = tmp_path / "classificato.gpkg"
    processing.run(
        "mus:classifyclip",
        {
            "INPUT": layer,
            "IMAGE_FIELD": "foto",
            "BEARING_FIELD": "azimut",
            "HEADING_FIELD": "prua",
            "LABEL_SET": 0,
            "TOP_K": 2,
            **model,
            "OUTPUT": str(output),
        },
    )
    classified = QgsVectorLayer(str(output), "classificato", "ogr")
    settings = classification_settings(classified)
    recorded = (settings["image_field"], settings["bearing_field"], settings["heading_field"])
    assert recorded == ("foto", "azimut", "prua")
    labels = _labels_of(builtin_label_sets()[0].name)
    assert classified.dataProvider().addAttributes([make_field("label_user", "string")])
    classified.updateFields()
    index = classified.fields().lookupField("label_user")
    pid = {f["pid"]: f.id() for f in classified.getFeatures()}
    changes = {pid[point]: {index: labels[label]} for point, label in CORRECTIONS.items()}
    assert classified.dataProvider().changeAttributeValues(changes)
    probe = {k: v for k, v in model.items() if k != "MODEL"}
    result = processing.run(
        "mus:trainprobe", {"INPUT": str(output), **probe, "TOP_K": 2, "OUTPUT": "memory:"}
    )
    rows = {f["pid"]: f for f in result["OUTPUT"].getFeatures()}
    # Every image found again in the store: the photos by 'foto', the panorama (5) by its views
    # aimed along 'azimut' from 'prua' (without them, its views would be others, never stored).
    assert [rows[p]["probe_status"] for p in range(6)] == ["ok"] * 6
    assert "gone.jpg was never embedded" in rows[6]["probe_status"]
    with pytest.raises(QgsProcessingException, match="no field 'nessuno' for the image paths"):
        processing.run(
            "mus:trainprobe",
            {"INPUT": str(output), **probe, "IMAGE_FIELD": "nessuno", "OUTPUT": "memory:"},
        )
