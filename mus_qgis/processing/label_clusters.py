"""Processing algorithm ``mus:labelclusters``."""

from __future__ import annotations

import html
from functools import partial

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsCoordinateTransform,
    QgsFeature,
    QgsFields,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterCrs,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsRendererCategory,
)

from ..bridge.engine import job_file, run_job
from ..bridge.layer_settings import classification_settings
from ..bridge.qgis_enums import (
    FIELD_NUMERIC,
    NUMBER_DOUBLE,
    NUMBER_INTEGER,
    VECTOR_ANY_GEOMETRY,
    WKB_NO_GEOMETRY,
    make_field,
)
from ..shared.reports import report_start
from ..shared.schemas.readings import ClustersParams, ClustersResult
from ..shared.sequences import zip_same_length
from .base import MusAlgorithm, first_layer_with, metric_crs, style_on_load
from .base import attribute_number as _number
from .base import attribute_text as _text
from .report_layers import imagery_credits, layer_title, where_words

NEIGHBOURS = ("k nearest neighbours", "distance band (metres)")
FEATURE_FIELDS = (
    ("cluster", "string"),
    ("ljc", "double"),
    ("ljc_p", "double"),
    ("local_i", "double"),
    ("local_i_p", "double"),
    ("hotspot", "string"),
)
TABLE_FIELDS = (
    ("test", "string"),
    ("label", "string"),
    ("features", "int"),
    ("statistic", "double"),
    ("expected", "double"),
    ("p_clustered", "double"),
    ("bw", "double"),
    ("expected_bw", "double"),
    ("p_dispersed", "double"),
    ("local_significant", "int"),
    ("verdict", "string"),
)
NOT_IN_CLUSTER = "#d9d9d9"


