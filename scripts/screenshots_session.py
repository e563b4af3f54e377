"""What the QGIS desktop runs (``qgis --code``) for scripts/screenshots.py.

Shows the Getting started panel of a fresh profile; walks from sampling streets to a classified map
and a grid through the algorithms' dialogs; opens the demo project, then the Processing toolbox,
each mus algorithm's dialog, the pipeline model in the Graphical Modeler and the street inspector,
saving a screenshot of each; then quits as File ▸ Exit does.
QGIS executes this file with exec() in its __main__ namespace: everything the timers need stays
referenced by this module's globals, and every wait is a QTimer step.
"""

import json
import os
import traceback

from qgis import processing
from qgis.core import QgsApplication, QgsProject
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.PyQt.QtWidgets import QApplication, QDockWidget, QTreeView
from qgis.utils import iface

with open(os.environ["MUS_SCREENSHOTS"], encoding="utf-8") as shots_file:
    SHOTS = json.load(shots_file)
shots_state = {"saved": [], "errors": []}
shots_keep = {}


def shots_write():
    with open(SHOTS["result"], "w", encoding="utf-8") as out:
        json.dump(shots_state, out, indent=1)


def shots_save(widget, name):
    """A widget as it is drawn on the screen (dialogs included), into the screenshots folder."""
    path = os.path.join(SHOTS["folder"], f"{name}.png")
    image = QApplication.primaryScreen().grabWindow(0) if widget is None else widget.grab()
    if image.save(path):
        shots_state["saved"].append(path)
    else:
        shots_state["errors"].append(f"could not save {path}")
    shots_write()


def shots_guarded(function):
    def run():
        try:
            function()
        except Exception:  # any failure is written down, then QGIS quits
            shots_state["errors"].append(traceback.format_exc())
            shots_quit()

    return run


def shots_then(delay_ms, function):
    QTimer.singleShot(delay_ms, shots_guarded(function))


def shots_start():
    iface.mainWindow().showMaximized()
    shots_then(3000, shots_getting_started)


def shots_getting_started():
    """A fresh profile's first start: the plugin's Getting started panel, then out of the way."""
    for widget in QApplication.topLevelWidgets():
        if widget.isVisible() and widget.windowTitle().endswith("getting started"):
            shots_save(widget, "getting_started")
            widget.close()
    shots_state["walk"] = [dict(step) for step in SHOTS["walk"]]
    shots_then(500, shots_next_walk_step)


def shots_next_walk_step():
    """The first map from the dialogs, as a new user makes it: each step's dialog filled in and
    run, its log when it ends, and the map with its output loaded and zoomed to."""
    if not shots_state["walk"]:
        QgsProject.instance().clear()
        shots_then(500, shots_open_project)
        return
    step = shots_state["walk"].pop(0)
    parameters = dict(step["parameters"])
    for name, earlier in step.get("from_earlier", {}).items():
        parameters[name] = shots_keep["outputs"][earlier]
    dialog = processing.createAlgorithmDialog(step["algorithm"], parameters)
    if dialog is None:
        raise RuntimeError(f"no dialog for {step['algorithm']}")
    dialog.resize(688, 523)  # QGIS's size for a dialog opened the first time
    dialog.show()
    shots_keep["dialog"] = dialog
    prefix = f"walk_{step['name']}"

    def finished(successful, results):
        shots_then(1000, lambda: shots_walk_step_done(dialog, step, successful, results))

    def run():
        shots_save(dialog, f"{prefix}_dialog")
        dialog.algorithmFinished.connect(finished)
        dialog.runAlgorithm()

    shots_then(1500, run)


def shots_walk_step_done(dialog, step, successful, results):
    prefix = f"walk_{step['name']}"
    shots_save(dialog, f"{prefix}_log")
    if not successful:
        raise RuntimeError(f"{step['algorithm']} failed in its dialog: see {prefix}_log.png")
    shots_keep.setdefault("outputs", {})[step["name"]] = results["OUTPUT"]
    dialog.close()
    loaded = [
        layer
        for layer in QgsProject.instance().mapLayers().values()
        if layer.source().split("|")[0] == results["OUTPUT"].split("|")[0]
    ]
    if not loaded:
        raise RuntimeError(f"the output of {step['algorithm']} was not loaded into the project")
    iface.setActiveLayer(loaded[0])
    iface.zoomToActiveLayer()
    shots_state.setdefault("walked", []).append(
        {"step": step["name"], "features": loaded[0].featureCount()}
    )
    shots_then(4000, lambda: shots_save(iface.mainWindow(), f"{prefix}_map"))
    shots_then(4500, shots_next_walk_step)


