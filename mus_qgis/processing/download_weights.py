"""Processing algorithm ``mus:downloadweights``."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterFile,
    QgsProcessingParameterString,
)

from ..bridge.engine import plugin_cache_dir, run_job
from ..bridge.qgis_enums import FILE_FOLDER
from ..shared.defaults import DEFAULT_MODEL, DEFAULT_PRETRAINED
from ..shared.schemas.clip import DownloadWeightsParams, DownloadWeightsResult
from .base import MusAlgorithm


class DownloadWeights(MusAlgorithm):
    """A pretrained tag's weights into the cache now, with a progress bar, not mid-study."""

    NAME = "downloadweights"
    DISPLAY_NAME = "Download model weights"
    SHORT = "Fetch a CLIP model's pretrained weights into the cache now, with its progress."
    GROUP = "0 · Engine"
    GROUP_ID = "engine"
    HELP = (
        "Downloads the pretrained weights a CLIP dialog names (model and pretrained tag) from "
        "Hugging Face into the plugin's cache, showing how far it has come, so that the first "
        "classification does not start with a long wait. Weights already in the cache are not "
        "downloaded again. A download cut short is kept: run it again and it goes on.\n\n"
        "Offline or behind a proxy, it stops at once and says which file to fetch elsewhere "
        "(its Hugging Face page and direct link) and how to choose it as a checkpoint file "
        "(Plugins ▸ Multimodal Urban Studies ▸ Getting started ▸ Use a checkpoint file…)."
    )

    MODEL = "MODEL"
    PRETRAINED = "PRETRAINED"
    CACHE_FOLDER = "CACHE_FOLDER"

    def initAlgorithm(self, config=None) -> None:
        """Declare the parameters."""
        self.add_parameter(
            QgsProcessingParameterString(
                self.MODEL, self.tr("CLIP model (open_clip name)"), defaultValue=DEFAULT_MODEL
            )
        )
        self.add_parameter(
            QgsProcessingParameterString(
                self.PRETRAINED, self.tr("Pretrained tag"), defaultValue=DEFAULT_PRETRAINED
            )
        )
        self.add_parameter(
            QgsProcessingParameterFile(
                self.CACHE_FOLDER,
                self.tr("Cache folder (empty: the plugin's, where the CLIP dialogs look)"),
                behavior=FILE_FOLDER,
                optional=True,
            )
        )
        self.add_output(QgsProcessingOutputString("FILE", self.tr("Weights file")))
        self.add_output(QgsProcessingOutputNumber("BYTES", self.tr("Size (bytes)")))

    def processAlgorithm(self, parameters, context, feedback):
        """Fetch the weights in the engine; the engine reports the download's progress."""
        self.require_engine()
        folder = self.parameterAsFile(parameters, self.CACHE_FOLDER, context)
        result = run_job(
            "download_weights",
            DownloadWeightsParams(
                cache_dir=folder or str(plugin_cache_dir()),
                model=self.parameterAsString(parameters, self.MODEL, context).strip()
                or DEFAULT_MODEL,
                pretrained=self.parameterAsString(parameters, self.PRETRAINED, context).strip()
                or DEFAULT_PRETRAINED,
            ),
            feedback,
            DownloadWeightsResult,
        )
        where = "was in the cache already" if result.cached else "downloaded"
        feedback.pushInfo(f"{result.path} ({result.bytes / 1e6:.1f} MB): {where}.")
        return {"FILE": result.path, "BYTES": result.bytes}
