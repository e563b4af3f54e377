"""mus:labelclusters, mus:labelboundaries and mus:labelperiods through processing.run, headless."""

from __future__ import annotations

import json

import numpy as np
import pytest
from qgis import processing
from qgis.core import (
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

from tests.qgis.helpers import RecordingFeedback

GREEN, WATER = "Green urban areas", "Water"


def half_planes(size: int = 8, step: float = 50.0, crs: str = "EPSG:32633") -> QgsVectorLayer:
    """Points on a grid, Green to the west and Water to the east, scores following the labels."""
    layer = QgsVectorLayer(
        f"Point?crs={crs}&field=id:integer&field=label_1:string&field=score_1:double",
        "half planes",
        "memory",
    )
    features = []
    for row in range(size):
        for column in range(size):
            feature = QgsFeature(layer.fields())
            feature.setGeometry(
                QgsGeometry.fromPointXY(QgsPointXY(300_000 + column * step, 4_640_000 + row * step))
            )
            west = column < size // 2
            score = (0.2 if west else 0.8) + 0.001 * ((row * 7 + column * 3) % 5)
            feature.setAttributes([row * size + column, GREEN if west else WATER, score])
            features.append(feature)
    assert layer.dataProvider().addFeatures(features)[0]
    return layer


def test_two_half_planes_are_clustered_with_a_report(mus_provider, tmp_path):
    layer = half_planes()
    layer.setCustomProperty(
        "mus_qgis/classification",
        json.dumps({"model": "ViT-B-32", "untrained": True, "label_set": "urban_atlas_2018"}),
    )
    report = tmp_path / "clusters.html"
    result = processing.run(
        "mus:labelclusters",
        {
            "INPUT": layer,
            "NEIGHBOURS": 1,
            "DISTANCE": 75,
            # Two-sided local Moran p-values start at 2 / (permutations + 1): 199 leaves the
            # FDR cut-off room over 64 tests.
            "PERMUTATIONS": 199,
            "OUTPUT": "memory:",
            "TABLE": "memory:",
            "REPORT": str(report),
        },
    )
    assert result["CLUSTERED"] == 2 and result["IN_CLUSTERS"] > 0
    table = {f["label"]: f for f in result["TABLE"].getFeatures()}
    assert table[GREEN]["verdict"] == "clustered" and table[GREEN]["p_clustered"] == 1 / 200
    assert table["score_1"]["test"] == "Moran's I" and table["score_1"]["statistic"] > 0.8
    clusters = list(result["OUTPUT"].getFeatures())
    assert len(clusters) == 64 and "id" in result["OUTPUT"].fields().names()
    green = [f["id"] % 8 for f in clusters if f["cluster"] == GREEN]
    assert green and max(green) < 4  # clusters of Green lie in the west half only
    assert {f["hotspot"] for f in clusters} >= {
        "hot spot (high among high)",
        "cold spot (low among low)",
    }
    text = report.read_text(encoding="utf-8")
    assert "Random weights." in text and "ViT-B-32, random (untrained) weights" in text
    assert "every feature within 75 m" in text and "clustered" in text


def test_a_layer_without_labels_is_refused(mus_provider):
    layer = QgsVectorLayer("Point?crs=EPSG:32633&field=name:string", "bare", "memory")
    feature = QgsFeature(layer.fields())
    feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(300_000, 4_640_000)))
    assert layer.dataProvider().addFeatures([feature])[0]
    with pytest.raises(QgsProcessingException, match="no field label_1 or label"):
        processing.run(
            "mus:labelclusters", {"INPUT": layer, "OUTPUT": "memory:", "TABLE": "memory:"}
        )


def line_layer(wkt: str, crs: str = "EPSG:32633") -> QgsVectorLayer:
    layer = QgsVectorLayer(f"LineString?crs={crs}", "reference", "memory")
    feature = QgsFeature()
    feature.setGeometry(QgsGeometry.fromWkt(wkt))
    assert layer.dataProvider().addFeatures([feature])[0]
    return layer


