"""Processing algorithm ``mus:mainstreamimage``."""

from __future__ import annotations

import json

from qgis.core import (
    QgsClassificationQuantile,
    QgsGradientColorRamp,
    QgsGraduatedSymbolRenderer,
    QgsMarkerSymbol,
    QgsProcessingException,
    QgsProcessingOutputString,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtGui import QColor

from ..bridge.engine import job_file, run_job
from ..bridge.qgis_enums import (
    NUMBER_INTEGER,
    VECTOR_POINT,
)
from ..shared.errors import MusError
from ..shared.schemas.dreams import MainstreamImageParams, MainstreamImageResult
from ..shared.sequences import zip_same_length
from .base import MusAlgorithm, style_on_load
from .clip_parameters import ClipParameters
from .dream_parameters import DreamParameters, run_settings_metadata, save_run_settings

OUTPUT_FIELDS = (
    ("ms_image", "double"),
    ("ms_text", "double"),
    ("ms_rank", "int"),
    ("ms_city_image", "string"),
    ("ms_city_text", "string"),
    ("ms_by_city", "string"),
    ("ms_status", "string"),
)


class MainstreamImage(DreamParameters, ClipParameters, MusAlgorithm):
    """How much each street looks like a city's mainstream image, as the models hold it."""

    NAME = "mainstreamimage"
    DISPLAY_NAME = "Mainstream image of a city"
    SHORT = "Scores each street by its likeness to a city's mainstream image, as models hold it."
    GROUP = "4 · Reading the results"
    GROUP_ID = "results"
    HELP = (
        "A city's 'mainstream image' as the models hold it, two ways: CLIP alone (the text "
        "embedding of the prompt, e.g. 'a street in {city}') and with a diffusion model (the "
        "mean CLIP embedding of N images generated from that prompt, seeded and cached, kept as "
        "a gallery). Every point is scored by its cosine with each.\n\n"
        "Cities: one or more, comma-separated, or a label file of cities (wins); the report and "
        "ms_image, ms_text and ms_rank are about the first. With several, ms_city_image and "
        "ms_city_text name the city each street looks most like, by either way: the paper's "
        "multiscale question asked of images instead of names.\n\n"
        "Output: the points with ms_image, ms_text, ms_rank (1 = most mainstream), "
        "ms_city_image, ms_city_text, ms_by_city (every city, the closest first, with its "
        "cosine) and ms_status; and an HTML report with every generated "
        "image, the 12 most and 12 least mainstream real views side by side, and the scores' "
        "distribution. Embeddings go to the same store as CLIP-classify's. Model, steps, "
        "guidance, size and seed as in 'Dream the streets'; check the model's licence (README)."
    )

    CITIES = "CITIES"
    CITY_FILE = "CITY_FILE"
    PROMPT = "PROMPT"
    IMAGES = "IMAGES"
    REPORT = "REPORT"

    def initAlgorithm(self, config=None) -> None:
        """Declare the parameters."""
        for parameter in self.points_parameters():
            self.add_parameter(parameter)
        self.add_parameter(
            QgsProcessingParameterString(
                self.CITIES, self.tr("Cities, comma-separated"), defaultValue="Rome"
            )
        )
        self.add_parameter(
            QgsProcessingParameterFile(
                self.CITY_FILE,
                self.tr("File of cities"),
                optional=True,
                fileFilter="Label files (*.txt *.csv *.tsv)",
            )
        )
        self.add_parameter(
            QgsProcessingParameterString(
                self.PROMPT, self.tr("Prompt with {city}"), defaultValue="a street in {city}"
            )
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.IMAGES,
                self.tr("Images generated per city"),
                NUMBER_INTEGER,
                defaultValue=8,
                minValue=1,
                maxValue=256,
            )
        )
        advanced = [
            *self.dream_model_parameters(steps=1),
            *self.model_parameters(),
            *self.view_parameters(),
            *self.view_field_parameters(),
            self.cache_parameter(),
        ]
        self.add_advanced_parameters(advanced)
        self.add_parameter(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT, self.tr("Points scored by the mainstream image"), VECTOR_POINT
            )
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.REPORT, self.tr("Report"), self.tr("HTML files (*.html)"), optional=True
            )
        )
        self.add_output(QgsProcessingOutputString("GALLERY", self.tr("Generated images (JSON)")))
        self.add_output(QgsProcessingOutputString("SETTINGS", self.tr("Run settings (JSON)")))

    def processAlgorithm(self, parameters, context, feedback):
        """Send the points' images and the cities to the engine, then write the scored points."""
        self.require_engine()
        source = self.required_source(parameters, self.INPUT, context)
        cities = self._cities(parameters, context)
        rows, features = self.locations(source, parameters, context)
        locations_file, output = job_file(".json"), job_file(".json")
        with open(locations_file, "w", encoding="utf-8") as handle:
            json.dump(rows, handle)
        model = self.model_spec(parameters, context)
        report = self.parameterAsFileOutput(parameters, self.REPORT, context)
        result = run_job(
            "mainstream_image",
            MainstreamImageParams(
                locations=locations_file,
                cities=cities,
                template=self.parameterAsString(parameters, self.PROMPT, context),
                images_per_city=self.parameterAsInt(parameters, self.IMAGES, context),
                settings=self.dream_settings(parameters, context),
                dream_model=self.dream_model_spec(parameters, context, model.device),
                model=model,
                view=self.view_setting(parameters, context),
                cache_dir=self.cache_folder(parameters, context),
                report=report,
                output=output,
            ),
            feedback,
            MainstreamImageResult,
        )
        with open(output, encoding="utf-8") as handle:
            scores = json.load(handle)
        dest_id = self._write(source, features, scores, result.cities, parameters, context)
        settings = result.metadata
        title = f"Mainstream image: {', '.join(result.cities)}"
        save_run_settings(dest_id, title, settings, feedback)
        style_on_load(
            context, dest_id, lambda layer: style_mainstream_layer(layer, title, settings)
        )
        outputs = {
            self.OUTPUT: dest_id,
            "GALLERY": json.dumps(dict(zip_same_length(result.cities, result.gallery))),
            "SETTINGS": json.dumps(settings, ensure_ascii=False),
        }
        if report:
            outputs[self.REPORT] = report
        return outputs

    def _cities(self, parameters, context) -> list[str]:
        from ..shared.labels import read_label_file

        path = self.parameterAsFile(parameters, self.CITY_FILE, context)
        if path:
            try:
                return read_label_file(path).texts
            except MusError as exc:
                raise QgsProcessingException(str(exc)) from exc
        text = self.parameterAsString(parameters, self.CITIES, context)
        return [city.strip() for city in text.split(",") if city.strip()]

    def _write(self, source, features, scores, cities, parameters, context):
        first = [row[0] for row in scores["image_cosine"]]
        order = sorted((v, r) for r, v in enumerate(first) if v is not None)
        rank = {row: place for place, (_, row) in enumerate(reversed(order), start=1)}
        rows = [
            [
                image_row[0],
                text_row[0],
                rank.get(row),
                _closest(image_row, cities),
                _closest(text_row, cities),
                _ranked(image_row, cities),
                scores["status"][row],
            ]
            for row, (image_row, text_row) in enumerate(
                zip_same_length(scores["image_cosine"], scores["text_cosine"])
            )
        ]
        return self.write_points(source, features, OUTPUT_FIELDS, rows, parameters, context)


