"""The ``mus`` Processing provider."""

from __future__ import annotations

from qgis.core import QgsProcessingModelAlgorithm, QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..engine.resources import plugin_version, resource_path
from .classify_clip import ClassifyClip
from .compare_urban_atlas import CompareUrbanAtlas
from .fetch_panoramas import FetchPanoramas
from .rank_labels import RankLabels
from .resample_to_grid import ResampleToGrid
from .sample_street_centroids import SampleStreetCentroids


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

    def loadAlgorithms(self) -> None:
        """Add one instance of each algorithm."""
        for algorithm in (
            SampleStreetCentroids(),
            FetchPanoramas(),
            ClassifyClip(),
            ResampleToGrid(),
            RankLabels(),
            CompareUrbanAtlas(),
        ):
            self.addAlgorithm(algorithm)
        # The whole pipeline as Processing models (data files made by
        # scripts/build_pipeline_model.py): they open in the Graphical Modeler too.
        for path in sorted(resource_path("models").glob("*.model3")):
            model = QgsProcessingModelAlgorithm()
            if model.fromFile(str(path)):
                self.addAlgorithm(model)
