"""What the QGIS desktop runs (``qgis --code``) for tests/qgis/test_desktop.py.

It drives the plugin as a user does, through the Processing dialogs: CLIP-classify the Arezzo
photos, then rank the Urban Atlas labels over the stored embeddings; each dialog is filled in,
shown, and run as its Run button runs it. The event loop is never blocked: every wait is a
QTimer step.

It reads its settings from the JSON file named by MUS_DESKTOP_SESSION and writes what it saw (the
algorithms' results, the layers in the project, which engine packages QGIS's process imported,
whether Mesa's libLLVM was loaded, messages, unexpected dialogs) to the result file named there,
takes a screenshot of the desktop, and quits QGIS the way File ▸ Exit does.

QGIS executes this file with exec() in its __main__ namespace: no ``__file__``, no imports of the
test package, and everything the timers need stays referenced by this module's globals.
"""

import json
import os
import sys
import time
import traceback
from collections import Counter

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsExifTools,
    QgsFeature,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsVectorLayer,
)
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication, QLabel, QMessageBox, QProgressBar
from qgis.utils import iface

with open(os.environ["MUS_DESKTOP_SESSION"], encoding="utf-8") as mus_file:
    MUS_SESSION = json.load(mus_file)
MUS_STEP_MS = 200

mus_state = {
    "started": time.time(),
    "qgis_version": Qgis.QGIS_VERSION,
    "qgis_version_int": Qgis.QGIS_VERSION_INT,
    "steps": [],
    "errors": [],
    "messages": [],
    "unexpected_dialogs": [],
    "runs": {},
    "done": False,
}
mus_keep = {}  # dialogs and layers the timers need alive


def mus_write():
    """Write what was seen so far (also on the way, so that a hang still leaves a trace)."""
    mus_state["elapsed_s"] = round(time.time() - mus_state["started"], 1)
    path = MUS_SESSION["result"]
    with open(path + ".part", "w", encoding="utf-8") as out:
        json.dump(mus_state, out, indent=1, default=str)
    os.replace(path + ".part", path)


def mus_step(text):
    mus_state["steps"].append(f"{time.time() - mus_state['started']:6.1f} s  {text}")
    mus_write()


def mus_fail(text):
    mus_state["errors"].append(text)
    mus_step(f"FAILED: {text.splitlines()[0] if text else ''}")
    mus_finish()


def mus_guarded(function):
    """Run a step; an exception in it ends the session with the traceback in the result."""

    def run(*args):
        try:
            function(*args)
        except Exception:
            mus_fail(traceback.format_exc())

    return run


def mus_on_message(message, tag, level):
    if level >= Qgis.MessageLevel.Warning or tag in ("mus_qgis", "Python error", "Processing"):
        mus_state["messages"].append({"tag": tag, "level": int(level), "message": message[:4000]})


QgsApplication.messageLog().messageReceived.connect(mus_on_message)


def mus_watch_dialogs():
    """Close any modal dialog nobody asked for (a question would block the run) and note it."""
    widget = QApplication.activeModalWidget()
    if widget is not None:
        seen = {"class": type(widget).__name__, "title": widget.windowTitle()}
        seen["while"] = "quitting" if mus_state["done"] else "running"
        if isinstance(widget, QMessageBox):
            seen["text"] = widget.text()
        mus_state["unexpected_dialogs"].append(seen)
        mus_write()
        widget.reject()


mus_watchdog = QTimer()
mus_watchdog.timeout.connect(mus_watch_dialogs)
mus_watchdog.start(250)


def mus_wait(predicate, then, timeout_s, what):
    """Call ``then()`` once ``predicate()`` holds; fail after ``timeout_s``. Never blocks."""
    deadline = time.time() + timeout_s
    # How long the event loop went without running this poll (a blocked GUI shows up here).
    gaps = mus_state.setdefault("longest_event_loop_gap_s", {})
    last = [time.time()]

    @mus_guarded
    def poll():
        now = time.time()
        gaps[what] = round(max(gaps.get(what, 0.0), now - last[0] - MUS_STEP_MS / 1000), 2)
        last[0] = now
        if predicate():
            then()
        elif time.time() > deadline:
            mus_fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        else:
            QTimer.singleShot(MUS_STEP_MS, poll)

    QTimer.singleShot(MUS_STEP_MS, poll)


def mus_layer_with_source(path):
    for layer in QgsProject.instance().mapLayers().values():
        if layer.source().split("|")[0] == path:
            return layer
    return None


