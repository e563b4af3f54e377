"""Processing algorithm ``mus:fetchpanoramas``."""

from __future__ import annotations

import json

from qgis.core import (
    NULL,
    QgsCategorizedSymbolRenderer,
    QgsFeature,
    QgsFields,
    QgsMarkerSymbol,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsRendererCategory,
)

from ..bridge.engine import job_file, plugin_cache_dir, run_job
from ..bridge.qgis_enums import (
    FIELD_NUMERIC,
    FILE_FOLDER,
    NUMBER_DOUBLE,
    NUMBER_INTEGER,
    VECTOR_POINT,
    make_field,
)
from ..shared.errors import MusError
from ..shared.imagery_sources import imagery_source_infos
from ..shared.moments import parse_moments
from ..shared.schemas.imagery import (
    FetchImageryParams,
    FetchImageryResult,
    ViewPlanChoice,
)
from .base import MusAlgorithm, qgis_proxies, style_on_load
from .imagery_access import (
    accesses_given,
    add_access_parameters,
    add_date_parameters,
    add_radius_parameter,
    capture_window,
    chosen_sources,
    date_value,
    points_in_wgs84,
)

# (label, views, field of view, whole panorama); Processing stores the index: append only.
VIEW_CHOICES = (
    ("4 views of 90° from the bearing", 4, 90.0, False),
    ("6 views of 60°", 6, 60.0, False),
    ("8 views of 45°", 8, 45.0, False),
    ("1 view of 90° along the street", 1, 90.0, False),
    ("The whole panorama", 1, 90.0, True),
)
OUTPUT_FIELDS = (
    ("source", "string"),
    ("image_id", "string"),
    ("captured", "string"),
    ("distance_m", "double"),
    ("image_paths", "string"),
    ("headings", "string"),
    ("image_heading", "double"),
    ("is_panorama", "int"),
    ("creator", "string"),
    ("licence", "string"),
    ("duplicate_of", "int64"),
    ("fetch_status", "string"),
    ("pick_reason", "string"),
)


