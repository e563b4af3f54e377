"""Processing algorithm ``mus:resampletogrid``."""

from __future__ import annotations

import math
from functools import partial

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsFields,
    QgsFillSymbol,
    QgsGeometry,
    QgsPointXY,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterCrs,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterNumber,
    QgsRendererCategory,
)

from ..bridge.engine import job_file, run_job
from ..bridge.qgis_enums import (
    FIELD_NUMERIC,
    GEOMETRY_POINT,
    NO_GEOMETRY_REQUEST,
    NUMBER_DOUBLE,
    VECTOR_POINT,
    VECTOR_POLYGON,
    WKB_POLYGON,
    make_field,
)
from ..shared.defaults import GRID_SHAPES
from ..shared.labels import builtin_label_sets
from ..shared.schemas.readings import GridParams, GridResult
from ..shared.sequences import zip_same_length
from .base import (
    MusAlgorithm,
    first_layer_with,
    legend_text,
    metric_crs,
    project_in_place,
    style_on_load,
)

OUTPUT_FIELDS = (
    ("cell", "string"),
    ("label", "string"),
    ("points", "int"),
    ("share", "double"),
    ("entropy", "double"),
    ("filled", "int"),
    ("fill_dist", "double"),
)


class ResampleToGrid(MusAlgorithm):
    """The most frequent label per cell of a square or hexagonal grid, with no void."""

    NAME = "resampletogrid"
    DISPLAY_NAME = "Resample labels to a grid"
    SHORT = "The most frequent label per grid cell, with no empty cell in the study area."
    GROUP = "4 · Reading the results"
    GROUP_ID = "results"
    HELP = (
        "Aggregates classified points into a square or hexagonal grid (hexagons have the area "
        "of the squares) and gives each cell the most frequent label, as 'CLIP and the City' "
        "did for land use. By default each point counts once; optionally it counts with its "
        "score. Per cell: label, points, share (the majority's share), entropy (bits).\n\n"
        "The grid covers the study area (a polygon layer, or the points' extent): every cell "
        "that overlaps it, so no part of it is left under no cell. A cell without points takes "
        "the label most frequent among the cells with points nearest to it (the smallest "
        "distance between cell centres, however far: a part of the area no point reaches, such "
        "as an island, is labelled too), so the map has no void; 'filled' = 1 marks those cells "
        "and 'fill_dist' gives that distance in metres (0 for cells with points). Filled cells "
        "are drawn in a lighter shade of their label's colour.\n\n"
        "Ties, in a cell whose points split evenly and in a filled cell whose nearest cells "
        "split evenly, go to the tied label whose points (in that cell, or in those nearest "
        "cells) have the higher total score (the score field; 1 per point without one), then "
        "to the label that comes first in the label set (with 'the labels found': "
        "alphabetical order).\n\n"
        "Refused with a message: a study area that no labelled point falls in, a grid of more "
        "than 1,000,000 cells, a geographic or non-metre grid CRS. Distances are metres in the "
        "given projected CRS (default: the points' UTM zone). Points are binned with array "
        "arithmetic, so a million points take seconds."
    )

    INPUT = "INPUT"
    LABEL_FIELD = "LABEL_FIELD"
    SCORE_FIELD = "SCORE_FIELD"
    WEIGHTED = "WEIGHTED"
    CELL_SIZE = "CELL_SIZE"
    SHAPE = "SHAPE"
    AREA = "AREA"
    LABEL_SET = "LABEL_SET"
    PROJECTED_CRS = "PROJECTED_CRS"
    OUTPUT = "OUTPUT"

    def initAlgorithm(self, config=None) -> None:
        """Declare the parameters."""
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.INPUT,
                self.tr("Classified points"),
                [VECTOR_POINT],
                defaultValue=first_layer_with(("label_1",), GEOMETRY_POINT),
            )
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.LABEL_FIELD,
                self.tr("Label field"),
                defaultValue="label_1",
                parentLayerParameterName=self.INPUT,
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.CELL_SIZE,
                self.tr("Cell size (metres)"),
                NUMBER_DOUBLE,
                defaultValue=100.0,
                minValue=1.0,
            ),
            decimals=0,
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.SHAPE, self.tr("Cell shape"), options=list(GRID_SHAPES), defaultValue=0
            )
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.AREA,
                self.tr("Study area"),
                [VECTOR_POLYGON],
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.LABEL_SET,
                self.tr("Colours and label order from"),
                options=["the labels found (generated colours)"]
                + [entry.title for entry in builtin_label_sets()],
                defaultValue=0,
            )
        )
        advanced = [
            QgsProcessingParameterBoolean(
                self.WEIGHTED, self.tr("Weight each point by its score"), defaultValue=False
            ),
            QgsProcessingParameterField(
                self.SCORE_FIELD,
                self.tr("Score field"),
                defaultValue="score_1",
                parentLayerParameterName=self.INPUT,
                type=FIELD_NUMERIC,
                optional=True,
            ),
            QgsProcessingParameterCrs(
                self.PROJECTED_CRS,
                self.tr("Projected CRS"),
                optional=True,
            ),
        ]
        self.add_advanced_parameters(advanced)
        self.add_parameter(
            QgsProcessingParameterFeatureSink(self.OUTPUT, self.tr("Label grid"), VECTOR_POLYGON)
        )
        self.add_output(QgsProcessingOutputNumber("CELLS", self.tr("Cells")))
        self.add_output(QgsProcessingOutputNumber("FILLED", self.tr("Cells filled")))

    def processAlgorithm(self, parameters, context, feedback):
        """Bin the points, fill the voids, write the cells."""
        self.require_engine()
        import numpy as np

        source = self.required_source(parameters, self.INPUT, context)
        label_index = self.field_index(
            source, parameters, self.LABEL_FIELD, context, what="labels", required=True
        )
        weighted = self.parameterAsBoolean(parameters, self.WEIGHTED, context)
        score_index = self.field_index(
            source, parameters, self.SCORE_FIELD, context, what="scores", required=weighted
        )
        crs = self._crs(source, parameters, context)
        to_grid = QgsCoordinateTransform(source.sourceCrs(), crs, context.transformContext())
        xs, ys, texts, scores = [], [], [], []
        for feature in source.getFeatures():
            geometry = feature.geometry()
            value = feature.attributes()[label_index]
            if (
                geometry.isNull()
                or geometry.isEmpty()
                or value in (None, "")
                or str(value) == "NULL"
            ):
                continue
            point = to_grid.transform(geometry.centroid().asPoint())
            xs.append(point.x())
            ys.append(point.y())
            texts.append(str(value))
            score = feature.attributes()[score_index] if score_index >= 0 else 1.0
            # NULL travels as NaN: the engine weighs it 0 and counts it 1 in a tie (the help).
            scores.append(float(score) if score not in (None, "") else math.nan)
        if not texts:
            raise QgsProcessingException(
                f"No point of '{source.sourceName()}' has both a location and a label in "
                f"'{source.fields().at(label_index).name()}': classify the points first (or "
                "choose the label field)."
            )
        names, colours, codes = self._palette(texts, parameters, context)
        position = {name: i for i, name in enumerate(names)}
        area = self._area(parameters, context, crs)
        points_file, output = job_file(".npz"), job_file(".npz")
        np.savez(
            points_file,
            x=np.array(xs),
            y=np.array(ys),
            label=np.array([position[t] for t in texts]),
            weight=np.array(scores),
        )
        answer = run_job(
            "grid",
            GridParams(
                points=points_file,
                n_labels=len(names),
                cell_size=self.parameterAsDouble(parameters, self.CELL_SIZE, context),
                shape=GRID_SHAPES[self.parameterAsEnum(parameters, self.SHAPE, context)],
                weighted=weighted,
                area_wkt=area.asWkt() if area is not None else "",
                output=output,
            ),
            feedback,
            GridResult,
        )
        with np.load(answer.output, allow_pickle=False) as cells:
            result = dict(cells)
        feedback.pushInfo(
            f"{len(result['label'])} cells, {int(result['filled'].sum())} filled, from "
            f"{len(texts)} labelled points."
        )
        dest_id = self._write(result, names, crs, parameters, context)
        style_on_load(
            context,
            dest_id,
            partial(style_grid_layer, names=names, colours=colours, codes=codes),
        )
        return {
            self.OUTPUT: dest_id,
            "CELLS": len(result["label"]),
            "FILLED": int(result["filled"].sum()),
        }

    def _crs(self, source, parameters, context) -> QgsCoordinateReferenceSystem:
        return metric_crs(
            self, source, parameters, self.PROJECTED_CRS, context, "grid CRS", "the cell size is"
        )

    def _palette(self, texts, parameters, context):
        from ..shared.labels import builtin_label_set, generated_palette

        index = self.parameterAsEnum(parameters, self.LABEL_SET, context)
        found = sorted(set(texts))
        if index == 0:
            return found, generated_palette(len(found)), [""] * len(found)
        label_set = builtin_label_set(builtin_label_sets()[index - 1].name)
        names, colours = list(label_set.texts), list(label_set.colours())
        codes = [label.code for label in label_set.labels]
        extra = [t for t in found if t not in set(names)]
        return names + extra, colours + generated_palette(len(extra)), codes + [""] * len(extra)

    def _area(self, parameters, context, crs):
        if parameters.get(self.AREA) in (None, ""):
            return None
        area = self.required_source(parameters, self.AREA, context)
        transform = QgsCoordinateTransform(area.sourceCrs(), crs, context.transformContext())
        parts = []
        for feature in area.getFeatures():
            geometry = QgsGeometry(feature.geometry())
            if not geometry.isNull():
                project_in_place(geometry, transform, f"Study area feature {feature.id()}")
                parts.append(geometry)
        if not parts:
            raise QgsProcessingException(
                f"The study area layer '{area.sourceName()}' has no polygon: choose a layer with "
                "at least one, or leave the study area empty for the points' extent."
            )
        # A self-crossing polygon is mended by the engine; a union of invalid parts could
        # lose them here.
        return QgsGeometry.collectGeometry(parts)

    def _write(self, result, names, crs, parameters, context) -> str:
        fields = QgsFields()
        for name, kind in OUTPUT_FIELDS:
            fields.append(make_field(name, kind))
        sink, dest_id = self.parameterAsSink(
            parameters, self.OUTPUT, context, fields, WKB_POLYGON, crs
        )
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        for row in range(len(result["label"])):
            feature = QgsFeature(fields)
            ring = [QgsPointXY(float(x), float(y)) for x, y in result["rings"][row]]
            feature.setGeometry(QgsGeometry.fromPolygonXY([ring]))
            label = int(result["label"][row])
            share, entropy = float(result["share"][row]), float(result["entropy"][row])
            index = result["index"][row]
            feature.setAttributes(
                [
                    f"{index[0]},{index[1]}",
                    names[label] if label >= 0 else None,
                    int(result["points"][row]),
                    None if share != share else share,
                    None if entropy != entropy else entropy,
                    int(result["filled"][row]),
                    float(result["fill_distance"][row]),
                ]
            )
            self.write_feature(sink, feature, parameters, self.OUTPUT)
        return dest_id


