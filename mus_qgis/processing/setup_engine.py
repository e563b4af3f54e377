"""Processing algorithm ``mus:setupengine``."""

from __future__ import annotations

import json

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterString,
)

from ..bridge import client
from ..bridge.engine import SETTING_FOLDER, FeedbackProgress, default_engine_root, engine_root
from ..bridge.environment import TORCH_CHOICES, SetupError, SetupOptions, setup
from ..bridge.qgis_enums import ALGORITHM_HIDE_FROM_MODELER, FILE_FOLDER
from .base import MusAlgorithm

# In the order of TORCH_CHOICES (Processing stores the index).
TORCH_LABELS = (
    "Automatic (recommended)",
    "PyPI's build (on Linux: CUDA, 3.3 GB)",
    "CPU build (PyTorch's index)",
    "CUDA build",
)


class SetupEngine(MusAlgorithm):
    """Create (or renew) the engine's own Python environment, outside QGIS."""

    NAME = "setupengine"
    STUDY_STEP = False
    DISPLAY_NAME = "Set up the engine"
    SHORT = "Installs the engine (torch, OpenCLIP) in its own environment, beside QGIS."
    GROUP = "0 · Engine"
    GROUP_ID = "engine"
    HELP = (
        "Creates the environment the plugin's engine runs in: a Python virtual environment, "
        "outside QGIS's own Python, with PyTorch, OpenCLIP, osmnx, geopandas and their "
        "dependencies, installed from binary wheels (nothing is compiled). Run it once; the "
        "other algorithms then send their work to an engine process started from it, so a "
        "crash or a large library there never touches QGIS.\n\n"
        "It needs no Python of yours: it fetches the installer uv (18 MB) and a standalone "
        "Python (about 30 MB) into the engine's folder. It then says which PyTorch build it "
        "chose and why (a CUDA build for an NVIDIA GPU, the Apple GPU on a Mac with Apple "
        "silicon, else the CPU build) and how much the whole download is, before it starts: "
        "about 1 GB with the CPU build, 3–6 GB with a CUDA build. Everything goes into the "
        "plugin's folder of your QGIS profile unless you pick another; delete that folder to "
        "remove it all.\n\n"
        "A new environment is built beside the old one, checked (imports and a tiny model "
        "run), and only then put in use: a failed or canceled set-up leaves the previous one "
        "working. Run again after a plugin upgrade; if nothing changed it only checks the "
        "environment.\n\n"
        "PyTorch build: 'Automatic' takes a CUDA build for an NVIDIA GPU (the newest its driver "
        "runs), PyPI's build on a Mac with Apple silicon (it runs on the Apple GPU), else the "
        "CPU build from PyTorch's own index; where that index cannot be reached it stops and "
        "says so rather than download PyPI's Linux build, the CUDA build (3.3 GB), unasked. "
        "'PyPI's build' takes that one.\n\n"
        "'Only show the plan and download size' fetches uv and tries the standalone Python "
        "(both needed to resolve the packages, about 50 MB), then stops before the packages."
    )

    FOLDER = "FOLDER"
    BASE_PYTHON = "BASE_PYTHON"
    TORCH = "TORCH"
    TORCH_INDEX = "TORCH_INDEX"
    WHEEL_FOLDER = "WHEEL_FOLDER"
    OFFLINE = "OFFLINE"
    FORCE = "FORCE"
    INDEX_URL = "INDEX_URL"
    PLAN_ONLY = "PLAN_ONLY"

    def flags(self):
        """Not for models: it installs software, and one run at a time is enough."""
        return super().flags() | ALGORITHM_HIDE_FROM_MODELER

    def initAlgorithm(self, config=None) -> None:
        """Declare the parameters."""
        self.add_parameter(
            QgsProcessingParameterFile(
                self.FOLDER,
                self.tr("Environment folder"),
                behavior=FILE_FOLDER,
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.TORCH, self.tr("PyTorch build"), options=list(TORCH_LABELS), defaultValue=0
            )
        )
        self.add_parameter(
            QgsProcessingParameterBoolean(
                self.FORCE, self.tr("Set up again even if nothing changed"), defaultValue=False
            )
        )
        self.add_parameter(
            QgsProcessingParameterBoolean(
                self.PLAN_ONLY,
                self.tr("Only show the plan and download size"),
                defaultValue=False,
            )
        )
        self.add_advanced_parameters(
            [
                QgsProcessingParameterFile(
                    self.BASE_PYTHON,
                    self.tr("Python to build on"),
                    optional=True,
                ),
                QgsProcessingParameterString(
                    self.INDEX_URL,
                    self.tr("Package index"),
                    optional=True,
                ),
                QgsProcessingParameterString(
                    self.TORCH_INDEX,
                    self.tr("Package index for PyTorch"),
                    optional=True,
                ),
                QgsProcessingParameterFile(
                    self.WHEEL_FOLDER,
                    self.tr("Folder of wheels"),
                    behavior=FILE_FOLDER,
                    optional=True,
                ),
                QgsProcessingParameterBoolean(
                    self.OFFLINE,
                    self.tr("Offline: only the wheel folder"),
                    defaultValue=False,
                ),
            ]
        )
        self.add_output(QgsProcessingOutputString("PYTHON", self.tr("Engine Python")))
        self.add_output(QgsProcessingOutputString("RECORD", self.tr("Environment record (JSON)")))

    def processAlgorithm(self, parameters, context, feedback):
        """Set up the environment, then make the plugin use it."""
        folder = self.parameterAsFile(parameters, self.FOLDER, context)
        root = folder or str(engine_root())
        offline = self.parameterAsBoolean(parameters, self.OFFLINE, context)
        wheels = self.parameterAsFile(parameters, self.WHEEL_FOLDER, context)
        if offline and not wheels:
            raise QgsProcessingException("Offline set-up needs a folder of wheels.")
        options = SetupOptions(
            root=root,
            base_python=self.parameterAsFile(parameters, self.BASE_PYTHON, context),
            torch=TORCH_CHOICES[self.parameterAsEnum(parameters, self.TORCH, context)],
            torch_index=self.parameterAsString(parameters, self.TORCH_INDEX, context).strip(),
            wheel_folder=wheels,
            offline=offline,
            force=self.parameterAsBoolean(parameters, self.FORCE, context),
            index_url=self.parameterAsString(parameters, self.INDEX_URL, context).strip(),
            plan_only=self.parameterAsBoolean(parameters, self.PLAN_ONLY, context),
        )
        feedback.pushInfo(f"Engine environment folder: {root}")
        # Idle workers run the environment about to be replaced: stop them; running ones keep
        # theirs until their job ends (the set-up leaves it for the next one to remove).
        if not options.plan_only:
            client.POOL.shutdown()
        try:
            record = setup(
                options, FeedbackProgress(feedback), in_use=client.POOL.environments_in_use()
            )
        except SetupError as exc:
            raise QgsProcessingException(str(exc)) from None
        if folder and not options.plan_only:
            _remember_folder(folder)
        return {"PYTHON": record.get("python", ""), "RECORD": json.dumps(record, indent=2)}