class LabelClusters(MusAlgorithm):
    """Join counts per label and Moran's I of a score, from PySAL, with FDR on local results."""

    NAME = "labelclusters"
    DISPLAY_NAME = "Label clusters (join counts, Moran's I)"
    SHORT = "Whether each label is clustered, where its clusters are, and the hot spots of a score."
    GROUP = "4 · Reading the results"
    GROUP_ID = "results"
    HELP = (
        "Spatial statistics of a classified point layer or a label grid, from PySAL (libpysal "
        "weights, esda), with neighbours taken as the k nearest features or every feature within "
        "a distance band, in metres of the chosen projected CRS (default: the layer's UTM "
        "zone).\n\n"
        "For each label: the global join count (esda.Join_Counts): the joins between two "
        "features of the label (BB) and between the label and another (BW), against random "
        "relabellings of the same features, two one-sided tests: 'clustered' (more BB joins "
        "than chance; p: the share of permutations with at least as many) and 'dispersed' "
        "(more BW joins than chance); and the local join count (esda.Join_Counts_Local): for "
        "each feature of the label, how many of its neighbours share it, with a one-sided "
        "permutation p-value (ljc_p) whose alternative is 'clustered: more same-label "
        "neighbours than chance'; a feature with fewer than chance is never called a "
        "cluster. A label held by one feature or by all is not tested.\n\n"
        "For the score field (e.g. score_1, or a grid's share): global and local Moran's I "
        "(esda.Moran, esda.Moran_Local), two-sided (twice PySAL's folded pseudo p-value): hot "
        "spots (high among high), cold spots (low among low) and outliers.\n\n"
        "Local p-values are many tests at once: a feature is in a cluster ('cluster' holds its "
        "label) or a hot or cold spot only under the false discovery rate cut-off "
        "(Benjamini-Hochberg: p at most k·alpha/m) at the significance level, over its "
        "label's tests (or the score's). Permutations use a fixed seed (advanced), so a run "
        "repeats exactly.\n\n"
        "Outputs: the features with cluster, ljc, ljc_p, local_i, local_i_p and hotspot, "
        "coloured by cluster (grey: in none); the global table, one row per label and one for "
        "the score; an HTML report naming the model that made the labels, with a warning "
        "banner when its weights were random."
    )

    INPUT = "INPUT"
    LABEL_FIELD = "LABEL_FIELD"
    SCORE_FIELD = "SCORE_FIELD"
    NEIGHBOURS = "NEIGHBOURS"
    K = "K"
    DISTANCE = "DISTANCE"
    PERMUTATIONS = "PERMUTATIONS"
    ALPHA = "ALPHA"
    SEED = "SEED"
    PROJECTED_CRS = "PROJECTED_CRS"
    OUTPUT = "OUTPUT"
    TABLE = "TABLE"
    REPORT = "REPORT"

    def initAlgorithm(self, config=None) -> None:
        """Declare the parameters."""
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.INPUT,
                self.tr("Classified points or label grid"),
                [VECTOR_ANY_GEOMETRY],
                defaultValue=first_layer_with(("label_1",)) or first_layer_with(("label",)),
            )
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.LABEL_FIELD,
                self.tr("Label field"),
                parentLayerParameterName=self.INPUT,
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.SCORE_FIELD,
                self.tr("Score field for Moran's I"),
                parentLayerParameterName=self.INPUT,
                type=FIELD_NUMERIC,
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.NEIGHBOURS, self.tr("Neighbours"), options=list(NEIGHBOURS), defaultValue=0
            )
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.K,
                self.tr("Nearest neighbours (k)"),
                NUMBER_INTEGER,
                defaultValue=8,
                minValue=1,
            )
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.DISTANCE,
                self.tr("Distance band (metres)"),
                NUMBER_DOUBLE,
                defaultValue=150.0,
                minValue=0.0,
            ),
            decimals=0,
        )
        self.add_parameter(permutations_parameter(self.PERMUTATIONS, self.tr("Permutations")))
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.ALPHA,
                self.tr("Significance level (alpha)"),
                NUMBER_DOUBLE,
                defaultValue=0.05,
                minValue=0.0001,
                maxValue=0.5,
            )
        )
        self.add_advanced_parameters(
            [
                QgsProcessingParameterNumber(
                    self.SEED, self.tr("Random seed"), NUMBER_INTEGER, defaultValue=0, minValue=0
                ),
                QgsProcessingParameterCrs(
                    self.PROJECTED_CRS,
                    self.tr("Projected CRS for metres"),
                    optional=True,
                ),
            ]
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSink(self.OUTPUT, self.tr("Clusters"), VECTOR_ANY_GEOMETRY)
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSink(
                self.TABLE, self.tr("Global tests"), VECTOR_ANY_GEOMETRY
            )
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.REPORT, self.tr("Report"), self.tr("HTML files (*.html)"), optional=True
            )
        )
        self.add_output(
            QgsProcessingOutputNumber("CLUSTERED", self.tr("Labels clustered (global test)"))
        )
        self.add_output(
            QgsProcessingOutputNumber("IN_CLUSTERS", self.tr("Features in local clusters"))
        )

    def processAlgorithm(self, parameters, context, feedback):
        """Project the features, send them to the engine, write the layer, table and report."""
        self.require_engine()
        import numpy as np

        source = self.required_source(parameters, self.INPUT, context)
        label_index = self.field_index(
            source,
            parameters,
            self.LABEL_FIELD,
            context,
            what="labels",
            required=True,
            candidates=("label_1", "label"),
        )
        score_index = self.field_index(
            source,
            parameters,
            self.SCORE_FIELD,
            context,
            what="scores",
            candidates=("score_1", "share"),
        )
        crs = metric_crs(self, source, parameters, self.PROJECTED_CRS, context)
        to_metres = QgsCoordinateTransform(source.sourceCrs(), crs, context.transformContext())
        features, xs, ys, texts, scores = [], [], [], [], []
        for feature in source.getFeatures():
            geometry = feature.geometry()
            if geometry.isNull() or geometry.isEmpty():
                continue
            point = to_metres.transform(geometry.centroid().asPoint())
            features.append(feature)
            xs.append(point.x())
            ys.append(point.y())
            texts.append(_text(feature.attributes()[label_index]))
            score = feature.attributes()[score_index] if score_index >= 0 else None
            scores.append(_number(score))
        if not any(texts):
            raise QgsProcessingException(
                f"No feature of '{source.sourceName()}' has a label in "
                f"'{source.fields().at(label_index).name()}': classify the points first (or "
                "choose the label field)."
            )
        names = sorted({t for t in texts if t})
        position = {name: i for i, name in enumerate(names)}
        features_file, output = job_file(".npz"), job_file(".npz")
        arrays = {
            "x": np.array(xs),
            "y": np.array(ys),
            "label": np.array([position.get(t, -1) for t in texts], dtype=np.int64),
        }
        if score_index >= 0:
            arrays["score"] = np.array(scores, dtype=float)
        np.savez(features_file, **arrays)
        kind = ("knn", "distance")[self.parameterAsEnum(parameters, self.NEIGHBOURS, context)]
        alpha = self.parameterAsDouble(parameters, self.ALPHA, context)
        result = run_job(
            "clusters",
            ClustersParams(
                features=features_file,
                n_labels=len(names),
                kind=kind,
                k=self.parameterAsInt(parameters, self.K, context),
                distance_m=self.parameterAsDouble(parameters, self.DISTANCE, context),
                permutations=self.parameterAsInt(parameters, self.PERMUTATIONS, context),
                alpha=alpha,
                seed=self.parameterAsInt(parameters, self.SEED, context),
                output=output,
            ),
            feedback,
            ClustersResult,
        )
        with np.load(output, allow_pickle=False) as local:
            local = dict(local)
        score_name = source.fields().at(score_index).name() if score_index >= 0 else ""
        for test in result.labels:
            feedback.pushInfo(
                f"{names[test.label]}: {test.verdict} ({test.count} features, "
                f"{test.local_significant} in local clusters)."
            )
        if result.scores:
            feedback.pushInfo(f"Moran's I of {score_name}: {result.scores.verdict}.")
        dest_id = self._write_features(
            source, features, texts, local, parameters, context, self.OUTPUT
        )
        table_id = self._write_table(result, names, score_name, parameters, context)
        colours = label_colours(names)
        style_on_load(
            context,
            dest_id,
            partial(
                style_cluster_layer,
                names=names,
                colours=colours,
                kind=geometry_kind(source.wkbType()),
            ),
        )
        outputs = {
            self.OUTPUT: dest_id,
            self.TABLE: table_id,
            "CLUSTERED": sum(t.verdict == "clustered" for t in result.labels),
            "IN_CLUSTERS": int(local["in_cluster"].sum()),
        }
        report = self.parameterAsFileOutput(parameters, self.REPORT, context)
        if report:
            layer = self.parameterAsVectorLayer(parameters, self.INPUT, context)
            settings = classification_settings(layer) if layer is not None else {}
            name = layer_title(layer) if layer is not None else source.sourceName()
            data = [where_words(layer)] if layer is not None else []
            credits = imagery_credits([layer])
            with open(report, "w", encoding="utf-8") as out:
                out.write(
                    report_html(result, names, score_name, settings, name, alpha, data, credits)
                )
            outputs[self.REPORT] = report
        return outputs

    def _write_features(self, source, features, texts, local, parameters, context, name):
        fields, kept = fields_keeping(source.fields(), FEATURE_FIELDS)
        sink, dest_id = self.parameterAsSink(
            parameters, name, context, fields, source.wkbType(), source.sourceCrs()
        )
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, name))
        for row, feature in enumerate(features):
            out = QgsFeature(fields)
            out.setGeometry(feature.geometry())
            attributes = feature.attributes()
            values = [
                texts[row] if local["in_cluster"][row] else None,
                _number(local["local_count"][row]),
                _number(local["local_p"][row]),
                _number(local["local_i"][row]),
                _number(local["local_i_p"][row]),
                str(local["hotspot_name"][row])
                if _number(local["local_i"][row]) is not None
                else None,
            ]
            out.setAttributes([attributes[i] for i in kept] + values)
            self.write_feature(sink, out, parameters, name)
        return dest_id

    def _write_table(self, result: ClustersResult, names, score_name, parameters, context) -> str:
        fields = QgsFields()
        for field, kind in TABLE_FIELDS:
            fields.append(make_field(field, kind))
        sink, dest_id = self.parameterAsSink(
            parameters, self.TABLE, context, fields, WKB_NO_GEOMETRY
        )
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.TABLE))
        for test in result.labels:
            row = QgsFeature(fields)
            row.setAttributes(
                [
                    "join count",
                    names[test.label],
                    test.count,
                    test.bb,
                    test.expected_bb,
                    test.p_clustered,
                    test.bw,
                    test.expected_bw,
                    test.p_dispersed,
                    test.local_significant,
                    test.verdict,
                ]
            )
            self.write_feature(sink, row, parameters, self.TABLE)
        scores = result.scores
        if scores:
            row = QgsFeature(fields)
            row.setAttributes(
                [
                    "Moran's I",
                    score_name,
                    scores.count,
                    scores.moran_i,
                    scores.expected_i,
                    scores.p_value,
                    None,
                    None,
                    None,
                    scores.local_significant,
                    scores.verdict,
                ]
            )
            self.write_feature(sink, row, parameters, self.TABLE)
        return dest_id


