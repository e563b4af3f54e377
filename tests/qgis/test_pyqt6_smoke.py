"""The plugin under real PyQt6: its Qt modules imported, its widgets built (QGIS 4 readiness).

QGIS 4 is built on Qt 6 and PyQt6, which refuses what PyQt5 let pass: unscoped enums
(``Qt.AlignLeft``; PyQt6 wants ``Qt.AlignmentFlag.AlignLeft``), ``exec_()``, ``QRegExp``,
``QDesktopWidget``, ``midButton()`` and the other Qt 5-only names. No QGIS 4 build can be installed
here (Debian packages none), so this test runs the plugin's Qt code under PyQt6 itself
(requirements-dev.txt pins it), in a subprocess of its own: PyQt5 (QGIS 3, this test process) and
PyQt6 must not meet in one process. The harness is ``qt6_smoke/smoke.py``; it runs offscreen.

It imports every plugin module that imports Qt (found by reading the import statements, not from
a list kept by hand) and builds what the plugin builds: ``classFactory`` and ``initGui`` (the
Plugins menu's four actions and the toolbar, with its icon), the street inspector from its
toolbar action (dock, order and label combo boxes, step buttons, the views' labels and pixmaps,
the details browser, the map tool's marker), stepping with the map tool's keys, the buttons and a
map click, setting and clearing a label, closing it; the engine status dialog; the Processing
provider and every algorithm's icon, texts and parameters; the figures' texts, bars and elided
labels; the grid and mainstream styles; the field types; the thumbnails; a draw of every window;
``unload``. Every step runs even after a failure, and a failure names the plugin line it came
from. A Qt exception raised in a slot is caught too (PyQt6 would abort the process).

The stand-ins (``qt6_smoke/qgis``), only where no QGIS 4 build forces them:

====================  =======================================  ====================================
Stand-in              Replaces                                 Why it cannot be real here
====================  =======================================  ====================================
``qgis.PyQt.*``       QGIS 4's Qt shim: PyQt6's own modules    The shim ships inside QGIS 4. Real
                      plus what QGIS 4 adds (QAction,          PyQt6 modules; only QGIS 4's own
                      QActionGroup, QShortcut also in          additions are reproduced (see its
                      QtWidgets; QVariant type aliases; NULL;  docstring), nothing that would let a
                      the dropped flag types as functions)     Qt 5 spelling pass.
``qgis.core``         ``QgsApplication`` (a real               QGIS's C++ core is built against Qt 5
                      QApplication), ``QgsTask`` (a real       here; its PyQt6 bindings exist only
                      QObject), ``QgsProcessingProvider``;     in a QGIS 4 build. Accepting
                      every other ``Qgs…`` name and ``Qgis``   stand-ins check nothing of QGIS's
                      (version 4.0) an accepting stand-in      API: test_qt6_readiness.py checks
                                                               its enums statically.
``qgis.gui``          ``QgsMapCanvas`` (a QGraphicsView),      As qgis.core. Each on the real PyQt6
                      ``QgsMapTool`` (a QObject),              class QGIS's derives from; the
                      ``QgsVertexMarker`` (a QGraphicsItem     marker's IconType is scoped and its
                      with a scoped IconType)                  setters check their types.
``qgis.utils``        ``iface``                                Set by the harness to the iface
                                                               stand-in.
iface (smoke.py)      ``QgisInterface``, the QGIS desktop      Only a QGIS desktop has one: a real
                                                               QMainWindow with a Plugins menu,
                                                               toolbars, docks and the canvas.
layer (smoke.py)      ``QgsVectorLayer`` of classified points  Fields and features in memory, a
                      and of grid cells                        real ``willBeDeleted`` signal.
map event (smoke.py)  ``QgsMapMouseEvent``                     A real QMouseEvent with mapPoint().
====================  =======================================  ====================================

Not proved here: a run in a real QGIS 4 (its Qt 6 build of QGIS's classes, their signatures and
its API changes beyond Qt), QGIS's own dialogs the plugin opens (Processing's algorithm dialogs,
the Graphical Modeler of "Edit the pipeline model…"), the background runs of "Set up the engine" and
"Engine status" (QGIS's task manager), and any Qt code path the steps above do not reach.
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

HARNESS = Path(__file__).resolve().parent / "qt6_smoke" / "smoke.py"
INSTALL = (
    "PyQt6 cannot be imported: it is a declared dev requirement of the QGIS side's tests. "
    "Install it with `.venv/bin/pip install -r requirements-dev.txt` (make install does)."
)


def harness():
    """smoke.py as a module, for its Qt-free parts (it imports Qt only when run)."""
    spec = importlib.util.spec_from_file_location("qt6_smoke_harness", HARNESS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_smoke(root: Path, work: Path) -> tuple[int, dict, str]:
    """The harness on the plugin under ``root``: its exit status, its report, its output."""
    if importlib.util.find_spec("PyQt6") is None:  # finds it without importing it
        pytest.fail(INSTALL)
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, str(HARNESS), str(root), str(work)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        env=env,
        cwd=work,
    )
    output = done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith(harness().REPORT)]
    assert lines, f"the smoke run printed no report (exit {done.returncode}):\n{output}"
    report = json.loads(lines[-1][len(harness().REPORT) :])
    if done.returncode == 3 or "pyqt6_missing" in report:
        pytest.fail(f"{INSTALL}\n{report.get('pyqt6_missing', '')}")
    return done.returncode, report, output


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    returncode, report, output = run_smoke(ROOT, tmp_path_factory.mktemp("qt6-smoke"))
    report["returncode"], report["output"] = returncode, output
    return report


def test_pyqt6_is_a_pinned_dev_requirement():
    requirements = (ROOT / "requirements-dev.txt").read_text(encoding="utf-8")
    assert re.search(r"^PyQt6==6\.\d+(\.\d+)?\s*$", requirements, re.MULTILINE), requirements
    if importlib.util.find_spec("PyQt6") is None:
        pytest.fail(INSTALL)


def test_metadata_declares_qt6_support():
    """The Qt 6 builds of QGIS 3 load a Python plugin only when its metadata says so; QGIS 4.0 no
    longer reads the key (QGIS pull request 65168) and goes by qgisMaximumVersion, 4.99 here."""
    metadata = configparser.ConfigParser(interpolation=None)
    metadata.read(ROOT / "metadata.txt", encoding="utf-8")
    assert metadata["general"]["supportsQt6"] == "True"


def test_the_qt_modules_are_found_by_their_imports():
    found = harness().qt_modules(ROOT)
    expected = {
        "mus_qgis.plugin",
        "mus_qgis.inspector.dock",
        "mus_qgis.inspector.map_tool",
        "mus_qgis.inspector.thumbnails",
        "mus_qgis.processing.provider",
        "mus_qgis.processing.base",
        "mus_qgis.processing.figures",
        "mus_qgis.bridge.qgis_enums",
    }
    assert expected <= set(found), found
    assert not any(".engine" in name for name in found), found  # the engine never imports Qt


def test_every_qt_module_imports_under_pyqt6(smoke):
    assert smoke["qt"].startswith("6."), smoke["qt"]
    assert smoke["pyqt"].startswith("6."), smoke["pyqt"]
    assert smoke["modules"] == harness().qt_modules(ROOT)
    assert smoke["imported"] == smoke["modules"]


def test_every_widget_the_plugin_builds_builds_under_pyqt6(smoke):
    failures = "\n".join(f"{f['step']}: {f['error']}\n    at {f['at']}" for f in smoke["failures"])
    assert smoke["failures"] == [], f"{failures}\n{smoke['output']}"
    assert smoke["returncode"] == 0, smoke["output"]
    done = set(smoke["done"])
    for step in (
        "plugin: initGui (menu, toolbar, provider)",
        "inspector: show a point (views, reading, marker)",
        "inspector: step with N, P, space, another key (map tool)",
        "inspector: click the map (map tool)",
        "inspector: set and clear a label",
        "inspector: close (toolbar action)",
        "plugin: engine status dialog",
        "figures: texts, bars, elided labels (QFont, QFontMetricsF, QRectF)",
        "grid style (QColor.NameFormat)",
        "thumbnails (QImageReader, QSize, QImage)",
        "draw every window (offscreen)",
        "plugin: unload",
    ):
        assert step in done, step
    assert sum(step.startswith("algorithm ") for step in done) >= 15
    assert {
        "InspectorDock",
        "QComboBox",
        "QToolButton",
        "QPushButton",
        "QScrollArea",
        "QTextBrowser",
        "QLabel",
        "QToolBar",
        "QDialog",
        "QDialogButtonBox",
        "QPlainTextEdit",
        "GettingStartedDialog",  # the first start shows it
    } <= set(smoke["widgets"]), smoke["widgets"]
    assert smoke["menu"] == {
        "&Multimodal Urban Studies": [
            "Getting started…",
            "Set up the engine…",
            "Engine status…",
            "Service keys…",
            "Edit the pipeline model…",
            "Street inspector",
        ]
    }
    assert smoke["toolbars"] == ["Multimodal Urban Studies"]
    assert smoke["menu_after_unload"] == []


def test_the_inspector_did_its_work_under_pyqt6(smoke):
    """The steps ran through, not around, the inspector's code."""
    seen = smoke["seen"]
    assert seen["views"] == 2 and seen["strip_image"] and seen["marker"]
    assert seen["labels_offered"] > 10  # Urban Atlas 2018's classes
    # The order is the margin's, lowest first: 2, 1, then 3 (no margin); an unknown key is left.
    assert seen["keys"] == [[3, True], [1, True], [3, True], [3, False]]
    assert seen["order"] == [1, 2, 3]
    assert seen["clicked"] == 1
    assert seen["label_set"] and seen["label_cleared"] is None
    assert seen["closed"] == [False, True]  # the action unchecked, the marker gone
    assert seen["status_dialog"] == [True, "Engine status"]


