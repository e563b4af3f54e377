"""The plugin shell: the Processing provider, and a menu to set up and check the engine."""

from __future__ import annotations

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsMessageLog,
    QgsProcessingAlgRunnerTask,
    QgsProcessingContext,
    QgsProcessingFeedback,
)

from .processing.base import LOG_TAG
from .processing.provider import MusProvider

MENU = "&Multimodal Urban Studies"


class LoggingFeedback(QgsProcessingFeedback):
    """Feedback of a background run: its messages go to the Log Messages panel (tab mus_qgis);
    the errors are kept too, for the message bar to say why a run failed."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[str] = []

    def pushInfo(self, info):
        """Log an info line."""
        QgsMessageLog.logMessage(info, LOG_TAG, Qgis.MessageLevel.Info)

    def reportError(self, error, fatalError=False):  # noqa: N803 (Qt override)
        """Log an error line."""
        self.errors.append(error)
        QgsMessageLog.logMessage(error, LOG_TAG, Qgis.MessageLevel.Warning)


class MusPlugin:
    """What QGIS loads: the ``mus`` Processing provider and the engine menu."""

    # QGIS hands iface to classFactory, its documented entry point; qgis_process hands none.
    def __init__(self, iface=None) -> None:  # noqa: QGS105
        self.iface = iface
        self.provider: MusProvider | None = None
        self.actions: list = []
        self._running: dict = {}  # background runs kept alive until they finish

    def initProcessing(self) -> None:
        """Register the provider (also called by qgis_process, which has no GUI)."""
        if self.provider is None:
            self.provider = MusProvider()
            if not QgsApplication.processingRegistry().addProvider(self.provider):
                # Another copy of the plugin (e.g. one in a second plugins folder) holds the id.
                QgsMessageLog.logMessage(
                    "The mus Processing provider is already registered; this copy of the plugin "
                    "adds no algorithms.",
                    LOG_TAG,
                    Qgis.MessageLevel.Warning,
                )
                self.provider = None

    def initGui(self) -> None:
        """Set up the plugin in the QGIS desktop: the provider and the engine menu."""
        from qgis.PyQt.QtGui import QIcon
        from qgis.PyQt.QtWidgets import QAction

        from .shared.resources import resource_path

        self.initProcessing()
        if self.iface is None:
            return
        icon = QIcon(str(resource_path("icons", "mus.svg")))
        for text, slot in (
            ("Getting started…", self.show_getting_started),
            ("Set up the engine…", self.setup_engine),
            ("Engine status…", self.show_engine_status),
            ("Service keys…", self.show_service_keys),
            ("Edit the pipeline model…", self.edit_pipeline_model),
        ):
            action = QAction(icon, text, self.iface.mainWindow())
            action.triggered.connect(slot)
            self.iface.addPluginToMenu(MENU, action)
            self.actions.append(action)
        self.add_inspector(icon)
        from .gui.getting_started import should_show_at_start

        if should_show_at_start():
            from qgis.PyQt.QtCore import QTimer

            # Once the main window is up: the first start says where to begin.
            QTimer.singleShot(0, self.first_start)

    def first_start(self) -> None:
        """Getting started, shown once by itself (again at each start only if asked for)."""
        from qgis.core import QgsSettings

        from .gui.getting_started import SHOW_AT_START_KEY

        QgsSettings().setValue(SHOW_AT_START_KEY, False)  # noqa: QGS202 (QgsSettings's)
        self.show_getting_started()

    def unload(self) -> None:
        """Remove the provider and the menu when the plugin is unloaded or reloaded."""
        for action in self.actions:
            if self.iface is not None:
                self.iface.removePluginMenu(MENU, action)
        self.actions = []
        self.remove_inspector()
        if self.provider is not None:
            # False only when it was never registered: nothing is left to remove then.
            QgsApplication.processingRegistry().removeProvider(self.provider)  # noqa: QGS202
            self.provider = None

    # -- the street inspector ------------------------------------------------------------------
    def add_inspector(self, icon) -> None:
        """The plugin's toolbar with the street inspector (a map tool and its dock)."""
        from qgis.PyQt.QtWidgets import QAction

        self.toolbar = self.iface.addToolBar("Multimodal Urban Studies")
        self.toolbar.setObjectName("MusToolbar")
        self.inspector_action = QAction(icon, "Street inspector", self.iface.mainWindow())
        self.inspector_action.setCheckable(True)
        self.inspector_action.setToolTip(
            "Street inspector: click a point of a classified layer to see its views and the "
            "model's reading; N and P step through the points"
        )
        self.inspector_action.triggered.connect(self.open_inspector)
        self.toolbar.addAction(self.inspector_action)
        self.iface.addPluginToMenu(MENU, self.inspector_action)
        self.inspector_dock = self.inspector_tool = None

    def open_inspector(self, checked: bool = True):
        """Show the inspector's dock and make its map tool the canvas's tool."""
        from qgis.PyQt.QtCore import Qt

        from .inspector.dock import InspectorDock
        from .inspector.map_tool import InspectorMapTool

        canvas = self.iface.mapCanvas()
        if not checked:
            if self.inspector_tool is not None and canvas.mapTool() is self.inspector_tool:
                canvas.unsetMapTool(self.inspector_tool)
            return self.inspector_dock
        if self.inspector_dock is None:
            self.inspector_dock = InspectorDock(self.iface.mainWindow())
            self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.inspector_dock)
            self.inspector_tool = InspectorMapTool(canvas, self.inspector_dock)
            self.inspector_tool.setAction(self.inspector_action)
        self.inspector_dock.show()
        self.inspector_dock.raise_()
        canvas.setMapTool(self.inspector_tool)
        self.inspector_action.setChecked(True)
        return self.inspector_dock

    def remove_inspector(self) -> None:
        if getattr(self, "inspector_action", None) is None:
            return
        if self.iface is not None:
            if self.inspector_tool is not None:
                self.iface.mapCanvas().unsetMapTool(self.inspector_tool)
            if self.inspector_dock is not None:
                self.inspector_dock.stop_tasks()
                self.iface.removeDockWidget(self.inspector_dock)
                self.inspector_dock.deleteLater()
            self.iface.removePluginMenu(MENU, self.inspector_action)
            self.toolbar.deleteLater()
        self.inspector_action = self.inspector_dock = self.inspector_tool = None

    # -- the engine menu ------------------------------------------------------------------------
    def run_in_background(
        self, algorithm_id: str, parameters: dict, done
    ) -> QgsProcessingAlgRunnerTask:
        """Run an algorithm as a QGIS task (progress in the status bar); then
        ``done(ok, results, feedback)``."""
        algorithm = QgsApplication.processingRegistry().createAlgorithmById(algorithm_id)
        context = QgsProcessingContext()
        feedback = LoggingFeedback()
        task = QgsProcessingAlgRunnerTask(algorithm, parameters, context, feedback)
        key = id(task)

        def finished(ok, results) -> None:
            self._running.pop(key, None)
            done(ok, results, feedback)

        task.executed.connect(finished)
        self._running[key] = (task, context, feedback, algorithm)
        QgsApplication.taskManager().addTask(task)
        return task

    def setup_engine(self) -> None:
        """Set up the engine in the background, with the choices the engine in use was made
        with (none: the automatic ones); say on the message bar how it went, and why not."""
        from qgis.gui import QgsMessageBarItem

        from .bridge.engine import engine_root
        from .bridge.environment import read_current
        from .processing.setup_engine import repeated_parameters

        bar = self.iface.messageBar()
        working = QgsMessageBarItem(
            "Multimodal Urban Studies",
            "Setting up the engine in the background (a few minutes; progress in the task bar, "
            "details in Log Messages ▸ mus_qgis).",
            Qgis.MessageLevel.Info,
        )
        bar.pushItem(working)

        def done(ok, results, feedback) -> None:
            bar.popWidget(working)
            if ok:
                bar.pushSuccess("Multimodal Urban Studies", f"Engine ready: {results['PYTHON']}")
                return
            why = first_sentence(feedback.errors[-1]) if feedback.errors else ""
            bar.pushCritical(
                "Multimodal Urban Studies",
                f"The engine set-up failed{': ' + why if why else ''}. The previous engine (if "
                "any) is still in use; what to do is in Log Messages ▸ mus_qgis.",
            )

        parameters = repeated_parameters(read_current(engine_root()))
        self.run_in_background("mus:setupengine", parameters, done)

    def download_weights(self, then=None) -> None:
        """The default CLIP weights into the cache, in the background; the message bar says
        how it went (and, offline, what to do)."""
        bar = self.iface.messageBar()

        def done(ok, results, feedback) -> None:
            if ok:
                bar.pushSuccess("Multimodal Urban Studies", f"Weights ready: {results['FILE']}")
            else:
                why = feedback.errors[-1] if feedback.errors else "see Log Messages ▸ mus_qgis"
                bar.pushCritical("Multimodal Urban Studies", first_sentence(why, 400))
                self._show_text("Model weights", why)
            if then is not None:
                then()

        self.run_in_background("mus:downloadweights", {}, done)

    def show_engine_status(self) -> None:
        """Ask the engine for its status and show it in a dialog one can copy from."""

        def done(ok, results, _feedback) -> None:
            text = results.get("TEXT", "") if ok else "The status could not be read."
            self._show_text("Engine status", text)

        self.run_in_background("mus:enginestatus", {}, done)

    def show_getting_started(self):
        """What to do first: the engine, the model weights, the keys."""
        from .gui.getting_started import GettingStartedDialog

        self.getting_started = GettingStartedDialog(self, self.iface.mainWindow())
        self.getting_started.show()
        return self.getting_started

    def show_service_keys(self):
        """The dialog that stores Mapillary's and Street View's keys for Fetch panoramas."""
        from .gui.service_keys import ServiceKeysDialog

        self.keys_dialog = ServiceKeysDialog(self.iface.mainWindow())
        self.keys_dialog.show()
        return self.keys_dialog

    def edit_pipeline_model(self):
        """The shipped pipeline model in the Graphical Modeler (the toolbox offers "Edit Model…"
        only for the user's own models). Saving asks where: the plugin's copy stays as shipped,
        and the saved one appears under the toolbox's Models."""
        from processing.modeler.ModelerDialog import ModelerDialog
        from qgis.core import QgsProcessingModelAlgorithm

        from .shared.resources import resource_path

        model = QgsProcessingModelAlgorithm()
        if not model.fromFile(str(resource_path("models", "mus_pipeline.model3"))):
            raise RuntimeError("the plugin's pipeline model cannot be read")
        model.setSourceFilePath("")
        dialog = ModelerDialog.create(model)
        dialog.show()
        return dialog

    def _show_text(self, title: str, text: str) -> None:
        from qgis.PyQt.QtWidgets import QDialog, QDialogButtonBox, QPlainTextEdit, QVBoxLayout

        dialog = QDialog(self.iface.mainWindow())
        dialog.setWindowTitle(title)
        layout = QVBoxLayout(dialog)
        view = QPlainTextEdit(text)
        view.setReadOnly(True)
        layout.addWidget(view)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(dialog.reject)
        layout.addWidget(buttons)
        dialog.resize(760, 420)
        self.status_dialog = dialog
        dialog.show()


def first_sentence(text: str, limit: int = 240) -> str:
    """The first sentence of a message, short enough for the message bar."""
    sentence = text.strip().split(". ", 1)[0].rstrip(".")
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rstrip() + "…"