def permutations_parameter(name: str, description: str) -> QgsProcessingParameterNumber:
    """How many random permutations a test draws (999 usual; at least 9)."""
    return QgsProcessingParameterNumber(
        name, description, NUMBER_INTEGER, defaultValue=999, minValue=9, maxValue=99999
    )


def fields_keeping(source_fields, ours) -> tuple[QgsFields, list[int]]:
    """The input's fields (but those named as ours, which are replaced) followed by ours
    (name, kind); and the indices of the input's fields kept."""
    names = {name for name, _ in ours}
    kept = [i for i, f in enumerate(source_fields) if f.name() not in names]
    fields = QgsFields()
    for index in kept:
        fields.append(source_fields.at(index))
    for name, kind in ours:
        fields.append(make_field(name, kind))
    return fields, kept


def label_colours(names) -> list[str]:
    """Colours of the first built-in label set holding every label (the official Urban Atlas
    palette for a land-use grid), else generated ones."""
    from ..shared.labels import builtin_label_set, builtin_label_sets, generated_palette

    for entry in builtin_label_sets():
        label_set = builtin_label_set(entry.name)
        colours = dict(zip(label_set.texts, label_set.colours()))
        if all(name in colours for name in names):
            return [colours[name] for name in names]
    return generated_palette(len(names))


