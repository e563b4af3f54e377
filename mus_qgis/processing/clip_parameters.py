"""The OpenCLIP model, view and cache parameters that classifying and ranking share."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ..engine.clip.models import DEFAULT_MODEL, DEFAULT_PRETRAINED, DEVICES
from .base import plugin_cache_dir
from .qgis_enums import FILE_FOLDER, NUMBER_DOUBLE

# (label shown, count, field of view, centre crop); Processing stores the index: append only.
VIEW_CHOICES = (
    ("4 views of 90° (whole panorama)", 4, 90.0, False),
    ("6 views of 60°", 6, 60.0, False),
    ("8 views of 45°", 8, 45.0, False),
    ("1 view of 90° along the street", 1, 90.0, False),
    ("CLIP's centre crop (keeps a quarter of a panorama; for comparison only)", 1, 90.0, True),
)


class ClipParameters:
    """Mixin for a :class:`MusAlgorithm` that runs an OpenCLIP model over stored embeddings.

    The parameter names are the same in every algorithm, so a Processing model or a qgis_process
    command line can pass one model setting to classify and rank alike.
    """

    MODEL = "MODEL"
    PRETRAINED = "PRETRAINED"
    CHECKPOINT = "CHECKPOINT"
    DEVICE = "DEVICE"
    VIEWS = "VIEWS"
    PITCH = "PITCH"
    CACHE_FOLDER = "CACHE_FOLDER"

    def model_parameters(self) -> list:
        """Model, weights and device (advanced parameters in both algorithms)."""
        return [
            QgsProcessingParameterString(
                self.MODEL,
                self.tr("OpenCLIP model (architecture or JSON config file)"),
                defaultValue=DEFAULT_MODEL,
            ),
            QgsProcessingParameterString(
                self.PRETRAINED,
                self.tr("Pretrained tag (empty: random weights)"),
                defaultValue=DEFAULT_PRETRAINED,
                optional=True,
            ),
            QgsProcessingParameterFile(
                self.CHECKPOINT,
                self.tr("Local checkpoint file (wins over the tag)"),
                optional=True,
                fileFilter="Checkpoints (*.pt *.pth *.bin *.safetensors)",
            ),
            QgsProcessingParameterEnum(
                self.DEVICE, self.tr("Device"), options=list(DEVICES), defaultValue=0
            ),
        ]

    def view_parameters(self) -> list:
        """How panoramas are cut into views: part of what identifies stored embeddings."""
        return [
            QgsProcessingParameterEnum(
                self.VIEWS,
                self.tr("Panorama views"),
                options=[choice[0] for choice in VIEW_CHOICES],
                defaultValue=0,
            ),
            QgsProcessingParameterNumber(
                self.PITCH,
                self.tr("View pitch (degrees above the horizon)"),
                NUMBER_DOUBLE,
                defaultValue=0.0,
                minValue=-90.0,
                maxValue=90.0,
            ),
        ]

    def range_problem(self, parameters) -> str:
        """A number or choice outside its range, said with its name, range and value.

        QGIS's own check says only "Incorrect parameter value for TOP_K"; this one runs first.
        Values that are not plain numbers (expressions, layers) are left to QGIS.
        """
        for definition in self.parameterDefinitions():
            name = definition.name()
            value = parameters.get(name)
            if value is None or isinstance(value, bool):
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            label = f"{name} ({definition.description()})"
            if isinstance(definition, QgsProcessingParameterNumber):
                low, high = definition.minimum(), definition.maximum()
                if not low <= number <= high:
                    return f"{label} must be {_shown(low)} to {_shown(high)}, not {_shown(number)}."
            elif isinstance(definition, QgsProcessingParameterEnum):
                count = len(definition.options())
                if number != int(number) or not 0 <= number < count:
                    choices = "; ".join(f"{i}: {o}" for i, o in enumerate(definition.options()))
                    return f"{label} must be one of 0 to {count - 1} ({choices}), not {value}."
        return ""

    def cache_parameter(self):
        return QgsProcessingParameterFile(
            self.CACHE_FOLDER,
            self.tr("Cache folder for weights and embeddings (empty: the plugin's)"),
            behavior=FILE_FOLDER,
            optional=True,
        )

    def model_spec(self, parameters, context) -> dict:
        """The engine's ``ModelSpec`` fields, as a job sends them."""
        return {
            "name": self.parameterAsString(parameters, self.MODEL, context).strip()
            or DEFAULT_MODEL,
            "pretrained": self.parameterAsString(parameters, self.PRETRAINED, context).strip(),
            "checkpoint": self.parameterAsFile(parameters, self.CHECKPOINT, context),
            "device": DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
        }

    def view_setting(self, parameters, context) -> dict:
        """The engine's ``ViewSetting`` fields, as a job sends them."""
        _, count, fov, centre_crop = VIEW_CHOICES[
            self.parameterAsEnum(parameters, self.VIEWS, context)
        ]
        return {
            "count": count,
            "fov": fov,
            "pitch": self.parameterAsDouble(parameters, self.PITCH, context),
            "centre_crop": centre_crop,
        }

    def cache_folder(self, parameters, context) -> str:
        folder = self.parameterAsFile(parameters, self.CACHE_FOLDER, context)
        return folder or str(plugin_cache_dir())


def _shown(number: float) -> str:
    return f"{number:g}"
