"""Processing algorithm ``mus:dreamstreets``."""

from __future__ import annotations

import json

from qgis.core import (
    NULL,
    QgsCategorizedSymbolRenderer,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterField,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsRendererCategory,
)

from ..bridge.engine import job_file, run_job
from ..bridge.qgis_enums import (
    NUMBER_DOUBLE,
    VECTOR_POINT,
)
from ..shared.errors import MusError
from ..shared.schemas.dreams import DreamStreetsParams, DreamStreetsResult
from .base import MusAlgorithm, dot_symbol, style_on_load
from .clip_parameters import ClipParameters
from .dream_parameters import DreamParameters, run_settings_metadata, save_run_settings

# (label shown, engine's views); Processing stores the index: append only.
DREAM_VIEWS = (("The location's first view", "first"), ("Every view of a panorama", "all"))
OUTPUT_FIELDS = (
    ("dream_paths", "string"),
    ("dream_prompt", "string"),
    ("dream_seed", "string"),
    ("real_label", "string"),
    ("dream_label", "string"),
    ("dream_score", "double"),
    ("label_changed", "int"),
    ("real_dream_cos", "double"),
    ("real_to_prompt", "double"),
    ("dream_to_prompt", "double"),
    ("drift", "double"),
    ("dream_status", "string"),
)
CHANGED_COLOURS = {1: ("#d95f02", "first label changed"), 0: ("#1b9e77", "same first label")}
NO_DREAM_COLOUR = "#b4b4b4"


