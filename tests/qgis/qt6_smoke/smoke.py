"""The PyQt6 smoke run: the plugin's Qt modules imported and its widgets built under real PyQt6.

Run by tests/qgis/test_pyqt6_smoke.py in a subprocess of its own (PyQt5 and PyQt6 must not meet
in one process): ``python smoke.py PLUGIN_ROOT WORK_FOLDER``, with ``QT_QPA_PLATFORM=offscreen``.
PLUGIN_ROOT holds the ``mus_qgis`` package (the checkout, or a copy with a Qt 5 spelling put back);
WORK_FOLDER takes the images and the profile folder it makes. The stand-in ``qgis`` package beside
this file comes first on ``sys.path``; the test's docstring says what each stand-in replaces.

It prints one line, ``SMOKE-REPORT {json}``: the Qt modules found and imported, the steps done,
each failure with the plugin line it came from, the widget classes built, the menu, the QGIS names
stood in. Every step runs even when an earlier one failed; the exit status is 1 when any failed,
3 when PyQt6 cannot be imported. Nothing here may import Qt at module level: the test reads
``qt_modules`` from this file inside the QGIS 3 (PyQt5) test process.
"""

from __future__ import annotations

import ast
import importlib
import json
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPORT = "SMOKE-REPORT "
QT_IMPORTS = ("qgis.PyQt", "PyQt5", "PyQt6")