def style_cluster_layer(layer, names, colours, kind: str = "point") -> None:
    """Features in a local cluster in their label's colour; the rest grey."""
    categories = [
        QgsRendererCategory(name, simple_symbol(kind, colour), f"cluster of {name}")
        for name, colour in zip_same_length(names, colours)
    ]
    # The empty value takes the features in no cluster (a null cluster field).
    categories.append(
        QgsRendererCategory("", simple_symbol(kind, NOT_IN_CLUSTER), "in no significant cluster")
    )
    layer.setRenderer(QgsCategorizedSymbolRenderer("cluster", categories))
    layer.triggerRepaint()


def geometry_kind(wkb_type) -> str:
    """'point', 'line' or 'polygon', from the WKB type's name (stable across QGIS versions)."""
    from qgis.core import QgsWkbTypes

    name = QgsWkbTypes.displayString(wkb_type)
    return "polygon" if "Polygon" in name else "line" if "Line" in name else "point"


def simple_symbol(kind: str, colour: str):
    """A plain symbol of one colour for points, lines or polygons."""
    from qgis.core import QgsFillSymbol, QgsLineSymbol, QgsMarkerSymbol

    if kind == "polygon":
        return QgsFillSymbol.createSimple({"color": colour, "outline_color": "#ffffff"})
    if kind == "line":
        return QgsLineSymbol.createSimple({"line_color": colour, "line_width": "0.8"})
    return QgsMarkerSymbol.createSimple({"color": colour, "size": "2.4", "outline_style": "no"})


def report_html(
    result: ClustersResult, names, score_name, settings, layer_name, alpha, data=(), credits=()
) -> str:
    """The global tests as a reader sees them: which model made the labels (a banner when its
    weights are random), what was tested, what each verdict means."""

    def number(value, digits=3) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    parts = [
        report_start(
            f"Label clusters: {layer_name}",
            [settings] if settings else [],
            style="td,th{text-align:right}td.l,th.l{text-align:left}"
            ".clustered{background:#d9f0d3}.dispersed{background:#fee8c8}",
            what="clusters",
            data=data,
            credits=credits,
        )
    ]
    if settings:
        title = settings.get("label_set_title") or settings.get("label_set", "")
        parts.append(f"<p>Label set: {html.escape(title)}.</p>")
    parts.append(
        f"<p>Neighbours: {html.escape(result.neighbours)}. Significance level {alpha:g}; "
        "local results under the false discovery rate cut-off (Benjamini-Hochberg). "
        "p-values from permutations (PySAL esda).</p>"
    )
    for note in result.notes:
        parts.append(f"<p><i>{html.escape(note)}</i></p>")
    parts.append(
        "<h2>Join counts per label</h2><p>BB: joins between two features of the label; BW: "
        "between the label and another. Two one-sided tests against random relabellings: "
        "clustered, more BB joins than chance (p: the share of permutations with at least as "
        "many); dispersed, more BW joins than chance. In local clusters: features whose local "
        "join count is above chance (one-sided: more same-label neighbours than chance), "
        "after the false discovery rate cut-off.</p>"
        "<table><tr><th class='l'>label</th><th>features</th><th>BB</th>"
        "<th>expected BB</th><th>p (clustered)</th><th>BW</th><th>expected BW</th>"
        "<th>p (dispersed)</th><th>in local clusters</th><th class='l'>verdict</th></tr>"
    )
    for test in result.labels:
        verdict = test.verdict
        css = verdict if verdict in ("clustered", "dispersed") else ""
        parts.append(
            f"<tr class='{css}'><td class='l'>{html.escape(names[test.label])}</td>"
            f"<td>{test.count}</td><td>{number(test.bb, 0)}</td>"
            f"<td>{number(test.expected_bb, 1)}</td><td>{number(test.p_clustered)}</td>"
            f"<td>{number(test.bw, 0)}</td><td>{number(test.expected_bw, 1)}</td>"
            f"<td>{number(test.p_dispersed)}</td><td>{test.local_significant}</td>"
            f"<td class='l'>{html.escape(verdict)}</td></tr>"
        )
    parts.append("</table>")
    scores = result.scores
    if scores:
        parts.append(
            f"<h2>Moran's I of {html.escape(score_name)}</h2><p>I = "
            f"{number(scores.moran_i)} (expected {number(scores.expected_i)} under "
            f"randomness), two-sided p = {number(scores.p_value)}: "
            f"{html.escape(scores.verdict)}. {scores.local_significant} features are "
            "significant hot or cold spots or outliers.</p>"
        )
    parts.append("</body></html>")
    return "".join(parts)
