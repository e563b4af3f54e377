"""The OpenCLIP model, view and cache parameters that classifying and ranking share."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingParameterEnum,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ..bridge.engine import default_checkpoint, plugin_cache_dir
from ..bridge.qgis_enums import (
    FIELD_NUMERIC,
    FIELD_STRING,
    FILE_FOLDER,
    NUMBER_DOUBLE,
    NUMBER_INTEGER,
)
from ..shared.defaults import DEFAULT_MODEL, DEFAULT_PRETRAINED, DEVICES, PRECISIONS
from ..shared.labels import builtin_label_sets
from ..shared.schemas.clip import LabelSetChoice, ModelChoice, ViewChoice

# (label shown, count, field of view, centre crop); Processing stores the index: append only.
VIEW_CHOICES = (
    ("4 views of 90° (whole panorama)", 4, 90.0, False),
    ("6 views of 60°", 6, 60.0, False),
    ("8 views of 45°", 8, 45.0, False),
    ("1 view of 90° along the street", 1, 90.0, False),
    ("CLIP's centre crop (for comparison)", 1, 90.0, True),
)


# The choices of PRECISIONS, in its order (Processing stores the index: append only).
PRECISION_CHOICES = ("fp32 (exact)", "bf16 (fast with AMX)", "fp16 (GPU, Apple MPS)")


class ClipParameters:
    """Mixin for a :class:`MusAlgorithm` that runs an OpenCLIP model over stored embeddings.

    The parameter names are the same in every algorithm, so a Processing model or a qgis_process
    command line can pass one model setting to classify and rank alike.
    """

    MODEL = "MODEL"
    PRETRAINED = "PRETRAINED"
    CHECKPOINT = "CHECKPOINT"
    DEVICE = "DEVICE"
    PRECISION = "PRECISION"
    VIEWS = "VIEWS"
    PITCH = "PITCH"
    CACHE_FOLDER = "CACHE_FOLDER"
    # Where a point layer (parameter INPUT) names each point's images and aims its panoramas.
    IMAGE_FIELD = "IMAGE_FIELD"
    BEARING_FIELD = "BEARING_FIELD"
    HEADING_FIELD = "HEADING_FIELD"
    IMAGE_FOLDER = "IMAGE_FOLDER"
    TOP_K = "TOP_K"
    # The label set the prompts come from (CLIP-classify, the dreams' reading, the periods).
    LABEL_SET = "LABEL_SET"
    LABEL_FILE = "LABEL_FILE"
    TEMPLATES = "TEMPLATES"

    def label_set_parameters(self, set_description: str = "Label set") -> list:
        """A built-in label set, or the user's own label file, which wins over it."""
        return [
            QgsProcessingParameterEnum(
                self.LABEL_SET,
                self.tr(set_description),
                options=[entry.title for entry in builtin_label_sets()],
                defaultValue=0,
            ),
            QgsProcessingParameterFile(
                self.LABEL_FILE,
                self.tr("Own label file"),
                optional=True,
                fileFilter="Label files (*.txt *.csv *.tsv)",
            ),
        ]

    def templates_parameter(self, description: str):
        return QgsProcessingParameterString(
            self.TEMPLATES, self.tr(description), multiLine=True, optional=True
        )

    def label_set(self, parameters, context):
        """The label set as a job names it (a ``LabelSetChoice``), and read here for the labels
        and colours."""
        from ..shared.labels import builtin_label_set, parse_templates, read_label_file

        text = self.parameterAsString(parameters, self.TEMPLATES, context)
        templates = parse_templates(text) if text.strip() else None
        path = self.parameterAsFile(parameters, self.LABEL_FILE, context)
        if path:
            return LabelSetChoice(file=path, templates=templates), read_label_file(path, templates)
        name = builtin_label_sets()[self.parameterAsEnum(parameters, self.LABEL_SET, context)].name
        return LabelSetChoice(builtin=name, templates=templates), builtin_label_set(name, templates)

    def top_k_parameter(self):
        return QgsProcessingParameterNumber(
            self.TOP_K,
            self.tr("Labels to keep per point (top k)"),
            NUMBER_INTEGER,
            defaultValue=3,
            minValue=1,
            maxValue=10,
        )

    def image_field_parameter(self):
        return QgsProcessingParameterField(
            self.IMAGE_FIELD,
            self.tr("Image path field"),
            defaultValue="image_paths",
            parentLayerParameterName="INPUT",
            type=FIELD_STRING,
            # Optional only so that QGIS 3.22 applies the default when the field is not given;
            # locations() insists on a field.
            optional=True,
        )

    def bearing_field_parameter(self, description: str):
        return QgsProcessingParameterField(
            self.BEARING_FIELD,
            self.tr(description),
            defaultValue="bearing",
            parentLayerParameterName="INPUT",
            type=FIELD_NUMERIC,
            optional=True,
        )

    def heading_field_parameter(self, description: str):
        return QgsProcessingParameterField(
            self.HEADING_FIELD,
            self.tr(description),
            defaultValue="image_heading",
            parentLayerParameterName="INPUT",
            type=FIELD_NUMERIC,
            optional=True,
        )

    def image_folder_parameter(self):
        return QgsProcessingParameterFile(
            self.IMAGE_FOLDER,
            self.tr("Image folder"),
            behavior=FILE_FOLDER,
            optional=True,
        )

    def locations(self, source, parameters, context):
        """Each feature's (image paths, bearing, heading), as the engine reads locations, and
        the features in the same order."""
        from ..shared.image_paths import parse_image_paths

        path_index = self.field_index(
            source, parameters, self.IMAGE_FIELD, context, what="image paths", required=True
        )
        bearing_index = self.field_index(
            source, parameters, self.BEARING_FIELD, context, what="street bearing"
        )
        heading_index = self.field_index(
            source, parameters, self.HEADING_FIELD, context, what="panorama heading"
        )
        names = source.fields().names()
        # Recorded in the run settings: the street inspector reads the same fields again.
        self._fields_read = {
            f"{what}_field": names[index] if index >= 0 else ""
            for what, index in (
                ("image", path_index),
                ("bearing", bearing_index),
                ("heading", heading_index),
            )
        }
        folder = self.parameterAsFile(parameters, self.IMAGE_FOLDER, context) or None
        self._fields_read["image_folder"] = folder or ""
        locations, features = [], []
        for feature in source.getFeatures():
            attributes = feature.attributes()
            locations.append(
                [
                    list(parse_image_paths(attributes[path_index], folder)),
                    _angle(attributes[bearing_index]) if bearing_index >= 0 else None,
                    _angle(attributes[heading_index]) if heading_index >= 0 else None,
                ]
            )
            features.append(feature)
        return locations, features

    def model_parameters(self) -> list:
        """Model, weights and device (advanced parameters in both algorithms)."""
        return [
            QgsProcessingParameterString(
                self.MODEL,
                self.tr("OpenCLIP model"),
                defaultValue=DEFAULT_MODEL,
            ),
            QgsProcessingParameterString(
                self.PRETRAINED,
                self.tr("Pretrained weights tag"),
                defaultValue=DEFAULT_PRETRAINED,
                optional=True,
            ),
            QgsProcessingParameterFile(
                self.CHECKPOINT,
                self.tr("Checkpoint file"),
                # The one chosen in Getting started (or Processing's options), if any.
                defaultValue=default_checkpoint() or None,
                optional=True,
                fileFilter="Checkpoints (*.pt *.pth *.bin *.safetensors)",
            ),
            QgsProcessingParameterEnum(
                self.DEVICE, self.tr("Device"), options=list(DEVICES), defaultValue=0
            ),
            QgsProcessingParameterEnum(
                self.PRECISION,
                self.tr("Precision"),
                options=[self.tr(text) for text in PRECISION_CHOICES],
                defaultValue=0,
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

    def cache_parameter(self):
        return QgsProcessingParameterFile(
            self.CACHE_FOLDER,
            self.tr("Cache folder"),
            behavior=FILE_FOLDER,
            optional=True,
        )

    def model_spec(self, parameters, context) -> ModelChoice:
        """The model a job is to use."""
        return ModelChoice(
            name=self.parameterAsString(parameters, self.MODEL, context).strip() or DEFAULT_MODEL,
            pretrained=self.parameterAsString(parameters, self.PRETRAINED, context).strip(),
            checkpoint=self.parameterAsFile(parameters, self.CHECKPOINT, context),
            device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
            precision=PRECISIONS[self.parameterAsEnum(parameters, self.PRECISION, context)],
        )

    def view_setting(self, parameters, context) -> ViewChoice:
        """How a job is to cut each image into views."""
        _, count, fov, centre_crop = VIEW_CHOICES[
            self.parameterAsEnum(parameters, self.VIEWS, context)
        ]
        return ViewChoice(
            count=count,
            fov=fov,
            pitch=self.parameterAsDouble(parameters, self.PITCH, context),
            centre_crop=centre_crop,
        )

    def cache_folder(self, parameters, context) -> str:
        folder = self.parameterAsFile(parameters, self.CACHE_FOLDER, context)
        return folder or str(plugin_cache_dir())


def _angle(value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else number
