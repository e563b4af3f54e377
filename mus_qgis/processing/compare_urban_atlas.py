"""Processing algorithm ``mus:compareurbanatlas``."""

from __future__ import annotations

import html
import json
from functools import partial

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsCoordinateTransform,
    QgsFeature,
    QgsFields,
    QgsFillSymbol,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsRendererCategory,
    QgsSpatialIndex,
)

from ..bridge.engine import job_file, run_job
from ..bridge.layer_settings import classification_settings
from ..bridge.qgis_enums import GEOMETRY_POINT, VECTOR_POINT, VECTOR_POLYGON, make_field
from ..shared.reports import report_start
from ..shared.schemas.readings import AgreementParams, AgreementResult
from .base import MusAlgorithm, find_field, first_layer_with, legend_text, style_on_load
from .report_layers import imagery_credits, where_words

# Urban Atlas 2018 and CORINE deliveries spell their fields differently: matched case-blind.
CODE_FIELDS = ("code_2018", "code_18", "code_12", "clc_code", "code")
CLASS_FIELDS = ("class_2018", "label3", "class")
LEGENDS = {5: "urban_atlas_2018", 3: "corine_land_cover"}


class CompareUrbanAtlas(MusAlgorithm):
    """Agreement of CLIP's land-use labels with Urban Atlas (or CORINE) polygons."""

    NAME = "compareurbanatlas"
    DISPLAY_NAME = "Compare with Urban Atlas or CORINE"
    SHORT = "How well the CLIP land-use labels agree with Urban Atlas or CORINE under the points."
    GROUP = "4 · Reading the results"
    GROUP_ID = "results"
    HELP = (
        "Gives each classified point the land-use code and class of the Urban Atlas 2018 (or "
        "CORINE Land Cover) polygon under it, and whether the CLIP label agrees (codes are "
        "compared, never class texts, whose spelling varies between deliveries). Classify the "
        "points with the Urban Atlas (or CORINE) label set first: its codes go into code_1. The "
        "HTML report gives the confusion matrix, overall accuracy, Cohen's kappa and per-class "
        "precision, recall and F1 (F1 is 0 for a class that occurs but is never right; "
        "precision is blank for a class never predicted, recall for one absent from the "
        "reference). Refused with a message: predicted values that are not Urban Atlas or CORINE "
        "codes (e.g. points classified with city names), a reference layer without a code "
        "field, or one that no point falls on. The reference layer may be in any CRS. The "
        "reference polygons under the study area can be written "
        "out styled with the official palette, so both layers share one legend."
    )

    INPUT = "INPUT"
    PREDICTED_FIELD = "PREDICTED_FIELD"
    REFERENCE = "REFERENCE"
    REFERENCE_FIELD = "REFERENCE_FIELD"
    OUTPUT = "OUTPUT"
    REFERENCE_OUTPUT = "REFERENCE_OUTPUT"
    REPORT = "REPORT"

    def initAlgorithm(self, config=None) -> None:
        """Declare the parameters."""
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.INPUT,
                self.tr("Points classified with Urban Atlas"),
                [VECTOR_POINT],
                defaultValue=first_layer_with(("label_1",), GEOMETRY_POINT),
            )
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.PREDICTED_FIELD,
                self.tr("Predicted code field"),
                defaultValue="code_1",
                parentLayerParameterName=self.INPUT,
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.REFERENCE,
                self.tr("Urban Atlas 2018 or CORINE polygons"),
                [VECTOR_POLYGON],
            )
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.REFERENCE_FIELD,
                self.tr("Reference code field"),
                parentLayerParameterName=self.REFERENCE,
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT,
                self.tr("Points with reference land use"),
                VECTOR_POINT,
            )
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSink(
                self.REFERENCE_OUTPUT,
                self.tr("Reference polygons (styled)"),
                VECTOR_POLYGON,
                optional=True,
                createByDefault=False,
            )
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.REPORT,
                self.tr("Agreement report"),
                self.tr("HTML files (*.html)"),
                optional=True,
            )
        )
        for name, label in (
            ("COMPARED", "Points compared"),
            ("OVERALL_ACCURACY", "Overall accuracy"),
            ("KAPPA", "Cohen's kappa"),
        ):
            self.add_output(QgsProcessingOutputNumber(name, self.tr(label)))

    def processAlgorithm(self, parameters, context, feedback):
        """Look up the polygon under each point, compare codes, write points and report."""
        self.require_engine()
        points = self.required_source(parameters, self.INPUT, context)
        reference = self.required_source(parameters, self.REFERENCE, context)
        predicted_index = self.field_index(
            points, parameters, self.PREDICTED_FIELD, context, what="predicted code", required=True
        )
        code_index = self.field_index(
            reference,
            parameters,
            self.REFERENCE_FIELD,
            context,
            what="reference class code",
            required=True,
            candidates=CODE_FIELDS,
            layer="reference layer",
        )
        class_index = find_field(reference.fields(), CLASS_FIELDS)
        polygons = {f.id(): f for f in reference.getFeatures()}
        index = QgsSpatialIndex()
        for feature in polygons.values():
            # Refused only for a polygon with no geometry, which no point can fall in.
            index.addFeature(feature)  # noqa: QGS201
        to_reference = QgsCoordinateTransform(
            points.sourceCrs(), reference.sourceCrs(), context.transformContext()
        )
        fields = QgsFields(points.fields())
        for name in ("ref_code", "ref_class"):
            fields.append(make_field(name, "string"))
        fields.append(make_field("agree", "int"))
        sink, dest_id = self.parameterAsSink(
            parameters, self.OUTPUT, context, fields, points.wkbType(), points.sourceCrs()
        )
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        truths, guesses, used, rows = [], [], set(), []
        on_reference = 0
        for feature in points.getFeatures():
            hit = self._polygon_under(feature, to_reference, index, polygons)
            predicted = _code(feature.attributes()[predicted_index])
            ref_code = _code(hit.attributes()[code_index]) if hit else ""
            ref_class = str(hit.attributes()[class_index]) if hit and class_index >= 0 else ""
            on_reference += hit is not None
            agree = None
            if hit is not None and predicted:
                agree = int(predicted == ref_code)
                truths.append(ref_code)
                guesses.append(predicted)
                used.add(hit.id())
            rows.append((feature, ref_code, ref_class, agree))
        # Checked before anything is written: a comparison of nothing is no result.
        if not rows:
            raise QgsProcessingException(
                f"The point layer '{points.sourceName()}' has no point: give the classified points."
            )
        if not on_reference:
            raise QgsProcessingException(
                f"None of the {len(rows)} points falls on a polygon of the reference layer "
                f"'{reference.sourceName()}' ({len(polygons)} polygons): choose the Urban Atlas "
                "or CORINE layer that covers the points (and check both layers' CRS)."
            )
        for feature, ref_code, ref_class, agree in rows:
            out = QgsFeature(fields)
            out.setGeometry(feature.geometry())
            out.setAttributes([*feature.attributes(), ref_code or None, ref_class or None, agree])
            self.write_feature(sink, out, parameters, self.OUTPUT)
        del sink
        pairs = job_file(".json")
        with open(pairs, "w", encoding="utf-8") as handle:
            json.dump({"reference": truths, "predicted": guesses}, handle)
        result = run_job("agreement", AgreementParams(pairs), feedback, AgreementResult)
        # An empty comparison never gets here: the agreement job refuses it, with the reason.
        feedback.pushInfo(
            f"{result.total} points compared: overall accuracy "
            f"{result.overall_accuracy:.3f}, kappa {result.kappa:.3f}."
        )
        outputs = {
            self.OUTPUT: dest_id,
            "COMPARED": result.total,
            "OVERALL_ACCURACY": result.overall_accuracy,
            "KAPPA": result.kappa,
        }
        legend = _legend(truths + guesses)
        reference_id = self._write_reference(
            parameters, context, reference, polygons, used, code_index, legend
        )
        if reference_id:
            outputs[self.REFERENCE_OUTPUT] = reference_id
        report = self.parameterAsFileOutput(parameters, self.REPORT, context)
        if report:
            with open(report, "w", encoding="utf-8") as out:
                layer = self.parameterAsVectorLayer(parameters, self.INPUT, context)
                runs = [classification_settings(layer)] if layer is not None else []
                data = [where_words(layer)] if layer is not None else []
                out.write(_report_html(result, legend, runs, data, imagery_credits([layer])))
            outputs[self.REPORT] = report
        return outputs

    @staticmethod
    def _polygon_under(feature, transform, index, polygons):
        geometry = feature.geometry()
        if geometry.isNull():
            return None
        point = transform.transform(geometry.centroid().asPoint())
        from qgis.core import QgsGeometry, QgsRectangle

        probe = QgsGeometry.fromPointXY(point)
        for fid in index.intersects(QgsRectangle(point, point)):
            if polygons[fid].geometry().contains(probe):
                return polygons[fid]
        return None

    def _write_reference(
        self, parameters, context, reference, polygons, used, code_index, legend
    ) -> str | None:
        if parameters.get(self.REFERENCE_OUTPUT) in (None, ""):
            return None
        sink, dest_id = self.parameterAsSink(
            parameters,
            self.REFERENCE_OUTPUT,
            context,
            reference.fields(),
            reference.wkbType(),
            reference.sourceCrs(),
        )
        if sink is None:
            return None
        for fid in sorted(used):
            self.write_feature(sink, QgsFeature(polygons[fid]), parameters, self.REFERENCE_OUTPUT)
        del sink
        if legend:
            field = reference.fields().at(code_index).name()
            style_on_load(
                context, dest_id, partial(style_reference_layer, legend=legend, field=field)
            )
        return dest_id