def shots_open_project():
    if not QgsProject.instance().read(SHOTS["project"]):
        raise RuntimeError(f"cannot open {SHOTS['project']}")
    shots_then(8000, shots_project)  # the canvas draws (the basemap only when online)


def shots_project():
    shots_save(iface.mainWindow(), "project")
    # What a user would meet on opening: a dialog asking something (a datum transformation, a
    # missing file) or a layer that cannot draw is an error of the demo, not of the screenshot.
    from qgis.PyQt.QtWidgets import QDialog, QMessageBox

    asking = [
        widget.windowTitle() or type(widget).__name__
        for widget in QApplication.topLevelWidgets()
        if widget.isVisible() and isinstance(widget, (QDialog, QMessageBox))
    ]
    broken = [lyr.name() for lyr in QgsProject.instance().mapLayers().values() if not lyr.isValid()]
    shots_state["project"] = {
        "dialogs": asking,
        "invalid_layers": broken,
        "scale": round(iface.mapCanvas().scale()),
        "crs": iface.mapCanvas().mapSettings().destinationCrs().authid(),
    }
    if asking or broken:
        shots_state["errors"].append(f"the demo project asks {asking} or has broken {broken}")
    toolbox = iface.mainWindow().findChild(QDockWidget, "ProcessingToolbox")
    if toolbox is None:
        raise RuntimeError("no Processing toolbox")
    toolbox.show()
    toolbox.raise_()
    for view in toolbox.findChildren(QTreeView):  # the plugin's groups open, the others closed
        model = view.model()
        for row in range(model.rowCount()):
            index = model.index(row, 0)
            if index.data() == "Multimodal Urban Studies":
                view.expandRecursively(index)
    shots_then(1500, shots_toolbox)


def shots_toolbox():
    shots_save(iface.mainWindow(), "toolbox")
    shots_state["dialogs"] = list(SHOTS["algorithms"])
    shots_then(200, shots_next_dialog)


def shots_next_dialog():
    if not shots_state["dialogs"]:
        shots_then(200, shots_modeler)
        return
    algorithm_id = shots_state["dialogs"].pop(0)
    dialog = processing.createAlgorithmDialog(algorithm_id)
    if dialog is None:
        raise RuntimeError(f"no dialog for {algorithm_id}")
    dialog.resize(1100, 820)
    dialog.show()
    shots_keep["dialog"] = dialog

    def save_and_close():
        shots_save(dialog, f"dialog_{algorithm_id.split(':')[1]}")
        dialog.close()
        shots_then(200, shots_next_dialog)

    shots_then(1500, save_and_close)


def shots_modeler():
    import qgis.utils

    plugin = qgis.utils.plugins.get("mus_qgis")
    if plugin is None:
        raise RuntimeError("the mus_qgis plugin is not loaded")
    modeler = plugin.edit_pipeline_model()
    modeler.resize(1500, 900)
    shots_keep["modeler"] = modeler

    def save_and_close():
        modeler.view().fitInView(
            modeler.view().scene().itemsBoundingRect().adjusted(-40, -40, 40, 40),
            Qt.AspectRatioMode.KeepAspectRatio,
        )
        QApplication.processEvents()
        shots_save(modeler, "modeler")
        modeler.setDirty(False)
        modeler.close()
        shots_then(200, shots_inspector)

    shots_then(2500, save_and_close)


def shots_inspector():
    """The street inspector on the demo's classified layer, at its least certain point."""
    import qgis.utils

    from mus_qgis.bridge.layer_settings import classification_settings
    from mus_qgis.inspector.point import is_classified

    # The layer CLIP-classify made (its run settings say how), not a reading that copied its
    # fields (the clusters keep label_1 too).
    layers = [
        v
        for v in QgsProject.instance().mapLayers().values()
        if is_classified(v) and classification_settings(v).get("label_set")
    ]
    if not layers:
        shots_quit()
        return
    iface.setActiveLayer(layers[0])
    dock = qgis.utils.plugins["mus_qgis"].open_inspector(True)
    dock.set_layer(layers[0])
    dock.step(1)  # the lowest margin first

    def save():
        dock.step(0)  # shown again, now with each view's reading
        shots_save(iface.mainWindow(), "inspector")
        shots_quit()

    shots_then(6000, save)  # each view's reading comes from the engine worker


def shots_quit():
    shots_write()
    QgsProject.instance().setDirty(False)
    QTimer.singleShot(300, iface.actionExit().trigger)


QgsApplication.processingRegistry()  # Processing is up before the first step
shots_then(500, shots_start)
