"""The QGIS enum values the plugin uses, by the name each QGIS version has, in scoped form.

QGIS 4 (Qt 6, PyQt6) accepts only scoped enum access (``QgsFeatureSink.Flag.FastInsert``, not
``QgsFeatureSink.FastInsert``), and it drops the old homes of the enums that QGIS 3.30-3.36 moved
into ``Qgis`` (``QgsProcessing.SourceType`` became ``Qgis.ProcessingSourceType``, with shorter
member names). QGIS 3.22 has only the old homes. Each value below is therefore the first of its
spellings that the running QGIS has, the newest first; both are scoped, so both work on PyQt5 and
the newest one on PyQt6.

Enums that did not move (``QgsFeatureSink.Flag``, ``Qgis.MessageLevel``, Qt's own) are written
scoped where they are used; only moved or renamed ones belong here. The test
``tests/qgis/test_qt6_readiness.py`` checks that the QGIS side uses no unscoped enum and that each
value here comes from the newest home the running QGIS offers.
"""

from __future__ import annotations

from collections.abc import Callable

from qgis.core import (
    Qgis,
    QgsFeatureRequest,
    QgsField,
    QgsGeometry,
    QgsLegendStyle,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingFeatureSource,
    QgsProcessingParameterDateTime,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsSymbolLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QMetaType, QVariant


def newest(*spellings: Callable[[], object]):
    """The value of the first spelling this QGIS has (each a lambda, tried in order)."""
    for spelling in spellings:
        try:
            return spelling()
        except AttributeError:
            continue
    raise AttributeError("none of the spellings exists in this QGIS")


# Processing source types (Qgis.ProcessingSourceType since 3.36).
VECTOR_ANY_GEOMETRY = newest(
    lambda: Qgis.ProcessingSourceType.Vector, lambda: QgsProcessing.SourceType.TypeVector
)
VECTOR_POINT = newest(
    lambda: Qgis.ProcessingSourceType.VectorPoint,
    lambda: QgsProcessing.SourceType.TypeVectorPoint,
)
VECTOR_LINE = newest(
    lambda: Qgis.ProcessingSourceType.VectorLine,
    lambda: QgsProcessing.SourceType.TypeVectorLine,
)
VECTOR_POLYGON = newest(
    lambda: Qgis.ProcessingSourceType.VectorPolygon,
    lambda: QgsProcessing.SourceType.TypeVectorPolygon,
)

# Parameter kinds (Qgis.Processing…ParameterType/Behavior/DataType since 3.36).
FILE_FOLDER = newest(
    lambda: Qgis.ProcessingFileParameterBehavior.Folder,
    lambda: QgsProcessingParameterFile.Behavior.Folder,
)
NUMBER_DOUBLE = newest(
    lambda: Qgis.ProcessingNumberParameterType.Double,
    lambda: QgsProcessingParameterNumber.Type.Double,
)
NUMBER_INTEGER = newest(
    lambda: Qgis.ProcessingNumberParameterType.Integer,
    lambda: QgsProcessingParameterNumber.Type.Integer,
)
FIELD_NUMERIC = newest(
    lambda: Qgis.ProcessingFieldParameterDataType.Numeric,
    lambda: QgsProcessingParameterField.DataType.Numeric,
)
FIELD_STRING = newest(
    lambda: Qgis.ProcessingFieldParameterDataType.String,
    lambda: QgsProcessingParameterField.DataType.String,
)
DATE_ONLY = newest(
    lambda: Qgis.ProcessingDateTimeParameterDataType.Date,
    lambda: QgsProcessingParameterDateTime.Type.Date,
)

# Flags (Qgis.Processing…Flag since 3.36).
PARAMETER_ADVANCED = newest(
    lambda: Qgis.ProcessingParameterFlag.Advanced,
    lambda: QgsProcessingParameterDefinition.Flag.FlagAdvanced,
)
PARAMETER_OPTIONAL = newest(
    lambda: Qgis.ProcessingParameterFlag.Optional,
    lambda: QgsProcessingParameterDefinition.Flag.FlagOptional,
)
PARAMETER_HIDDEN = newest(
    lambda: Qgis.ProcessingParameterFlag.Hidden,
    lambda: QgsProcessingParameterDefinition.Flag.FlagHidden,
)
ALGORITHM_HIDE_FROM_MODELER = newest(
    lambda: Qgis.ProcessingAlgorithmFlag.HideFromModeler,
    lambda: QgsProcessingAlgorithm.Flag.FlagHideFromModeler,
)
ALGORITHM_NO_THREADING = newest(
    lambda: Qgis.ProcessingAlgorithmFlag.NoThreading,
    lambda: QgsProcessingAlgorithm.Flag.FlagNoThreading,
)
SOURCE_SKIP_GEOMETRY_VALIDITY_CHECKS = newest(
    lambda: Qgis.ProcessingFeatureSourceFlag.SkipGeometryValidityChecks,
    lambda: QgsProcessingFeatureSource.Flag.FlagSkipGeometryValidityChecks,
)

# Geometry types (Qgis.WkbType since 3.30).
# A layer's geometry type (QgsVectorLayer.geometryType()).
GEOMETRY_POINT = newest(
    lambda: Qgis.GeometryType.Point, lambda: QgsWkbTypes.GeometryType.PointGeometry
)
GEOMETRY_POLYGON = newest(
    lambda: Qgis.GeometryType.Polygon, lambda: QgsWkbTypes.GeometryType.PolygonGeometry
)
WKB_POINT = newest(lambda: Qgis.WkbType.Point, lambda: QgsWkbTypes.Type.Point)
WKB_POLYGON = newest(lambda: Qgis.WkbType.Polygon, lambda: QgsWkbTypes.Type.Polygon)
WKB_LINESTRING = newest(lambda: Qgis.WkbType.LineString, lambda: QgsWkbTypes.Type.LineString)
NO_GEOMETRY_REQUEST = newest(
    lambda: Qgis.FeatureRequestFlag.NoGeometry,
    lambda: QgsFeatureRequest.Flag.NoGeometry,
)
WKB_NO_GEOMETRY = newest(lambda: Qgis.WkbType.NoGeometry, lambda: QgsWkbTypes.Type.NoGeometry)

# Parts of a layout legend (Qgis.LegendComponent since 3.32).
LEGEND_HIDDEN = newest(lambda: Qgis.LegendComponent.Hidden, lambda: QgsLegendStyle.Style.Hidden)
LEGEND_TITLE = newest(lambda: Qgis.LegendComponent.Title, lambda: QgsLegendStyle.Style.Title)
LEGEND_SUBGROUP = newest(
    lambda: Qgis.LegendComponent.Subgroup, lambda: QgsLegendStyle.Style.Subgroup
)
LEGEND_SYMBOL_LABEL = newest(
    lambda: Qgis.LegendComponent.SymbolLabel, lambda: QgsLegendStyle.Style.SymbolLabel
)

# Data-defined symbol properties (members lost their "Property" prefix in 3.30).
SYMBOL_FILL_COLOR = newest(
    lambda: QgsSymbolLayer.Property.FillColor, lambda: QgsSymbolLayer.Property.PropertyFillColor
)
SYMBOL_SIZE = newest(
    lambda: QgsSymbolLayer.Property.Size, lambda: QgsSymbolLayer.Property.PropertySize
)
STROKE_WIDTH = newest(
    lambda: QgsSymbolLayer.Property.StrokeWidth,
    lambda: QgsSymbolLayer.Property.PropertyStrokeWidth,
)

# The outcome of a geometry operation (Qgis.GeometryOperationResult since 3.22; the test checks).
GEOMETRY_SUCCESS = newest(
    lambda: Qgis.GeometryOperationResult.Success, lambda: QgsGeometry.OperationResult.Success
)

# Field types: QgsField takes a QMetaType.Type from QGIS 3.38 (and only that on Qt 6); older QGIS
# takes only a QVariant.Type, which flake8-qgis's QGS402 would have us drop. (Qt 6's QVariant has
# no Type, so the older table is built only where it is used.)
_FIELD_TYPES = (
    {
        "int": QMetaType.Type.Int,
        "int64": QMetaType.Type.LongLong,
        "double": QMetaType.Type.Double,
        "string": QMetaType.Type.QString,
    }
    if Qgis.QGIS_VERSION_INT >= 33800
    else {
        "int": QVariant.Type.Int,  # noqa: QGS402 (QGIS < 3.38 takes no QMetaType)
        "int64": QVariant.Type.LongLong,  # noqa: QGS402 (QGIS < 3.38 takes no QMetaType)
        "double": QVariant.Type.Double,  # noqa: QGS402 (QGIS < 3.38 takes no QMetaType)
        "string": QVariant.Type.String,  # noqa: QGS402 (QGIS < 3.38 takes no QMetaType)
    }
)


def make_field(name: str, kind: str) -> QgsField:
    """A QgsField of a kind ('int', 'int64', 'double', 'string') on QGIS 3.22 and on Qt 6."""
    return QgsField(name, _FIELD_TYPES[kind])