def test_only_qgis_names_are_stood_in(smoke):
    """Qt itself is never stood in: every accepting stand-in is a QGIS class."""
    assert smoke["stood_in"], smoke["stood_in"]
    assert all(name.startswith("Qgs") for name in smoke["stood_in"]), smoke["stood_in"]


# A Qt 5 spelling put back into a copy of the plugin: (file, PyQt6 spelling, Qt 5 spelling, what
# the failure must name).
PUT_BACK = {
    "unscoped enum, set when the dock is built": (
        "mus_qgis/inspector/dock.py",
        "Qt.AlignmentFlag.AlignCenter",
        "Qt.AlignCenter",
        "AlignCenter",
    ),
    "unscoped enum, read when the module is imported": (
        "mus_qgis/inspector/map_tool.py",
        "Qt.Key.Key_N",
        "Qt.Key_N",
        "Key_N",
    ),
    "unscoped enum in a style": (
        "mus_qgis/processing/resample_to_grid.py",
        "QColor.NameFormat.HexArgb",
        "QColor.HexArgb",
        "HexArgb",
    ),
    "exec_() instead of exec()/show()": (
        "mus_qgis/plugin.py",
        "self.status_dialog = dialog\n        dialog.show()",
        "self.status_dialog = dialog\n        dialog.exec_()",
        "exec_",
    ),
    "a class Qt 6 removed (QRegExp)": (
        "mus_qgis/inspector/thumbnails.py",
        "from qgis.PyQt.QtCore import QSize",
        "from qgis.PyQt.QtCore import QRegExp, QSize",
        "QRegExp",
    ),
}


@pytest.mark.parametrize("case", sorted(PUT_BACK))
def test_a_qt5_spelling_put_back_fails_the_smoke_run(case, tmp_path):
    relative, new, old, named = PUT_BACK[case]
    root = tmp_path / "plugin"
    shutil.copytree(
        ROOT / "mus_qgis", root / "mus_qgis", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("resources", "metadata.txt"):
        (root / name).symlink_to(ROOT / name)
    path = root / relative
    source = path.read_text(encoding="utf-8")
    assert new in source, f"{relative} no longer holds {new!r}: update this case"
    path.write_text(source.replace(new, old, 1), encoding="utf-8")

    returncode, report, output = run_smoke(root, tmp_path / "work")
    assert returncode == 1, output
    caught = [f for f in report["failures"] if named in f["error"] and relative in f["at"]]
    assert caught, json.dumps(report["failures"], indent=1)
