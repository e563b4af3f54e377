"""mus:ranklabels through processing.run, on constructed classified layers."""

from __future__ import annotations

import csv
import json

import pytest
from qgis import processing
from qgis.core import QgsFeature, QgsGeometry, QgsPointXY, QgsProcessingException, QgsVectorLayer

from tests.conftest import IMAGES, TINY_MODEL_CONFIG
from tests.qgis.helpers import engine_python

ALG = "mus:ranklabels"


def engine_cli(arguments: list[str]) -> str:
    """The engine's command line, run as users run it: in the engine's Python."""
    return engine_python(["-m", "mus_qgis.engine", *arguments])


def classified(name: str, label_set: str, rows) -> QgsVectorLayer:
    layer = QgsVectorLayer(
        "Point?crs=EPSG:4326&field=label_1:string&field=label_2:string"
        "&field=prob_1:double&field=prob_2:double",
        name,
        "memory",
    )
    features = []
    for first, second, p1, p2 in rows:
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(12.5, 41.9)))
        feature.setAttributes([first, second, p1, p2])
        features.append(feature)
    assert layer.dataProvider().addFeatures(features)[0]
    settings = {"label_set": label_set, "model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"}
    layer.setCustomProperty("mus_qgis/classification", json.dumps(settings))
    return layer


def test_multiscale_ranking_with_targets_groups_and_report(mus_provider, tmp_path):
    europe = classified(
        "europe",
        "european_capitals",
        [
            ("Paris", "Rome", 0.5, 0.3),
            ("Paris", "Rome", 0.5, 0.3),
            ("Rome", "Paris", 0.6, 0.2),
            ("Vatican City", "Rome", 0.4, 0.4),
            ("Vatican City", "Rome", 0.4, 0.4),
            (None, None, None, None),
        ],
    )
    provinces = classified(
        "provinces",
        "italian_provinces",
        [("Roma", "Napoli", 0.7, 0.1), ("Napoli", "Roma", 0.5, 0.4)],
    )
    report = tmp_path / "ranking.html"
    result = processing.run(
        ALG,
        {
            "INPUTS": [europe, provinces],
            "TARGETS": "Rome, Roma",
            "GROUPS": "Rome + Vatican City = Rome; Vatican City",
            "OUTPUT": "memory:",
            "REPORT": str(report),
        },
    )
    rows = list(result["OUTPUT"].getFeatures())
    europe_rows = {f["label"]: f for f in rows if f["label_set"] == "european_capitals"}
    assert len(europe_rows) == 45 - 2 + 1  # every capital, Rome and Vatican City summed
    group = europe_rows["Rome + Vatican City"]
    assert group["first_places"] == 3 and group["rank"] == 1 and group["target"] == 1
    assert group["share"] == pytest.approx(3 / 5)
    assert group["mean_probability"] == pytest.approx((0.3 + 0.3 + 0.6 + 0.8 + 0.8) / 5)
    assert europe_rows["Paris"]["rank"] == 2 and europe_rows["Berlin"]["first_places"] == 0
    province_rows = {f["label"]: f for f in rows if f["label_set"] == "italian_provinces"}
    assert len(province_rows) == 110
    assert province_rows["Roma"]["rank"] == 1 and province_rows["Roma"]["target"] == 1
    text = report.read_text(encoding="utf-8")
    assert "Rome + Vatican City" in text
    # Each label set by its title, and the model that made the labels at the top.
    assert "<h2>Italian provinces (110, 2009–2016)</h2>" in text
    # The targets are named as targets, so a reader does not take the bold row for a winner.
    assert "Targets in bold, their bars red: Roma.</p>" in text
    # Which layers were read and where they lie (every point at 12.5° E, 41.9° N).
    assert "Data: europe: 6 features, 12.5000° E, 41.9000° N; provinces: 2 features," in text
    assert "italian_provinces" not in text
    assert "Classified by ViT-B-32, laion2b_s34b_b79k weights." in text
    assert "Random weights" not in text


