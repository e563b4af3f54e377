"""Processing algorithm ``mus:surveyimagery``."""

from __future__ import annotations

import json

from qgis.core import (
    QgsFeature,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsRuleBasedRenderer,
)

from ..bridge.engine import job_file, plugin_cache_dir, run_job
from ..bridge.qgis_enums import (
    FILE_FOLDER,
    NUMBER_INTEGER,
    VECTOR_POINT,
)
from ..shared.imagery_sources import imagery_source_infos
from ..shared.schemas.imagery import SurveyImageryParams, SurveyImageryResult
from .base import MusAlgorithm, dot_symbol, qgis_proxies, style_on_load
from .imagery_access import (
    accesses_given,
    add_access_parameters,
    add_date_parameters,
    add_radius_parameter,
    capture_window,
    chosen_sources,
    points_in_wgs84,
)

# One row per point and source: what a fetch from that source alone would take, and what else
# is there.
SURVEY_FIELDS = (
    ("source", "string"),
    ("survey_status", "string"),
    ("images", "int"),
    ("panoramas", "int"),
    ("image_id", "string"),
    ("distance_m", "double"),
    ("captured", "string"),
    ("is_panorama", "int"),
    ("creator", "string"),
    ("licence", "string"),
    ("first_date", "string"),
    ("last_date", "string"),
    ("years", "string"),
)
# The sources asked unless the user chooses: every service (a source without a key says so in
# its rows, which tells the user what a key would add); local photos need a folder.
DEFAULT_SOURCES = ("streetview", "mapillary", "kartaview", "panoramax")


