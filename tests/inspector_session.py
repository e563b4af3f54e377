"""What the QGIS desktop runs (``qgis --code``) for tests/qgis/test_inspector_desktop.py.

It opens a classified layer, turns the street inspector on from the plugin's toolbar, clicks a
point without imagery, steps with the N key, clicks a point with two photos, waits for each
view's reading from the engine, writes what the dock shows to the result file, saves a
screenshot and quits. Every wait is a QTimer step (the event loop is never blocked); QGIS runs
this file with exec() in its __main__ namespace, so everything stays in module globals.
"""

import json
import os
import time
import traceback

from qgis.core import Qgis, QgsApplication, QgsProject, QgsRectangle, QgsVectorLayer
from qgis.PyQt.QtCore import QPoint, Qt, QTimer
from qgis.PyQt.QtTest import QTest
from qgis.PyQt.QtWidgets import QApplication, QLabel
from qgis.utils import iface

with open(os.environ["MUS_DESKTOP_SESSION"], encoding="utf-8") as mus_file:
    MUS_SESSION = json.load(mus_file)
mus_state = {"started": time.time(), "steps": [], "errors": [], "messages": [], "seen": {}}
mus_keep = {}


def mus_write():
    path = MUS_SESSION["result"]
    with open(path + ".part", "w", encoding="utf-8") as out:
        json.dump(mus_state, out, indent=1, default=str)
    os.replace(path + ".part", path)


def mus_step(text):
    mus_state["steps"].append(f"{time.time() - mus_state['started']:6.1f} s  {text}")
    mus_write()


def mus_finish():
    mus_step("quitting")
    QgsProject.instance().setDirty(False)
    QTimer.singleShot(300, iface.actionExit().trigger)
    QTimer.singleShot(30_000, lambda: QApplication.exit(3))


def mus_guarded(function):
    def run(*args):
        try:
            function(*args)
        except Exception:
            mus_state["errors"].append(traceback.format_exc())
            mus_finish()

    return run


def mus_on_message(message, tag, level):
    if level >= Qgis.MessageLevel.Warning or tag in ("mus_qgis", "Python error"):
        mus_state["messages"].append({"tag": tag, "level": int(level), "message": message[:2000]})


QgsApplication.messageLog().messageReceived.connect(mus_on_message)


def mus_wait(predicate, then, timeout_s, what):
    deadline = time.time() + timeout_s

    @mus_guarded
    def poll():
        if predicate():
            then()
        elif time.time() > deadline:
            mus_state["errors"].append(f"timed out after {timeout_s} s waiting for {what}")
            mus_finish()
        else:
            QTimer.singleShot(200, poll)

    QTimer.singleShot(200, poll)


def mus_plugin():
    import qgis.utils

    return qgis.utils.plugins.get("mus_qgis")


def mus_fid(pid):
    return next(f.id() for f in mus_keep["layer"].getFeatures() if f["pid"] == pid)


def mus_click(pid):
    """A left click on the canvas where point ``pid`` is drawn, as the mouse gives it."""
    canvas = iface.mapCanvas()
    where = mus_keep["layer"].getFeature(mus_fid(pid)).geometry().asPoint()
    pixel = canvas.getCoordinateTransform().transform(where)
    QTest.mouseClick(
        canvas.viewport(),
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
        QPoint(round(pixel.x()), round(pixel.y())),
    )


def mus_dock_content():
    dock = mus_plugin().inspector_dock
    strip = dock.strip.pixmap()
    return {
        "fid": dock.point.fid if dock.point else None,
        "visible": dock.isVisible(),
        "status": dock.status.text(),
        "strip_width": strip.width() if strip is not None and not strip.isNull() else 0,
        "strip_shown": dock.strip.isVisible(),
        "thumbnails": [
            holder.findChild(QLabel).pixmap().width()
            for holder in dock.view_images
            if holder.findChild(QLabel).pixmap() is not None
        ],
        "strip_text": dock.strip.text(),
        "views": [label.text() for label in dock.view_texts],
        "details": dock.details.toPlainText(),
        "links": dock.details.toHtml().count("href="),
        "order": dock.order_box.currentText(),
        "position": dock.position.text(),
    }


@mus_guarded
def mus_start():
    iface.mainWindow().showMaximized()
    # A fresh profile's first start shows Getting started (tests/desktop_session.py checks it):
    # out of the way, as a user would close it.
    QTimer.singleShot(3000, mus_close_getting_started)
    mus_wait(
        lambda: mus_plugin() is not None and iface.mainWindow().isVisible(),
        mus_open,
        60,
        "the plugin",
    )