class FetchPanoramas(MusAlgorithm):
    """One street-level image (or set of views) per point, from a chosen source."""

    NAME = "fetchpanoramas"
    DISPLAY_NAME = "Fetch panoramas"
    SHORT = (
        "The street-level image nearest each point, from Street View, Mapillary, KartaView, "
        "Panoramax or your photos."
    )
    GROUP = "2 · Imagery"
    GROUP_ID = "imagery"
    HELP = (
        "Finds the street-level image nearest to each point within the search radius and saves "
        "it, as views aimed along the street's bearing or as the whole 360° panorama.\n\n"
        "Sources: Google Street View (a key with billing), Mapillary (a free token; CC BY-SA), "
        "KartaView and Panoramax (no key), or your own geotagged photos (a folder read through "
        "EXIF GPS, or a CSV of lon, lat, path). Give a key once in Plugins ▸ Multimodal Urban "
        "Studies ▸ Service keys… and it is used whenever the key field is left empty; or choose "
        "an authentication configuration (Basic: the key as user name, the Street View signing "
        "secret as password). Headless (qgis_process), the environment variables "
        "MUS_MAPILLARY_TOKEN, MUS_STREETVIEW_KEY and MUS_STREETVIEW_SECRET serve too. Keys "
        "never appear in logs, fields or projects.\n\n"
        "Several sources: each point's image is picked across them. With 'Nearest to the "
        "date', the image captured nearest that date, then the nearest to the point, then the "
        "first source in the list; without it, the nearest panorama, then the nearest image. "
        "So a study can hold one moment of the city. Survey imagery (mus:surveyimagery) shows "
        "first what each source has, and its lists serve this fetch without asking again.\n\n"
        "Output: every input point, with the source, image id, capture date, distance, "
        "image_paths (as 'CLIP-classify' reads them), headings, attribution and licence, "
        "fetch_status (ok, no imagery, not tried or error, each with its reason) and "
        "pick_reason (why this image, among how many). Points on the same panorama share one "
        "download (duplicate_of).\n\n"
        "Moments: 'every year' takes, for each year a point has imagery of, the image captured "
        "nearest the middle of that year; dates or years (e.g. '2016 2022') take the image "
        "nearest each. The output then has a row per point and moment, with its moment: "
        "CLIP-classify it, and Label change maps where the label changed between two.\n\n"
        "Before the first request the log says what the run will ask: requests, bytes and, for "
        "Street View, the price (Advanced: price per 1,000 images). 'Estimate only' stops "
        "there.\n\n"
        "Images are cached: a second run, after a cancel or a crash, asks only for what is "
        "missing. After 5 failures in a row a service is no longer asked and the points left "
        "are 'not tried', for a later run. Google's terms restrict caching Street View images: "
        "the cache folder is yours to clear."
    )

    INPUT = "INPUT"
    SOURCE = "SOURCE"
    AUTH = "AUTH"
    PHOTO_FOLDER = "PHOTO_FOLDER"
    PHOTO_CSV = "PHOTO_CSV"
    BEARING_FIELD = "BEARING_FIELD"
    RADIUS = "RADIUS"
    VIEWS = "VIEWS"
    IMAGE_SIZE = "IMAGE_SIZE"
    DATE_FROM = "DATE_FROM"
    DATE_TO = "DATE_TO"
    TARGET_DATE = "TARGET_DATE"
    MOMENTS = "MOMENTS"
    CACHE_FOLDER = "CACHE_FOLDER"
    CONCURRENCY = "CONCURRENCY"
    SERVICE_URL = "SERVICE_URL"
    ESTIMATE_ONLY = "ESTIMATE_ONLY"
    PRICE_PER_1000 = "PRICE_PER_1000"
    OUTPUT = "OUTPUT"

    def initAlgorithm(self, config=None) -> None:
        """Declare the parameters."""
        sources = imagery_source_infos()
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.INPUT,
                self.tr("Points (e.g. street centroids)"),
                [VECTOR_POINT],
            )
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.SOURCE,
                self.tr("Imagery sources"),
                options=[info.option for info in sources.values()],
                # Several sources: each point's image is picked across them (by date, with a
                # target date). A model saved with one source (a number) reads the same.
                allowMultiple=True,
                # Panoramax: open imagery that needs no key (Mapillary, the default before,
                # needs a token that a new user must first make an authentication for).
                defaultValue=[list(sources).index("panoramax")],
            )
        )
        add_access_parameters(self)
        self.add_parameter(
            QgsProcessingParameterField(
                self.BEARING_FIELD,
                self.tr("Street bearing field"),
                defaultValue="bearing",
                parentLayerParameterName=self.INPUT,
                type=FIELD_NUMERIC,
                optional=True,
            )
        )
        add_radius_parameter(self)
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.VIEWS, self.tr("Views"), options=[c[0] for c in VIEW_CHOICES], defaultValue=0
            )
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.IMAGE_SIZE,
                self.tr("View size (pixels)"),
                NUMBER_INTEGER,
                defaultValue=640,
                minValue=64,
                maxValue=2048,
            )
        )
        add_date_parameters(self, (self.TARGET_DATE, "Nearest to the date"))
        self.add_parameter(
            QgsProcessingParameterString(self.MOMENTS, self.tr("Moments"), optional=True)
        )
        self.add_parameter(
            QgsProcessingParameterFile(
                self.CACHE_FOLDER,
                self.tr("Cache folder"),
                behavior=FILE_FOLDER,
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterBoolean(
                self.ESTIMATE_ONLY,
                self.tr("Estimate only (fetch nothing)"),
                defaultValue=False,
            )
        )
        advanced = [
            QgsProcessingParameterNumber(
                self.PRICE_PER_1000,
                self.tr("Street View price per 1,000 (USD)"),
                NUMBER_DOUBLE,
                # Google's list price per 1,000 Static API images (resources/imagery).
                defaultValue=sources["streetview"].price_per_1000,
                minValue=0.0,
            ),
            QgsProcessingParameterNumber(
                self.CONCURRENCY,
                self.tr("Concurrent requests"),
                NUMBER_INTEGER,
                defaultValue=8,
                minValue=1,
                maxValue=64,
            ),
            QgsProcessingParameterString(self.SERVICE_URL, self.tr("Service URL"), optional=True),
        ]
        self.add_advanced_parameters(advanced)
        self.add_parameter(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT, self.tr("Points with imagery"), VECTOR_POINT
            )
        )
        for name, label in (
            ("WITH_IMAGERY", "Points with imagery"),
            ("WITHOUT_IMAGERY", "Points without imagery"),
            ("SHARED", "Points sharing another point's image"),
            ("ESTIMATED_REQUESTS", "Requests the fetch makes at most"),
            ("ESTIMATED_MEGABYTES", "Megabytes the fetch downloads, about"),
            ("ESTIMATED_COST_USD", "Cost of the fetch at the price set, at most (USD)"),
        ):
            self.add_output(QgsProcessingOutputNumber(name, self.tr(label)))

    def processAlgorithm(self, parameters, context, feedback):
        """Look up and download the imagery, then write every point with what was found."""
        self.require_engine()
        source = self.required_source(parameters, self.INPUT, context)
        names = chosen_sources(self, parameters, self.SOURCE, context)
        _, count, fov, whole = VIEW_CHOICES[self.parameterAsEnum(parameters, self.VIEWS, context)]
        plan = ViewPlanChoice(
            count=count,
            fov=fov,
            pitch=0.0,
            size=self.parameterAsInt(parameters, self.IMAGE_SIZE, context),
            whole_panorama=whole,
        )
        window = capture_window(self, parameters, context)
        target = date_value(self, parameters, self.TARGET_DATE, context)
        try:
            moments = parse_moments(self.parameterAsString(parameters, self.MOMENTS, context))
        except MusError as exc:
            raise QgsProcessingException(str(exc)) from None
        accesses, location = accesses_given(
            self, names, parameters, context, feedback, self.SERVICE_URL
        )
        points, features = points_in_wgs84(self, source, parameters, self.BEARING_FIELD, context)
        if not features:
            raise QgsProcessingException("The input layer has no points.")
        cache = self.parameterAsFile(parameters, self.CACHE_FOLDER, context) or str(
            plugin_cache_dir()
        )
        points_file, output = job_file(".json"), job_file(".json")
        with open(points_file, "w", encoding="utf-8") as handle:
            json.dump(points, handle)
        estimate_only = self.parameterAsBoolean(parameters, self.ESTIMATE_ONLY, context)
        result = run_job(
            "fetch_imagery",
            FetchImageryParams(
                points=points_file,
                source=accesses[0].name,
                radius_m=self.parameterAsDouble(parameters, self.RADIUS, context),
                plan=plan,
                window=window,
                concurrency=self.parameterAsInt(parameters, self.CONCURRENCY, context),
                url=accesses[0].url,
                location=location,
                cache_dir=cache,
                # Secrets travel through the pipe only, never through a file.
                credentials=accesses[0].credentials,
                proxies=qgis_proxies(),
                output=output,
                estimate_only=estimate_only,
                price_per_1000=self.parameterAsDouble(parameters, self.PRICE_PER_1000, context),
                sources=accesses if len(accesses) > 1 else [],
                target_date=target,
                moments=moments,
            ),
            feedback,
            FetchImageryResult,
        )
        with open(output, encoding="utf-8") as handle:
            outcomes = json.load(handle)
        by_key: dict = {}
        for outcome in outcomes:  # with moments, a point has a row per moment
            by_key.setdefault(outcome["key"], []).append(outcome)
        dest_id = self._write(source, features, by_key, bool(moments), parameters, context)
        style_on_load(context, dest_id, style_fetch_layer)
        # Points, not rows: with moments a point has a row per moment.
        found = {o["key"] for o in outcomes if o["status"] == "ok"}
        shared = {o["key"] for o in outcomes if o["duplicate_of"] not in (None, o["key"])}
        estimate = result.estimate
        return {
            self.OUTPUT: dest_id,
            "WITH_IMAGERY": len(found),
            "WITHOUT_IMAGERY": len(features) - len(found),
            "SHARED": len(shared),
            "ESTIMATED_REQUESTS": estimate.requests if estimate else 0,
            "ESTIMATED_MEGABYTES": round(estimate.bytes_expected / 1e6, 1) if estimate else 0.0,
            "ESTIMATED_COST_USD": estimate.cost if estimate else 0.0,
        }

    def _write(self, source, features, by_key, with_moments, parameters, context) -> str:
        written = OUTPUT_FIELDS + ((("moment", "string"),) if with_moments else ())
        ours = {name for name, _ in written}
        kept = [i for i, f in enumerate(source.fields()) if f.name() not in ours]
        fields = QgsFields()
        for index in kept:
            fields.append(source.fields().at(index))
        # duplicate_of names the point that holds the image as the user sees it: by the layer's
        # id field (as Sample street centroids writes it), else by the feature id.
        id_index = source.fields().lookupField("id")
        point_name = {
            f.id(): f.attributes()[id_index] if id_index >= 0 else f.id() for f in features
        }
        # Whole numbers go in an integer field; any other id (text, decimals) in a text field.
        id_is_whole_number = all(
            isinstance(value, int) or value is None or value == NULL
            for value in point_name.values()
        )
        if not id_is_whole_number:
            point_name = {
                key: None if value is None or value == NULL else str(value)
                for key, value in point_name.items()
            }
        for name, kind in written:
            if name == "duplicate_of" and not id_is_whole_number:
                kind = "string"
            fields.append(make_field(name, kind))
        sink, dest_id = self.parameterAsSink(
            parameters, self.OUTPUT, context, fields, source.wkbType(), source.sourceCrs()
        )
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        from ..shared.image_paths import PATH_SEPARATOR

        rows = [(f, outcome) for f in features for outcome in by_key.get(f.id()) or [None]]
        for feature, outcome in rows:
            if outcome is None:
                values = [None] * (len(OUTPUT_FIELDS) - 2) + ["no geometry", None]
            else:
                values = [
                    outcome["source"] or None,
                    outcome["image_id"] or None,
                    outcome["captured"],
                    outcome["distance_m"],
                    PATH_SEPARATOR.join(outcome["paths"]) or None,
                    PATH_SEPARATOR.join(f"{h:g}" for h in outcome["headings"]) or None,
                    outcome["image_heading"],
                    int(outcome["is_panorama"]) if outcome["image_id"] else None,
                    outcome["creator"] or None,
                    outcome["licence"] or None,
                    None
                    if outcome["duplicate_of"] is None
                    else point_name.get(outcome["duplicate_of"]),
                    outcome["status"],
                    outcome.get("reason") or None,
                ]
            if with_moments:
                values.append((outcome or {}).get("moment") or None)
            out = QgsFeature(fields)
            out.setGeometry(feature.geometry())
            attributes = feature.attributes()
            out.setAttributes([attributes[i] for i in kept] + values)
            self.write_feature(sink, out, parameters, self.OUTPUT)
        return dest_id


