"""The study manifest each run writes, and mus:rerunstudy reproducing a study from it: the demo's
chain (local geotagged photos, CLIP-classify, a grid) on the demo's own inputs."""

from __future__ import annotations

import json

import pytest
from qgis import processing
from qgis.core import QgsExifTools, QgsVectorLayer

from tests.conftest import IMAGES, TINY_MODEL_CONFIG


def _survey_points(path) -> str:
    """Points 5 m east of each geotagged Arezzo photo, as the demo writes them."""
    features = []
    for photo in sorted((IMAGES / "arezzo").glob("*.jpg")):
        position, tagged = QgsExifTools.getGeoTag(str(photo))
        if tagged:
            features.append(
                {
                    "type": "Feature",
                    "geometry": {
                        "type": "Point",
                        "coordinates": [position.x() + 0.00006, position.y()],
                    },
                    "properties": {"name": photo.stem, "bearing": 90.0},
                }
            )
    path.write_text(
        json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8"
    )
    return str(path)


@pytest.fixture(scope="module")
def study(mus_provider, tiny_checkpoint, tmp_path_factory):
    """A study folder as the demo leaves one: imagery, land-use labels, a grid."""
    inputs = tmp_path_factory.mktemp("inputs")
    folder = tmp_path_factory.mktemp("study")
    points = _survey_points(inputs / "survey_points.geojson")
    processing.run(
        "mus:fetchpanoramas",
        {
            "INPUT": points,
            "SOURCE": [3],
            "PHOTO_FOLDER": str(IMAGES / "arezzo"),
            "RADIUS": 15,
            "OUTPUT": str(folder / "imagery.gpkg"),
        },
    )
    processing.run(
        "mus:classifyclip",
        {
            "INPUT": str(folder / "imagery.gpkg"),
            "LABEL_SET": 1,
            "MODEL": str(TINY_MODEL_CONFIG),
            "CHECKPOINT": str(tiny_checkpoint),
            "DEVICE": 1,
            # In the study's folder: a re-run elsewhere computes every embedding again.
            "CACHE_FOLDER": str(folder / "cache"),
            "OUTPUT": str(folder / "landuse.gpkg"),
        },
    )
    processing.run(
        "mus:resampletogrid",
        {
            "INPUT": str(folder / "landuse.gpkg"),
            "CELL_SIZE": 50,
            "OUTPUT": str(folder / "grid.gpkg"),
        },
    )
    return folder


def test_each_run_records_itself_in_the_study_manifest(study):
    manifest = json.loads((study / "mus_study.json").read_text(encoding="utf-8"))
    runs = manifest["runs"]
    assert [run["algorithm"] for run in runs] == [
        "mus:fetchpanoramas",
        "mus:classifyclip",
        "mus:resampletogrid",
    ]
    classify = runs[1]
    assert classify["parameters"]["LABEL_SET"] == 1
    assert classify["outputs"]["OUTPUT"] == str(study / "landuse.gpkg")
    settings = classify["settings"]
    assert settings["model_identity"].startswith("mus-tiny-vit/file-")  # the weights' hash
    assert len(settings["label_set_hash"]) >= 16 and settings["torch_version"]
    versions = runs[0]["versions"]
    assert versions["mus_qgis"] and versions["qgis"]
    assert versions["engine"]["numpy"] and versions["engine"]["torch"]  # the engine's packages
    # The imagery the study read, by source and id.
    fetched = QgsVectorLayer(str(study / "imagery.gpkg"), "imagery", "ogr")
    ids = {f"local:{f['image_id']}" for f in fetched.getFeatures() if f["image_id"]}
    assert runs[0]["imagery_ids"] == sorted(ids) and ids


