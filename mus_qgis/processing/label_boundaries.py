"""Processing algorithm ``mus:labelboundaries``."""

from __future__ import annotations

import json

from qgis.core import (
    QgsCoordinateTransform,
    QgsFeature,
    QgsFields,
    QgsGeometry,
    QgsLineSymbol,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterNumber,
    QgsProperty,
    QgsSingleSymbolRenderer,
    QgsUnitTypes,
)

from ..bridge.engine import job_file, run_job
from ..bridge.qgis_enums import (
    GEOMETRY_POLYGON,
    NUMBER_DOUBLE,
    NUMBER_INTEGER,
    STROKE_WIDTH,
    VECTOR_ANY_GEOMETRY,
    VECTOR_POINT,
    VECTOR_POLYGON,
    WKB_LINESTRING,
    make_field,
)
from ..shared.schemas.readings import BoundariesParams, BoundariesResult
from .base import MusAlgorithm, first_layer_with, project_in_place, style_on_load
from .label_clusters import permutations_parameter

OUTPUT_FIELDS = (
    ("label_a", "string"),
    ("label_b", "string"),
    ("length_m", "double"),
    ("strength", "double"),
    ("edges", "int"),
)


class LabelBoundaries(MusAlgorithm):
    """Discontinuities of a label grid, and their alignment with reference boundaries."""

    NAME = "labelboundaries"
    DISPLAY_NAME = "Label boundaries (discontinuities)"
    SHORT = "Lines where neighbouring grid cells change label, and whether they follow a boundary."
    GROUP = "4 · Reading the results"
    GROUP_ID = "results"
    HELP = (
        "The discontinuities of a label grid made by 'Resample labels to a grid' (squares or "
        "hexagons, in its projected CRS in metres): every edge between two neighbouring cells "
        "whose labels differ, dissolved per pair of labels into connected lines, with "
        "length_m, edges and strength: the mean, over the line's edges, of how different the "
        "two cells' label shares are (half the sum of the absolute differences of the shares: "
        "0 the same mixture, 1 no label in common). With the classified points the shares are "
        "counted from the points in each cell (a filled cell is wholly its label); without "
        "them a cell is its label with the grid's 'share', the rest unknown, and the strength "
        "is the larger of the two shares.\n\n"
        "With a reference boundary layer (lines, or polygons such as Rome's Rioni, whose "
        "outlines count): the share of discontinuity length within the buffer distance of the "
        "reference boundaries, against the same share for the reference rotated about the "
        "grid's centre by a random angle and shifted by up to half the grid's extent each way "
        "(the given number of times, fixed seed): the p-value is the fraction of moved "
        "references that cover at least as much (plus one, over placements plus one). A small "
        "p-value says the discontinuities follow the reference more closely than chance "
        "placements of it; moved references that leave the grid cover less, which makes the "
        "test lean towards small p-values when the reference lies well inside the grid. A grid "
        "whose neighbours all agree has no line and no alignment to test (the log says so)."
    )

    INPUT = "INPUT"
    LABEL_FIELD = "LABEL_FIELD"
    SHARE_FIELD = "SHARE_FIELD"
    POINTS = "POINTS"
    POINT_LABEL_FIELD = "POINT_LABEL_FIELD"
    REFERENCE = "REFERENCE"
    BUFFER = "BUFFER"
    PERMUTATIONS = "PERMUTATIONS"
    SEED = "SEED"
    OUTPUT = "OUTPUT"

    def initAlgorithm(self, config=None) -> None:
        """Declare the parameters."""
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.INPUT,
                self.tr("Label grid"),
                [VECTOR_POLYGON],
                defaultValue=first_layer_with(("label", "share"), GEOMETRY_POLYGON),
            )
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.LABEL_FIELD,
                self.tr("Label field"),
                defaultValue="label",
                parentLayerParameterName=self.INPUT,
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.POINTS,
                self.tr("Classified points"),
                [VECTOR_POINT],
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.POINT_LABEL_FIELD,
                self.tr("Point label field"),
                defaultValue="label_1",
                parentLayerParameterName=self.POINTS,
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.REFERENCE,
                self.tr("Reference boundaries"),
                [VECTOR_ANY_GEOMETRY],
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.BUFFER,
                self.tr("Buffer around references (metres)"),
                NUMBER_DOUBLE,
                defaultValue=50.0,
                minValue=0.01,
            ),
            decimals=0,
        )
        self.add_parameter(
            permutations_parameter(self.PERMUTATIONS, self.tr("Random placements of the reference"))
        )
        self.add_advanced_parameters(
            [
                QgsProcessingParameterField(
                    self.SHARE_FIELD,
                    self.tr("Majority share field"),
                    defaultValue="share",
                    parentLayerParameterName=self.INPUT,
                    optional=True,
                ),
                QgsProcessingParameterNumber(
                    self.SEED, self.tr("Random seed"), NUMBER_INTEGER, defaultValue=0, minValue=0
                ),
            ]
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT, self.tr("Boundary lines"), VECTOR_ANY_GEOMETRY
            )
        )
        for name, label in (
            ("EDGES", "Cell edges between different labels"),
            ("LENGTH_M", "Discontinuity length (metres)"),
            ("ALIGNED_SHARE", "Share of the length near the reference"),
            ("EXPECTED_SHARE", "Share expected by chance"),
            ("P_VALUE", "p-value of the alignment"),
        ):
            self.add_output(QgsProcessingOutputNumber(name, self.tr(label)))

    def processAlgorithm(self, parameters, context, feedback):
        """Read the cells (and points), find the discontinuities, test the alignment."""
        self.require_engine()
        import numpy as np

        grid = self.required_source(parameters, self.INPUT, context)
        crs = grid.sourceCrs()
        if crs.isGeographic() or QgsUnitTypes.encodeUnit(crs.mapUnits()) != "meters":
            raise QgsProcessingException(
                f"The grid '{grid.sourceName()}' is in {crs.authid() or crs.description()}, not "
                "in metres: give the grid as 'Resample labels to a grid' writes it (in a "
                "projected CRS)."
            )
        label_index = self.field_index(
            grid, parameters, self.LABEL_FIELD, context, what="labels", required=True
        )
        share_index = self.field_index(
            grid, parameters, self.SHARE_FIELD, context, what="majority shares"
        )
        rings, texts, shares = [], [], []
        for feature in grid.getFeatures():
            geometry = feature.geometry()
            if geometry.isNull() or geometry.isEmpty():
                continue
            polygon = (
                geometry.asMultiPolygon() if geometry.isMultipart() else [geometry.asPolygon()]
            )
            rings.append([(p.x(), p.y()) for p in polygon[0][0]] if polygon and polygon[0] else [])
            texts.append(_text(feature.attributes()[label_index]))
            share = feature.attributes()[share_index] if share_index >= 0 else None
            shares.append(float(share) if share not in (None, "") and str(share) != "NULL" else 1.0)
        if len({len(ring) for ring in rings}) != 1 or len(rings[0]) not in (5, 7):
            raise QgsProcessingException(
                f"The cells of '{grid.sourceName()}' are not squares or hexagons as 'Resample "
                "labels to a grid' makes them: give such a grid."
            )
        names = sorted({t for t in texts if t})
        position = {name: i for i, name in enumerate(names)}
        arrays = {
            "rings": np.array(rings, dtype=float),
            "label": np.array([position.get(t, -1) for t in texts], dtype=np.int64),
            "share": np.array(shares, dtype=float),
        }
        arrays.update(self._points(parameters, context, crs, position))
        cells_file, output = job_file(".npz"), job_file(".json")
        np.savez(cells_file, **arrays)
        result = run_job(
            "boundaries",
            BoundariesParams(
                cells=cells_file,
                n_labels=len(names),
                reference_wkt=self._reference(parameters, context, crs),
                buffer_m=self.parameterAsDouble(parameters, self.BUFFER, context),
                permutations=self.parameterAsInt(parameters, self.PERMUTATIONS, context),
                seed=self.parameterAsInt(parameters, self.SEED, context),
                output=output,
            ),
            feedback,
            BoundariesResult,
        )
        with open(output, encoding="utf-8") as handle:
            lines = json.load(handle)
        dest_id = self._write(lines, names, crs, parameters, context)
        style_on_load(context, dest_id, style_boundary_layer)
        feedback.pushInfo(
            f"{result.edges} of {result.neighbour_pairs} pairs of neighbouring cells "
            f"differ in label: {result.total_length:.0f} m of discontinuity in "
            f"{len(lines)} lines."
        )
        outputs = {
            self.OUTPUT: dest_id,
            "EDGES": result.edges,
            "LENGTH_M": result.total_length,
        }
        aligned = result.alignment
        if aligned:
            feedback.pushInfo(
                f"Within {aligned.buffer_m:g} m of the reference boundaries: "
                f"{aligned.observed:.1%} of the discontinuity length; by chance (the "
                f"reference moved at random {aligned.permutations} times) "
                f"{aligned.expected:.1%} on average; p = {aligned.p_value:.3f}."
            )
            outputs.update(
                ALIGNED_SHARE=aligned.observed,
                EXPECTED_SHARE=aligned.expected,
                P_VALUE=aligned.p_value,
            )
        return outputs

    def _points(self, parameters, context, crs, position) -> dict:
        import numpy as np

        if parameters.get(self.POINTS) in (None, ""):
            return {}
        points = self.required_source(parameters, self.POINTS, context)
        label_index = self.field_index(
            points,
            parameters,
            self.POINT_LABEL_FIELD,
            context,
            what="labels",
            required=True,
            layer="point layer",
        )
        transform = QgsCoordinateTransform(points.sourceCrs(), crs, context.transformContext())
        xs, ys, labels = [], [], []
        for feature in points.getFeatures():
            geometry = feature.geometry()
            text = _text(feature.attributes()[label_index])
            if geometry.isNull() or geometry.isEmpty() or not text:
                continue
            point = transform.transform(geometry.centroid().asPoint())
            xs.append(point.x())
            ys.append(point.y())
            labels.append(position.get(text, -1))  # a label no cell holds counts nowhere
        return {
            "point_x": np.array(xs, dtype=float),
            "point_y": np.array(ys, dtype=float),
            "point_label": np.array(labels, dtype=np.int64),
        }

    def _reference(self, parameters, context, crs) -> list[str]:
        if parameters.get(self.REFERENCE) in (None, ""):
            return []
        reference = self.required_source(parameters, self.REFERENCE, context)
        transform = QgsCoordinateTransform(reference.sourceCrs(), crs, context.transformContext())
        wkts = []
        for feature in reference.getFeatures():
            geometry = QgsGeometry(feature.geometry())
            if geometry.isNull() or geometry.isEmpty():
                continue
            project_in_place(geometry, transform, f"Reference feature {feature.id()}")
            wkts.append(geometry.asWkt())
        if not wkts:
            raise QgsProcessingException(
                f"The reference layer '{reference.sourceName()}' has no line or polygon."
            )
        return wkts

    def _write(self, lines, names, crs, parameters, context) -> str:
        fields = QgsFields()
        for name, kind in OUTPUT_FIELDS:
            fields.append(make_field(name, kind))
        sink, dest_id = self.parameterAsSink(
            parameters, self.OUTPUT, context, fields, WKB_LINESTRING, crs
        )
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        for line in lines:
            feature = QgsFeature(fields)
            feature.setGeometry(QgsGeometry.fromWkt(line["wkt"]))
            a, b = line["labels"]
            feature.setAttributes(
                [names[a], names[b], line["length_m"], line["strength"], line["edges"]]
            )
            self.write_feature(sink, feature, parameters, self.OUTPUT)
        return dest_id


def _text(value) -> str:
    return "" if value is None or str(value) in ("", "NULL") else str(value)


def style_boundary_layer(layer) -> None:
    """Dark lines, wider where the change between the two sides is stronger."""
    symbol = QgsLineSymbol.createSimple({"line_color": "#67000d", "line_width": "0.6"})
    symbol.symbolLayer(0).setDataDefinedProperty(
        STROKE_WIDTH,
        QgsProperty.fromExpression('0.2 + 1.4 * coalesce("strength", 0)'),
    )
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))
    layer.triggerRepaint()