def mus_photos_layer():
    """Points where the Arezzo photos were taken (their EXIF positions), with their paths."""
    layer = QgsVectorLayer(
        "Point?crs=EPSG:4326&field=image_paths:string", "Arezzo photos", "memory"
    )
    features = []
    for path in MUS_SESSION["photos"]:
        where, ok = QgsExifTools.getGeoTag(path)
        if not ok:
            raise RuntimeError(f"no EXIF position in {path}")
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(where.x(), where.y())))
        feature.setAttributes([path])
        features.append(feature)
    assert layer.dataProvider().addFeatures(features)[0]
    layer.updateExtents()
    return layer


def mus_run_dialog(key, algorithm_id, parameters, output_path, then):
    """Open the algorithm's dialog with ``parameters``, press Run, wait for its output layer."""
    from processing.tools.general import createAlgorithmDialog

    dialog = createAlgorithmDialog(algorithm_id, parameters)
    if dialog is None:
        raise RuntimeError(f"no dialog for {algorithm_id}: is the mus provider registered?")
    run = {"algorithm": algorithm_id, "finished": None, "results": None}
    mus_state["runs"][key] = run
    mus_keep[key] = dialog

    def finished(successful, results):
        run["finished"] = bool(successful)
        run["results"] = {k: str(v) for k, v in (results or {}).items()}

    dialog.algorithmFinished.connect(finished)
    screen = QApplication.primaryScreen().availableGeometry()
    dialog.resize(760, screen.height() - 160)
    dialog.show()
    dialog.move(screen.right() - dialog.frameGeometry().width() - 10, screen.top() + 60)
    run["dialog_title"] = dialog.windowTitle()
    mus_step(f"{key}: dialog '{dialog.windowTitle()}' shown")

    @mus_guarded
    def press_run():
        button = dialog.runButton()
        run["run_button"] = {"text": button.text(), "enabled": button.isEnabled()}
        run["started_at"] = time.time()
        button.click()  # what a click on Run does: QgsProcessingAlgorithmDialogBase::runAlgorithm
        mus_step(f"{key}: Run pressed")
        mus_wait(
            finished_and_loaded,
            done,
            MUS_SESSION["run_timeout_s"],
            f"{algorithm_id} to finish and its layer to be loaded",
        )

    def finished_and_loaded():
        bars = [bar.value() for bar in dialog.findChildren(QProgressBar)]
        run["progress_seen"] = max([run.get("progress_seen", -1), *bars])
        if run["finished"] is False:
            return True
        return run["finished"] is not None and mus_layer_with_source(output_path) is not None

    @mus_guarded
    def done():
        run["seconds"] = round(time.time() - run["started_at"], 1)
        run["progress_at_end"] = [bar.value() for bar in dialog.findChildren(QProgressBar)]
        log = os.path.join(MUS_SESSION["folder"], f"{key}_log.txt")
        dialog.saveLogToFile(log)
        with open(log, encoding="utf-8", errors="replace") as text:
            run["log"] = text.read()[-6000:]
        mus_step(f"{key}: finished={run['finished']} in {run['seconds']} s")
        if not run["finished"]:
            mus_fail(f"{algorithm_id} failed; its log:\n{run['log']}")
            return
        then()

    QTimer.singleShot(800, press_run)


@mus_guarded
def mus_start():
    iface.mainWindow().showMaximized()
    registry = QgsApplication.processingRegistry()
    mus_wait(
        lambda: registry.providerById("mus") is not None and iface.mainWindow().isVisible(),
        mus_getting_started,
        60,
        "the mus Processing provider",
    )


def mus_getting_started_panel():
    return next(
        (
            w
            for w in QApplication.topLevelWidgets()
            if w.isVisible() and w.windowTitle() == "Multimodal Urban Studies: getting started"
        ),
        None,
    )


@mus_guarded
def mus_getting_started():
    """A fresh profile's first start shows Getting started by itself; a user closes it."""

    def close_it():
        panel = mus_getting_started_panel()
        mus_state["getting_started"] = [label.text() for label in panel.findChildren(QLabel)]
        mus_step("Getting started was shown at the first start; closed")
        panel.close()
        mus_classify()

    mus_wait(lambda: mus_getting_started_panel() is not None, close_it, 20, "Getting started")


@mus_guarded
def mus_classify():
    import qgis.utils

    mus_state["plugin"] = {
        "active": "mus_qgis" in qgis.utils.active_plugins,
        "module": sys.modules["mus_qgis"].__file__ if "mus_qgis" in sys.modules else None,
    }
    photos = mus_photos_layer()
    assert QgsProject.instance().addMapLayer(photos)
    mus_keep["photos"] = photos
    mus_step(f"photos layer: {photos.featureCount()} points")
    mus_run_dialog(
        "classify",
        "mus:classifyclip",
        {
            "INPUT": photos.id(),
            "LABEL_SET": 0,
            "MODEL": MUS_SESSION["model"],
            "CHECKPOINT": MUS_SESSION["checkpoint"],
            "DEVICE": 1,
            "CACHE_FOLDER": MUS_SESSION["cache"],
            "OUTPUT": MUS_SESSION["classified"],
        },
        MUS_SESSION["classified"],
        mus_rank,
    )