def _remember_folder(folder: str) -> None:
    """A folder the user picked becomes the provider's setting (the default needs none)."""
    try:
        from processing.core.ProcessingConfig import ProcessingConfig
    except ImportError:
        return
    value = "" if str(default_engine_root()) == str(folder) else folder
    ProcessingConfig.setSettingValue(SETTING_FOLDER, value)


def repeated_parameters(record: dict | None) -> dict:
    """The set-up's parameters that repeat the choices an environment record was made with, so
    that the menu's "Set up the engine" keeps them (and, when nothing changed, only checks)."""
    options = (record or {}).get("options") or {}
    parameters: dict = {}
    torch = options.get("torch") or "auto"
    if torch in TORCH_CHOICES:
        parameters[SetupEngine.TORCH] = TORCH_CHOICES.index(torch)
    elif record.get("torch_index"):  # a build named on the command line (cu128): its index
        parameters[SetupEngine.TORCH_INDEX] = record["torch_index"]
    for key, name in (
        ("torch_index", SetupEngine.TORCH_INDEX),
        ("index_url", SetupEngine.INDEX_URL),
        ("wheel_folder", SetupEngine.WHEEL_FOLDER),
        ("base_python", SetupEngine.BASE_PYTHON),
    ):
        if options.get(key):
            parameters[name] = options[key]
    if options.get("offline"):
        parameters[SetupEngine.OFFLINE] = True
    return parameters
