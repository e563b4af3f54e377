"""mus:samplestreetcentroids through processing.run, headless."""

from __future__ import annotations

import math

import pytest
from qgis import processing
from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsGeometry,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsVectorLayer,
)

from tests.conftest import ROME_OSM
from tests.fakes.osm_services import KNOWN_PLACE, FakeOsmServices
from tests.qgis.helpers import RecordingFeedback

ALG = "mus:samplestreetcentroids"
FIELDS = ["id", "osm_ids", "highway", "name", "length_m", "bearing", "n_merged"]


def _polygon_layer(wkt_polygons: list[str], crs: str = "EPSG:4326") -> QgsVectorLayer:
    layer = QgsVectorLayer(f"Polygon?crs={crs}", "area", "memory")
    features = []
    for wkt in wkt_polygons:
        feature = QgsFeature()
        feature.setGeometry(QgsGeometry.fromWkt(wkt))
        features.append(feature)
    assert layer.dataProvider().addFeatures(features)[0]
    return layer


def test_rome_extract_to_geopackage(mus_provider, tmp_path):
    output = tmp_path / "centroids.gpkg"
    feedback = RecordingFeedback()
    result = processing.run(
        ALG, {"OSM_FILE": str(ROME_OSM), "OUTPUT": str(output)}, feedback=feedback
    )
    assert result["SEGMENTS_SELECTED"] == 417
    assert result["SEGMENTS_EXCLUDED"] == 845
    assert result["SEGMENTS_FOUND"] == 1262
    layer = QgsVectorLayer(str(output), "out", "ogr")
    assert layer.isValid()
    assert layer.featureCount() == result["LOCATIONS"] == 372
    assert result["AREAS_SAMPLED"] == 27  # the pedestrian squares, one point each
    # As osmnx's graph_from_place counts: its directed graph, a two-way street twice.
    assert result["DIRECTED_EDGES"] == 601
    assert any(
        "as osmnx's graph_from_place counts segments): 601" in line for line in feedback.lines
    )
    assert [f.name() for f in layer.fields()][-len(FIELDS) :] == FIELDS
    assert layer.crs().authid() == "EPSG:4326"
    merged = sum(f["n_merged"] for f in layer.getFeatures())
    assert merged == 417 + 27
    log = "\n".join(feedback.lines)
    assert "Street segments found: 1262" in log and "excluded footway: 523" in log
    assert "one point each at their centre: 27" in log


def test_polygon_layer_in_another_crs_clips_the_file(mus_provider):
    # the western half of the extract, drawn in Web Mercator
    area = _polygon_layer(
        [
            "POLYGON((1389666 5144000, 1390950 5144000, 1390950 5146200, "
            "1389666 5146200, 1389666 5144000))"
        ],
        crs="EPSG:3857",
    )
    result = processing.run(ALG, {"OSM_FILE": str(ROME_OSM), "AREA": area, "OUTPUT": "memory:"})
    layer = result["OUTPUT"]
    assert 0 < layer.featureCount() < 372
    east = math.degrees(1390950 / 6378137)  # the polygon's east edge in longitude
    assert max(f.geometry().asPoint().x() for f in layer.getFeatures()) < east


def test_extent_clips_the_file(mus_provider):
    result = processing.run(
        ALG,
        {
            "OSM_FILE": str(ROME_OSM),
            "EXTENT": "12.4833,12.4948,41.8850,41.8991 [EPSG:4326]",
            "OUTPUT": "memory:",
        },
    )
    assert 0 < result["LOCATIONS"] < 372


def test_chosen_classes_and_merge_distance(mus_provider):
    result = processing.run(
        ALG,
        {
            "OSM_FILE": str(ROME_OSM),
            "CLASSES": [3],  # residential
            "MERGE_DISTANCE": 0,
            "OUTPUT": "memory:",
        },
    )
    layer = result["OUTPUT"]
    assert {f["highway"] for f in layer.getFeatures()} == {"residential"}
    assert result["LOCATIONS"] == result["SEGMENTS_SELECTED"]


