"""Processing algorithm ``mus:classifyclip``."""

from __future__ import annotations

import html
import json
from functools import partial
from pathlib import Path

from qgis.core import (
    NULL,
    QgsCategorizedSymbolRenderer,
    QgsExpression,
    QgsFeature,
    QgsFields,
    QgsLayerMetadata,
    QgsMarkerSymbol,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsProperty,
    QgsProviderRegistry,
    QgsRendererCategory,
)

from ..engine.clip.labels import builtin_label_sets
from ..engine.errors import MusError
from ..engine.resources import resource_path
from .base import MusAlgorithm, style_on_load
from .clip_parameters import ClipParameters
from .engine import job_file, run_job
from .qgis_enums import (
    FIELD_NUMERIC,
    FIELD_STRING,
    FILE_FOLDER,
    NUMBER_INTEGER,
    SYMBOL_SIZE,
    VECTOR_POINT,
    make_field,
)

NO_LABEL_COLOUR = "#b4b4b4"


class ClassifyClip(ClipParameters, MusAlgorithm):
    """Score each point's street images against a label set with an OpenCLIP model."""

    NAME = "classifyclip"
    DISPLAY_NAME = "CLIP-classify street images"
    SHORT = "Which labels of a set best fit each point's street images, by an OpenCLIP model."
    GROUP = "3 · Classification"
    GROUP_ID = "classification"
    HELP = (
        "Asks an OpenCLIP model which labels of a set best fit each point's street images, as in "
        "'CLIP and the City'.\n\n"
        "Images: a field with the image path, or several paths joined by ';' (the views of "
        "one location; their embeddings are averaged). 360° equirectangular panoramas (2:1, or "
        "marked so in their XMP) are cut into perspective views, aimed along the street when the "
        "bearing field and the panorama's heading are known; ordinary photos are used whole.\n\n"
        "Labels: a built-in set (Urban Atlas 2018 with its official colours, CORINE Land Cover, "
        "planning indicators, Italian architects, provinces, capitals) or your own file: a text "
        "file with one label a line, or a CSV with label, code, colour columns. Each label is "
        "put into the prompt templates (one a line, each with {label}); the text embeddings are "
        "averaged over the templates.\n\n"
        "Output: the points with label_1..k, score_1..k (cosine similarity), prob_1..k (softmax "
        "probability), margin (first minus second probability), n_images and clip_status. "
        "Points without a usable image keep their row with empty labels and the reason. The "
        "layer is coloured by the first label and sized by its score; the run's settings "
        "(model, weights, label set and its hash, templates, views, plugin version) go into the "
        "layer's metadata.\n\n"
        "Model: any open_clip architecture with a pretrained tag (downloaded once into the "
        "plugin's cache) or a local checkpoint file. Without either, the weights are random and "
        "the labels mean nothing: the log says so. Image embeddings are stored in the cache "
        "folder, so scoring another label set over the same images reads no image again.\n\n"
        "Decoding: JPEG photos are decoded in draft mode by default (at 1/2, 1/4 or 1/8 of their "
        "size, never below what the model's input needs): several times faster on big photos, "
        "and scores differ from a full decode by about 1e-4 (up to 5e-4 on 1024×768 photos). "
        "'Full-resolution decode' (advanced) decodes every image whole; the two kinds are stored "
        "apart, and the run settings say which was used (jpeg_draft_decode).\n\n"
        "Bad images: a missing, empty, truncated or unreadable file, or one larger than Pillow's "
        "decompression-bomb limit, costs only that image; a point left with no usable image "
        "keeps its row, its clip_status saying 'error: image PATH ...' and why, and the other "
        "points are classified.\n\n"
        "The embedding store keeps a checksum of every vector and checks it when reading: a "
        "damaged embedding is computed again from its image (the log names the images), and a "
        "point whose image is gone says so in its clip_status. A read-only store is used as it "
        "is: new embeddings are computed but not saved (the log says so)."
    )

    INPUT = "INPUT"
    IMAGE_FIELD = "IMAGE_FIELD"
    BEARING_FIELD = "BEARING_FIELD"
    HEADING_FIELD = "HEADING_FIELD"
    LABEL_SET = "LABEL_SET"
    LABEL_FILE = "LABEL_FILE"
    TEMPLATES = "TEMPLATES"
    TOP_K = "TOP_K"
    BATCH_SIZE = "BATCH_SIZE"
    FULL_DECODE = "FULL_DECODE"
    IMAGE_FOLDER = "IMAGE_FOLDER"
    OUTPUT = "OUTPUT"

    def initAlgorithm(self, config=None) -> None:
        """Declare the parameters."""
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.INPUT, self.tr("Points with images"), [VECTOR_POINT]
            )
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.IMAGE_FIELD,
                self.tr("Field with the image path(s), ';'-separated"),
                defaultValue="image_paths",
                parentLayerParameterName=self.INPUT,
                type=FIELD_STRING,
                # Optional only so that QGIS 3.22 applies the default when the field is not given;
                # processAlgorithm insists on a field.
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.BEARING_FIELD,
                self.tr("Street bearing field (aims panorama views)"),
                defaultValue="bearing",
                parentLayerParameterName=self.INPUT,
                type=FIELD_NUMERIC,
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.LABEL_SET,
                self.tr("Label set"),
                options=[entry.title for entry in builtin_label_sets()],
                defaultValue=0,
            )
        )
        self.add_parameter(
            QgsProcessingParameterFile(
                self.LABEL_FILE,
                self.tr("Own label file (.txt, one a line, or .csv); wins over the label set"),
                optional=True,
                fileFilter="Label files (*.txt *.csv *.tsv)",
            )
        )
        self.add_parameter(
            QgsProcessingParameterString(
                self.TEMPLATES,
                self.tr("Prompt templates, one a line, with {label} (empty: the label set's own)"),
                multiLine=True,
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.TOP_K,
                self.tr("Labels to keep per point (top k)"),
                NUMBER_INTEGER,
                defaultValue=3,
                minValue=1,
                maxValue=10,
            )
        )
        advanced = [
            QgsProcessingParameterField(
                self.HEADING_FIELD,
                self.tr("Panorama heading field (compass heading of the panorama's centre)"),
                defaultValue="image_heading",
                parentLayerParameterName=self.INPUT,
                type=FIELD_NUMERIC,
                optional=True,
            ),
            *self.model_parameters(),
            QgsProcessingParameterNumber(
                self.BATCH_SIZE,
                self.tr("Batch size (views)"),
                NUMBER_INTEGER,
                defaultValue=32,
                minValue=1,
                maxValue=4096,
            ),
            *self.view_parameters(),
            QgsProcessingParameterBoolean(
                self.FULL_DECODE,
                self.tr("Full-resolution decode (slower; default: JPEG draft mode)"),
                defaultValue=False,
            ),
            QgsProcessingParameterFile(
                self.IMAGE_FOLDER,
                self.tr("Folder that relative image paths start from"),
                behavior=FILE_FOLDER,
                optional=True,
            ),
            self.cache_parameter(),
        ]
        self.add_advanced_parameters(advanced)
        self.add_parameter(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT, self.tr("Classified points"), VECTOR_POINT
            )
        )
        self.add_output(QgsProcessingOutputNumber("CLASSIFIED", self.tr("Points classified")))
        self.add_output(
            QgsProcessingOutputNumber("FAILED", self.tr("Points without a usable image"))
        )
        self.add_output(QgsProcessingOutputString("SETTINGS", self.tr("Run settings (JSON)")))

    def checkParameterValues(self, parameters, context):
        """Out-of-range numbers and choices are refused with their range (QGIS names only)."""
        problem = self.range_problem(parameters)
        if problem:
            return False, problem
        return super().checkParameterValues(parameters, context)

    def processAlgorithm(self, parameters, context, feedback):
        """Send the points' images to the engine to classify, then write the scored points."""
        self.require_engine()
        import numpy as np

        source = self.parameterAsSource(parameters, self.INPUT, context)
        if source is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, self.INPUT))
        try:
            label_spec, label_set = self._label_set(parameters, context)
        except MusError as exc:
            raise QgsProcessingException(str(exc)) from exc
        locations, features = self._locations(source, parameters, context)
        locations_file, output = job_file(".json"), job_file(".npz")
        with open(locations_file, "w", encoding="utf-8") as handle:
            json.dump(locations, handle)
        result = run_job(
            "classify",
            {
                "locations": locations_file,
                "label_set": label_spec,
                "model": self.model_spec(parameters, context),
                "view": self.view_setting(parameters, context),
                "top_k": self.parameterAsInt(parameters, self.TOP_K, context),
                "cache_dir": self.cache_folder(parameters, context),
                "batch_size": self.parameterAsInt(parameters, self.BATCH_SIZE, context),
                "full_decode": self.parameterAsBoolean(parameters, self.FULL_DECODE, context),
                "output": output,
            },
            feedback,
        )
        if result["untrained"]:
            feedback.reportError(
                self.tr("Untrained model: the labels below mean nothing."), fatalError=False
            )
        with np.load(output, allow_pickle=False) as scores:
            dest_id, classified = self._write(
                source, features, dict(scores), label_set, parameters, context
            )
        # Where the street inspector finds the images and their stored embeddings again.
        settings = {
            **result["metadata"],
            "cache_folder": self.cache_folder(parameters, context),
            **self._fields_read,
        }
        _save_metadata(dest_id, settings, feedback)
        style_on_load(
            context,
            dest_id,
            partial(style_classified_layer, label_set=label_set, settings=settings),
        )
        return {
            self.OUTPUT: dest_id,
            "CLASSIFIED": classified,
            "FAILED": len(features) - classified,
            "SETTINGS": json.dumps(settings, ensure_ascii=False),
        }

    def _label_set(self, parameters, context):
        """The label set as the engine job names it, and read here for the labels and colours."""
        from ..engine.clip.labels import builtin_label_set, parse_templates, read_label_file

        text = self.parameterAsString(parameters, self.TEMPLATES, context)
        templates = parse_templates(text) if text.strip() else None
        path = self.parameterAsFile(parameters, self.LABEL_FILE, context)
        if path:
            return {"file": path, "templates": templates}, read_label_file(path, templates)
        name = builtin_label_sets()[self.parameterAsEnum(parameters, self.LABEL_SET, context)].name
        return {"builtin": name, "templates": templates}, builtin_label_set(name, templates)

    def _locations(self, source, parameters, context):
        """Each feature's (image paths, bearing, heading), as the engine reads locations."""
        from ..engine.clip.embedding import parse_image_paths

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

    def _write(self, source, features, scores, label_set, parameters, context):
        k = scores["top_index"].shape[1]
        ours = [(f"label_{i}", "string") for i in range(1, k + 1)]
        ours += [("code_1", "string")]
        ours += [(f"score_{i}", "double") for i in range(1, k + 1)]
        ours += [(f"prob_{i}", "double") for i in range(1, k + 1)]
        ours += [("margin", "double"), ("n_images", "int"), ("clip_status", "string")]
        names = {name for name, _ in ours}
        # Classifying a classified layer again replaces the old scores instead of clashing.
        kept = [i for i, f in enumerate(source.fields()) if f.name() not in names]
        fields = QgsFields()
        for index in kept:
            fields.append(source.fields().at(index))
        for name, kind in ours:
            fields.append(make_field(name, kind))
        sink, dest_id = self.parameterAsSink(
            parameters, self.OUTPUT, context, fields, source.wkbType(), source.sourceCrs()
        )
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        labels = label_set.labels
        classified = 0
        for row, feature in enumerate(features):
            top = [int(i) for i in scores["top_index"][row]]
            ok = top[0] >= 0
            classified += ok
            values = [labels[i].text if i >= 0 else None for i in top]
            values.append(labels[top[0]].code or None if ok else None)
            values += [_number(v) for v in scores["cosine"][row]]
            values += [_number(v) for v in scores["probability"][row]]
            values += [
                _number(scores["margin"][row]),
                int(scores["images_used"][row]),
                str(scores["status"][row]),
            ]
            out = QgsFeature(fields)
            out.setGeometry(feature.geometry())
            attributes = feature.attributes()
            out.setAttributes([attributes[i] for i in kept] + values)
            self.write_feature(sink, out, parameters, self.OUTPUT)
        # Closing the sink writes the file, so that its metadata can be saved next.
        del sink
        return dest_id, classified