def _code(value) -> str:
    if value is None or str(value) in ("", "NULL"):
        return ""
    text = str(value).strip()
    return text[:-2] if text.endswith(".0") else text


def _legend(codes):
    """The built-in label set whose codes these are (Urban Atlas: 5 digits, CORINE: 3)."""
    from ..shared.labels import builtin_label_set

    lengths = {len(code) for code in codes if code}
    name = LEGENDS.get(lengths.pop()) if len(lengths) == 1 else None
    return builtin_label_set(name) if name else None


def _report_html(result, legend, runs: list[dict], data=(), credits=()) -> str:
    names = {label.code: label.text for label in legend.labels} if legend else {}
    colours = (
        {label.code: colour for label, colour in zip(legend.labels, legend.colours())}
        if legend
        else {}
    )

    def name(code: str) -> str:
        swatch = (
            f"<span style='background:{colours[code]};padding:0 8px'>&nbsp;</span> "
            if code in colours
            else ""
        )
        return f"{swatch}{html.escape(code)} {html.escape(names.get(code, ''))}"

    def number(value: float, digits: int = 3) -> str:
        return "" if value != value else f"{value:.{digits}f}"

    parts = [
        report_start(
            "Agreement with the reference",
            runs,
            style="td,th{text-align:right}.l{text-align:left}.d{background:#d9f0d3}",
            what="agreement figures",
            data=data,
            credits=credits,
        )
    ]
    parts += [
        f"<p>{result.total} points compared. Overall accuracy "
        f"<b>{number(result.overall_accuracy)}</b>, Cohen's kappa "
        f"<b>{number(result.kappa)}</b>.</p>",
        "<h2>Confusion matrix</h2><p>Rows: reference; columns: CLIP.</p><table><tr><th></th>",
    ]
    parts += [f"<th>{html.escape(c)}</th>" for c in result.classes]
    parts.append("</tr>")
    for i, code in enumerate(result.classes):
        cells = "".join(
            f"<td class='{'d' if i == j else ''}'>{result.matrix[i][j]}</td>"
            for j in range(len(result.classes))
        )
        parts.append(f"<tr><td class='l'>{name(code)}</td>{cells}</tr>")
    parts.append(
        "</table><h2>Per class</h2><table><tr><th class='l'>class</th><th>precision"
        "</th><th>recall</th><th>F1</th><th>reference points</th></tr>"
    )
    for i, code in enumerate(result.classes):
        parts.append(
            f"<tr><td class='l'>{name(code)}</td><td>{number(result.precision[i])}</td>"
            f"<td>{number(result.recall[i])}</td><td>{number(result.f1[i])}</td>"
            f"<td>{result.support[i]}</td></tr>"
        )
    parts.append("</table></body></html>")
    return "".join(parts)


def style_reference_layer(layer, legend, field: str) -> None:
    """Land-use polygons in the official palette of their legend (Urban Atlas or CORINE)."""
    categories = [
        QgsRendererCategory(
            label.code,
            QgsFillSymbol.createSimple({"color": colour, "outline_style": "no"}),
            legend_text(f"{label.code} {label.text}"),
        )
        for label, colour in zip(legend.labels, legend.colours())
    ]
    layer.setRenderer(QgsCategorizedSymbolRenderer(field, categories))
    layer.triggerRepaint()