class SurveyImagery(MusAlgorithm):
    """What every source has near each point, before a fetch spends anything."""

    NAME = "surveyimagery"
    DISPLAY_NAME = "Survey imagery"
    SHORT = (
        "Which source has imagery near each point, how near and from when: metadata only, "
        "before any image is fetched."
    )
    GROUP = "2 · Imagery"
    GROUP_ID = "imagery"
    HELP = (
        "Asks each chosen source for the images within the search radius of every point, from "
        "its metadata only: no image is downloaded, and Street View's metadata calls are free. "
        "It says, before any quota is spent, what Fetch panoramas would find.\n\n"
        "Output: one row per point and source with how many images it has there (and how many "
        "are 360°), the image a fetch from that source alone would take (its id, distance, "
        "capture date, creator and licence), the first and last capture dates and the years. "
        "survey_status says ok, no imagery, or why the source could not be asked (no key, an "
        "error, a service that stopped answering). Points without imagery: the points no "
        "source has imagery for, the gaps.\n\n"
        "The report lists each source's coverage, the points with imagery per year of capture "
        "and a map of the gaps.\n\n"
        "Keys: as in Fetch panoramas (Service keys…, an authentication configuration for the "
        "one chosen source that needs a key, or the environment variables). A source without "
        "a key is not asked, and its rows say so. The lists are remembered in the cache "
        "folder: Fetch panoramas with several sources or a target date reads them instead of "
        "asking again."
    )

    INPUT = "INPUT"
    SOURCES = "SOURCES"
    AUTH = "AUTH"
    PHOTO_FOLDER = "PHOTO_FOLDER"
    PHOTO_CSV = "PHOTO_CSV"
    RADIUS = "RADIUS"
    DATE_FROM = "DATE_FROM"
    DATE_TO = "DATE_TO"
    CACHE_FOLDER = "CACHE_FOLDER"
    CONCURRENCY = "CONCURRENCY"
    SERVICE_URL = "SERVICE_URL"
    OUTPUT = "OUTPUT"
    GAPS = "GAPS"
    REPORT = "REPORT"

    def initAlgorithm(self, config=None) -> None:
        """Declare the parameters."""
        names = list(imagery_source_infos())
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.INPUT, self.tr("Points (e.g. street centroids)"), [VECTOR_POINT]
            )
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.SOURCES,
                self.tr("Imagery sources"),
                options=[info.option for info in imagery_source_infos().values()],
                allowMultiple=True,
                defaultValue=[names.index(name) for name in DEFAULT_SOURCES],
            )
        )
        add_access_parameters(self)
        add_radius_parameter(self)
        add_date_parameters(self)
        self.add_parameter(
            QgsProcessingParameterFile(
                self.CACHE_FOLDER, self.tr("Cache folder"), behavior=FILE_FOLDER, optional=True
            )
        )
        self.add_advanced_parameters(
            [
                QgsProcessingParameterNumber(
                    self.CONCURRENCY,
                    self.tr("Concurrent requests"),
                    NUMBER_INTEGER,
                    defaultValue=8,
                    minValue=1,
                    maxValue=64,
                ),
                QgsProcessingParameterString(
                    self.SERVICE_URL, self.tr("Service URLs"), optional=True
                ),
            ]
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT, self.tr("Imagery per point and source"), VECTOR_POINT
            )
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSink(
                self.GAPS, self.tr("Points without imagery"), VECTOR_POINT
            )
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.REPORT, self.tr("Report"), self.tr("HTML files (*.html)"), optional=True
            )
        )
        for name, label in (
            ("POINTS", "Points surveyed"),
            ("GAP_COUNT", "Points without imagery from any source"),
            ("REQUESTS", "Requests made"),
        ):
            self.add_output(QgsProcessingOutputNumber(name, self.tr(label)))

    def processAlgorithm(self, parameters, context, feedback):
        """Ask every source for its list of images near each point, and write what each has."""
        self.require_engine()
        source = self.required_source(parameters, self.INPUT, context)
        names = chosen_sources(self, parameters, self.SOURCES, context)
        window = capture_window(self, parameters, context)
        accesses, _ = accesses_given(self, names, parameters, context, feedback, self.SERVICE_URL)
        points, features = points_in_wgs84(self, source, parameters, "", context)
        if not points:
            raise QgsProcessingException("The input layer has no points.")
        points_file, output = job_file(".json"), job_file(".json")
        with open(points_file, "w", encoding="utf-8") as handle:
            json.dump(points, handle)
        report = self.parameterAsFileOutput(parameters, self.REPORT, context)
        cache = self.parameterAsFile(parameters, self.CACHE_FOLDER, context) or str(
            plugin_cache_dir()
        )
        result = run_job(
            "survey_imagery",
            SurveyImageryParams(
                points=points_file,
                # Secrets travel through the pipe only, never through a file.
                sources=accesses,
                radius_m=self.parameterAsDouble(parameters, self.RADIUS, context),
                cache_dir=cache,
                output=output,
                window=window,
                concurrency=self.parameterAsInt(parameters, self.CONCURRENCY, context),
                proxies=qgis_proxies(),
                report=report or "",
            ),
            feedback,
            SurveyImageryResult,
        )
        with open(output, encoding="utf-8") as handle:
            rows = json.load(handle)
        for summary in result.coverage:
            feedback.pushInfo(
                f"{summary.title}: imagery near {summary.covered} of {summary.points} points"
                + (f", {summary.not_asked} not asked" if summary.not_asked else "")
                + f"; {summary.requests} requests."
            )
        feedback.pushInfo(
            f"{len(result.gaps)} of {result.points} points have imagery from no source "
            f"(survey took {result.seconds:.1f} s)."
        )
        dest_id = self._write_rows(source, features, rows, parameters, context)
        style_on_load(context, dest_id, style_survey_layer)
        gaps_id = self._write_gaps(source, features, set(result.gaps), parameters, context)
        results = {
            self.OUTPUT: dest_id,
            self.GAPS: gaps_id,
            "POINTS": result.points,
            "GAP_COUNT": len(result.gaps),
            "REQUESTS": sum(summary.requests for summary in result.coverage),
        }
        if report:
            results[self.REPORT] = report
        return results

    def _write_rows(self, source, features, rows, parameters, context) -> str:
        by_id = {feature.id(): feature for feature in features}
        values = [
            [
                row["source"],
                row["status"],
                row["images"],
                row["panoramas"],
                row["image_id"] or None,
                row["distance_m"],
                row["captured"],
                int(row["is_panorama"]) if row["image_id"] else None,
                row["creator"] or None,
                row["licence"] or None,
                row["first_date"],
                row["last_date"],
                " ".join(str(year) for year in row["years"]) or None,
            ]
            for row in rows
        ]
        return self.write_points(
            source, [by_id[row["key"]] for row in rows], SURVEY_FIELDS, values, parameters, context
        )

    def _write_gaps(self, source, features, gap_keys, parameters, context) -> str:
        sink, dest_id = self.parameterAsSink(
            parameters, self.GAPS, context, source.fields(), source.wkbType(), source.sourceCrs()
        )
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.GAPS))
        for feature in features:
            if feature.id() in gap_keys:
                self.write_feature(sink, QgsFeature(feature), parameters, self.GAPS)
        return dest_id


def style_survey_layer(layer) -> None:
    """Each source's points with imagery as rings of its colour, one inside the other (the first
    source's the largest), so that a point covered by several shows each; points without any
    are left out of the drawing (the gaps layer shows them)."""
    infos = imagery_source_infos()
    present = [
        name
        for name in infos
        if name in set(layer.uniqueValues(layer.fields().lookupField("source")))
    ]
    root = QgsRuleBasedRenderer.Rule(None)
    for place, name in enumerate(present):
        size = 1.2 + 1.0 * (len(present) - 1 - place)
        symbol = dot_symbol(infos[name].colour, size)
        rule = QgsRuleBasedRenderer.Rule(
            symbol, 0, 0, f'"source" = \'{name}\' AND "images" > 0', infos[name].title
        )
        root.appendChild(rule)
    layer.setRenderer(QgsRuleBasedRenderer(root))
    layer.triggerRepaint()
