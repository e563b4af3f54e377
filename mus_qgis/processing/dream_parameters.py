"""The diffusion model and generation parameters that dreaming and the mainstream image share."""

from __future__ import annotations

import html
from pathlib import Path

from qgis.core import (
    QgsLayerMetadata,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsProviderRegistry,
)

from ..bridge.qgis_enums import (
    FIELD_NUMERIC,
    FIELD_STRING,
    FILE_FOLDER,
    NUMBER_DOUBLE,
    NUMBER_INTEGER,
    VECTOR_POINT,
)
from ..shared.defaults import DEFAULT_DREAM_MODEL
from ..shared.schemas.dreams import DreamModelChoice, DreamSettingsChoice
from .classify_clip import html_safe_json


class DreamParameters:
    """Mixin for an algorithm that generates images with a diffusers model.

    A distilled one-step model (sd-turbo) wants 1 to 4 steps and no guidance; a classic Stable
    Diffusion model 20 to 50 steps and a guidance about 7.5.
    """

    # The points' parameters have CLIP-classify's names, so a model passes one layer to all.
    INPUT = "INPUT"
    IMAGE_FIELD = "IMAGE_FIELD"
    BEARING_FIELD = "BEARING_FIELD"
    HEADING_FIELD = "HEADING_FIELD"
    IMAGE_FOLDER = "IMAGE_FOLDER"
    OUTPUT = "OUTPUT"
    DREAM_MODEL = "DREAM_MODEL"
    DREAM_REVISION = "DREAM_REVISION"
    STEPS = "STEPS"
    GUIDANCE = "GUIDANCE"
    SIZE = "SIZE"
    SEED = "SEED"

    def points_parameters(self) -> list:
        """The points and the field of their image paths, as CLIP-classify reads them."""
        return [
            QgsProcessingParameterFeatureSource(
                self.INPUT, self.tr("Points with images"), [VECTOR_POINT]
            ),
            QgsProcessingParameterField(
                self.IMAGE_FIELD,
                self.tr("Image path field"),
                defaultValue="image_paths",
                parentLayerParameterName=self.INPUT,
                type=FIELD_STRING,
                optional=True,  # as in CLIP-classify: so that QGIS 3.22 applies the default
            ),
        ]

    def view_field_parameters(self) -> list:
        """Where a panorama's views point, and where relative image paths start (advanced)."""
        return [
            QgsProcessingParameterField(
                self.BEARING_FIELD,
                self.tr("Street bearing field"),
                defaultValue="bearing",
                parentLayerParameterName=self.INPUT,
                type=FIELD_NUMERIC,
                optional=True,
            ),
            QgsProcessingParameterField(
                self.HEADING_FIELD,
                self.tr("Panorama heading field"),
                defaultValue="image_heading",
                parentLayerParameterName=self.INPUT,
                type=FIELD_NUMERIC,
                optional=True,
            ),
            QgsProcessingParameterFile(
                self.IMAGE_FOLDER,
                self.tr("Image folder"),
                behavior=FILE_FOLDER,
                optional=True,
            ),
        ]

    def dream_model_parameters(self, steps: int = 2) -> list:
        return [
            QgsProcessingParameterString(
                self.DREAM_MODEL,
                self.tr("Diffusion model"),
                defaultValue=DEFAULT_DREAM_MODEL,
            ),
            QgsProcessingParameterString(
                self.DREAM_REVISION,
                self.tr("Diffusion model revision"),
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

    def dream_model_spec(self, parameters, context, device: str) -> DreamModelChoice:
        """The diffusion model a job is to use, on ``device``."""
        return DreamModelChoice(
            model=self.parameterAsString(parameters, self.DREAM_MODEL, context).strip()
            or DEFAULT_DREAM_MODEL,
            revision=self.parameterAsString(parameters, self.DREAM_REVISION, context).strip(),
            device=device,
        )

    def dream_settings(self, parameters, context, **more) -> DreamSettingsChoice:
        """The dream settings both algorithms share, plus ``more`` (other ``DreamSettingsChoice``
        fields)."""
        return DreamSettingsChoice(
            steps=self.parameterAsInt(parameters, self.STEPS, context),
            guidance=self.parameterAsDouble(parameters, self.GUIDANCE, context),
            size=self.parameterAsInt(parameters, self.SIZE, context),
            seed=self.parameterAsInt(parameters, self.SEED, context),
            **more,
        )


def run_settings_metadata(title: str, settings: dict) -> QgsLayerMetadata:
    """The run settings (both models and their revisions) as layer metadata, escaped: QGIS
    shows title and abstract as HTML, and prompts are the user's text."""
    metadata = QgsLayerMetadata()
    metadata.setTitle(html.escape(title))
    metadata.setAbstract(html.escape("\n".join(f"{k}: {v}" for k, v in settings.items())))
    metadata.addKeywords("mus_qgis", [html_safe_json(settings)])
    return metadata


def save_run_settings(dest_id: str, title: str, settings: dict, feedback) -> None:
    """Write the run settings into a GeoPackage output's own metadata, so that they travel with
    the file (a layer QGIS loads gets them again from its styler)."""
    path = dest_id.split("|")[0]
    if not path.lower().endswith(".gpkg"):
        return
    uri = dest_id if "layername=" in dest_id else f"{path}|layername={Path(path).stem}"
    try:
        saved, message = QgsProviderRegistry.instance().saveLayerMetadata(
            "ogr", uri, run_settings_metadata(title, settings)
        )
    except Exception as exc:  # a metadata failure must not lose the points
        saved, message = False, str(exc)
    if not saved:
        feedback.pushWarning(f"Could not save the run settings into {path}: {message}")