def test_boundaries_of_a_grid_follow_the_seam_and_the_reference(mus_provider):
    points = half_planes()
    grid = processing.run(
        "mus:resampletogrid",
        {"INPUT": points, "CELL_SIZE": 100, "PROJECTED_CRS": "EPSG:32633", "OUTPUT": "memory:"},
    )["OUTPUT"]
    seam = "LINESTRING(300200 4639900, 300200 4640500)"
    result = processing.run(
        "mus:labelboundaries",
        {
            "INPUT": grid,
            "POINTS": points,
            "REFERENCE": line_layer(seam),
            "BUFFER": 20,
            "PERMUTATIONS": 99,
            "OUTPUT": "memory:",
        },
    )
    # Four rows of 100 m cells; Green west of x = 300,200, Water east of it.
    assert result["EDGES"] == 4 and result["LENGTH_M"] == pytest.approx(400)
    (line,) = result["OUTPUT"].getFeatures()
    assert {line["label_a"], line["label_b"]} == {GREEN, WATER}
    assert line["strength"] == pytest.approx(1.0) and line["length_m"] == pytest.approx(400)
    assert line.geometry().length() == pytest.approx(400)
    assert result["ALIGNED_SHARE"] == pytest.approx(1.0) and result["P_VALUE"] <= 0.05
    across = processing.run(
        "mus:labelboundaries",
        {
            "INPUT": grid,
            "REFERENCE": line_layer("LINESTRING(299900 4640150, 300500 4640150)"),
            "BUFFER": 20,
            "PERMUTATIONS": 99,
            "OUTPUT": "memory:",
        },
    )
    assert across["ALIGNED_SHARE"] < 0.2 and across["P_VALUE"] > 0.05
    # The grid itself, through Label clusters: its 'label' and 'share' are found by name.
    clusters = processing.run(
        "mus:labelclusters",
        {
            "INPUT": grid,
            "NEIGHBOURS": 1,
            "DISTANCE": 101,
            "PERMUTATIONS": 19,
            "OUTPUT": "memory:",
            "TABLE": "memory:",
        },
    )
    table = {f["label"]: f["verdict"] for f in clusters["TABLE"].getFeatures()}
    assert set(table) == {GREEN, WATER, "share"}
    assert table["share"] == "not tested: every value is the same"  # each cell is pure
    assert clusters["OUTPUT"].geometryType() == grid.geometryType()


def test_a_grid_of_one_label_has_no_boundary_and_says_so(mus_provider):
    cells = QgsVectorLayer("Polygon?crs=EPSG:32633&field=label:string", "grid", "memory")
    features = []
    for column in range(2):
        feature = QgsFeature(cells.fields())
        x = 300_000 + 100 * column
        feature.setGeometry(
            QgsGeometry.fromWkt(f"POLYGON(({x} 0,{x + 100} 0,{x + 100} 100,{x} 100,{x} 0))")
        )
        feature.setAttributes([GREEN])
        features.append(feature)
    assert cells.dataProvider().addFeatures(features)[0]
    feedback = RecordingFeedback()
    result = processing.run(
        "mus:labelboundaries",
        {
            "INPUT": cells,
            "REFERENCE": line_layer("LINESTRING(300100 0, 300100 100)"),
            "OUTPUT": "memory:",
        },
        feedback=feedback,
    )
    assert result["EDGES"] == 0 and result["OUTPUT"].featureCount() == 0
    assert any("no alignment to test" in line for line in feedback.errors)  # a warning


def test_a_grid_in_degrees_is_refused(mus_provider):
    cell = QgsVectorLayer("Polygon?crs=EPSG:4326&field=label:string", "grid", "memory")
    feature = QgsFeature(cell.fields())
    feature.setGeometry(QgsGeometry.fromWkt("POLYGON((12 41,12.1 41,12.1 41.1,12 41.1,12 41))"))
    feature.setAttributes([GREEN])
    assert cell.dataProvider().addFeatures([feature])[0]
    with pytest.raises(QgsProcessingException, match="not in metres"):
        processing.run("mus:labelboundaries", {"INPUT": cell, "OUTPUT": "memory:"})


def photo_points_with_years(count: int = 5):
    """Points at the Arezzo photos (EPSG:4326) and a reference layer of years beside them."""
    from tests.conftest import AREZZO_PHOTOS

    points = QgsVectorLayer("Point?crs=EPSG:4326&field=image_paths:string", "photos", "memory")
    reference = QgsVectorLayer("Point?crs=EPSG:4326&field=built:integer", "buildings", "memory")
    features, buildings = [], []
    for index, photo in enumerate(AREZZO_PHOTOS[:count]):
        where = QgsGeometry.fromPointXY(QgsPointXY(11.88 + index * 1e-3, 43.467))
        feature = QgsFeature(points.fields())
        feature.setGeometry(where)
        feature.setAttributes([str(photo)])
        features.append(feature)
        building = QgsFeature(reference.fields())
        building.setGeometry(where)
        building.setAttributes([1500 + 50 * index])
        buildings.append(building)
    assert points.dataProvider().addFeatures(features)[0]
    assert reference.dataProvider().addFeatures(buildings)[0]
    return points, reference


def ranks(values):
    order = sorted(range(len(values)), key=lambda i: values[i])
    result = [0.0] * len(values)
    for rank, i in enumerate(order):
        result[i] = float(rank)
    return result