def _closest(values, cities) -> str | None:
    scored = [(v, city) for v, city in zip_same_length(values, cities) if v is not None]
    return max(scored)[1] if scored else None


def _ranked(values, cities) -> str | None:
    """Every city by the street's cosine with its mainstream image, the closest first."""
    scored = sorted(
        ((v, city) for v, city in zip_same_length(values, cities) if v is not None),
        reverse=True,
    )
    return "; ".join(f"{city} {value:.3f}" for value, city in scored) or None


def style_mainstream_layer(layer, title: str = "", settings: dict | None = None) -> None:
    """Five classes of ms_image (quantiles), light to dark: darker is more mainstream."""
    renderer = QgsGraduatedSymbolRenderer("ms_image")
    renderer.setSourceSymbol(
        QgsMarkerSymbol.createSimple(
            {"name": "circle", "size": "2.4", "outline_color": "#ffffff", "outline_width": "0.1"}
        )
    )
    renderer.setSourceColorRamp(QgsGradientColorRamp(QColor("#fee8c8"), QColor("#b30000")))
    renderer.setClassificationMethod(QgsClassificationQuantile())
    renderer.updateClasses(layer, 5)
    layer.setRenderer(renderer)
    if settings:
        layer.setMetadata(run_settings_metadata(title, settings))
        layer.setCustomProperty("mus_qgis/mainstream", json.dumps(settings))
    layer.triggerRepaint()
