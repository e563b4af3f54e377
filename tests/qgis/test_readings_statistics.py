"""mus:labelclusters, mus:labelboundaries and mus:labelperiods through processing.run, headless."""

from __future__ import annotations

import json

import pytest
from qgis import processing
from qgis.core import (
    QgsFeature,
    QgsGeometry,
    QgsPointXY,
    QgsProcessingException,
    QgsVectorLayer,
)

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
