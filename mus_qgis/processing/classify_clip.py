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
    QgsLayerMetadata,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProviderRegistry,
    QgsRendererCategory,
)

from ..bridge.engine import job_file, run_job
from ..bridge.qgis_enums import (
    NUMBER_INTEGER,
    VECTOR_POINT,
)
from ..shared.errors import MusError
from ..shared.resources import resource_path
from ..shared.schemas.clip import ClassifyParams, ClassifyResult
from .base import MusAlgorithm, dot_symbol, legend_text, style_on_load
from .clip_parameters import ClipParameters

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
        "Images: a field with the image path, or several paths joined by ';' (the views of one "
        "location, averaged). 360° panoramas are cut into perspective views, aimed along the "
        "street when the bearing and heading fields are known; ordinary photos are used whole.\n\n"
        "Labels: a built-in set (Urban Atlas 2018 with its official colours, CORINE, planning "
        "indicators, Italian architects, provinces, capitals) or your own file (one label a line, "
        "or a CSV with label, code, colour). Each label is put into the prompt templates.\n\n"
        "Output: the points with label_1..k, score_1..k (cosine), prob_1..k (probability), "
        "margin (first minus second probability), n_images and clip_status. A point without a "
        "usable image keeps its row, with the reason in clip_status. The run's settings (model, "
        "weights, label set, templates, views) go into the layer's metadata.\n\n"
        "Model: an open_clip architecture with a pretrained tag (downloaded once into the cache) "
        "or a local checkpoint file. Without either the weights are random and the labels mean "
        "nothing: the log, the layer and every report say so. Image embeddings are kept in the "
        "cache folder, so another label set over the same images reads no image again.\n\n"
        "Trained probe (optional): a file from 'Train a probe on corrected points' scores "
        "the embeddings instead of the prompts (score_1..k are then its logits); one trained "
        "for another model, views or label set is refused.\n\n"
        "Embeddings are stored per model and view setting in the cache folder, so a second "
        "label set over the same images decodes none; a stored vector damaged on disk is found "
        "by its checksum and computed again. JPEG photos are decoded in draft mode at the "
        "smallest scale that serves the views (scores differ from a full decode by up to about "
        "5e-4); Advanced ▸ Full-resolution decode turns it off.\n\n"
        "Imagery terms: Google's terms do not let a study keep Street View images, so once "
        "their embeddings are stored they are deleted from the imagery cache (the layer keeps "
        "the image ids, the store the embeddings, and other label sets are scored from the "
        "store). Advanced ▸ Imagery terms keeps them."
    )

    INPUT = "INPUT"
    BATCH_SIZE = "BATCH_SIZE"
    FULL_DECODE = "FULL_DECODE"
    PROBE = "PROBE"
    IMAGERY_TERMS = "IMAGERY_TERMS"
    OUTPUT = "OUTPUT"

    def initAlgorithm(self, config=None) -> None:
        """Declare the parameters."""
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.INPUT, self.tr("Points with images"), [VECTOR_POINT]
            )
        )
        self.add_parameter(self.image_field_parameter())
        self.add_parameter(self.bearing_field_parameter("Street bearing field"))
        for parameter in self.label_set_parameters():
            self.add_parameter(parameter)
        self.add_parameter(self.templates_parameter("Prompt templates"))
        self.add_parameter(self.top_k_parameter())
        self.add_parameter(
            QgsProcessingParameterFile(
                self.PROBE,
                self.tr("Trained probe file"),
                optional=True,
                fileFilter="Trained probes (*.npz)",
            )
        )
        advanced = [
            self.heading_field_parameter("Panorama heading field"),
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
                self.tr("Decode at full resolution (slower)"),
                defaultValue=False,
            ),
            self.image_folder_parameter(),
            self.cache_parameter(),
            QgsProcessingParameterEnum(
                self.IMAGERY_TERMS,
                self.tr("Imagery terms"),
                options=[self.tr(text) for text in IMAGERY_TERMS_CHOICES],
                defaultValue=0,
            ),
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

    def processAlgorithm(self, parameters, context, feedback):
        """Send the points' images to the engine to classify, then write the scored points."""
        self.require_engine()
        import numpy as np

        source = self.required_source(parameters, self.INPUT, context)
        try:
            label_spec, label_set = self.label_set(parameters, context)
        except MusError as exc:
            raise QgsProcessingException(str(exc)) from exc
        locations, features = self.locations(source, parameters, context)
        locations_file, output = job_file(".json"), job_file(".npz")
        with open(locations_file, "w", encoding="utf-8") as handle:
            json.dump(locations, handle)
        result = run_job(
            "classify",
            ClassifyParams(
                locations=locations_file,
                label_set=label_spec,
                model=self.model_spec(parameters, context),
                view=self.view_setting(parameters, context),
                top_k=self.parameterAsInt(parameters, self.TOP_K, context),
                cache_dir=self.cache_folder(parameters, context),
                batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context),
                full_decode=self.parameterAsBoolean(parameters, self.FULL_DECODE, context),
                probe=self.parameterAsFile(parameters, self.PROBE, context),
                output=output,
            ),
            feedback,
            ClassifyResult,
        )
        if result.untrained:
            feedback.reportError(
                self.tr("Untrained model: the labels below mean nothing."), fatalError=False
            )
        with np.load(output, allow_pickle=False) as scores:
            dest_id, classified = self._write(
                source, features, dict(scores), label_set, parameters, context
            )
            scores_status = [str(status) for status in scores["status"][: len(features)]]
        # Where the street inspector finds the images and their stored embeddings again.
        settings = {
            **result.metadata,
            "cache_folder": self.cache_folder(parameters, context),
            **self._fields_read,
        }
        if self.parameterAsEnum(parameters, self.IMAGERY_TERMS, context) == 0:
            settings["images_deleted_under_terms"] = _delete_under_terms(
                features, locations, scores_status, feedback
            )
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

    def _write(self, source, features, scores, label_set, parameters, context):
        k = scores["top_index"].shape[1]
        ours = [(f"label_{i}", "string") for i in range(1, k + 1)]
        ours += [("code_1", "string")]
        ours += [(f"score_{i}", "double") for i in range(1, k + 1)]
        ours += [(f"prob_{i}", "double") for i in range(1, k + 1)]
        ours += [("margin", "double"), ("n_images", "int"), ("clip_status", "string")]
        labels = label_set.labels
        rows = []
        for row in range(len(features)):
            top = [int(i) for i in scores["top_index"][row]]
            values = [labels[i].text if i >= 0 else None for i in top]
            values.append(labels[top[0]].code or None if top[0] >= 0 else None)
            values += [_number(v) for v in scores["cosine"][row]]
            values += [_number(v) for v in scores["probability"][row]]
            values += [
                _number(scores["margin"][row]),
                int(scores["images_used"][row]),
                str(scores["status"][row]),
            ]
            rows.append(values)
        # Classifying a classified layer again replaces the old scores instead of clashing.
        dest_id = self.write_points(source, features, ours, rows, parameters, context)
        return dest_id, int((scores["top_index"][: len(features), 0] >= 0).sum())


