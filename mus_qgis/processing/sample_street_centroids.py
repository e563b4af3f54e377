"""Processing algorithm ``mus:samplestreetcentroids``."""

from __future__ import annotations

from qgis.core import (
    Qgis,
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsFeatureRequest,
    QgsFields,
    QgsGeometry,
    QgsMessageLog,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterCrs,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsVectorLayer,
)

from ..bridge.engine import job_file, plugin_cache_dir, run_job
from ..bridge.qgis_enums import (
    NUMBER_DOUBLE,
    SOURCE_SKIP_GEOMETRY_VALIDITY_CHECKS,
    VECTOR_POINT,
    VECTOR_POLYGON,
    WKB_POINT,
    make_field,
)
from ..shared.resources import plugin_version, resource_path
from ..shared.schemas.streets import OsmServices, SampleStreetsParams, SampleStreetsResult
from ..shared.street_classes import MAX_MERGE_DISTANCE_M, street_classes
from .base import LOG_TAG, MusAlgorithm, project_in_place, style_on_load

WGS84 = QgsCoordinateReferenceSystem("EPSG:4326")

OUTPUT_FIELDS = (
    ("id", "int"),
    ("osm_ids", "string"),
    ("highway", "string"),
    ("name", "string"),
    ("length_m", "double"),
    ("bearing", "double"),
    ("n_merged", "int"),
)