def qt_modules(root: Path) -> list[str]:
    """The plugin's modules that import Qt (``qgis.PyQt``, ``PyQt5``, ``PyQt6``), by reading
    their import statements: dotted names, sorted."""
    found = []
    for path in sorted((root / "mus_qgis").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            if any(n == q or n.startswith(f"{q}.") for n in names for q in QT_IMPORTS):
                parts = path.relative_to(root).with_suffix("").parts
                found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
                break
    return found


class Run:
    """Runs steps, keeping each failure (also those raised in Qt slots) with its plugin line."""

    def __init__(self, root: Path) -> None:
        self.package = (root / "mus_qgis").resolve()
        self.current = "start"
        self.done: list[str] = []
        self.failures: list[dict] = []

    def fail(self, error: BaseException, step: str | None = None) -> None:
        where = ""
        for frame in traceback.extract_tb(error.__traceback__):
            path = Path(frame.filename).resolve()
            if path.is_relative_to(self.package):
                relative = path.relative_to(self.package.parent)
                where = f"{relative}:{frame.lineno}: {frame.line}"
        self.failures.append(
            {"step": step or self.current, "error": f"{type(error).__name__}: {error}", "at": where}
        )

    def slot_failed(self, kind, error, trace) -> None:
        """sys.excepthook: an exception in a slot (PyQt6 would otherwise abort the process)."""
        self.fail(error.with_traceback(trace))

    def step(self, name: str, action, *args):
        self.current = name
        count = len(self.failures)
        try:
            result = action(*args)
        except Exception as error:
            self.fail(error, name)
            return None
        if len(self.failures) == count:
            self.done.append(name)
        return result


def make_image(path: Path, width: int, height: int, colour: str) -> str:
    from qgis.PyQt.QtGui import QColor, QImage

    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(QColor(colour))
    if not image.save(str(path), "JPG"):
        raise OSError(f"cannot write {path}")
    return str(path)


def stand_in_classes():
    """The stand-ins that need Qt: the QGIS desktop's interface and a vector layer."""
    from qgis.gui import QgsMapCanvas
    from qgis.PyQt.QtCore import QObject, pyqtSignal
    from qgis.PyQt.QtWidgets import QMainWindow

    class StandInIface:
        """QgisInterface: a real QMainWindow with a Plugins menu, toolbars, docks and a canvas."""

        def __init__(self) -> None:
            self.window = QMainWindow()
            self.canvas = QgsMapCanvas(self.window)
            self.window.setCentralWidget(self.canvas)
            self.plugins_menu = self.window.menuBar().addMenu("&Plugins")
            self.menus: dict = {}
            self.active_layer = None

        def mainWindow(self):
            return self.window

        def mapCanvas(self):
            return self.canvas

        def activeLayer(self):
            return self.active_layer

        def addPluginToMenu(self, name: str, action) -> None:
            if name not in self.menus:
                self.menus[name] = self.plugins_menu.addMenu(name)
            self.menus[name].addAction(action)

        def removePluginMenu(self, name: str, action) -> None:
            menu = self.menus.get(name)
            if menu is not None:
                menu.removeAction(action)
                if menu.isEmpty():
                    self.plugins_menu.removeAction(menu.menuAction())
                    del self.menus[name]

        def addToolBar(self, name: str):
            return self.window.addToolBar(name)

        def addDockWidget(self, area, dock) -> None:
            self.window.addDockWidget(area, dock)

        def removeDockWidget(self, dock) -> None:
            self.window.removeDockWidget(dock)

    class Field:
        def __init__(self, name: str, numeric: bool) -> None:
            self._name, self._numeric = name, numeric

        def name(self) -> str:
            return self._name

        def isNumeric(self) -> bool:
            return self._numeric

    class Fields(list):
        def names(self) -> list[str]:
            return [field.name() for field in self]

        def lookupField(self, name: str) -> int:
            names = self.names()
            return names.index(name) if name in names else -1

    class Geometry:
        def isEmpty(self) -> bool:
            return False

        def centroid(self):
            return self

        def distance(self, other) -> float:
            return 1.0

        def asPoint(self):
            from qgis.core import QgsPointXY

            return QgsPointXY(12.49, 41.89)

    class Feature:
        def __init__(self, fid: int, fields, values: list) -> None:
            self._fid, self._fields, self._values = fid, fields, values

        def id(self) -> int:
            return self._fid

        def fields(self):
            return self._fields

        def attributes(self) -> list:
            return list(self._values)

        def geometry(self):
            return Geometry()

        def __getitem__(self, key):
            return self._values[key if isinstance(key, int) else self._fields.lookupField(key)]

    class StandInLayer(QObject):
        """QgsVectorLayer: fields and features in memory, a real willBeDeleted signal."""

        willBeDeleted = pyqtSignal()  # noqa: N815 (QGIS's name)

        def __init__(self, name: str, fields: dict, rows: dict, properties: dict) -> None:
            super().__init__()
            self._name, self._properties = name, properties
            self._fields = Fields(Field(n, numeric) for n, numeric in fields.items())
            self._rows = {fid: [row.get(n) for n in fields] for fid, row in rows.items()}
            self.renderer = None

        def id(self) -> str:
            return f"{self._name}_id"

        def name(self) -> str:
            return self._name

        def isValid(self) -> bool:
            return True

        def fields(self):
            return self._fields

        def getFeature(self, fid: int):
            return Feature(fid, self._fields, self._rows[fid])

        def getFeatures(self, request=None):
            return [self.getFeature(fid) for fid in self._rows]

        def uniqueValues(self, index: int) -> set:
            return {values[index] for values in self._rows.values()}

        def customProperty(self, key: str, default=None):
            return self._properties.get(key, default)

        def setCustomProperty(self, key: str, value) -> None:
            self._properties[key] = value

        def crs(self):
            from qgis.core import QgsCoordinateReferenceSystem

            return QgsCoordinateReferenceSystem("EPSG:4326")

        def isEditable(self) -> bool:
            return True

        def beginEditCommand(self, text: str) -> None:
            pass

        def endEditCommand(self) -> None:
            pass

        def destroyEditCommand(self) -> None:
            pass

        def changeAttributeValue(self, fid: int, index: int, value) -> bool:
            self._rows[fid][index] = value
            return True

        def setRenderer(self, renderer) -> None:
            self.renderer = renderer

        def setMetadata(self, metadata) -> None:
            pass

        def triggerRepaint(self) -> None:
            pass

    return StandInIface, StandInLayer


def classified_layer(layer_class, images: list[str]):
    """Three points as CLIP-classify leaves them: a panorama and a photo, a photo, no image."""
    fields = {
        "pid": True,
        "image_paths": False,
        "label_1": False,
        "prob_1": True,
        "label_2": False,
        "prob_2": True,
        "margin": True,
        "clip_status": False,
        "source": False,
        "image_id": False,
        "captured": False,
        "label_user": False,
    }
    rows = {
        1: {"pid": 1, "image_paths": ";".join(images), "label_1": "Green urban areas",
            "prob_1": 0.6, "label_2": "Industrial units", "prob_2": 0.3, "margin": 0.3,
            "clip_status": "ok", "source": "mapillary", "image_id": "4711",
            "captured": "2016-05-01"},
        2: {"pid": 2, "image_paths": images[1], "label_1": "Industrial units", "prob_1": 0.5,
            "label_2": "Green urban areas", "prob_2": 0.4, "margin": 0.1, "clip_status": "ok",
            "source": "local", "captured": "2019-06-30", "label_user": "Green urban areas"},
        3: {"pid": 3, "clip_status": "no image"},
    }  # fmt: skip
    settings = json.dumps({"label_set": "urban_atlas_2018"})
    return layer_class("classified", fields, rows, {"mus_qgis/classification": settings})


def exercise_inspector(run: Run, plugin, layer_class, images: list[str]) -> dict:
    """Open the inspector from its toolbar action, show points, step with keys, buttons and a
    map click, set a label, close it; returns what the widgets showed on the way."""
    from qgis.PyQt.QtCore import QEvent, QPointF, Qt
    from qgis.PyQt.QtGui import QKeyEvent, QMouseEvent
    from qgis.utils import iface

    class MapMouseEvent(QMouseEvent):
        """QgsMapMouseEvent: a QMouseEvent that knows its map point (a QgsPointXY: x(), y())."""

        def mapPoint(self):
            return QPointF(12.49, 41.89)

    seen: dict = {}
    run.step("inspector: open (toolbar action)", plugin.inspector_action.trigger)
    dock, tool = plugin.inspector_dock, plugin.inspector_tool
    if dock is None or tool is None:
        run.failures.append({"step": "inspector: open", "error": "no dock or map tool", "at": ""})
        return seen
    layer = classified_layer(layer_class, images)
    iface.active_layer = layer

    def first_point() -> None:
        dock.show_point(layer, 1)
        seen["views"] = len(dock.view_images)
        seen["strip_image"] = not dock.strip.pixmap().isNull()
        seen["labels_offered"] = dock.label_box.count()
        seen["orders"] = dock.order_box.count()
        seen["marker"] = tool.marker is not None

    run.step("inspector: show a point (views, reading, marker)", first_point)

    def keys() -> None:
        seen["keys"] = []
        for key in (Qt.Key.Key_N, Qt.Key.Key_P, Qt.Key.Key_Space, Qt.Key.Key_A):
            event = QKeyEvent(QEvent.Type.KeyPress, key, Qt.KeyboardModifier.NoModifier)
            tool.keyPressEvent(event)
            seen["keys"].append([dock.point.fid, event.isAccepted()])

    run.step("inspector: step with N, P, space, another key (map tool)", keys)

    def buttons() -> None:
        dock.next_button.click()
        dock.previous_button.click()
        dock.order_box.setCurrentIndex(1)
        seen["order"] = dock.order

    run.step("inspector: step buttons, another order", buttons)

    def click() -> None:
        position = QPointF(5, 5)
        left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
        event = MapMouseEvent(QEvent.Type.MouseButtonRelease, position, position, left, none,
                              Qt.KeyboardModifier.NoModifier)  # fmt: skip
        tool.canvasReleaseEvent(event)
        seen["clicked"] = dock.point.fid

    run.step("inspector: click the map (map tool)", click)

    def label() -> None:
        dock.label_box.setCurrentIndex(2)
        dock.set_button.click()
        seen["label_set"] = layer.getFeature(dock.point.fid)["label_user"]
        dock.clear_button.click()
        seen["label_cleared"] = layer.getFeature(dock.point.fid)["label_user"]

    run.step("inspector: set and clear a label", label)
    run.step("inspector: a point without images", dock.show_point, layer, 3)
    run.step("inspector: the layer removed", layer.willBeDeleted.emit)

    def close() -> None:
        plugin.inspector_action.trigger()
        seen["closed"] = [plugin.inspector_action.isChecked(), tool.marker is None]

    run.step("inspector: close (toolbar action)", close)
    return seen


def exercise_algorithms(run: Run, plugin) -> None:
    from mus_qgis.processing.base import MusAlgorithm, release_failed_runs

    provider = plugin.provider
    if provider is None:
        run.failures.append({"step": "provider", "error": "not registered", "at": ""})
        return
    run.step("provider: name, icon", lambda: (provider.longName(), provider.icon().isNull()))
    algorithms = [a for a in provider.algorithms() if isinstance(a, MusAlgorithm)]
    if len(algorithms) < 10:
        run.failures.append(
            {"step": "provider", "error": f"only {len(algorithms)} algorithms", "at": ""}
        )

    def describe(algorithm) -> None:
        algorithm.icon()
        for text in (algorithm.displayName(), algorithm.group(), algorithm.shortHelpString()):
            if not isinstance(text, str):
                raise TypeError(f"{algorithm.name()}: {text!r} is not a str")
        algorithm.createInstance().initAlgorithm({})

    for algorithm in algorithms:
        run.step(f"algorithm {algorithm.name()}: icon, texts, parameters", describe, algorithm)
    run.step("release_failed_runs (QCoreApplication, QThread)", release_failed_runs)


def exercise_drawing(run: Run, layer_class, images: list[str]) -> None:
    from mus_qgis.bridge import qgis_enums
    from mus_qgis.inspector import thumbnails
    from mus_qgis.processing import figures
    from mus_qgis.processing.mainstream_image import style_mainstream_layer
    from mus_qgis.processing.resample_to_grid import style_grid_layer

    def figure() -> None:
        sheet = figures.Sheet("smoke", "Smoke", 210, 297)
        top = sheet.header("Title", "Subtitle", True)
        rows = [figures.Bar("A long label " * 6, 3, "#1b9e77", "3"),
                figures.Bar("b", 1, "#d95f02", "1", marked=True)]  # fmt: skip
        sheet.bar_chart(figures.MARGIN, top, 120, rows)
        sheet.footer(["A note", "An attribution"], body_end=top + 40)
        figures.north_arrow_path()

    run.step("figures: texts, bars, elided labels (QFont, QFontMetricsF, QRectF)", figure)
    grid = layer_class(
        "grid",
        {"label": False, "filled": True},
        {1: {"label": "a", "filled": 0}, 2: {"label": "b", "filled": 1}},
        {},
    )
    run.step(
        "grid style (QColor.NameFormat)", style_grid_layer, grid, ["a", "b"], ["#ff0000", "#00f"]
    )
    run.step("mainstream style (QColor)", style_mainstream_layer, grid, "t", {"model": "x"})
    run.step("field types (QMetaType)", qgis_enums.make_field, "x", "double")

    def thumbnail() -> None:
        for path in images:
            if thumbnails.decoded(path, 100).isNull() or thumbnails.thumbnail(path, 120).isNull():
                raise OSError(f"{path} was not read")

    run.step("thumbnails (QImageReader, QSize, QImage)", thumbnail)


def main(root: Path, work: Path) -> int:
    sys.path[:0] = [str(HERE), str(root)]  # the stand-in qgis first, then the plugin
    try:
        qt_core = importlib.import_module("PyQt6.QtCore")
        importlib.import_module("PyQt6.QtWidgets")
    except ImportError as error:
        print(REPORT + json.dumps({"pyqt6_missing": str(error)}))
        return 3
    import qgis.core
    import qgis.utils
    from qgis.PyQt.QtWidgets import QApplication, QToolBar

    run = Run(root)
    sys.excepthook = run.slot_failed
    qgis.core.QgsApplication.settings_dir = str(work / "profile")
    app = qgis.core.QgsApplication([])
    images = [
        make_image(work / "panorama.jpg", 800, 400, "#3366aa"),
        make_image(work / "photo.jpg", 300, 200, "#aa6633"),
    ]
    modules = qt_modules(root)
    imported = [m for m in modules if run.step(f"import {m}", importlib.import_module, m)]

    iface_class, layer_class = stand_in_classes()
    iface = iface_class()
    qgis.utils.iface = iface
    plugin, seen = None, {}
    if "mus_qgis.plugin" in imported:
        mus_qgis = importlib.import_module("mus_qgis")
        plugin = run.step("classFactory", mus_qgis.classFactory, iface)
    if plugin is not None:
        run.step("plugin: initGui (menu, toolbar, provider)", plugin.initGui)
        if getattr(plugin, "inspector_action", None) is not None:
            seen = run.step("inspector", exercise_inspector, run, plugin, layer_class, images)
            seen = seen or {}

        def engine_status() -> None:
            plugin._show_text("Engine status", "engine: ok")
            seen["status_dialog"] = [
                plugin.status_dialog.isVisible(),
                plugin.status_dialog.windowTitle(),
            ]

        run.step("plugin: engine status dialog", engine_status)
        run.step("Processing", exercise_algorithms, run, plugin)
    run.step("drawing", exercise_drawing, run, layer_class, images)

    def draw() -> None:
        iface.window.show()
        for widget in QApplication.topLevelWidgets():
            if widget.isVisible():
                widget.grab()
        app.processEvents()

    run.step("draw every window (offscreen)", draw)
    widgets = sorted({type(w).__name__ for w in QApplication.allWidgets()})
    menu = {name: [a.text() for a in m.actions()] for name, m in iface.menus.items()}
    toolbars = [bar.windowTitle() for bar in iface.window.findChildren(QToolBar)]
    if plugin is not None:
        run.step("plugin: unload", plugin.unload)
        app.processEvents()
    menu_after_unload = sorted(iface.menus)
    if "PyQt5" in sys.modules:
        run.failures.append({"step": "end", "error": "PyQt5 was imported", "at": ""})
    report = {
        "qt": qt_core.QT_VERSION_STR,
        "pyqt": qt_core.PYQT_VERSION_STR,
        "modules": modules,
        "imported": imported,
        "done": run.done,
        "failures": run.failures,
        "widgets": widgets,
        "menu": menu,
        "menu_after_unload": menu_after_unload,
        "toolbars": toolbars,
        "stood_in": sorted(set(qgis.core.STOOD_IN)),
        "seen": seen,
    }
    print(REPORT + json.dumps(report))
    sys.stdout.flush()
    return 1 if run.failures else 0


if __name__ == "__main__":
    try:
        status = main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve())
    except BaseException:
        sys.excepthook = sys.__excepthook__  # the harness's own failure: print it
        raise
    sys.exit(status)
