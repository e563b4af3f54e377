"""Processing algorithm ``mus:labelperiods``."""

from __future__ import annotations

import json
import math
import statistics
from functools import partial

from qgis.core import (
    QgsCoordinateTransform,
    QgsFeature,
    QgsGraduatedSymbolRenderer,
    QgsMarkerSymbol,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterCrs,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterNumber,
    QgsRendererRange,
)

from ..bridge.engine import job_file, run_job
from ..bridge.qgis_enums import (
    FIELD_NUMERIC,
    NUMBER_DOUBLE,
    VECTOR_ANY_GEOMETRY,
)
from ..shared.errors import MusError
from ..shared.labels import builtin_label_sets
from ..shared.schemas.readings import PeriodsParams, PeriodsResult
from .base import metric_crs, style_on_load
from .classify_clip import ClassifyClip
from .label_clusters import fields_keeping, permutations_parameter

OUTPUT_FIELDS = (
    ("label_1", "string"),
    ("prob_1", "double"),
    ("year", "double"),
    ("year_sd", "double"),
    ("dated", "double"),
    ("ref_year", "double"),
    ("ref_dist_m", "double"),
    ("clip_status", "string"),
)
# Early to late: light to dark.
YEAR_COLOURS = ("#fff7bc", "#fec44f", "#ec7014", "#993404", "#4d1a02")