@mus_guarded
def mus_rank():
    mus_keep.pop("classify").close()
    # Show the classified points (coloured by their first label) without the input under them.
    tree = QgsProject.instance().layerTreeRoot()
    tree.findLayer(mus_keep["photos"].id()).setItemVisibilityChecked(False)
    layer = mus_layer_with_source(MUS_SESSION["classified"])
    canvas = iface.mapCanvas()
    extent = canvas.mapSettings().layerExtentToOutputExtent(layer, layer.extent())
    extent.scale(1.3)
    canvas.setExtent(extent)
    canvas.refresh()
    mus_run_dialog(
        "rank",
        "mus:ranklabels",
        {
            "STORED_LABEL_SETS": [0],
            "MODEL": MUS_SESSION["model"],
            "CHECKPOINT": MUS_SESSION["checkpoint"],
            "DEVICE": 1,
            "CACHE_FOLDER": MUS_SESSION["cache"],
            "OUTPUT": MUS_SESSION["ranking"],
        },
        MUS_SESSION["ranking"],
        mus_look,
    )


@mus_guarded
def mus_look():
    """Describe the project, the process and the screen; then quit."""
    layers = []
    for layer in QgsProject.instance().mapLayers().values():
        entry = {
            "name": layer.name(),
            "source": layer.source(),
            "valid": layer.isValid(),
            "provider": layer.providerType(),
        }
        if isinstance(layer, QgsVectorLayer):
            entry["features"] = layer.featureCount()
            entry["fields"] = layer.fields().names()
            entry["renderer"] = type(layer.renderer()).__name__ if layer.renderer() else None
        layers.append(entry)
    mus_state["layers"] = layers
    classified = mus_layer_with_source(MUS_SESSION["classified"])
    features = list(classified.getFeatures())
    mus_state["classified"] = {
        "features": len(features),
        "clip_status": dict(Counter(str(f["clip_status"]) for f in features)),
        "label_1": dict(Counter(str(f["label_1"]) for f in features)),
    }
    ranking = mus_layer_with_source(MUS_SESSION["ranking"])
    rows = list(ranking.getFeatures())
    mus_state["ranking"] = {
        "features": len(rows),
        "label_sets": sorted({str(f["label_set"]) for f in rows}),
        "top": [[str(f["label"]), f["rank"], f["share"]] for f in rows[:3]],
    }
    from mus_qgis.bridge.client import ENGINE_ONLY_MODULES  # the installed plugin's

    mus_state["engine_packages_imported"] = [m for m in ENGINE_ONLY_MODULES if m in sys.modules]
    with open("/proc/self/maps", encoding="utf-8") as maps:
        libraries = {line.split()[-1] for line in maps if "/" in line}
    mus_state["libllvm"] = sorted(p for p in libraries if "libLLVM" in p)
    mus_state["mesa"] = sorted(p for p in libraries if "_dri.so" in p or "GLX_mesa" in p)
    from mus_qgis.bridge.client import POOL

    mus_state["worker_pids"] = POOL.idle_pids() + POOL.busy_pids()
    mus_state["visible_windows"] = [
        [type(w).__name__, w.windowTitle()] for w in QApplication.topLevelWidgets() if w.isVisible()
    ]
    mus_step("looked at the project")
    QTimer.singleShot(1500, mus_screenshot)  # let the canvas render


@mus_guarded
def mus_screenshot():
    shot = QApplication.primaryScreen().grabWindow(0)
    mus_state["screenshot"] = MUS_SESSION["screenshot"]
    mus_state["screenshot_saved"] = shot.save(MUS_SESSION["screenshot"])
    mus_state["ok"] = not mus_state["errors"]
    mus_finish()


def mus_finish():
    """Quit as File ▸ Exit does (no question: the profile says not to ask about unsaved work)."""
    if mus_state["done"]:
        return
    mus_state["done"] = True
    mus_step("quitting")
    QTimer.singleShot(300, iface.actionExit().trigger)
    QTimer.singleShot(30_000, mus_exit_did_not_quit)
    for key in ("classify", "rank"):
        dialog = mus_keep.pop(key, None)
        if dialog is not None and not sip.isdeleted(dialog):
            dialog.close()
    QgsProject.instance().setDirty(False)


def mus_exit_did_not_quit():
    mus_state["errors"].append("File > Exit did not end QGIS within 30 s")
    mus_write()
    QApplication.exit(3)


QTimer.singleShot(500, mus_start)