def test_the_report_warns_at_the_top_when_the_weights_are_random(mus_provider, tmp_path):
    layer = classified("capitals", "european_capitals", [("Paris", "Rome", 0.5, 0.3)])
    settings = {"label_set": "european_capitals", "model": "ViT-B-32", "untrained": True}
    layer.setCustomProperty("mus_qgis/classification", json.dumps(settings))
    report = tmp_path / "ranking.html"
    processing.run(ALG, {"INPUTS": [layer], "OUTPUT": "memory:", "REPORT": str(report)})
    text = report.read_text(encoding="utf-8")
    body = text[text.index("<body>") :]
    assert body.index("Random weights.") < body.index("<h2>")  # before any ranking
    assert "Classified by ViT-B-32, random (untrained) weights." in text


def test_unclassified_layer_and_bad_groups_are_clear_errors(mus_provider):
    plain = QgsVectorLayer("Point?crs=EPSG:4326&field=name:string", "plain", "memory")
    with pytest.raises(QgsProcessingException, match="no label_1"):
        processing.run(ALG, {"INPUTS": [plain], "OUTPUT": "memory:"})
    layer = classified("x", "european_capitals", [("Paris", "Rome", 0.5, 0.3)])
    with pytest.raises(QgsProcessingException, match="name = label"):
        processing.run(ALG, {"INPUTS": [layer], "GROUPS": "Rome and Vatican", "OUTPUT": "memory:"})


def test_stored_embeddings_ranked_exactly_as_the_engine_command_line(
    mus_provider, tmp_path, tiny_checkpoint, capsys
):
    cache = tmp_path / "cache"
    model = ["--model", str(TINY_MODEL_CONFIG), "--checkpoint", str(tiny_checkpoint)]
    model += ["--device", "cpu", "--cache-dir", str(cache)]
    group = "Rome + Vatican City = Rome; Vatican City"
    engine_cli(["embed", str(IMAGES / "arezzo"), *model])
    ranked = ["rank", "--labels", "european_capitals", "--targets", "Rome", "--group", group]
    by_command_line = list(csv.DictReader(engine_cli([*ranked, *model]).splitlines()))

    result = processing.run(
        ALG,
        {
            "STORED_LABEL_SETS": [9],  # European capitals
            "TARGETS": "Rome",
            "GROUPS": group,
            "MODEL": str(TINY_MODEL_CONFIG),
            "CHECKPOINT": str(tiny_checkpoint),
            "DEVICE": 1,
            "CACHE_FOLDER": str(cache),
            "OUTPUT": "memory:",
        },
    )
    rows = sorted(result["OUTPUT"].getFeatures(), key=lambda f: f["rank"])
    assert {f["label_set"] for f in rows} == {"european_capitals (all 9 stored images)"}
    assert [(f["label"], f["first_places"]) for f in rows] == [
        (r["label"], int(r["first_places"])) for r in by_command_line
    ]
    assert sum(f["mean_probability"] for f in rows) == pytest.approx(1.0, abs=1e-4)
    for feature, reference in zip(rows, by_command_line, strict=True):
        assert feature["mean_probability"] == pytest.approx(
            float(reference["mean_probability"]), abs=1e-6
        )


def test_ranking_needs_layers_or_stored_label_sets(mus_provider, tmp_path, tiny_checkpoint):
    with pytest.raises(QgsProcessingException, match="Give classified point layers"):
        processing.run(ALG, {"OUTPUT": "memory:"})
    with pytest.raises(QgsProcessingException, match="embed or classify images first"):
        processing.run(
            ALG,
            {
                "STORED_LABEL_SETS": [0],
                "MODEL": str(TINY_MODEL_CONFIG),
                "CHECKPOINT": str(tiny_checkpoint),
                "DEVICE": 1,
                "CACHE_FOLDER": str(tmp_path / "empty"),
                "OUTPUT": "memory:",
            },
        )


def test_the_report_counts_the_labels_shown_apart_from_groups():
    from types import SimpleNamespace

    from mus_qgis.processing.rank_labels import _report_html

    def entry(label, rank, members=(), mean=0.1):
        return SimpleNamespace(
            label=label,
            first_places=1,
            share=0.02,
            mean_probability=mean,
            rank=rank,
            target=False,
            members=members,
        )

    ranked = [entry(f"state {i}", i + 1) for i in range(44)]
    ranked.append(entry("Rome + Vatican City", 45, ("Italy", "Vatican City"), mean=None))
    page = _report_html([("Sovereign states", ranked)], [])
    assert "44 labels and 1 group;" in page
    assert "45 labels" not in page
    page = _report_html([("Sovereign states", ranked[:44])], [])
    assert "44 labels;" in page