class LabelPeriods(ClassifyClip):
    """Each location's probability-weighted period from a dated label set, and its correlation
    with a reference layer's years."""

    NAME = "labelperiods"
    DISPLAY_NAME = "Label periods (expected year)"
    SHORT = (
        "Each location's expected year and spread from a label set with dates, such as architects."
    )
    GROUP = "4 · Reading the results"
    GROUP_ID = "results"
    HELP = (
        "For a label set with dates (the Italian architects carry birth and death years; your "
        "own CSV may have a 'year' column, or 'born' and 'died', or 'start' and 'end'), each "
        "location's expected year: the years of the labels weighted by the probability CLIP "
        "gives each label, over the whole set (every label, not only the top k), with year_sd "
        "the probability-weighted spread of those years and 'dated' the probability on labels "
        "with a date. A label's year is the middle of its dates (for an architect, the middle "
        "of the life; born + 40 for one still living); labels without dates are left out.\n\n"
        "The images are scored again with the model, views and cache folder of their "
        "classification (give the same under Advanced): embeddings already in the store are "
        "reused, so no image is decoded again, only the label prompts go through the model.\n\n"
        "With a reference layer and its year field (e.g. buildings with a construction year): "
        "each location takes the year of the nearest reference feature (within the distance, "
        "0: any), and Spearman's rank correlation between expected and reference years is "
        "tested by permuting the expected years among the locations (two-sided; fixed seed). "
        "Neighbouring locations are not independent, so the p-value is optimistic where both "
        "layers are spatially clustered.\n\n"
        "Output: the points with label_1, prob_1, year, year_sd, dated, ref_year, ref_dist_m "
        "and clip_status, drawn in graduated colours from early (light) to late (dark). With "
        "random weights (no pretrained tag or checkpoint) the years mean nothing: the log says "
        "so."
    )

    REFERENCE = "REFERENCE"
    YEAR_FIELD = "YEAR_FIELD"
    MAX_DISTANCE = "MAX_DISTANCE"
    PERMUTATIONS = "PERMUTATIONS"
    PROJECTED_CRS = "PROJECTED_CRS"

    def initAlgorithm(self, config=None) -> None:
        """CLIP-classify's inputs (the architects by default, no top k), then the reference."""
        super().initAlgorithm(config)
        self.removeParameter(self.TOP_K)
        names = [entry.name for entry in builtin_label_sets()]
        self.parameterDefinition(self.LABEL_SET).setDefaultValue(names.index("italian_architects"))
        self.parameterDefinition(self.LABEL_SET).setDescription(self.tr("Label set with dates"))
        self.parameterDefinition(self.OUTPUT).setDescription(self.tr("Expected periods"))
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.REFERENCE,
                self.tr("Reference layer with years"),
                [VECTOR_ANY_GEOMETRY],
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.YEAR_FIELD,
                self.tr("Reference year field"),
                parentLayerParameterName=self.REFERENCE,
                type=FIELD_NUMERIC,
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.MAX_DISTANCE,
                self.tr("Nearest reference within (metres)"),
                NUMBER_DOUBLE,
                defaultValue=0.0,
                minValue=0.0,
            ),
            decimals=0,
        )
        self.add_parameter(permutations_parameter(self.PERMUTATIONS, self.tr("Permutations")))
        self.add_advanced_parameters(
            [
                QgsProcessingParameterCrs(
                    self.PROJECTED_CRS,
                    self.tr("Projected CRS for metres"),
                    optional=True,
                )
            ]
        )
        for name, label in (
            ("MEAN_YEAR", "Mean expected year"),
            ("RHO", "Spearman's rho with the reference years"),
            ("P_VALUE", "Permutation p-value of rho"),
            ("PAIRS", "Locations paired with a reference year"),
        ):
            self.add_output(QgsProcessingOutputNumber(name, self.tr(label)))

    def processAlgorithm(self, parameters, context, feedback):
        """Score the images against the dated set, weight the years, correlate, write."""
        self.require_engine()
        import numpy as np

        from ..shared.labels import label_years

        source = self.required_source(parameters, self.INPUT, context)
        try:
            label_spec, label_set = self.label_set(parameters, context)
            label_years(label_set)  # a set without dates is refused before the model loads
        except MusError as exc:
            raise QgsProcessingException(str(exc)) from exc
        locations, features = self.locations(source, parameters, context)
        crs = metric_crs(self, source, parameters, self.PROJECTED_CRS, context)
        locations_file, points_file, output = job_file(".json"), job_file(".npz"), job_file(".npz")
        with open(locations_file, "w", encoding="utf-8") as handle:
            json.dump(locations, handle)
        reference = self._reference(parameters, context, crs)
        if reference:
            x, y = _metric_xy([f.geometry() for f in features], source.sourceCrs(), crs, context)
            np.savez(points_file, x=x, y=y)
        params = PeriodsParams(
            locations=locations_file,
            label_set=label_spec,
            model=self.model_spec(parameters, context),
            view=self.view_setting(parameters, context),
            cache_dir=self.cache_folder(parameters, context),
            full_decode=self.parameterAsBoolean(parameters, self.FULL_DECODE, context),
            permutations=self.parameterAsInt(parameters, self.PERMUTATIONS, context),
            max_distance_m=self.parameterAsDouble(parameters, self.MAX_DISTANCE, context),
            output=output,
            points=points_file if reference else "",
            reference=reference,
        )
        result = run_job("periods", params, feedback, PeriodsResult)
        if result.untrained:
            feedback.reportError(
                self.tr("Untrained model: the expected years below mean nothing."),
                fatalError=False,
            )
        with np.load(output, allow_pickle=False) as arrays:
            found = dict(arrays)
        dest_id = self._write_periods(source, features, found, label_set, parameters, context)
        years = found["year"][np.isfinite(found["year"])]
        outputs = {
            self.OUTPUT: dest_id,
            "CLASSIFIED": int(np.sum(found["status"] == "ok")),
            "FAILED": int(np.sum(found["status"] != "ok")),
            "SETTINGS": json.dumps(result.metadata, ensure_ascii=False),
            "MEAN_YEAR": float(years.mean()) if len(years) else None,
        }
        feedback.pushInfo(
            f"{len(years)} locations dated from {result.dated_labels} of {result.labels} "
            f"labels with dates"
            + (f"; mean expected year {years.mean():.0f}." if len(years) else ".")
        )
        correlation = result.correlation
        if correlation:
            feedback.pushInfo(
                f"Spearman's rho with the nearest reference years: {correlation.rho:.3f} over "
                f"{correlation.pairs} locations, permutation p = {correlation.p_value:.3f} "
                f"({correlation.permutations} permutations)."
            )
            outputs.update(
                RHO=correlation.rho, P_VALUE=correlation.p_value, PAIRS=correlation.pairs
            )
        if len(years):
            breaks = period_breaks([float(year) for year in years])
            style_on_load(context, dest_id, partial(style_period_layer, breaks=breaks))
        return outputs

    def _reference(self, parameters, context, crs) -> str:
        """The reference features' positions (metres) and years in a NumPy file; '' for none."""
        import numpy as np

        if parameters.get(self.REFERENCE) in (None, ""):
            return ""
        reference = self.required_source(parameters, self.REFERENCE, context)
        year_index = self.field_index(
            reference,
            parameters,
            self.YEAR_FIELD,
            context,
            what="years",
            required=True,
            candidates=("year", "construction_year", "built", "anno"),
            layer="reference layer",
        )
        geometries, years = [], []
        for feature in reference.getFeatures():
            value = feature.attributes()[year_index]
            try:
                year = float(value)
            except (TypeError, ValueError):
                continue
            if feature.geometry().isNull() or year != year:
                continue
            geometries.append(feature.geometry())
            years.append(year)
        if not years:
            raise QgsProcessingException(
                f"No feature of the reference layer '{reference.sourceName()}' has a year in "
                f"'{reference.fields().at(year_index).name()}': choose the field with the years."
            )
        x, y = _metric_xy(geometries, reference.sourceCrs(), crs, context)
        path = job_file(".npz")
        np.savez(path, x=x, y=y, year=np.array(years))
        return path

    def _write_periods(self, source, features, found, label_set, parameters, context) -> str:
        fields, kept = fields_keeping(source.fields(), OUTPUT_FIELDS)
        sink, dest_id = self.parameterAsSink(
            parameters, self.OUTPUT, context, fields, source.wkbType(), source.sourceCrs()
        )
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        texts = label_set.texts
        for row, feature in enumerate(features):
            top = int(found["top_index"][row])
            out = QgsFeature(fields)
            out.setGeometry(feature.geometry())
            attributes = feature.attributes()
            out.setAttributes(
                [attributes[i] for i in kept]
                + [
                    texts[top] if top >= 0 else None,
                    _number(found["probability"][row]),
                    _number(found["year"][row]),
                    _number(found["spread"][row]),
                    _number(found["dated"][row]),
                    _number(found["nearest_year"][row]),
                    _number(found["distance"][row]),
                    str(found["status"][row]),
                ]
            )
            self.write_feature(sink, out, parameters, self.OUTPUT)
        return dest_id