def mus_close_getting_started():
    for widget in QApplication.topLevelWidgets():
        if widget.windowTitle() == "Multimodal Urban Studies: getting started":
            widget.close()


@mus_guarded
def mus_open():
    """The classified layer, styled as CLIP-classify styles it, and the inspector turned on."""
    mus_close_getting_started()
    from mus_qgis.bridge.layer_settings import classification_settings
    from mus_qgis.processing.classify_clip import style_classified_layer
    from mus_qgis.shared.labels import builtin_label_set

    layer = QgsVectorLayer(MUS_SESSION["classified"], "Classified street images", "ogr")
    settings = classification_settings(layer)
    style_classified_layer(layer, builtin_label_set(settings["label_set"]), settings)
    # The canvas would zoom to the first layer's stored extent later on its own; we zoom here.
    iface.layerTreeCanvasBridge().setAutoSetupOnFirstLayer(False)
    iface.mapCanvas().setDestinationCrs(layer.crs())
    assert QgsProject.instance().addMapLayer(layer) is not None
    mus_keep["layer"] = layer
    iface.setActiveLayer(layer)
    plugin = mus_plugin()
    mus_state["toolbar_actions"] = [a.text() for a in plugin.toolbar.actions()]
    plugin.inspector_action.trigger()  # what a click on the toolbar button does
    mus_state["map_tool"] = type(iface.mapCanvas().mapTool()).__name__
    mus_step("inspector on")
    QTimer.singleShot(500, mus_zoom)


@mus_guarded
def mus_zoom():
    """Zoom to the points once the dock has taken its place beside the map."""
    points = QgsRectangle()
    points.setMinimal()
    for feature in mus_keep["layer"].getFeatures():
        points.combineExtentWith(feature.geometry().boundingBox())
    mus_keep["extent"] = points.buffered(0.001)
    iface.mapCanvas().setExtent(mus_keep["extent"])
    iface.mapCanvas().refresh()
    mus_wait(lambda: not iface.mapCanvas().isDrawing(), mus_click_without_imagery, 30, "drawing")


@mus_guarded
def mus_click_without_imagery():
    canvas = iface.mapCanvas()
    pixel = canvas.getCoordinateTransform().transform(
        mus_keep["layer"].getFeature(mus_fid(0)).geometry().asPoint()
    )
    mus_state["clicked_inside_the_map"] = 0 < pixel.x() < canvas.width()
    mus_click(4)
    mus_state["seen"]["without_imagery"] = mus_dock_content()
    # N on the map steps to the next point in the dock's order (lowest margin first).
    iface.mapCanvas().setFocus()
    QTest.keyClick(iface.mapCanvas(), Qt.Key.Key_N)
    mus_state["seen"]["after_n_key"] = mus_dock_content()
    mus_click(0)
    mus_step("clicked")
    dock = mus_plugin().inspector_dock
    mus_wait(
        lambda: (
            mus_keep["layer"].id() in dock.view_scores.readings
            or mus_keep["layer"].id() in dock.view_scores.errors
        ),
        mus_look,
        MUS_SESSION["run_timeout_s"],
        "each view's reading",
    )


@mus_guarded
def mus_look():
    dock = mus_plugin().inspector_dock
    mus_state["view_score_errors"] = dock.view_scores.errors
    mus_state["seen"]["with_images"] = mus_dock_content()
    mus_state["expected_order"] = [f.id() for f in mus_keep["layer"].getFeatures()]
    from mus_qgis.inspector.point import step_order

    mus_state["lowest_margin_order"] = step_order(mus_keep["layer"])
    mus_state["fids"] = {str(pid): mus_fid(pid) for pid in range(6)}
    canvas = iface.mapCanvas()
    tool = canvas.mapTool()
    mus_state["canvas"] = {
        "size": [canvas.width(), canvas.height()],
        "extent": canvas.extent().toString(),
        "marker": None
        if tool.marker is None
        else [tool.marker.isVisible(), tool.marker.pos().x(), tool.marker.pos().y()],
    }
    mus_step("looked")
    QTimer.singleShot(1500, mus_screenshot)  # let the canvas and the dock paint


@mus_guarded
def mus_screenshot():
    shot = QApplication.primaryScreen().grabWindow(0)
    mus_state["screenshot_saved"] = shot.save(MUS_SESSION["screenshot"])
    mus_finish()


QTimer.singleShot(500, mus_start)
