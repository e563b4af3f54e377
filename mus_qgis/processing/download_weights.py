"""Processing algorithm ``mus:downloadweights``."""

from __future__ import annotations

from qgis.core import QgsProcessingException, QgsProcessingOutputNumber, QgsProcessingOutputString

from ..bridge.engine import run_job
from ..shared.defaults import DEFAULT_MODEL
from ..shared.schemas.clip import DownloadWeightsParams, DownloadWeightsResult
from .base import MusAlgorithm
from .clip_parameters import ClipParameters


class DownloadWeights(ClipParameters, MusAlgorithm):
    """A pretrained tag's weights into the cache now, with a progress bar, not mid-study."""

    NAME = "downloadweights"
    STUDY_STEP = False
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

    def initAlgorithm(self, config=None) -> None:
        """Declare the parameters: the CLIP dialogs' own model, tag and cache folder."""
        model, pretrained = self.model_parameters()[:2]
        for parameter in (model, pretrained, self.cache_parameter()):
            self.add_parameter(parameter)
        self.add_output(QgsProcessingOutputString("FILE", self.tr("Weights file")))
        self.add_output(QgsProcessingOutputNumber("BYTES", self.tr("Size (bytes)")))

    def processAlgorithm(self, parameters, context, feedback):
        """Fetch the weights in the engine; the engine reports the download's progress."""
        self.require_engine()
        pretrained = self.parameterAsString(parameters, self.PRETRAINED, context).strip()
        if not pretrained:
            raise QgsProcessingException(
                "Give a pretrained tag (e.g. laion2b_s34b_b79k): random weights need no download."
            )
        result = run_job(
            "download_weights",
            DownloadWeightsParams(
                cache_dir=self.cache_folder(parameters, context),
                model=self.parameterAsString(parameters, self.MODEL, context).strip()
                or DEFAULT_MODEL,
                pretrained=pretrained,
            ),
            feedback,
            DownloadWeightsResult,
        )
        where = "was in the cache already" if result.cached else "downloaded"
        feedback.pushInfo(f"{result.path} ({result.bytes / 1e6:.1f} MB): {where}.")
        return {"FILE": result.path, "BYTES": result.bytes}