def _metric_xy(geometries, source_crs, crs, context):
    import numpy as np

    transform = QgsCoordinateTransform(source_crs, crs, context.transformContext())
    xs, ys = [], []
    for geometry in geometries:
        if geometry.isNull() or geometry.isEmpty():
            xs.append(np.nan)
            ys.append(np.nan)
            continue
        point = transform.transform(geometry.centroid().asPoint())
        xs.append(point.x())
        ys.append(point.y())
    return np.array(xs, dtype=float), np.array(ys, dtype=float)


def _number(value):
    number = float(value)
    return None if number != number else number


def period_breaks(years: list[float]) -> list[float]:
    """The class breaks of a period layer's legend, in whole years: the years' quantiles (one
    class a colour; linear interpolation between the closest ranks, as NumPy's default), rounded,
    each once. Many labels share a year (an architect's works), so quantiles often coincide: a
    class is never repeated ("1747 – 1747" twice), there are fewer classes instead."""
    ordered = sorted(years)
    if not ordered:
        return []
    low, high = float(math.floor(ordered[0])), float(math.ceil(ordered[-1]))
    if len(ordered) < 2 or low == high:
        return [low, high]
    cuts = statistics.quantiles(ordered, n=len(YEAR_COLOURS), method="inclusive")
    inner = sorted({float(round(cut)) for cut in cuts} - {low, high})
    return [low, *(cut for cut in inner if low < cut < high), high]


def period_classes(breaks: list[float]) -> list[tuple[float, float, str, str]]:
    """(low, high, colour, legend text) per class: colours spread from the earliest to the
    latest of ``YEAR_COLOURS`` whatever the number of classes."""
    count = len(breaks) - 1
    classes = []
    for i in range(count):
        low, high = breaks[i], breaks[i + 1]
        shade = round(i * (len(YEAR_COLOURS) - 1) / (count - 1)) if count > 1 else -1
        text = f"{low:.0f}" if low == high else f"{low:.0f} – {high:.0f}"
        classes.append((low, high, YEAR_COLOURS[shade], text))
    return classes


def style_period_layer(layer, breaks) -> None:
    """Graduated colours by expected year, quantile classes, early light to late dark."""
    ranges = []
    for low, high, colour, text in period_classes(breaks):
        symbol = QgsMarkerSymbol.createSimple(
            {"name": "circle", "color": colour, "outline_color": "#606060", "size": "2.6"}
        )
        ranges.append(QgsRendererRange(low, high, symbol, text))
    layer.setRenderer(QgsGraduatedSymbolRenderer("year", ranges))
    layer.triggerRepaint()
