"""The readings' algorithms (grid, comparison with Urban Atlas, ranking) given bad, odd or hostile
layers and settings: each case ends in a QgsProcessingException whose message names the input and
what to fix, or in a complete result (with a warning where something was left out).

HTML reports are opened and parsed: label text holding markup must come out as text, never as a
live element.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from qgis import processing
from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsGeometry,
    QgsProcessingException,
    QgsProject,
    QgsVectorLayer,
)

from tests.qgis.helpers import RecordingFeedback

UTM = "EPSG:32633"
GREEN, WATER = "Green urban areas", "Water"
HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"


class WarningFeedback(RecordingFeedback):
    """Also keeps the warnings (reportError), as the Processing log shows them."""

    def reportError(self, error, fatalError=False):  # noqa: N803 (QGIS's names)
        self.lines.append(error)
        super().reportError(error, fatalError)


class LiveElements(HTMLParser):
    """Every element that would run or load something: scripts, on* handlers, images."""

    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "img", "iframe", "object", "embed") or any(
            name.startswith("on") for name, _ in attrs
        ):
            self.found.append((tag, attrs))


def live_elements(path) -> list:
    parser = LiveElements()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.found


def points_layer(rows, crs=UTM, fields="field=label_1:string&field=score_1:double", name="pts"):
    """rows: (wkt or None, attributes...)."""
    layer = QgsVectorLayer(f"Point?crs={crs}&{fields}", name, "memory")
    features = []
    for wkt, *attributes in rows:
        feature = QgsFeature(layer.fields())
        if wkt is not None:
            feature.setGeometry(QgsGeometry.fromWkt(wkt))
        feature.setAttributes(list(attributes))
        features.append(feature)
    assert layer.dataProvider().addFeatures(features)[0]
    return layer


def polygon_layer(wkts, crs=UTM, fields="", attributes=None, name="area"):
    layer = QgsVectorLayer(f"Polygon?crs={crs}{'&' + fields if fields else ''}", name, "memory")
    features = []
    for i, wkt in enumerate(wkts):
        feature = QgsFeature(layer.fields())
        if wkt is not None:
            feature.setGeometry(QgsGeometry.fromWkt(wkt))
        if attributes:
            feature.setAttributes(list(attributes[i]))
        features.append(feature)
    assert layer.dataProvider().addFeatures(features)[0]
    return layer


def box(x0, y0, x1, y1) -> str:
    return f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"


X0, Y0 = 291_000, 4_640_000
BOWTIE = f"POLYGON(({X0} {Y0},{X0 + 400} {Y0 + 400},{X0 + 400} {Y0},{X0} {Y0 + 400},{X0} {Y0}))"
GOOD_POINTS = [
    (f"POINT({X0 + 10} {Y0 + 10})", GREEN, 0.4),
    (f"POINT({X0 + 20} {Y0 + 20})", GREEN, 0.4),
    (f"POINT({X0 + 150} {Y0 + 50})", WATER, 0.6),
]


def in_wgs84(wkt: str) -> str:
    geometry = QgsGeometry.fromWkt(wkt)
    transform = QgsCoordinateTransform(
        QgsCoordinateReferenceSystem(UTM),
        QgsCoordinateReferenceSystem("EPSG:4326"),
        QgsProject.instance(),
    )
    assert geometry.transform(transform) == Qgis.GeometryOperationResult.Success
    return geometry.asWkt()


# -- Resample labels to a grid ----------------------------------------------------------------
GRID_ERRORS = {
    "empty point layer": (
        {"INPUT": lambda: points_layer([])},
        "No point of 'pts' has both a location and a label in 'label_1'",
    ),
    "only null geometries": (
        {"INPUT": lambda: points_layer([(None, GREEN, 0.5), ("POINT EMPTY", WATER, 0.5)])},
        "No point of 'pts' has both a location and a label",
    ),
    "missing label field": (
        {"INPUT": lambda: points_layer(GOOD_POINTS), "LABEL_FIELD": "landuse"},
        "no field 'landuse' for the labels. Its fields: label_1, score_1",
    ),
    "weighted, no score field": (
        {
            "INPUT": lambda: points_layer(GOOD_POINTS, fields="field=label_1:string&field=x:int"),
            "WEIGHTED": True,
        },
        "no field 'score_1' for the scores",
    ),
    "geographic grid CRS": (
        {"INPUT": lambda: points_layer(GOOD_POINTS), "PROJECTED_CRS": "EPSG:4326"},
        "The grid CRS EPSG:4326 is geographic (degrees): choose a projected CRS in metres",
    ),
    "grid CRS in feet": (
        {"INPUT": lambda: points_layer(GOOD_POINTS), "PROJECTED_CRS": "EPSG:2263"},
        "The grid CRS EPSG:2263 is not in metres",
    ),
    "cell size zero": (
        {"INPUT": lambda: points_layer(GOOD_POINTS), "CELL_SIZE": 0},
        "CELL_SIZE (Cell size (metres)) must be at least 1, not 0.",
    ),
    "cell size negative": (
        {"INPUT": lambda: points_layer(GOOD_POINTS), "CELL_SIZE": -100},
        "CELL_SIZE (Cell size (metres)) must be at least 1, not -100.",
    ),
    "cell size absurdly small": (
        {
            "INPUT": lambda: points_layer(GOOD_POINTS),
            "CELL_SIZE": 1,
            "AREA": lambda: polygon_layer([box(X0, Y0, X0 + 3000, Y0 + 3000)]),
        },
        "more than 1,000,000: choose a cell size of at least",
    ),
    "study area 50 km away": (
        {
            "INPUT": lambda: points_layer(GOOD_POINTS),
            "AREA": lambda: polygon_layer([box(X0 + 50_000, Y0, X0 + 51_000, Y0 + 1000)]),
        },
        "No labelled point falls in the study area: the nearest lies 49.9 km from it",
    ),
    # QGIS's own check of invalid input geometries speaks first (the engine would mend it).
    "self-crossing study area": (
        {
            "INPUT": lambda: points_layer(GOOD_POINTS),
            "AREA": lambda: polygon_layer([BOWTIE]),
        },
        "Feature (1) from “area” has invalid geometry",
    ),
    "study area layer with no polygon": (
        {"INPUT": lambda: points_layer(GOOD_POINTS), "AREA": lambda: polygon_layer([None])},
        "The study area layer 'area' has no polygon",
    ),
}


@pytest.mark.parametrize("case", list(GRID_ERRORS), ids=list(GRID_ERRORS))
def test_grid_bad_inputs_are_clear_errors(mus_provider, case):
    given, message = GRID_ERRORS[case]
    parameters = {"PROJECTED_CRS": UTM, "CELL_SIZE": 100, "OUTPUT": "memory:"}
    parameters.update({k: v() if callable(v) else v for k, v in given.items()})
    with pytest.raises(QgsProcessingException) as raised:
        processing.run("mus:resampletogrid", parameters)
    assert message in str(raised.value)


def grid_cells(result) -> list:
    return list(result["OUTPUT"].getFeatures())


GRID_WORKS = {
    # A detached piece of the study area that no point reaches: labelled from the nearest cells.
    "island no point reaches": (
        lambda: polygon_layer(
            [
                f"MULTIPOLYGON((({X0} {Y0},{X0 + 400} {Y0},{X0 + 400} {Y0 + 100},{X0} {Y0 + 100},"
                f"{X0} {Y0})),(({X0 + 900} {Y0},{X0 + 1000} {Y0},{X0 + 1000} {Y0 + 100},"
                f"{X0 + 900} {Y0 + 100},{X0 + 900} {Y0})))"
            ]
        ),
        {"2919,46400": (WATER, 800.0)},
    ),
    # The area in degrees, the points in metres: reprojected, the same cells.
    "area in another CRS": (
        lambda: polygon_layer([in_wgs84(box(X0, Y0, X0 + 400, Y0 + 100))], crs="EPSG:4326"),
        {"2913,46400": (WATER, 200.0)},
    ),
}


@pytest.mark.parametrize("case", list(GRID_WORKS), ids=list(GRID_WORKS))
def test_every_cell_of_an_odd_study_area_gets_a_label(mus_provider, case):
    area, expected = GRID_WORKS[case]
    rows = [*GOOD_POINTS, (None, GREEN, 0.9), (f"POINT({X0 + 30} {Y0 + 30})", None, None)]
    result = processing.run(
        "mus:resampletogrid",
        {
            "INPUT": points_layer(rows),
            "AREA": area(),
            "CELL_SIZE": 100,
            "PROJECTED_CRS": UTM,
            "OUTPUT": "memory:",
        },
    )
    cells = {f["cell"]: f for f in grid_cells(result)}
    assert all(f["label"] in (GREEN, WATER) for f in cells.values()), "a cell has no label"
    assert sum(f["points"] for f in cells.values()) == 3
    for cell, (label, distance) in expected.items():
        assert (cells[cell]["label"], cells[cell]["filled"]) == (label, 1)
        assert cells[cell]["fill_dist"] == pytest.approx(distance)


# -- Compare with Urban Atlas or CORINE -------------------------------------------------------
def urban_atlas(crs=UTM, fields="field=code_2018:string&field=class_2018:string"):
    """Two Urban Atlas polygons side by side."""
    wkts = [box(X0, Y0, X0 + 100, Y0 + 100), box(X0 + 100, Y0, X0 + 200, Y0 + 100)]
    if crs != UTM:
        wkts = [in_wgs84(w) for w in wkts]
    attributes = [("14100", "Green urban areas"), ("50000", "Water")]
    if "code_2018" not in fields:
        attributes = [(1,), (2,)]
    return polygon_layer(wkts, crs=crs, fields=fields, attributes=attributes, name="ua")


def predicted(codes, crs=UTM):
    rows = [
        (f"POINT({X0 + 50 + 100 * (i % 2)} {Y0 + 50})", "label", code)
        for i, code in enumerate(codes)
    ]
    if crs != UTM:
        rows = [(in_wgs84(wkt), *rest) for wkt, *rest in rows]
    return points_layer(rows, crs=crs, fields="field=label_1:string&field=code_1:string")


COMPARE_ERRORS = {
    "city names as codes": (
        lambda: predicted(["Rome", "Paris"]),
        lambda: urban_atlas(),
        "('Paris', 'Rome') are not Urban Atlas or CORINE land-use codes",
    ),
    "no predicted code": (
        lambda: predicted([None, None]),
        lambda: urban_atlas(),
        "No compared point has a predicted code",
    ),
    "reference without a code field": (
        lambda: predicted(["14100", "50000"]),
        lambda: urban_atlas(fields="field=id:int"),
        "The reference layer has no field code_2018 or code_18 or code_12 or clc_code or code",
    ),
    "reference not under the points": (
        lambda: points_layer(
            [("POINT(500000 5000000)", "label", "14100")],
            fields="field=label_1:string&field=code_1:string",
        ),
        lambda: urban_atlas(),
        "None of the 1 points falls on a polygon of the reference layer 'ua' (2 polygons)",
    ),
    "empty point layer": (
        lambda: predicted([]),
        lambda: urban_atlas(),
        "The point layer 'pts' has no point",
    ),
}


@pytest.mark.parametrize("case", list(COMPARE_ERRORS), ids=list(COMPARE_ERRORS))
def test_compare_bad_inputs_are_clear_errors(mus_provider, case):
    points, reference, message = COMPARE_ERRORS[case]
    with pytest.raises(QgsProcessingException) as raised:
        processing.run(
            "mus:compareurbanatlas",
            {"INPUT": points(), "REFERENCE": reference(), "OUTPUT": "memory:"},
        )
    assert message in str(raised.value)


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:3857"], ids=["points-wgs84", "points-3857"])
def test_points_in_another_crs_than_the_reference_are_reprojected(mus_provider, crs, tmp_path):
    points = predicted(["14100", "14100", "50000", "50000"], crs="EPSG:4326")
    if crs == "EPSG:3857":
        points = processing.run(
            "native:reprojectlayer",
            {"INPUT": points, "TARGET_CRS": crs, "OUTPUT": "memory:"},
        )["OUTPUT"]
    report = tmp_path / "agreement.html"
    result = processing.run(
        "mus:compareurbanatlas",
        {"INPUT": points, "REFERENCE": urban_atlas(), "OUTPUT": "memory:", "REPORT": str(report)},
    )
    assert result["COMPARED"] == 4 and result["OVERALL_ACCURACY"] == pytest.approx(0.5)
    assert [f["ref_code"] for f in result["OUTPUT"].getFeatures()] == ["14100", "50000"] * 2
    # 14100 is predicted twice and right once: F1 = 0.5; never blank.
    text = report.read_text(encoding="utf-8")
    assert "<td>0.500</td>" in text


def test_hostile_code_text_in_the_agreement_report_stays_text(mus_provider, tmp_path):
    report = tmp_path / "agreement.html"
    feedback = WarningFeedback()
    result = processing.run(
        "mus:compareurbanatlas",
        {
            "INPUT": predicted(["14100", HOSTILE]),
            "REFERENCE": urban_atlas(),
            "OUTPUT": "memory:",
            "REPORT": str(report),
        },
        feedback=feedback,
    )
    # Observed 1/2, by chance 1/4: kappa (1/2 - 1/4) / (3/4).
    assert result["COMPARED"] == 2 and result["KAPPA"] == pytest.approx(1 / 3)
    assert any(
        "1 of 2 compared points have a predicted value that is not" in line
        for line in feedback.lines
    )
    assert live_elements(report) == []
    assert "&lt;script&gt;" in report.read_text(encoding="utf-8")
    # F1 of the class never right (50000) is 0, not blank.
    assert "<td>0.000</td><td>0</td></tr>" in report.read_text(encoding="utf-8") or (
        ">0.000<" in report.read_text(encoding="utf-8")
    )


# -- Rank labels -------------------------------------------------------------------------------
def classified(rows, name="capitals", label_set="european_capitals"):
    layer = points_layer(
        [("POINT(12.5 41.9)", first, 0.6) for first in rows],
        crs="EPSG:4326",
        fields="field=label_1:string&field=prob_1:double",
        name=name,
    )
    if label_set:
        layer.setCustomProperty("mus_qgis/classification", json.dumps({"label_set": label_set}))
    return layer


RANK_ERRORS = {
    "unknown target typed": (
        lambda: classified(["Paris", "Rome"]),
        "Rmoe",
        "Not a label of any label set ranked: 'Rmoe'. european_capitals: The labels are: Tirana",
    ),
    "layer with nothing classified": (
        lambda: classified([None, None]),
        "Rome",
        "capitals has no classified point (label_1 is empty on all 2 features)",
    ),
}


@pytest.mark.parametrize("case", list(RANK_ERRORS), ids=list(RANK_ERRORS))
def test_rank_bad_inputs_are_clear_errors(mus_provider, case):
    layer, targets, message = RANK_ERRORS[case]
    with pytest.raises(QgsProcessingException) as raised:
        processing.run(
            "mus:ranklabels", {"INPUTS": [layer()], "TARGETS": targets, "OUTPUT": "memory:"}
        )
    assert message in str(raised.value)


def test_no_target_by_default_highlights_nothing(mus_provider):
    feedback = WarningFeedback()
    result = processing.run(
        "mus:ranklabels",
        {"INPUTS": [classified(["Paris", "Rome"])], "OUTPUT": "memory:"},
        feedback=feedback,
    )
    assert [f["label"] for f in result["OUTPUT"].getFeatures() if f["target"]] == []
    assert not any("Not a label" in line for line in feedback.lines)


def test_hostile_label_text_in_the_ranking_report_stays_text(mus_provider, tmp_path):
    report = tmp_path / "ranking.html"
    layer = classified([HOSTILE, HOSTILE, "Paris"], name=HOSTILE, label_set="")
    processing.run(
        "mus:ranklabels",
        {
            "INPUTS": [layer],
            "TARGETS": HOSTILE.split(",")[0],
            "OUTPUT": "memory:",
            "REPORT": str(report),
        },
    )
    assert live_elements(report) == []
    text = report.read_text(encoding="utf-8")
    # The layer in the Data line, the set name, the targets' key line and the label's row: each
    # escaped, none live.
    assert text.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 4