def _angle(value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else number


def _number(value):
    number = float(value)
    return None if number != number else number


def classification_settings(layer) -> dict:
    """The run settings this algorithm left on a layer (as written by style_classified_layer and
    _layer_metadata); {} for a layer it did not make."""
    settings = layer.customProperty("mus_qgis/classification")
    if not settings:
        keywords = layer.metadata().keywords().get("mus_qgis") or []
        settings = keywords[0] if keywords else ""
    try:
        value = json.loads(settings) if settings else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _layer_metadata(settings: dict) -> QgsLayerMetadata:
    """The run settings as layer metadata. QGIS shows title, abstract and keywords as HTML
    without escaping them (the layer's Information panel), and a label set's name or a template
    is the user's text: the title and abstract are escaped, the keyword's JSON writes <, > and &
    as \\u escapes (json.loads reads it back unchanged)."""
    metadata = QgsLayerMetadata()
    title = settings["label_set_title"] or settings["label_set"]
    metadata.setTitle(html.escape(f"CLIP classification: {title}"))
    lines = [f"{key}: {value}" for key, value in settings.items()]
    if settings.get("untrained"):
        lines.insert(0, "WARNING: untrained model, random weights; the labels mean nothing.")
    metadata.setAbstract(html.escape("\n".join(lines)))
    metadata.addKeywords("mus_qgis", [html_safe_json(settings)])
    return metadata


def html_safe_json(value) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _save_metadata(dest_id: str, settings: dict, feedback) -> None:
    """Write the settings into the output file's own metadata (GeoPackage), when it has one."""
    path = dest_id.split("|")[0]
    if not path.lower().endswith(".gpkg"):
        return
    uri = dest_id if "layername=" in dest_id else f"{path}|layername={Path(path).stem}"
    try:
        saved, message = QgsProviderRegistry.instance().saveLayerMetadata(
            "ogr", uri, _layer_metadata(settings)
        )
    except Exception as exc:  # a metadata failure must not lose the classified points
        saved, message = False, str(exc)
    if not saved:
        feedback.pushWarning(f"Could not save the run settings into {path}: {message}")


def style_classified_layer(layer, label_set, settings: dict | None = None) -> None:
    """Colour by the first label (the set's colours) and size by its score; attach settings."""
    present = set(layer.uniqueValues(layer.fields().lookupField("label_1")))
    categories = []
    for label, colour in zip(label_set.labels, label_set.colours(), strict=True):
        if label.text in present:
            name = f"{label.code} {label.text}" if label.code else label.text
            categories.append(QgsRendererCategory(label.text, _dot(colour), name))
    if present & {None, "", NULL}:  # only when a point has no label: the legend shows what is
        categories.append(QgsRendererCategory("", _dot(NO_LABEL_COLOUR, 1.2), "no usable image"))
    layer.setRenderer(QgsCategorizedSymbolRenderer("label_1", categories))
    layer.setMapTipTemplate(classified_map_tip((settings or {}).get("image_field")))
    if settings:
        layer.setMetadata(_layer_metadata(settings))
        layer.setCustomProperty("mus_qgis/classification", json.dumps(settings))
    layer.triggerRepaint()


def classified_map_tip(image_field: str | None = None) -> str:
    """The HTML map tip of a classified layer: the first view, the first label and its
    probability (resources/styles/classified_map_tip.html, written for the field image_paths)."""
    template = resource_path("styles", "classified_map_tip.html").read_text(encoding="utf-8")
    if image_field and image_field != "image_paths":
        template = template.replace('"image_paths"', QgsExpression.quotedColumnRef(image_field))
    return template


def _dot(colour: str, size: float | None = None) -> QgsMarkerSymbol:
    symbol = QgsMarkerSymbol.createSimple(
        {"name": "circle", "color": colour, "outline_color": "#ffffff", "outline_width": "0.1"}
    )
    if size is not None:
        symbol.setSize(size)
        return symbol
    # Marker size follows the score across the layer's range, as in the study's dot maps.
    size_expression = (
        'coalesce(scale_linear("score_1", minimum("score_1"), maximum("score_1"), 1.2, 4.0), 1.2)'
    )
    symbol.symbolLayer(0).setDataDefinedProperty(
        SYMBOL_SIZE, QgsProperty.fromExpression(size_expression)
    )
    return symbol
