"""The street inspector in the real QGIS desktop (Xvfb, the packaged plugin in a fresh profile):
a classified layer, the toolbar button, a click on a point without imagery, the N key, a click on
a point with two photos, each view's reading from the engine, and a screenshot."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.conftest import ROOT
from tests.desktop import qgis_desktop, tail

QGIS_TIMEOUT_S = 120


def test_the_inspector_shows_a_clicked_point_in_the_desktop(tmp_path, classified_path):
    missing = [tool for tool in ("qgis", "Xvfb", "openbox") if not shutil.which(tool)]
    assert not missing, f"the desktop test needs {missing}: run scripts/install_system.sh"
    result = tmp_path / "result.json"
    screenshot = os.environ.get("MUS_INSPECTOR_SCREENSHOT") or str(tmp_path / "inspector.png")
    session = {
        "result": str(result),
        "classified": classified_path,
        "screenshot": screenshot,
        "run_timeout_s": 60,
    }
    with qgis_desktop(tmp_path, ROOT / "tests" / "inspector_session.py", session) as desktop:
        qgis = desktop.qgis
        try:
            code = qgis.wait(timeout=QGIS_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"QGIS did not finish: {tail(result)}\n{tail(tmp_path / 'qgis.log')}")
        seen = json.loads(result.read_text(encoding="utf-8"))
        assert code == 0 and seen["errors"] == [], (seen["errors"], seen["steps"])
        assert [m for m in seen["messages"] if m["tag"] == "Python error"] == []
        assert "Street inspector" in seen["toolbar_actions"]
        assert seen["map_tool"] == "InspectorMapTool"
        assert seen["clicked_inside_the_map"]
        assert seen["canvas"]["marker"][0]  # a ring marks the point shown
        assert 0 < seen["canvas"]["marker"][1] < seen["canvas"]["size"][0]
        fids = seen["fids"]
        without = seen["seen"]["without_imagery"]
        assert without["fid"] == fids["4"] and without["visible"]
        assert "no imagery" in without["status"] and without["strip_text"] == "no imagery"
        assert without["views"] == []
        # N stepped from the point shown to the next one by lowest margin (it has none: last,
        # so the next is the first of the order).
        order = seen["lowest_margin_order"]
        expected = order[(order.index(fids["4"]) + 1) % len(order)]
        assert seen["seen"]["after_n_key"]["fid"] == expected
        shown = seen["seen"]["with_images"]
        assert seen["view_score_errors"] == {}
        # Two photos: each its own view (no panorama strip), each with its own reading.
        assert shown["fid"] == fids["0"] and not shown["strip_shown"]
        assert shown["thumbnails"] == [200, 200]
        assert len(shown["views"]) == 2 and all("%" in text for text in shown["views"])
        for fact in ("Pooled reading", "2016-05-01", "CC BY-SA 4.0", "Attribution: ana"):
            assert fact in shown["details"]
        assert shown["links"] == 1 and shown["order"] == "lowest margin first"
        assert seen["screenshot_saved"] and os.path.getsize(screenshot) > 10_000
