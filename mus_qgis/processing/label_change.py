"""Processing algorithm ``mus:labelchange``."""

from __future__ import annotations

import json

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsFeature,
    QgsFields,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorLayer,
    QgsRendererCategory,
)

from ..bridge.engine import job_file, run_job
from ..bridge.layer_settings import classification_settings
from ..bridge.qgis_enums import VECTOR_POINT, make_field
from ..shared.attribution import attribution_html
from ..shared.schemas.readings import LabelChangeParams, LabelChangeResult
from .base import MusAlgorithm, attribute_number, attribute_text, dot_symbol, style_on_load
from .report_layers import imagery_credits, where_words

CHANGE_FIELDS = (
    ("point", "string"),
    ("moment_a", "string"),
    ("moment_b", "string"),
    ("label_a", "string"),
    ("label_b", "string"),
    ("prob_a", "double"),
    ("prob_b", "double"),
    ("changed", "int"),
    ("same_image", "int"),
    ("certainty", "double"),
)


class LabelChange(MusAlgorithm):
    """Where each point's label changed between two moments, and how sure the change is."""

    NAME = "labelchange"
    DISPLAY_NAME = "Label change between moments"
    SHORT = "Where the label changed between two moments of the same streets, and how surely."
    GROUP = "4 · Reading the results"
    GROUP_ID = "results"
    HELP = (
        "Reads the same points at two moments and maps where the city's image changed.\n\n"
        "Input: points classified by CLIP-classify from a fetch with moments (Fetch panoramas "
        "▸ Moments: 'every year', or dates), so that each point has a row per moment. The "
        "moment field says which; the same point is known by the point field (e.g. id), or by "
        "its position when that is empty.\n\n"
        "Output: one point per place read at both moments, with both labels and both "
        "first-label probabilities, changed (1 or 0), and certainty: the smaller of the two "
        "probabilities, since a change is as sure as its less sure reading. same_image is 1 "
        "where both moments are the same image (no newer imagery there): no change can show "
        "at such a point.\n\n"
        "The report lists the changes, most common first, and each moment's labels with their "
        "shares (a summary per year)."
    )

    INPUT = "INPUT"
    MOMENT_FIELD = "MOMENT_FIELD"
    POINT_FIELD = "POINT_FIELD"
    LABEL_FIELD = "LABEL_FIELD"
    PROBABILITY_FIELD = "PROBABILITY_FIELD"
    MOMENT_A = "MOMENT_A"
    MOMENT_B = "MOMENT_B"
    OUTPUT = "OUTPUT"
    REPORT = "REPORT"

    def initAlgorithm(self, config=None) -> None:
        """Declare the parameters."""
        self.add_parameter(
            QgsProcessingParameterVectorLayer(
                self.INPUT, self.tr("Points classified at several moments"), [VECTOR_POINT]
            )
        )
        # Optional all: a field parameter left to its default is refused by QGIS 3.22's check
        # unless optional; the moment and label fields are checked below, with a clearer error.
        for name, label, default in (
            (self.MOMENT_FIELD, "Moment field", "moment"),
            (self.POINT_FIELD, "Point field", "id"),
            (self.LABEL_FIELD, "Label field", "label_1"),
            (self.PROBABILITY_FIELD, "Probability field", "prob_1"),
        ):
            self.add_parameter(
                QgsProcessingParameterField(
                    name,
                    self.tr(label),
                    defaultValue=default,
                    parentLayerParameterName=self.INPUT,
                    optional=True,
                )
            )
        for name, label in ((self.MOMENT_A, "First moment"), (self.MOMENT_B, "Second moment")):
            self.add_parameter(QgsProcessingParameterString(name, self.tr(label), optional=True))
        self.add_parameter(
            QgsProcessingParameterFeatureSink(self.OUTPUT, self.tr("Label change"), VECTOR_POINT)
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.REPORT, self.tr("Report"), self.tr("HTML files (*.html)"), optional=True
            )
        )
        for name, label in (("COMPARED", "Points read at both moments"), ("CHANGED", "Changes")):
            self.add_output(QgsProcessingOutputNumber(name, self.tr(label)))
        for name, label in (("FIRST", "First moment compared"), ("SECOND", "Second moment")):
            self.add_output(QgsProcessingOutputString(name, self.tr(label)))

    def processAlgorithm(self, parameters, context, feedback):
        """Pair each point's readings at the two moments and write where the label changed."""
        self.require_engine()
        layer = self.parameterAsVectorLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, self.INPUT))
        what = {
            self.MOMENT_FIELD: "moment",
            self.POINT_FIELD: "point",
            self.LABEL_FIELD: "label",
            self.PROBABILITY_FIELD: "probability",
        }
        index = {
            name: self.field_index(layer, parameters, name, context, what=words)
            for name, words in what.items()
        }
        if index[self.MOMENT_FIELD] < 0 or index[self.LABEL_FIELD] < 0:
            raise QgsProcessingException(
                "The layer needs a moment field and a label field: classify the output of "
                "Fetch panoramas with Moments (it writes 'moment'), then choose them here."
            )
        readings, positions = [], {}
        image_index = layer.fields().lookupField("image_id")
        for feature in layer.getFeatures():
            values = feature.attributes()
            geometry = feature.geometry()
            if geometry.isNull() or geometry.isEmpty():
                continue
            point = (
                attribute_text(values[index[self.POINT_FIELD]])
                if index[self.POINT_FIELD] >= 0
                else geometry.asWkt(6)
            )
            probability = (
                attribute_number(values[index[self.PROBABILITY_FIELD]])
                if index[self.PROBABILITY_FIELD] >= 0
                else None
            )
            readings.append(
                [
                    point,
                    attribute_text(values[index[self.MOMENT_FIELD]]),
                    attribute_text(values[index[self.LABEL_FIELD]]),
                    probability,
                    attribute_text(values[image_index]) if image_index >= 0 else "",
                ]
            )
            positions.setdefault(point, geometry)
        readings_file, output = job_file(".json"), job_file(".json")
        with open(readings_file, "w", encoding="utf-8") as handle:
            json.dump(readings, handle)
        report = self.parameterAsFileOutput(parameters, self.REPORT, context)
        result = run_job(
            "label_change",
            LabelChangeParams(
                readings=readings_file,
                output=output,
                moment_a=self.parameterAsString(parameters, self.MOMENT_A, context).strip(),
                moment_b=self.parameterAsString(parameters, self.MOMENT_B, context).strip(),
                report=report or "",
                runs=[classification_settings(layer)],
                data=[where_words(layer)],
                attribution=attribution_html(imagery_credits([layer])),
            ),
            feedback,
            LabelChangeResult,
        )
        with open(output, encoding="utf-8") as handle:
            changes = json.load(handle)
        fields = QgsFields()
        for name, kind in CHANGE_FIELDS:
            fields.append(make_field(name, kind))
        sink, dest_id = self.parameterAsSink(
            parameters, self.OUTPUT, context, fields, layer.wkbType(), layer.crs()
        )
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        for change in changes:
            out = QgsFeature(fields)
            out.setGeometry(positions[change["point"]])
            out.setAttributes(
                [
                    change["point"],
                    result.moment_a,
                    result.moment_b,
                    change["label_a"],
                    change["label_b"],
                    change["probability_a"],
                    change["probability_b"],
                    int(change["changed"]),
                    int(change["same_image"]),
                    change["certainty"],
                ]
            )
            self.write_feature(sink, out, parameters, self.OUTPUT)
        del sink
        style_on_load(context, dest_id, style_change_layer)
        feedback.pushInfo(
            f"Moments read: {', '.join(result.moments)}; compared {result.moment_a} with "
            f"{result.moment_b}: {result.changed} of {result.compared} points changed label "
            f"({result.same_image} had the same image at both)."
        )
        results = {
            self.OUTPUT: dest_id,
            "COMPARED": result.compared,
            "CHANGED": result.changed,
            "FIRST": result.moment_a,
            "SECOND": result.moment_b,
        }
        if report:
            results[self.REPORT] = report
        return results


# (value of "changed" and "same_image" as an expression's answer, colour, legend)
CHANGE_CLASSES = (
    ("changed", "#d7191c", "label changed"),
    ("kept", "#9e9e9e", "label kept"),
    ("same image", "#e0e0e0", "same image at both moments"),
)


def style_change_layer(layer) -> None:
    """Changes in red, kept labels in grey, points without newer imagery in light grey."""
    categories = [
        QgsRendererCategory(value, dot_symbol(colour, 1.6), label)
        for value, colour, label in CHANGE_CLASSES
    ]
    expression = (
        "CASE WHEN \"same_image\" = 1 THEN 'same image' "
        "WHEN \"changed\" = 1 THEN 'changed' ELSE 'kept' END"
    )
    layer.setRenderer(QgsCategorizedSymbolRenderer(expression, categories))
    layer.triggerRepaint()