class SampleStreetCentroids(MusAlgorithm):
    """One point at the middle of each street segment of a study area, merged within a distance."""

    NAME = "samplestreetcentroids"
    DISPLAY_NAME = "Sample street centroids"
    SHORT = "One point per street segment of a study area, merged within a distance."
    GROUP = "1 · Streets"
    GROUP_ID = "streets"
    HELP = (
        "Puts a sample point at the middle of every street segment of a study area and merges "
        "points closer than the merge distance, as in 'CLIP and the City'.\n\n"
        "Study area: a place name (found with Nominatim), a polygon layer, or an extent, for which "
        "the streets are downloaded from Overpass with osmnx; or a local OpenStreetMap file for "
        "offline and large studies, optionally clipped by a polygon layer or an extent. The file's "
        "format is read from its content, whatever its name: OSM XML (plain, .bz2 or .gz) or OSM "
        "PBF. In a clipped extract, a street that runs out of the file keeps its parts inside it "
        "(the log says how many streets were cut, and how many had too little left to keep).\n\n"
        "Segments run between intersections of the chosen street classes (two-way streets count "
        "once) and keep disconnected pieces. A street area (a square drawn as a polygon, tagged "
        "area=yes, such as a pedestrian piazza) of a chosen class gets one point at its centre "
        "(its centroid, or a point inside it where the centroid falls outside), with the length "
        "and bearing of its long axis; the log counts them. The merge distance is 0 (one point "
        "per segment) to 10,000 m. Distances are measured in the study area's UTM zone unless a "
        "projected CRS is given. Each output point lies on its street (or in its square) and "
        "carries the ids of the OSM ways it stands for, the street class and name, the segment's "
        "length, the street's bearing (degrees clockwise from north, used later to aim the "
        "camera) and how many segments and squares were merged into it.\n\n"
        "DIRECTED_EDGES counts the segments as osmnx's graph_from_place does: the edges of its "
        "directed, simplified graph of the chosen classes, where a two-way street counts twice "
        "and a one-way street once (studies built on osmnx report this number).\n\n"
        "Downloads are cached in the plugin's cache folder; OpenStreetMap data © OpenStreetMap "
        "contributors (ODbL)."
    )

    PLACE = "PLACE"
    AREA = "AREA"
    EXTENT = "EXTENT"
    OSM_FILE = "OSM_FILE"
    CLASSES = "CLASSES"
    MERGE_DISTANCE = "MERGE_DISTANCE"
    PROJECTED_CRS = "PROJECTED_CRS"
    OVERPASS_URL = "OVERPASS_URL"
    NOMINATIM_URL = "NOMINATIM_URL"
    OUTPUT = "OUTPUT"

    def initAlgorithm(self, config=None) -> None:
        """Declare the parameters."""
        classes = street_classes()
        self.add_parameter(
            QgsProcessingParameterString(
                self.PLACE,
                self.tr("Study area: a place name"),
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.AREA,
                self.tr("… or a polygon layer"),
                types=[VECTOR_POLYGON],
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterExtent(self.EXTENT, self.tr("… or an extent"), optional=True)
        )
        self.add_parameter(
            QgsProcessingParameterFile(
                self.OSM_FILE,
                self.tr("… or an OpenStreetMap file"),
                optional=True,
                # Any name is accepted: the engine tells the format by the file's content.
                fileFilter="OpenStreetMap (*.osm *.osm.bz2 *.osm.gz *.osm.pbf *.pbf *.xml);;"
                "All files (*)",
            )
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.CLASSES,
                self.tr("Street classes (OSM highway values)"),
                options=[f"{c.value} — {c.description}" for c in classes],
                allowMultiple=True,
                defaultValue=[i for i, c in enumerate(classes) if c.reference_study],
            )
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.MERGE_DISTANCE,
                self.tr("Merge points closer than (metres)"),
                type=NUMBER_DOUBLE,
                minValue=0.0,
                maxValue=MAX_MERGE_DISTANCE_M,
                defaultValue=20.0,
            ),
            decimals=0,
        )
        advanced = [
            QgsProcessingParameterCrs(
                self.PROJECTED_CRS,
                self.tr("Projected CRS for distances"),
                optional=True,
            ),
            QgsProcessingParameterString(
                self.OVERPASS_URL,
                self.tr("Overpass API URL"),
                defaultValue="https://overpass-api.de/api",
            ),
            QgsProcessingParameterString(
                self.NOMINATIM_URL,
                self.tr("Nominatim URL"),
                defaultValue="https://nominatim.openstreetmap.org/",
            ),
        ]
        self.add_advanced_parameters(advanced)
        self.add_parameter(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT, self.tr("Street centroids"), type=VECTOR_POINT
            )
        )
        for name, description in (
            ("SEGMENTS_FOUND", "Street segments found"),
            ("SEGMENTS_SELECTED", "Segments of the chosen classes"),
            ("SEGMENTS_EXCLUDED", "Segments excluded by class"),
            ("AREAS_SAMPLED", "Street areas (squares) sampled at their centre"),
            ("LOCATIONS", "Locations after merging"),
            ("DIRECTED_EDGES", "Edges of osmnx's directed graph (two per two-way street)"),
        ):
            self.add_output(QgsProcessingOutputNumber(name, self.tr(description)))

    def checkParameterValues(self, parameters, context):
        """The plugin's own words, with what to fix, where QGIS would only say "Incorrect
        parameter value" (run from Python or qgis_process, the dialog never lets these through)."""
        own_words = {
            self.MERGE_DISTANCE: f"give 0 (one point per segment) to {MAX_MERGE_DISTANCE_M:,.0f} "
            "metres; the reference study used 20.",
            self.CLASSES: "choose at least one street class.",
        }
        for name, fix in own_words.items():
            definition = self.parameterDefinition(name)
            value = parameters.get(name)
            if value is not None and not definition.checkValueIsAcceptable(value, context):
                return False, f"{definition.description()} ({name}) is {value!r}: {fix}"
        return super().checkParameterValues(parameters, context)

    def processAlgorithm(self, parameters, context, feedback):
        """Sample the streets in the engine, then write the points."""
        self.require_engine()
        offered = street_classes()
        classes = [
            offered[i].value for i in self.parameterAsEnums(parameters, self.CLASSES, context)
        ]
        crs = self.parameterAsCrs(parameters, self.PROJECTED_CRS, context)
        polygon = self._area_polygon(parameters, context)
        output = job_file(".gpkg")
        result = run_job(
            "sample_streets",
            SampleStreetsParams(
                place=self.parameterAsString(parameters, self.PLACE, context).strip(),
                polygon_wkt=polygon.asWkt() if polygon is not None else "",
                osm_file=self.parameterAsFile(parameters, self.OSM_FILE, context),
                classes=classes,
                merge_distance_m=self.parameterAsDouble(parameters, self.MERGE_DISTANCE, context),
                projected_crs=crs.toWkt() if crs.isValid() else "",
                services=OsmServices(
                    cache_dir=str(plugin_cache_dir("osmnx")),
                    user_agent=f"mus_qgis/{plugin_version()} "
                    "(QGIS plugin for Multimodal Urban Studies)",
                    overpass_url=self.parameterAsString(parameters, self.OVERPASS_URL, context)
                    or None,
                    nominatim_url=self.parameterAsString(parameters, self.NOMINATIM_URL, context)
                    or None,
                ),
                output=output,
            ),
            feedback,
            SampleStreetsResult,
        )
        for highway, count in sorted(result.excluded_by_class.items(), key=lambda kv: -kv[1]):
            feedback.pushInfo(f"  excluded {highway}: {count}")
        dest_id = self._write(f"{output}|layername={result.layer}", parameters, context)
        style_on_load(context, dest_id, style_street_centroids)
        return {
            self.OUTPUT: dest_id,
            "SEGMENTS_FOUND": result.segments_total,
            "SEGMENTS_SELECTED": result.segments_selected,
            "SEGMENTS_EXCLUDED": result.segments_excluded,
            "AREAS_SAMPLED": result.areas_selected,
            "LOCATIONS": result.locations,
            "DIRECTED_EDGES": result.directed_edges,
        }

    def _area_polygon(self, parameters, context) -> QgsGeometry | None:
        """The study polygon in EPSG:4326 from the polygon layer or the extent, or None."""
        has_area = parameters.get(self.AREA) not in (None, "")
        has_extent = parameters.get(self.EXTENT) not in (None, "")
        if has_area and has_extent:
            raise QgsProcessingException(
                "Give a polygon layer or an extent as study area, not both."
            )
        if has_extent:
            rect = self.parameterAsExtent(parameters, self.EXTENT, context, WGS84)
            if rect.isNull() or rect.isEmpty():
                raise QgsProcessingException("The study area extent is empty.")
            return QgsGeometry.fromRect(rect)
        if not has_area:
            return None
        source = self.required_source(parameters, self.AREA, context)
        if not source.sourceCrs().isValid():
            raise QgsProcessingException("The study area layer has no valid CRS.")
        transform = QgsCoordinateTransform(source.sourceCrs(), WGS84, context.transformContext())
        parts = []
        # Validity is checked below with a message that says what to do, whatever the context's
        # invalid-geometry setting (which would otherwise stop or silently drop features first).
        skip_checks = SOURCE_SKIP_GEOMETRY_VALIDITY_CHECKS
        for feature in source.getFeatures(QgsFeatureRequest(), skip_checks):
            geometry = QgsGeometry(feature.geometry())
            if geometry.isNull() or geometry.isEmpty():
                continue
            if not geometry.isGeosValid():
                raise QgsProcessingException(
                    f"Feature {feature.id()} of the study area layer is an invalid polygon; "
                    "repair it first, e.g. with Processing's 'Fix geometries'."
                )
            project_in_place(geometry, transform, f"Study area feature {feature.id()}")
            parts.append(geometry)
        if not parts:
            raise QgsProcessingException("The study area layer has no polygon.")
        return QgsGeometry.unaryUnion(parts)

    def _write(self, engine_output: str, parameters, context) -> str:
        """Copy the engine's points into the output sink, with the fields in their set order."""
        fields = QgsFields()
        for name, kind in OUTPUT_FIELDS:
            fields.append(make_field(name, kind))
        sink, dest_id = self.parameterAsSink(
            parameters, self.OUTPUT, context, fields, WKB_POINT, WGS84
        )
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        points = QgsVectorLayer(engine_output, "points", "ogr")
        if not points.isValid():
            raise QgsProcessingException(f"The engine's points cannot be read: {engine_output}")
        indexes = [points.fields().lookupField(name) for name, _ in OUTPUT_FIELDS]
        for found in points.getFeatures():
            feature = QgsFeature(fields)
            feature.setGeometry(found.geometry())
            attributes = found.attributes()
            feature.setAttributes([attributes[i] if i >= 0 else None for i in indexes])
            self.write_feature(sink, feature, parameters, self.OUTPUT)
        return dest_id


def style_street_centroids(layer) -> None:
    """The shipped QML style: colour by street class, size by the number of merged segments."""
    message, loaded = layer.loadNamedStyle(str(resource_path("styles", "street_centroids.qml")))
    if not loaded:  # the points stay usable, drawn in QGIS's default style
        QgsMessageLog.logMessage(
            f"Street centroid style not applied: {message}", LOG_TAG, Qgis.MessageLevel.Warning
        )
    drop_absent_categories(layer)
    layer.triggerRepaint()


def drop_absent_categories(layer) -> None:
    """The legend lists only the classes the layer holds (the style's colours stay as they are:
    a class keeps its colour whatever else is present)."""
    renderer = layer.renderer()
    if not isinstance(renderer, QgsCategorizedSymbolRenderer):
        return
    present = set(layer.uniqueValues(layer.fields().lookupField(renderer.classAttribute())))
    for index in reversed(range(len(renderer.categories()))):
        if renderer.categories()[index].value() not in present:
            renderer.deleteCategory(index)
