"""mus:compareurbanatlas on real CORINE (Malta) and Urban Atlas (Narva) polygons."""

from __future__ import annotations

import pytest
from qgis import processing
from qgis.core import (
    Qgis,
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsProcessing,
    QgsProcessingContext,
    QgsProject,
    QgsVectorLayer,
)

from mus_qgis.engine.readings.agreement import agreement
from tests.conftest import SHARED_DATA

ALG = "mus:compareurbanatlas"
CORINE = SHARED_DATA / "landcover" / "corine" / "clc2018_malta.gpkg"
NARVA = SHARED_DATA / "landcover" / "urban_atlas_sample" / "EE003L1_NARVA_UA2018.gpkg"


def points_on(polygons: QgsVectorLayer, predictions) -> QgsVectorLayer:
    """A WGS84 point inside each of the first polygons, with a predicted code each."""
    layer = QgsVectorLayer(
        "Point?crs=EPSG:4326&field=label_1:string&field=code_1:string", "classified", "memory"
    )
    transform = QgsCoordinateTransform(
        polygons.crs(), QgsCoordinateReferenceSystem("EPSG:4326"), QgsProject.instance()
    )
    features = []
    for polygon, code in zip(polygons.getFeatures(), predictions, strict=False):
        feature = QgsFeature(layer.fields())
        point = polygon.geometry().pointOnSurface()
        assert point.transform(transform) == Qgis.GeometryOperationResult.Success
        feature.setGeometry(point)
        feature.setAttributes(["label", code])
        features.append(feature)
    assert layer.dataProvider().addFeatures(features)[0]
    return layer


def test_agreement_with_real_corine_polygons(
    mus_provider, tmp_path, qgis_new_project, load_results_headless
):
    corine = QgsVectorLayer(f"{CORINE}|layername=clc18_mt", "clc", "ogr")
    assert corine.isValid()
    truth = [str(f["CODE_18"]) for f in corine.getFeatures()][:12]
    wrong = {"111": "112", "112": "111"}
    predicted = [code if i % 3 else wrong.get(code, "111") for i, code in enumerate(truth)]
    points = points_on(corine, predicted)
    report = tmp_path / "agreement.html"
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    result = processing.runAndLoadResults(
        ALG,
        {
            "INPUT": points,
            "REFERENCE": corine,
            "OUTPUT": QgsProcessing.TEMPORARY_OUTPUT,
            "REFERENCE_OUTPUT": QgsProcessing.TEMPORARY_OUTPUT,
            "REPORT": str(report),
        },
        context=context,
    )
    expected = agreement(truth, predicted)
    assert result["COMPARED"] == 12
    assert result["OVERALL_ACCURACY"] == pytest.approx(expected.overall_accuracy)
    assert result["KAPPA"] == pytest.approx(expected.kappa)
    layer = QgsProject.instance().mapLayer(result["OUTPUT"])
    rows = list(layer.getFeatures())
    assert [r["ref_code"] for r in rows] == truth
    assert [r["agree"] for r in rows] == [
        int(t == p) for t, p in zip(truth, predicted, strict=True)
    ]
    text = report.read_text(encoding="utf-8")
    assert "Confusion matrix" in text and "Cohen" in text and "Continuous urban fabric" in text
    assert "Random weights" not in text and "No point was compared" not in text
    styled = QgsProject.instance().mapLayer(result["REFERENCE_OUTPUT"])
    assert isinstance(styled.renderer(), QgsCategorizedSymbolRenderer)
    colours = {c.value(): c.symbol().color().name() for c in styled.renderer().categories()}
    assert colours["111"] == "#e6004d" and len(colours) == 44


def test_urban_atlas_fields_found_whatever_their_case(mus_provider):
    narva = QgsVectorLayer(str(NARVA), "ua", "ogr")
    assert narva.isValid()
    points = points_on(narva, ["12100", "11100"])
    outside = QgsFeature(points.fields())
    from qgis.core import QgsGeometry, QgsPointXY

    outside.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(0.0, 0.0)))
    outside.setAttributes(["label", "11100"])
    assert points.dataProvider().addFeatures([outside])[0]
    result = processing.run(ALG, {"INPUT": points, "REFERENCE": narva, "OUTPUT": "memory:"})
    rows = list(result["OUTPUT"].getFeatures())
    assert [r["ref_code"] for r in rows] == ["12100", "12100", None]
    assert rows[0]["ref_class"].startswith("Industrial")
    assert [r["agree"] for r in rows] == [1, 0, None]
    assert result["COMPARED"] == 2 and result["OVERALL_ACCURACY"] == pytest.approx(0.5)


def test_nothing_compared_is_refused_and_random_weights_named(mus_provider, tmp_path):
    """Points on the polygons but none with a code: refused with the reason, and no report of
    empty numbers is left; a comparison of an untrained classification says so at its top."""
    import json

    from qgis.core import QgsProcessingException

    narva = QgsVectorLayer(str(NARVA), "ua", "ogr")
    report = tmp_path / "agreement.html"
    parameters = {"REFERENCE": narva, "OUTPUT": "memory:", "REPORT": str(report)}
    codeless = points_on(narva, ["", ""])  # as left by a classification with no usable image
    with pytest.raises(QgsProcessingException, match="No compared point has a predicted code"):
        processing.run(ALG, {**parameters, "INPUT": codeless})
    assert not report.exists()
    points = points_on(narva, ["12100", "11100"])
    points.setCustomProperty(
        "mus_qgis/classification",
        json.dumps({"model": "ViT-B-32", "untrained": True, "label_set": "urban_atlas_2018"}),
    )
    assert processing.run(ALG, {**parameters, "INPUT": points})["COMPARED"] == 2
    text = report.read_text(encoding="utf-8")
    assert text.index("Random weights.") < text.index("points compared")
    assert "Classified by ViT-B-32, random (untrained) weights." in text
