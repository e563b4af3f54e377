"""The ``mus`` Processing provider."""

from __future__ import annotations

from qgis.core import QgsProcessingModelAlgorithm, QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..bridge import client
from ..bridge.engine import (
    DEFAULT_IDLE_MINUTES,
    SETTING_CHECKPOINT,
    SETTING_FOLDER,
    SETTING_IDLE_MINUTES,
    SETTING_PYTHON,
)
from ..shared.resources import plugin_version, resource_path
from .base import help_url, release_failed_runs
from .classify_clip import ClassifyClip
from .compare_urban_atlas import CompareUrbanAtlas
from .download_weights import DownloadWeights
from .dream_streets import DreamStreets
from .engine_status import EngineStatus
from .export_figures import ExportFigures
from .fetch_panoramas import FetchPanoramas
from .label_boundaries import LabelBoundaries
from .label_change import LabelChange
from .label_clusters import LabelClusters
from .label_periods import LabelPeriods
from .mainstream_image import MainstreamImage
from .rank_labels import RankLabels
from .rerun_study import RerunStudy
from .resample_to_grid import ResampleToGrid
from .sample_street_centroids import SampleStreetCentroids
from .setup_engine import SetupEngine
from .survey_imagery import SurveyImagery
from .train_probe import TrainProbe


class MusProvider(QgsProcessingProvider):
    """Multimodal Urban Studies: street sampling, panoramas, CLIP classification, grids."""

    def id(self) -> str:
        """Provider id, the prefix of every algorithm id (``mus:...``)."""
        return "mus"

    def name(self) -> str:
        """Name shown in the Processing Toolbox."""
        return "Multimodal Urban Studies"

    def longName(self) -> str:
        """Name with version."""
        return f"Multimodal Urban Studies (mus_qgis {plugin_version()})"

    def icon(self) -> QIcon:
        """Provider icon."""
        return QIcon(str(resource_path("icons", "mus.svg")))

    def svgIconPath(self) -> str:
        """Provider icon as an SVG path."""
        return str(resource_path("icons", "mus.svg"))

    def load(self) -> bool:
        """Declare the engine's settings (Processing ▸ Options ▸ Providers), then the algorithms."""
        try:
            from processing.core.ProcessingConfig import ProcessingConfig, Setting
        except ImportError:  # Processing's Python plugin is not loaded: defaults apply
            return super().load()
        ProcessingConfig.settingIcons[self.name()] = self.icon()
        for setting in (
            Setting(
                self.name(),
                SETTING_PYTHON,
                "Engine Python (empty: the environment 'Set up the engine' made)",
                "",
                valuetype=Setting.FILE,
            ),
            Setting(
                self.name(),
                SETTING_FOLDER,
                "Engine environment folder (empty: the plugin's folder in the QGIS profile)",
                "",
                valuetype=Setting.FOLDER,
            ),
            Setting(
                self.name(),
                SETTING_CHECKPOINT,
                "CLIP checkpoint file the dialogs start with (empty: the pretrained weights, "
                "downloaded on first use)",
                "",
                valuetype=Setting.FILE,
            ),
            Setting(
                self.name(),
                SETTING_IDLE_MINUTES,
                "Minutes an idle engine stays loaded (keeps the model in memory)",
                DEFAULT_IDLE_MINUTES,
                valuetype=Setting.INT,
            ),
        ):
            ProcessingConfig.addSetting(setting)
        ProcessingConfig.readSettings()
        return super().load()

    def unload(self) -> None:
        """Remove the settings, stop idle engine workers, and let go of what QGIS kept of failed
        runs (see base.releasing_failures)."""
        release_failed_runs()
        try:
            from processing.core.ProcessingConfig import ProcessingConfig
        except ImportError:
            pass
        else:
            for name in (SETTING_PYTHON, SETTING_FOLDER, SETTING_CHECKPOINT, SETTING_IDLE_MINUTES):
                ProcessingConfig.removeSetting(name)
        client.POOL.shutdown()
        super().unload()

    def loadAlgorithms(self) -> None:
        """Add one instance of each algorithm."""
        for algorithm in (
            SetupEngine(),
            EngineStatus(),
            DownloadWeights(),
            SampleStreetCentroids(),
            SurveyImagery(),
            FetchPanoramas(),
            ClassifyClip(),
            ResampleToGrid(),
            RankLabels(),
            CompareUrbanAtlas(),
            ExportFigures(),
            LabelClusters(),
            LabelBoundaries(),
            LabelPeriods(),
            LabelChange(),
            TrainProbe(),
            DreamStreets(),
            MainstreamImage(),
            RerunStudy(),
        ):
            self.addAlgorithm(algorithm)
        # The whole pipeline as Processing models (data files made by
        # scripts/build_pipeline_model.py): they open in the Graphical Modeler too.
        for path in sorted(resource_path("models").glob("*.model3")):
            model = QgsProcessingModelAlgorithm()
            if model.fromFile(str(path)):
                # Its Help button opens the page shipped with the plugin, wherever it is installed.
                url = help_url(model.name())
                if url:
                    help_content = model.helpContent()
                    help_content["HELP_URL"] = url
                    model.setHelpContent(help_content)
                self.addAlgorithm(model)