def test_periods_from_the_architects_and_spearman_with_reference_years(
    mus_provider, tiny_parameters, qgis_new_project, load_results_headless
):
    points, reference = photo_points_with_years(4)
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    result = processing.runAndLoadResults(
        "mus:labelperiods",
        {
            "INPUT": points,
            **tiny_parameters,
            "REFERENCE": reference,
            "YEAR_FIELD": "built",
            "MAX_DISTANCE": 5,
            "PERMUTATIONS": 99,
            "OUTPUT": QgsProcessing.TEMPORARY_OUTPUT,
        },
        context=context,
    )
    layer = QgsProject.instance().mapLayer(result["OUTPUT"])
    # The graduated map: early (light) to late (dark), by expected year.
    assert isinstance(layer.renderer(), QgsGraduatedSymbolRenderer)
    assert layer.renderer().classAttribute() == "year" and len(layer.renderer().ranges()) == 5
    rows = list(layer.getFeatures())
    assert result["CLASSIFIED"] == 4 and result["PAIRS"] == 4
    for row in rows:
        # Vitruvius (-47.5) to the youngest living architect (1956 + 40).
        assert -48 < row["year"] < 1997 and row["year_sd"] > 0
        assert 0.98 < row["dated"] < 1  # only Buscheto has no dates
        assert row["ref_dist_m"] < 1 and row["label_1"]
    years, built = [r["year"] for r in rows], [r["ref_year"] for r in rows]
    a, b = ranks(years), ranks(built)
    mean = (len(a) - 1) / 2
    expected_rho = sum((x - mean) * (y - mean) for x, y in zip(a, b, strict=True)) / sum(
        (x - mean) ** 2 for x in a
    )
    assert result["RHO"] == pytest.approx(expected_rho)
    assert 0 < result["P_VALUE"] <= 1
    with pytest.raises(QgsProcessingException, match="has no dates"):
        processing.run(
            "mus:labelperiods",
            {"INPUT": points, **tiny_parameters, "LABEL_SET": 0, "OUTPUT": "memory:"},
        )


def test_period_legend_classes_are_numpys_quantiles_in_whole_years_never_repeated():
    from mus_qgis.processing.label_periods import YEAR_COLOURS, period_breaks, period_classes

    years = [float(y) for y in np.random.default_rng(3).integers(1400, 1950, 37)]
    breaks = period_breaks(years)
    quantiles = np.quantile(years, np.linspace(0, 1, len(YEAR_COLOURS) + 1))
    np.testing.assert_allclose(breaks[1:-1], np.round(quantiles[1:-1]))
    assert breaks[0] <= min(years) and breaks[-1] >= max(years)
    # An architect's works: most labels share a few years, so quantiles coincide.
    clustered = [1747.0] * 20 + [1750.4] * 10 + [1812.0] * 5
    for case in (years, clustered, [1747.0] * 6, [1747.0]):
        classes = period_classes(period_breaks(case))
        texts = [text for _, _, _, text in classes]
        assert len(texts) == len(set(texts)) >= 1, texts
        assert all(low <= high for low, high, _, _ in classes)
        assert classes[-1][2] == YEAR_COLOURS[-1]  # the latest class in the darkest colour
        assert all(any(low <= y <= high for low, high, _, _ in classes) for y in case)
    assert [text for *_, text in period_classes(period_breaks([1747.0] * 6))] == ["1747"]
    assert period_breaks([]) == []


def test_the_report_names_the_layer_read_not_the_file_it_came_in(mus_provider, tmp_path):
    """qgis_process names 'rome_monti.gpkg|layername=arezzo_labels' after the file: a report
    titled 'rome_monti' for photos of Arezzo. The title takes the layer's own table, and a line
    says where its features lie, in degrees."""
    import re

    from qgis.core import QgsCoordinateTransformContext, QgsVectorFileWriter

    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName, options.layerName = "GPKG", "arezzo_labels"
    path = tmp_path / "rome_monti.gpkg"
    error = QgsVectorFileWriter.writeAsVectorFormatV3(
        half_planes(), str(path), QgsCoordinateTransformContext(), options
    )[0]
    assert error == QgsVectorFileWriter.WriterError.NoError
    report = tmp_path / "clusters.html"
    processing.run(
        "mus:labelclusters",
        {
            "INPUT": f"{path}|layername=arezzo_labels",
            "PERMUTATIONS": 99,
            "OUTPUT": "memory:",
            "TABLE": "memory:",
            "REPORT": str(report),
        },
    )
    text = report.read_text(encoding="utf-8")
    assert "<h1>Label clusters: arezzo_labels</h1>" in text and "rome_monti" not in text
    # UTM 33N (300,000 m E, 4,640,000 m N) is near 12.59° E, 41.89° N.
    box = re.search(
        r"Data: arezzo_labels: 64 features, ([\d.]+)–([\d.]+)° E, ([\d.]+)–([\d.]+)° N", text
    )
    assert box, text[:2000]
    west, east, south, north = map(float, box.groups())
    assert 12.5 < west < east < 12.7 and 41.8 < south < north < 42.0