# Filled cells keep their label's colour, lighter, so observed and inferred cells read apart.
# One legend entry per label and kind of cell: observed cells in the label's colour, filled cells
# (no point inside; the label of the nearest observed cells) in a lighter shade of it.
GRID_CATEGORY = "\"label\" || if(\"filled\" = 1, ' · filled', '')"
FILLED_ALPHA = 110


def style_grid_layer(layer, names, colours, codes=None) -> None:
    """Cells coloured by label, in the given order and colours; the legend lists the labels
    present, with their codes, observed and filled cells apart."""
    from qgis.core import QgsFeatureRequest
    from qgis.PyQt.QtGui import QColor

    label_index = layer.fields().lookupField("label")
    filled_index = layer.fields().lookupField("filled")
    request = QgsFeatureRequest().setSubsetOfAttributes([label_index, filled_index])
    request.setFlags(NO_GEOMETRY_REQUEST)
    present = {(f[label_index], f[filled_index] == 1) for f in layer.getFeatures(request)}
    categories = []
    for position, (name, colour) in enumerate(zip_same_length(names, colours)):
        code = (codes or [""] * len(names))[position]
        legend = f"{code} {name}" if code else name
        for filled in (False, True):
            if (name, filled) not in present:
                continue
            shade = QColor(colour)
            if filled:
                shade.setAlpha(FILLED_ALPHA)
            symbol = QgsFillSymbol.createSimple(
                {
                    "color": shade.name(QColor.NameFormat.HexArgb),
                    "outline_color": "#ffffff",
                    "outline_width": "0.05",
                }
            )
            value = f"{name} · filled" if filled else name
            text = f"{legend} (filled: no point in the cell)" if filled else legend
            categories.append(QgsRendererCategory(value, symbol, legend_text(text)))
    layer.setRenderer(QgsCategorizedSymbolRenderer(GRID_CATEGORY, categories))
    layer.triggerRepaint()