def test_a_rerun_on_another_folder_reproduces_every_output_and_says_so(study, tmp_path):
    report = tmp_path / "rerun.html"
    result = processing.run(
        "mus:rerunstudy",
        {
            "STUDY": str(study / "mus_study.json"),
            "OUTPUT_FOLDER": str(tmp_path / "again"),
            "OUTPUT": str(tmp_path / "comparison.gpkg"),
            "REPORT": str(report),
        },
    )
    assert (result["STEPS"], result["MATCHING"], result["DIFFERING"]) == (3, 3, 0)
    rows = list(QgsVectorLayer(str(tmp_path / "comparison.gpkg"), "c", "ogr").getFeatures())
    assert [(r["algorithm"], r["verdict"]) for r in rows] == [
        ("mus:fetchpanoramas", "match"),
        ("mus:classifyclip", "match"),
        ("mus:resampletogrid", "match"),
    ]
    assert all(r["features_before"] == r["features_now"] > 0 for r in rows)
    assert all(r["largest_difference"] <= 1e-6 for r in rows)
    # The embeddings were computed again, in the new folder's own store.
    assert any((tmp_path / "again" / "cache").rglob("*.sqlite"))
    assert "The study is reproduced: every output compared matches." in report.read_text(
        encoding="utf-8"
    )
    # The re-run is a study of its own.
    again = json.loads((tmp_path / "again" / "mus_study.json").read_text(encoding="utf-8"))
    assert len(again["runs"]) == 3


def test_a_changed_output_is_found_with_its_difference(study, tmp_path):
    import shutil

    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    manifest = (copy / "mus_study.json").read_text(encoding="utf-8")
    (copy / "mus_study.json").write_text(manifest.replace(str(study), str(copy)), encoding="utf-8")
    landuse = QgsVectorLayer(str(copy / "landuse.gpkg"), "landuse", "ogr")
    feature = next(f for f in landuse.getFeatures() if f["score_1"] is not None)
    index = landuse.fields().lookupField("score_1")
    changes = {feature.id(): {index: feature["score_1"] + 0.01}}
    assert landuse.dataProvider().changeAttributeValues(changes)
    del landuse
    result = processing.run(
        "mus:rerunstudy",
        {
            "STUDY": str(copy / "mus_study.json"),
            "OUTPUT_FOLDER": str(tmp_path / "again"),
            "OUTPUT": str(tmp_path / "comparison.gpkg"),
        },
    )
    assert (result["MATCHING"], result["DIFFERING"]) == (2, 1)
    rows = {
        r["algorithm"]: r
        for r in QgsVectorLayer(str(tmp_path / "comparison.gpkg"), "c", "ogr").getFeatures()
    }
    changed = rows["mus:classifyclip"]
    assert changed["verdict"] == "differs" and changed["features_differing"] == 1
    assert changed["largest_difference"] == pytest.approx(0.01, abs=1e-6)
    assert rows["mus:resampletogrid"]["verdict"] == "match"  # made again from the new labels


def test_a_manifest_that_is_none_is_a_clear_error(mus_provider, tmp_path):
    from qgis.core import QgsProcessingException

    bad = tmp_path / "mus_study.json"
    bad.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(QgsProcessingException, match="is no study manifest"):
        processing.run(
            "mus:rerunstudy",
            {"STUDY": str(bad), "OUTPUT_FOLDER": str(tmp_path / "x"), "OUTPUT": "memory:"},
        )


def test_each_output_is_known_by_its_file_and_layer(mus_provider, tmp_path):
    """Every step of the demo writes into one GeoPackage, each into its own table: a run
    replaces the entry of the run that wrote the same table, and only that one."""
    from mus_qgis.processing.study_manifest import output_key, record_run

    gpkg = tmp_path / "study.gpkg"
    assert output_key(f"{gpkg}|layername=imagery") == (str(gpkg), "imagery")
    assert output_key(f"ogr:dbname='{gpkg}' table=\"grid\" (geom)") == (str(gpkg), "grid")
    assert output_key(str(tmp_path / "report.html")) == (str(tmp_path / "report.html"), "")

    class Step:
        def __init__(self, name):
            self.name = name

        def id(self):
            return f"mus:{self.name}"

    for name, table in (("a", "imagery"), ("b", "grid"), ("c", "imagery")):
        record_run(Step(name), {"X": 1}, {"OUTPUT": f"{gpkg}|layername={table}"})
    runs = json.loads((tmp_path / "mus_study.json").read_text(encoding="utf-8"))["runs"]
    assert [run["algorithm"] for run in runs] == ["mus:b", "mus:c"]


def test_parameter_values_are_recorded_as_json_holds_them(mus_provider):
    from qgis.core import NULL
    from qgis.PyQt.QtCore import QDate

    from mus_qgis.processing.study_manifest import plain_value

    assert plain_value(NULL) is None  # a parameter left empty on qgis_process's command line
    assert plain_value(QDate(2019, 6, 1)) == "2019-06-01"
    assert plain_value([1, NULL, "a"]) == [1, None, "a"]
