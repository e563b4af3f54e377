"""mus:resampletogrid through processing.run, headless."""

from __future__ import annotations

import pytest
from qgis import processing
from qgis.core import (
    QgsApplication,
    QgsCategorizedSymbolRenderer,
    QgsExpression,
    QgsExpressionContext,
    QgsExpressionContextUtils,
    QgsFeature,
    QgsGeometry,
    QgsPointXY,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProject,
    QgsVectorLayer,
)

ALG = "mus:resampletogrid"
GREEN, WATER = "Green urban areas", "Water"


def labelled_points(rows, crs="EPSG:32633") -> QgsVectorLayer:
    layer = QgsVectorLayer(
        f"Point?crs={crs}&field=label_1:string&field=score_1:double", "pts", "memory"
    )
    features = []
    for x, y, label, score in rows:
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(x, y)))
        feature.setAttributes([label, score])
        features.append(feature)
    assert layer.dataProvider().addFeatures(features)[0]
    return layer


def square_area(x0, y0, x1, y1, crs="EPSG:32633") -> QgsVectorLayer:
    layer = QgsVectorLayer(f"Polygon?crs={crs}", "area", "memory")
    feature = QgsFeature()
    feature.setGeometry(
        QgsGeometry.fromWkt(f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))")
    )
    assert layer.dataProvider().addFeatures([feature])[0]
    return layer


def test_majority_fill_and_official_colours(mus_provider, qgis_new_project, load_results_headless):
    rows = [
        (291_010, 4_640_010, GREEN, 0.2),
        (291_020, 4_640_020, GREEN, 0.2),
        (291_030, 4_640_030, WATER, 0.9),
        (291_150, 4_640_050, WATER, 0.5),
    ]
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    result = processing.runAndLoadResults(
        ALG,
        {
            "INPUT": labelled_points(rows),
            "CELL_SIZE": 100,
            "LABEL_SET": 1,
            "AREA": square_area(291_000, 4_640_000, 291_400, 4_640_100),
            "PROJECTED_CRS": "EPSG:32633",
            "OUTPUT": QgsProcessing.TEMPORARY_OUTPUT,
        },
        context=context,
    )
    assert result["CELLS"] == 4 and result["FILLED"] == 2
    layer = QgsProject.instance().mapLayer(result["OUTPUT"])
    cells = {f["cell"]: f for f in layer.getFeatures()}
    first = cells["2910,46400"]
    assert first["label"] == GREEN and first["points"] == 2 + 1
    assert first["share"] == pytest.approx(2 / 3) and first["filled"] == 0
    assert cells["2911,46400"]["label"] == WATER
    assert cells["2913,46400"]["filled"] == 1 and cells["2913,46400"]["fill_dist"] == 200.0
    assert layer.crs().authid() == "EPSG:32633"
    assert layer.getFeature(1).geometry().area() == pytest.approx(100 * 100)
    renderer = layer.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer)
    legend = {c.value(): (c.symbol().color(), c.label()) for c in renderer.categories()}
    # Observed and filled cells apart, each label with its code; only what the grid holds.
    filled_label = cells["2913,46400"]["label"]
    assert set(legend) == {GREEN, WATER, f"{filled_label} · filled"}
    assert legend[GREEN][0].name() == "#8cdc00" and legend[WATER][0].name() == "#80f2e6"
    assert legend[GREEN][1] == f"14100 {GREEN}"  # the official Urban Atlas palette and codes
    filled_colour, filled_text = legend[f"{filled_label} · filled"]
    assert filled_colour.alpha() < 128
    assert " ".join(filled_text.split()).endswith("(filled: no point in the cell)")
    # Broken into lines that fit a default Layers panel, not cut by it.
    assert "\n" in filled_text and max(len(line) for line in filled_text.splitlines()) <= 24
    assert filled_colour.name() == legend[filled_label][0].name()  # a lighter shade of its own
    category = QgsExpression(renderer.classAttribute())
    context = QgsExpressionContext(QgsExpressionContextUtils.globalProjectLayerScopes(layer))
    for feature in cells.values():
        context.setFeature(feature)
        value = category.evaluate(context)
        assert value == feature["label"] + (" · filled" if feature["filled"] else "")


def test_weighted_by_score_and_hexagons(mus_provider):
    rows = [
        (291_010, 4_640_010, GREEN, 0.2),
        (291_020, 4_640_020, GREEN, 0.2),
        (291_030, 4_640_030, WATER, 0.9),
    ]
    weighted = processing.run(
        ALG,
        {
            "INPUT": labelled_points(rows),
            "CELL_SIZE": 100,
            "WEIGHTED": True,
            "PROJECTED_CRS": "EPSG:32633",
            "OUTPUT": "memory:",
        },
    )
    assert [f["label"] for f in weighted["OUTPUT"].getFeatures()] == [WATER]
    hexagons = processing.run(
        ALG,
        {
            "INPUT": labelled_points(rows),
            "CELL_SIZE": 100,
            "SHAPE": 1,
            "PROJECTED_CRS": "EPSG:32633",
            "OUTPUT": "memory:",
        },
    )
    (cell,) = list(hexagons["OUTPUT"].getFeatures())
    assert len(cell.geometry().asPolygon()[0]) == 7
    assert cell.geometry().area() == pytest.approx(100 * 100, rel=1e-6)


def test_a_point_with_a_null_score_counts_one_in_a_tie_as_the_help_says(mus_provider):
    # Two points in one cell, one vote each: the tie goes to the higher total score, where a
    # NULL score counts 1 (the help: "1 per point without one"), so Water's NULL beats 0.6.
    from qgis.core import NULL

    rows = [(291_010, 4_640_010, GREEN, 0.6), (291_020, 4_640_020, WATER, NULL)]
    result = processing.run(
        ALG,
        {
            "INPUT": labelled_points(rows),
            "CELL_SIZE": 100,
            "PROJECTED_CRS": "EPSG:32633",
            "OUTPUT": "memory:",
        },
    )
    assert [f["label"] for f in result["OUTPUT"].getFeatures()] == [WATER]
    algorithm = QgsApplication.processingRegistry().algorithmById(ALG)
    assert "1 per point without one" in algorithm.shortHelpString()


def test_geographic_points_get_their_utm_zone(mus_provider):
    rows = [(12.49 + i * 1e-3, 41.89, GREEN if i % 2 else WATER, 0.5) for i in range(10)]
    result = processing.run(
        ALG, {"INPUT": labelled_points(rows, "EPSG:4326"), "CELL_SIZE": 50, "OUTPUT": "memory:"}
    )
    assert result["OUTPUT"].crs().authid() == "EPSG:32633"
    assert result["CELLS"] >= 10


def test_unclassified_points_are_a_clear_error(mus_provider):
    rows = [(291_010, 4_640_010, None, None)]
    with pytest.raises(
        QgsProcessingException, match="has both a location and a label in 'label_1'"
    ):
        processing.run(ALG, {"INPUT": labelled_points(rows), "OUTPUT": "memory:"})
    with pytest.raises(QgsProcessingException, match="no field 'nope'"):
        processing.run(
            ALG, {"INPUT": labelled_points(rows), "LABEL_FIELD": "nope", "OUTPUT": "memory:"}
        )
    weighted_by_a_missing_field = {"SCORE_FIELD": "nope", "WEIGHTED": True, "OUTPUT": "memory:"}
    with pytest.raises(QgsProcessingException, match="no field 'nope' for the scores"):
        processing.run(ALG, {"INPUT": labelled_points(rows), **weighted_by_a_missing_field})
