"""Reports and figures made from CC BY-SA imagery credit it: the sources, the creators, the
licence and its page."""

from __future__ import annotations

import ast

from qgis import processing
from qgis.core import QgsVectorLayer

from tests.conftest import ROOT

BY_SA = (
    "Mapillary: 4 images by ana, CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/)."
)


def test_the_ranking_report_credits_the_imagery(mus_provider, classified_path, tmp_path):
    report = tmp_path / "ranking.html"
    processing.run(
        "mus:ranklabels",
        {"INPUTS": [classified_path], "OUTPUT": "memory:", "REPORT": str(report)},
    )
    text = report.read_text(encoding="utf-8")
    assert "<h2>Imagery</h2>" in text and BY_SA in text
    assert "shared under the same licence" in text


def test_every_figure_credits_the_imagery(mus_provider, classified_path):
    from mus_qgis.processing.figures import _attribution

    layer = QgsVectorLayer(classified_path, "classified", "ogr")
    lines = _attribution([layer], None, [{}])
    assert BY_SA in lines
    assert any("share-alike" in line for line in lines)


def test_every_report_of_a_layer_passes_its_credits():
    """Each report the QGIS side writes from layers hands report_start the imagery's credits
    (the engine's reports get them in their parameters)."""
    folder = ROOT / "mus_qgis" / "processing"
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "report_start":
                keywords = {keyword.arg for keyword in node.keywords}
                assert "credits" in keywords, f"{path.name}:{node.lineno}"