# Processing stores the index: append only.
IMAGERY_TERMS_CHOICES = (
    "Follow the sources' terms",
    "Keep every image",
)


def _delete_under_terms(features, locations, statuses, feedback) -> int:
    """Delete the images whose source's terms ask it, now that their embeddings are stored;
    returns how many were deleted."""
    from ..shared.imagery_terms import delete_pixels, pixels_to_delete

    rows = []
    for feature, location, status in zip(features, locations, statuses):
        names = feature.fields().names()
        source = feature["source"] if "source" in names else ""
        rows.append((str(source or ""), location[0], status))
    paths = pixels_to_delete(rows)
    if not paths:
        return 0
    deleted, failed = delete_pixels(paths)
    feedback.pushInfo(
        f"Deleted {deleted} Street View images now that their embeddings are stored, as "
        "Google's terms ask: the layer keeps their ids and the store their embeddings, so "
        "another label set with this model is scored without them. (Advanced ▸ Imagery terms "
        "keeps them.)"
    )
    for message in failed[:5]:
        feedback.pushWarning(f"Could not delete {message}")
    return deleted


def _number(value):
    number = float(value)
    return None if number != number else number


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


def style_classified_layer(
    layer, label_set, settings: dict | None = None, field: str = "label_1"
) -> None:
    """Colour by the first label (the set's colours) and size by its score; attach settings."""
    present = set(layer.uniqueValues(layer.fields().lookupField(field)))
    categories = []
    for label, colour in zip(label_set.labels, label_set.colours()):
        if label.text in present:
            name = f"{label.code} {label.text}" if label.code else label.text
            categories.append(
                QgsRendererCategory(
                    label.text, dot_symbol(colour, sized_by="score_1"), legend_text(name)
                )
            )
    if present & {None, "", NULL}:  # only when a point has no label: the legend shows what is
        categories.append(QgsRendererCategory("", dot_symbol(NO_LABEL_COLOUR), "no usable image"))
    layer.setRenderer(QgsCategorizedSymbolRenderer(field, categories))
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