class DreamStreets(DreamParameters, ClipParameters, MusAlgorithm):
    """Each location's view through a diffusion model, read again by CLIP."""

    NAME = "dreamstreets"
    DISPLAY_NAME = "Dream the streets"
    SHORT = "Each location's view through a diffusion model, then read again by CLIP."
    GROUP = "4 · Reading the results"
    GROUP_ID = "results"
    HELP = (
        "After 'Mimetic Dreams': each location's street view goes through a Stable Diffusion "
        "model (image-to-image, diffusers) with a prompt, and CLIP reads the dream exactly as "
        "it reads the streets.\n\n"
        "Prompt: fixed ('a street in Rome') or a template with {label}, filled per point from "
        "the label field (e.g. label_1 of a classified layer); a point without a label keeps "
        "its row with the reason. Strength (above 0, at most 1) is how far a dream may move "
        "from its image; steps × strength must be at least 1. Views: the location's first view "
        "(a panorama's view along the street), or every view of a panorama.\n\n"
        "Seeds: each dream's seed comes from the run seed and its image's digest, so a rerun "
        "gives the same pixels. Dreams are cached in the cache folder by model, revision, "
        "prompt, settings, source and seed, and never made twice. On a GPU the model runs in "
        "half precision; on the CPU it is slow, and the log gives the time left after the first "
        "dream.\n\n"
        "Model: a diffusers model id (downloaded once into the cache folder; default "
        "stabilityai/sd-turbo, a one-step model: 2 steps at strength 0.5, guidance 0) or a local "
        "model folder. Check the model's licence (README).\n\n"
        "CLIP: the same OpenCLIP model, label set and embedding store as CLIP-classify; give "
        "the settings the classification used. Output: the points with dream_paths, "
        "dream_prompt, dream_seed, real_label and dream_label (first labels), dream_score "
        "(its cosine), label_changed (1 or 0), real_dream_cos (real vs dreamed embedding), "
        "real_to_prompt and dream_to_prompt (cosine of each with the prompt's text embedding), "
        "drift (dream's minus real's) and dream_status. Coloured by whether the label changed, "
        "sized by drift; the run settings (both models and their revisions) go into the "
        "layer's metadata."
    )

    LABEL_FIELD = "LABEL_FIELD"
    PROMPT = "PROMPT"
    STRENGTH = "STRENGTH"
    DREAM_VIEWS = "DREAM_VIEWS"

    def initAlgorithm(self, config=None) -> None:
        """Declare the parameters."""
        for parameter in self.points_parameters():
            self.add_parameter(parameter)
        self.add_parameter(
            QgsProcessingParameterString(
                self.PROMPT,
                self.tr("Prompt, or a template with {label}"),
                defaultValue="a street in Rome",
            )
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.LABEL_FIELD,
                self.tr("Field that fills {label}"),
                defaultValue="label_1",
                parentLayerParameterName=self.INPUT,
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.STRENGTH,
                self.tr("Strength (above 0, at most 1)"),
                NUMBER_DOUBLE,
                defaultValue=0.5,
                minValue=0.0,
                maxValue=1.0,
            ),
            decimals=2,
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.DREAM_VIEWS,
                self.tr("Views to dream from"),
                options=[choice[0] for choice in DREAM_VIEWS],
                defaultValue=0,
            )
        )
        for parameter in self.label_set_parameters("CLIP label set"):
            self.add_parameter(parameter)
        advanced = [
            *self.dream_model_parameters(),
            self.templates_parameter("CLIP prompt templates"),
            *self.model_parameters(),
            *self.view_parameters(),
            *self.view_field_parameters(),
            self.cache_parameter(),
        ]
        self.add_advanced_parameters(advanced)
        self.add_parameter(
            QgsProcessingParameterFeatureSink(self.OUTPUT, self.tr("Dreamed points"), VECTOR_POINT)
        )
        self.add_output(QgsProcessingOutputNumber("DREAMED", self.tr("Points dreamed")))
        self.add_output(QgsProcessingOutputNumber("GENERATED", self.tr("Dreams made this run")))
        self.add_output(QgsProcessingOutputString("SETTINGS", self.tr("Run settings (JSON)")))

    def processAlgorithm(self, parameters, context, feedback):
        """Send the points' images to the engine to dream and read, then write the points."""
        self.require_engine()
        source = self.required_source(parameters, self.INPUT, context)
        try:
            label_spec, _ = self.label_set(parameters, context)
        except MusError as exc:
            raise QgsProcessingException(str(exc)) from exc
        rows, features = self.locations(source, parameters, context)
        label_index = self.field_index(
            source, parameters, self.LABEL_FIELD, context, what="label that fills {label}"
        )
        for row, feature in zip(rows, features):
            value = feature.attributes()[label_index] if label_index >= 0 else None
            row.append(None if value in (None, NULL) else str(value))
        locations_file, output = job_file(".json"), job_file(".json")
        with open(locations_file, "w", encoding="utf-8") as handle:
            json.dump(rows, handle)
        model = self.model_spec(parameters, context)
        views = DREAM_VIEWS[self.parameterAsEnum(parameters, self.DREAM_VIEWS, context)][1]
        result = run_job(
            "dream_streets",
            DreamStreetsParams(
                locations=locations_file,
                settings=self.dream_settings(
                    parameters,
                    context,
                    prompt=self.parameterAsString(parameters, self.PROMPT, context),
                    strength=self.parameterAsDouble(parameters, self.STRENGTH, context),
                    views=views,
                ),
                dream_model=self.dream_model_spec(parameters, context, model.device),
                label_set=label_spec,
                model=model,
                view=self.view_setting(parameters, context),
                cache_dir=self.cache_folder(parameters, context),
                output=output,
            ),
            feedback,
            DreamStreetsResult,
        )
        with open(output, encoding="utf-8") as handle:
            dreams = json.load(handle)
        dest_id, dreamed = self._write(source, features, dreams, parameters, context)
        settings = result.metadata
        save_run_settings(dest_id, dream_title(settings), settings, feedback)
        style_on_load(context, dest_id, lambda layer: style_dream_layer(layer, settings))
        return {
            self.OUTPUT: dest_id,
            "DREAMED": dreamed,
            "GENERATED": result.counts.generated,
            "SETTINGS": json.dumps(settings, ensure_ascii=False),
        }

    def _write(self, source, features, dreams, parameters, context):
        rows = []
        for row in range(len(features)):
            changed = dreams["label_changed"][row]
            rows.append(
                [
                    ";".join(dreams["dream_paths"][row]) or None,
                    dreams["prompts"][row] or None,
                    ";".join(str(seed) for seed in dreams["seeds"][row]) or None,
                    dreams["real_label"][row],
                    dreams["dream_label"][row],
                    dreams["dream_score"][row],
                    None if changed is None else int(changed),
                    dreams["real_dream_cosine"][row],
                    dreams["real_to_prompt"][row],
                    dreams["dream_to_prompt"][row],
                    dreams["drift"][row],
                    dreams["status"][row],
                ]
            )
        dest_id = self.write_points(source, features, OUTPUT_FIELDS, rows, parameters, context)
        return dest_id, sum(1 for status in dreams["status"] if status == "ok")


def dream_title(settings: dict) -> str:
    return f"Dreams: {settings.get('dream_model')} ({settings.get('dream_model_revision')})"


def style_dream_layer(layer, settings: dict | None = None) -> None:
    """Colour by whether the first label changed, size by drift; the run settings attached."""
    present = set(layer.uniqueValues(layer.fields().lookupField("label_changed")))
    categories = [
        # Bigger where the dream moved further toward the prompt than its street was.
        QgsRendererCategory(value, dot_symbol(colour, sized_by="drift", largest=4.5), name)
        for value, (colour, name) in CHANGED_COLOURS.items()
        if value in present
    ]
    if present & {None, NULL}:
        categories.append(QgsRendererCategory("", dot_symbol(NO_DREAM_COLOUR), "no dream"))
    layer.setRenderer(QgsCategorizedSymbolRenderer("label_changed", categories))
    if settings:
        layer.setMetadata(run_settings_metadata(dream_title(settings), settings))
        layer.setCustomProperty("mus_qgis/dreams", json.dumps(settings))
    layer.triggerRepaint()