def test_place_name_through_fake_services(mus_provider, tmp_path):
    fake = FakeOsmServices().start()
    try:
        result = processing.run(
            ALG,
            {
                "PLACE": KNOWN_PLACE,
                "OVERPASS_URL": fake.overpass_url,
                "NOMINATIM_URL": fake.nominatim_url,
                "OUTPUT": "memory:",
            },
        )
    finally:
        fake.stop()
    assert result["SEGMENTS_SELECTED"] == 417
    agents = {headers.get("User-Agent", "") for _, _, headers in fake.requests}
    assert all(agent.startswith("mus_qgis/") for agent in agents)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({}, "No study area"),
        ({"OSM_FILE": "/no/such/file.osm"}, "not found|does not exist|not exist"),
        ({"OSM_FILE": __file__}, "is not an OpenStreetMap file: its content is neither OSM XML"),
        ({"OSM_FILE": "not_osm"}, "page.osm is XML but not OpenStreetMap"),
        ({"OSM_FILE": str(ROME_OSM), "CLASSES": [5]}, "no streets of the classes motorway"),
        ({"OSM_FILE": str(ROME_OSM), "PROJECTED_CRS": "EPSG:4326"}, "geographic"),
        (
            {"OSM_FILE": str(ROME_OSM), "AREA": "bowtie", "EXTENT": "1,2,3,4 [EPSG:4326]"},
            "not both",
        ),
        ({"AREA": "bowtie"}, "invalid polygon(.|\n)*Fix geometries"),
        ({"AREA": "empty"}, "no polygon"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(mus_provider, tmp_path, parameters, message):
    layers = {
        "bowtie": _polygon_layer(
            ["POLYGON((12.48 41.88, 12.50 41.90, 12.50 41.88, 12.48 41.90, 12.48 41.88))"]
        ),
        "empty": _polygon_layer([]),
    }
    not_osm = tmp_path / "page.osm"
    not_osm.write_text(
        "<html><body>a web page saved under the wrong name</body></html>", encoding="utf-8"
    )
    layers["not_osm"] = str(not_osm)
    parameters = {k: layers.get(v, v) if isinstance(v, str) else v for k, v in parameters.items()}
    output = tmp_path / "out.gpkg"
    with pytest.raises(QgsProcessingException, match=message):
        processing.run(ALG, {**parameters, "OUTPUT": str(output)})
    assert not output.exists()


def test_an_engine_python_without_the_packages_says_what_to_do(mus_provider, monkeypatch, tmp_path):
    """A Python the user named that lacks the engine's packages: named, with the fix."""
    import subprocess

    subprocess.run(
        ["/usr/bin/python3", "-m", "venv", "--without-pip", tmp_path / "bare"], check=True
    )
    monkeypatch.setenv("MUS_ENGINE_PYTHON", str(tmp_path / "bare" / "bin" / "python"))
    with pytest.raises(QgsProcessingException, match=r"osmnx(.|\n)*Set up the engine"):
        processing.run(ALG, {"OSM_FILE": str(ROME_OSM), "OUTPUT": "memory:"})


def test_cancel_is_honoured(mus_provider):
    feedback = QgsProcessingFeedback()
    feedback.cancel()
    with pytest.raises(QgsProcessingException, match="Canceled by the user"):
        processing.run(ALG, {"OSM_FILE": str(ROME_OSM), "OUTPUT": "memory:"}, feedback=feedback)


def test_loaded_output_gets_the_style(mus_provider, qgis_new_project, load_results_headless):
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    result = processing.runAndLoadResults(
        ALG, {"OSM_FILE": str(ROME_OSM), "OUTPUT": QgsProcessing.TEMPORARY_OUTPUT}, context=context
    )
    layer = QgsProject.instance().mapLayer(result["OUTPUT"])
    assert layer is not None
    renderer = layer.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer)
    assert renderer.classAttribute() == "highway"
    listed = {c.value() for c in renderer.categories()}
    assert listed >= {"residential", "pedestrian"}
    assert listed == set(layer.uniqueValues(layer.fields().lookupField("highway")))  # no more


def test_algorithm_metadata(mus_provider):
    from qgis.core import QgsApplication

    algorithm = QgsApplication.processingRegistry().algorithmById(ALG)
    assert algorithm.displayName() == "Sample street centroids"
    assert algorithm.group() and algorithm.shortHelpString()
    classes = algorithm.parameterDefinition("CLASSES")
    options = classes.options()
    defaults = [options[i].split(" ")[0] for i in classes.defaultValue()]
    assert defaults == ["primary", "secondary", "tertiary", "residential", "pedestrian"]
    assert any(o.startswith("living_street") for o in options)
    assert QgsCoordinateReferenceSystem("EPSG:4326").isValid()