# (kind of status, colour, legend); a status carries its reason after the kind ("no imagery:
# 2 photos within 15 m unusable", "not tried: estimate only", "error: HTTP 500 ..."), so the
# points are coloured by the kind alone.
STATUS_COLOURS = (
    ("ok", "#1a9641", "imagery found"),
    ("no imagery", "#b4b4b4", "no imagery"),
    ("no geometry", "#b4b4b4", "no geometry"),
    ("not tried", "#abd9e9", "not tried (estimate only, or the service stopped answering)"),
    ("error", "#d7191c", "error"),
)
STATUS_KIND = "regexp_substr(\"fetch_status\", '^[^:]*')"


def style_fetch_layer(layer) -> None:
    """Points coloured by what the fetch found: imagery, none, not tried, or an error."""
    statuses = layer.uniqueValues(layer.fields().lookupField("fetch_status"))
    present = {str(status).split(":", 1)[0] for status in statuses if status}
    categories = []
    for value, colour, label in STATUS_COLOURS:
        if present and value not in present:
            continue  # the legend lists the kinds the layer holds (all of them while empty)
        symbol = QgsMarkerSymbol.createSimple(
            {"name": "circle", "color": colour, "outline_color": "#ffffff", "size": "2"}
        )
        categories.append(QgsRendererCategory(value, symbol, label))
    layer.setRenderer(QgsCategorizedSymbolRenderer(STATUS_KIND, categories))
    layer.triggerRepaint()
