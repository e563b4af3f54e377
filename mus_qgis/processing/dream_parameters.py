"""The diffusion model and generation parameters that dreaming and the mainstream image share."""

from __future__ import annotations

from qgis.core import QgsProcessingParameterNumber, QgsProcessingParameterString

from ..engine.dreams.pipeline import DEFAULT_DREAM_MODEL
from .qgis_enums import NUMBER_DOUBLE, NUMBER_INTEGER

# Not the engine's DEVICES import: the device is CLIP's DEVICE parameter, for both models.


class DreamParameters:
    """Mixin for an algorithm that generates images with a diffusers model.

    A distilled one-step model (sd-turbo) wants 1 to 4 steps and no guidance; a classic Stable
    Diffusion model 20 to 50 steps and a guidance about 7.5.
    """

    DREAM_MODEL = "DREAM_MODEL"
    DREAM_REVISION = "DREAM_REVISION"
    STEPS = "STEPS"
    GUIDANCE = "GUIDANCE"
    SIZE = "SIZE"
    SEED = "SEED"

    def dream_model_parameters(self, steps: int = 2) -> list:
        return [
            QgsProcessingParameterString(
                self.DREAM_MODEL,
                self.tr("Diffusion model (diffusers model id, or a local model folder)"),
                defaultValue=DEFAULT_DREAM_MODEL,
            ),
            QgsProcessingParameterString(
                self.DREAM_REVISION,
                self.tr("Model revision (branch, tag or commit; empty: the newest)"),
                optional=True,
            ),
            QgsProcessingParameterNumber(
                self.STEPS,
                self.tr("Steps"),
                NUMBER_INTEGER,
                defaultValue=steps,
                minValue=1,
                maxValue=200,
            ),
            QgsProcessingParameterNumber(
                self.GUIDANCE,
                self.tr("Guidance scale (0 for one-step models)"),
                NUMBER_DOUBLE,
                defaultValue=0.0,
                minValue=0.0,
                maxValue=30.0,
            ),
            QgsProcessingParameterNumber(
                self.SIZE,
                self.tr("Image size (pixels, a multiple of 8)"),
                NUMBER_INTEGER,
                defaultValue=512,
                minValue=64,
                maxValue=2048,
            ),
            QgsProcessingParameterNumber(
                self.SEED, self.tr("Run seed"), NUMBER_INTEGER, defaultValue=0, minValue=0
            ),
        ]

    def dream_model_spec(self, parameters, context, device: str) -> dict:
        """The engine's ``DreamModelSpec`` fields, as a job sends them."""
        return {
            "model": self.parameterAsString(parameters, self.DREAM_MODEL, context).strip()
            or DEFAULT_DREAM_MODEL,
            "revision": self.parameterAsString(parameters, self.DREAM_REVISION, context).strip(),
            "device": device,
        }

    def dream_settings(self, parameters, context, **more) -> dict:
        """The engine's ``DreamSettings`` fields shared by both algorithms, plus ``more``."""
        return {
            "steps": self.parameterAsInt(parameters, self.STEPS, context),
            "guidance": self.parameterAsDouble(parameters, self.GUIDANCE, context),
            "size": self.parameterAsInt(parameters, self.SIZE, context),
            "seed": self.parameterAsInt(parameters, self.SEED, context),
            **more,
        }
