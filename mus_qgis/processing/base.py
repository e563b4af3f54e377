"""What every mus algorithm shares: naming, icon, help, and the bridge to the engine."""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from qgis.core import (
    QgsCsException,
    QgsFeature,
    QgsFeatureSink,
    QgsFields,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
)
from qgis.PyQt.QtCore import QCoreApplication, QThread, QUrl
from qgis.PyQt.QtGui import QIcon

from ..bridge.qgis_enums import GEOMETRY_SUCCESS, PARAMETER_ADVANCED, make_field
from ..shared.resources import help_page, resource_path
from ..shared.sequences import zip_same_length

LOG_TAG = "mus_qgis"  # the plugin's tab in QGIS's Log Messages panel


def output_folder(destination: str) -> Path | None:
    """The folder a file output goes to; None for outputs that are no file (memory layers,
    temporary outputs, database connections)."""
    path = (destination or "").removeprefix("ogr:").split("|", 1)[0].strip()
    if not path or path.startswith("memory:") or path == "TEMPORARY_OUTPUT" or "=" in path:
        return None
    return Path(path).parent if Path(path).is_absolute() else None


# The frames QGIS keeps of failed runs (see releasing_failures), emptied once they have returned.
_KEPT_FRAMES: list = []
_KEPT_LOCK = threading.Lock()
_SUSPENDABLE = (
    inspect.CO_GENERATOR
    | inspect.CO_COROUTINE
    | inspect.CO_ASYNC_GENERATOR
    | inspect.CO_ITERABLE_COROUTINE
)


def releasing_failures(method):
    """``method`` (a prepareAlgorithm or processAlgorithm) whose QgsProcessingException reaches
    QGIS holding nothing of the failed run.

    QGIS's Python bindings never let go of a QgsProcessingException that a Python algorithm
    raises (python/core/core.sip.in, processing_exception_handler: PyErr_Fetch with no matching
    decrefs; QGIS 3.22 to 3.44 at least), nor of its traceback: every frame of the run stayed
    alive with its locals (input layers, feature sources, sinks with their GeoPackages open), and
    through f_back so did the frames that called it (processing.run's, a dialog's, a script's,
    a test's). The desktop kept them until it quit; the headless tests' process crashed at exit,
    when Python deleted a kept GeoPackage layer after QgsApplication.exitQgis had closed GDAL.

    So the exception raised inside is let go here (its frames with it), and QGIS gets a new one
    with the same message, raised from this frame emptied of the run's parameters, context and
    feedback, with no chained exception. This frame and its callers are still kept by QGIS:
    release_failed_runs empties them once they have returned (at the next run, and when the
    provider is unloaded). Other exceptions (bugs) take QGIS's traceback path, which frees them.
    """

    @functools.wraps(method)
    def run(self, parameters, context, feedback):
        release_failed_runs()
        try:
            result = method(self, parameters, context, feedback)
            if method.__name__ == "processAlgorithm":
                if self.STUDY_STEP:
                    _record_in_study(self, parameters, result, feedback)
                if feedback is not None:
                    feedback.setProgress(100)  # the run's end, and only then (see ENGINE_SHARE)
            return result
        except QgsProcessingException as exc:
            message = str(exc)
        del self, parameters, context, feedback
        with _KEPT_LOCK:
            _KEPT_FRAMES.append(sys._getframe())
        raise QgsProcessingException(message)

    return run


def _record_in_study(algorithm, parameters, results, feedback) -> None:
    """The run in its output folder's study manifest; a manifest that cannot be written costs a
    warning, never the run's results."""
    from .study_manifest import record_run

    try:
        record_run(algorithm, parameters, results or {}, feedback)
    except Exception as exc:  # an unwritable folder, a damaged manifest: the outputs stand
        if feedback is not None:
            feedback.pushWarning(f"The study manifest was not updated: {exc}")


def release_failed_runs() -> None:
    """Empty the frames QGIS keeps of failed runs, from the failing one up through its callers,
    of those that have returned (a frame still running keeps its callers running too: it waits
    for the next call). A generator's frame is left as it is: clearing it would close it. Only on
    the main thread, where the layers and widgets the frames hold live: a task's run leaves them
    for a later call there."""
    application = QCoreApplication.instance()
    if application is None or QThread.currentThread() is not application.thread():
        return
    with _KEPT_LOCK:
        kept = _KEPT_FRAMES[:]
        _KEPT_FRAMES.clear()
    running = []
    for frame in kept:
        while frame is not None and not frame.f_code.co_flags & _SUSPENDABLE:
            back = frame.f_back
            try:
                frame.clear()
            except RuntimeError:  # still executing
                running.append(frame)
                break
            frame = back
    with _KEPT_LOCK:
        _KEPT_FRAMES.extend(running)


@functools.lru_cache(maxsize=1)
def _parameter_helps() -> dict:
    with open(resource_path("help", "parameters.json"), encoding="utf-8") as handle:
        return json.load(handle)


def parameter_help(algorithm_name: str, parameter_name: str) -> str:
    """A parameter's help (its tooltip, and a line on the Help page), kept as data so that its
    label can stay short enough for the dialog's default width: the algorithm's own entry, else
    the one every algorithm with that parameter shares."""
    helps = _parameter_helps()
    own = helps.get(algorithm_name, {})
    return own.get(parameter_name) or helps["*"].get(parameter_name, "")


def help_url(algorithm_name: str) -> str:
    """The file URL of an algorithm's help page, wherever the plugin is installed ("" when the
    pages were not built)."""
    page = help_page(algorithm_name)
    return QUrl.fromLocalFile(str(page)).toString() if page.is_file() else ""


class MusAlgorithm(QgsProcessingAlgorithm):
    """Base of the plugin's algorithms; subclasses set ``NAME``, ``DISPLAY_NAME``, ``GROUP``."""

    def __init_subclass__(cls, **kwargs) -> None:
        """Each algorithm's own prepareAlgorithm and processAlgorithm release a failed run."""
        super().__init_subclass__(**kwargs)
        for name in ("prepareAlgorithm", "processAlgorithm"):
            if name in cls.__dict__:
                setattr(cls, name, releasing_failures(cls.__dict__[name]))

    NAME = ""
    DISPLAY_NAME = ""
    # Whether a run is a step of a study, recorded in its output folder's manifest (not the
    # engine's set-up, a status check or a re-run, whose own steps record themselves).
    STUDY_STEP = True
    SHORT = ""  # one sentence: the toolbox's tooltip
    GROUP = ""
    GROUP_ID = ""
    HELP = ""

    def name(self) -> str:
        """Algorithm id without the provider prefix."""
        return self.NAME

    @staticmethod
    def require_engine() -> None:
        """Stop at once, saying how to set one up, when there is no engine to send the work to
        (before reading any input: a layer read for nothing is time lost)."""
        from ..bridge.engine import engine_python

        engine_python()

    def displayName(self) -> str:
        """Name shown in the toolbox."""
        return self.tr(self.DISPLAY_NAME)

    def group(self) -> str:
        """Toolbox group."""
        return self.tr(self.GROUP)

    def groupId(self) -> str:
        """Toolbox group id."""
        return self.GROUP_ID

    def shortDescription(self) -> str:
        """One sentence, shown as the toolbox's tooltip."""
        return self.tr(self.SHORT)

    def shortHelpString(self) -> str:
        """Help shown beside the parameters."""
        return self.tr(self.HELP)

    def helpUrl(self) -> str:
        """The algorithm's page shipped with the plugin (the dialog's Help button opens it)."""
        return help_url(self.NAME)

    def icon(self) -> QIcon:
        """Algorithm icon (the provider's)."""
        return QIcon(str(resource_path("icons", "mus.svg")))

    def tr(self, text: str) -> str:
        """Translate a string in this algorithm's context."""
        return QCoreApplication.translate(type(self).__name__, text)

    def createInstance(self):
        """A fresh instance, as Processing asks for one per run."""
        return type(self)()

    def checkParameterValues(self, parameters, context):
        """A number or choice out of range said with its range, QGIS's checks, then: every file
        output can go where it is asked to (its folder exists or can be made), said before any
        work rather than after it."""
        problem = self.range_problem(parameters)
        if problem:
            return False, problem
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        for definition, folder in self._missing_output_folders(parameters, context):
            existing = next(p for p in (folder, *folder.parents) if p.exists())
            if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
                why = "a file" if not existing.is_dir() else "read-only"
                return False, (
                    f"The folder {folder} for '{definition.description()}' does not exist and "
                    f"cannot be made ({existing} is {why}): choose another place for the output."
                )
        return True, ""

    def range_problem(self, parameters) -> str:
        """A number or choice outside its range, said with its name, range and value.

        QGIS's own check says only "Incorrect parameter value for TOP_K"; this one runs first.
        Values that are not plain numbers (expressions, layers) are left to QGIS.
        """
        for definition in self.parameterDefinitions():
            name = definition.name()
            value = parameters.get(name)
            if value is None or isinstance(value, bool):
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            label = f"{name} ({definition.description()})"
            if isinstance(definition, QgsProcessingParameterNumber):
                low, high = definition.minimum(), definition.maximum()
                if not low <= number <= high:
                    return f"{label} must be {_range_words(low, high)}, not {_shown(number)}."
            elif isinstance(definition, QgsProcessingParameterEnum):
                count = len(definition.options())
                if number != int(number) or not 0 <= number < count:
                    choices = "; ".join(f"{i}: {o}" for i, o in enumerate(definition.options()))
                    return f"{label} must be one of 0 to {count - 1} ({choices}), not {value}."
        return ""

    @releasing_failures
    def prepareAlgorithm(self, parameters, context, feedback) -> bool:
        """Make the folder of every file output that is missing, and say so."""
        for definition, folder in self._missing_output_folders(parameters, context):
            try:
                folder.mkdir(parents=True)
            except OSError as exc:
                raise QgsProcessingException(
                    f"The folder {folder} for '{definition.description()}' cannot be made "
                    f"({exc.strerror}): choose another place for the output."
                ) from None
            if feedback is not None:
                feedback.pushInfo(f"Made the output folder {folder}.")
        return True

    def _missing_output_folders(self, parameters, context):
        """(parameter, folder) for each file output whose folder does not exist yet."""
        for definition in self.destinationParameterDefinitions():
            folder = output_folder(self.parameterAsString(parameters, definition.name(), context))
            if folder is not None and not folder.is_dir():
                yield definition, folder

    def add_parameter(
        self, parameter, *, advanced: bool = False, decimals: int | None = None
    ) -> None:
        """Declare a parameter (under the dialog's "Advanced" section when ``advanced``;
        ``decimals``: how many the dialog shows, so 20 m reads "20", not "20.000000").

        QGIS's addParameter returns False and drops the parameter when its name is taken: a
        mistake in this plugin, said at once rather than found as a missing input later."""
        if advanced:
            parameter.setFlags(parameter.flags() | PARAMETER_ADVANCED)
        help_text = parameter_help(self.NAME, parameter.name())
        if help_text:
            parameter.setHelp(self.tr(help_text))
        if decimals is not None:
            metadata = parameter.metadata()
            metadata.setdefault("widget_wrapper", {})["decimals"] = decimals
            parameter.setMetadata(metadata)
        if not self.addParameter(parameter):
            raise RuntimeError(f"{self.NAME}: a second parameter named {parameter.name()}")

    def add_advanced_parameters(self, parameters) -> None:
        """Add parameters under the dialog's "Advanced" section."""
        for parameter in parameters:
            self.add_parameter(parameter, advanced=True)

    def add_output(self, output) -> None:
        """Declare an output (addOutput, like addParameter, refuses a name already taken)."""
        if not self.addOutput(output):
            raise RuntimeError(f"{self.NAME}: a second output named {output.name()}")

    def required_source(self, parameters, name: str, context):
        """The feature source of parameter ``name``, or QGIS's own error naming it."""
        source = self.parameterAsSource(parameters, name, context)
        if source is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, name))
        return source

    def write_points(
        self, source, features, output_fields, rows, parameters, context, replaced=None
    ) -> str:
        """OUTPUT: the input points with their own fields, less those ``replaced`` (by default
        the ones named in ``output_fields``, so a second run replaces them rather than clashing),
        then ``output_fields`` ((name, kind) pairs) with the values in ``rows``, one list a
        feature. ``source``: a feature source or a layer. Returns the output's id, closed."""
        names = {name for name, _ in output_fields}
        replaced = replaced or names.__contains__
        kept = [i for i, f in enumerate(source.fields()) if not replaced(f.name())]
        fields = QgsFields()
        for index in kept:
            fields.append(source.fields().at(index))
        for name, kind in output_fields:
            fields.append(make_field(name, kind))
        sink, dest_id = self.parameterAsSink(
            parameters, self.OUTPUT, context, fields, source.wkbType(), source.sourceCrs()
        )
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        for feature, values in zip_same_length(features, rows):
            out = QgsFeature(fields)
            out.setGeometry(feature.geometry())
            attributes = feature.attributes()
            out.setAttributes([attributes[i] for i in kept] + list(values))
            self.write_feature(sink, out, parameters, self.OUTPUT)
        del sink  # closing the sink writes the file, so that its metadata can be saved next
        return dest_id

    def write_feature(self, sink, feature, parameters, sink_name: str) -> None:
        """Add a feature to an output, stopping with QGIS's own message (the sink's error: a full
        disk, a read-only folder, a field the format cannot hold) when it is refused."""
        if not sink.addFeature(feature, QgsFeatureSink.Flag.FastInsert):
            raise QgsProcessingException(self.writeFeatureError(sink, parameters, sink_name))

    def field_index(
        self,
        source,
        parameters,
        name,
        context,
        *,
        what: str,
        required=False,
        candidates=(),
        layer: str = "input layer",
    ) -> int:
        """Index in ``source`` of the field chosen for parameter ``name``; -1 when none applies.

        An optional field left at its default is skipped when the layer lacks it (a bearing field
        named ``bearing`` is a suggestion, not a demand); one the user chose and the layer lacks is
        an error. With no field chosen, the first of ``candidates`` the layer has (any case) is
        taken. Errors name the layer's fields, since the usual cause is picking the wrong layer.
        """
        # parameterAsStrings (QGIS 3.32+) replaces parameterAsFields, deprecated since.
        as_strings = getattr(self, "parameterAsStrings", None) or self.parameterAsFields
        chosen = as_strings(parameters, name, context)
        wanted = chosen[0] if chosen and chosen[0] else ""
        fields = source.fields()
        if wanted:
            index = fields.lookupField(wanted)
            if index >= 0:
                return index
            if not required and wanted == self.parameterDefinition(name).defaultValue():
                return -1
        else:
            index = find_field(fields, candidates)
            if index >= 0 or not required:
                return index
        looked_for = repr(wanted) if wanted else " or ".join(candidates) or "(none chosen)"
        offered = ", ".join(field.name() for field in fields) or "none"
        raise QgsProcessingException(
            f"The {layer} has no field {looked_for} for the {what}. Its fields: {offered}."
        )


class LayerStyler(QgsProcessingLayerPostProcessorInterface):
    """Applies a style function to an output once QGIS has loaded it (on the main thread).

    QGIS calls it after the algorithm object is gone, and sip would delete a styler nobody holds:
    the class keeps the latest ones alive.
    """

    _alive: ClassVar[list[LayerStyler]] = []

    def __init__(self, style: Callable) -> None:
        super().__init__()
        self._style = style

    def postProcessLayer(self, layer, context, feedback):
        """Apply the style."""
        self._style(layer)


def style_on_load(context, dest_id: str, style: Callable) -> None:
    """Style the output ``dest_id`` with ``style(layer)`` if QGIS will load it."""
    if context.willLoadLayerOnCompletion(dest_id):
        styler = LayerStyler(style)
        LayerStyler._alive = [*LayerStyler._alive[-63:], styler]
        context.layerToLoadOnCompletionDetails(dest_id).setPostProcessor(styler)


# The Layers panel is about 260 pixels wide in a default profile, and a legend entry sits three
# levels deep in a demo's groups: longer lines are cut.
LEGEND_WIDTH = 24


def legend_text(text: str) -> str:
    """A legend entry broken into lines that fit the Layers panel (Urban Atlas names run to 66
    characters); the attribute values and the labels themselves keep their one-line form."""
    return textwrap.fill(text, LEGEND_WIDTH, break_long_words=False, break_on_hyphens=False)


def dot_symbol(colour: str, size: float = 1.2, sized_by: str = "", largest: float = 4.0):
    """The plugin's dot: a circle with a thin dark rim, of a fixed size, or sized by a field
    across the layer's range (1.2 to ``largest`` mm), as in the study's dot maps. The rim is
    dark so that a dot stays visible on a grid cell of its own label's colour, and on a light
    basemap."""
    from qgis.core import QgsMarkerSymbol, QgsProperty

    from ..bridge.qgis_enums import SYMBOL_SIZE

    symbol = QgsMarkerSymbol.createSimple(
        {"name": "circle", "color": colour, "outline_color": "#303030", "outline_width": "0.15"}
    )
    symbol.setSize(size)
    if sized_by:
        field = f'"{sized_by}"'
        expression = (
            f"coalesce(scale_linear({field}, minimum({field}), maximum({field}), {size}, "
            f"{largest}), {size})"
        )
        symbol.symbolLayer(0).setDataDefinedProperty(
            SYMBOL_SIZE, QgsProperty.fromExpression(expression)
        )
    return symbol


def first_layer_with(fields: tuple[str, ...], geometry=None) -> str | None:
    """The id of the first vector layer of the open project, in the Layers panel's order, that
    has every one of ``fields`` (and that geometry type, when given): a dialog's default input,
    so that it opens on a layer it can read rather than on whichever layer comes first."""
    from qgis.core import QgsProject, QgsVectorLayer

    for node in QgsProject.instance().layerTreeRoot().findLayers():
        layer = node.layer()
        if not isinstance(layer, QgsVectorLayer) or not layer.isValid():
            continue
        if geometry is not None and layer.geometryType() != geometry:
            continue
        if all(layer.fields().lookupField(name) >= 0 for name in fields):
            return layer.id()
    return None


def project_in_place(geometry, transform, what: str) -> None:
    """Transform ``geometry`` in place; a failure stops the run with a message naming ``what``
    (coordinates outside the layer's CRS, most often a layer whose CRS is set wrong)."""
    target = transform.destinationCrs().authid()
    try:
        result = geometry.transform(transform)
    except QgsCsException as error:
        raise QgsProcessingException(
            f"{what} could not be projected to {target} ({error}); check the layer's CRS."
        ) from error
    if result != GEOMETRY_SUCCESS:
        raise QgsProcessingException(
            f"{what} could not be projected to {target} ({result}); check the layer's CRS."
        )


def attribute_text(value) -> str:
    """An attribute as text; "" for NULL (QGIS's NULL reads as the text "NULL")."""
    return "" if value is None or str(value) in ("", "NULL") else str(value)


def attribute_number(value):
    """An attribute as a number; None for NULL, text that is no number, and NaN."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else number


def find_field(fields, candidates) -> int:
    """Index of the first of ``candidates`` among ``fields``, compared case-blind; -1 if none."""
    by_lower_name = {field.name().lower(): i for i, field in enumerate(fields)}
    for candidate in candidates:
        if candidate.lower() in by_lower_name:
            return by_lower_name[candidate.lower()]
    return -1


def qgis_proxies() -> dict[str, str] | None:
    """The proxy set in QGIS's options, as a requests ``proxies`` mapping (None without one)."""
    from urllib.parse import quote

    from qgis.core import QgsSettings

    settings = QgsSettings()
    if str(settings.value("proxy/proxyEnabled", False)).lower() not in ("true", "1"):
        return None
    host = str(settings.value("proxy/proxyHost", "") or "")
    if not host:
        return None
    port = str(settings.value("proxy/proxyPort", "") or "")
    user = str(settings.value("proxy/proxyUser", "") or "")
    password = str(settings.value("proxy/proxyPassword", "") or "")
    kind = str(settings.value("proxy/proxyType", "HttpProxy") or "HttpProxy")
    scheme = "socks5h" if "Socks" in kind else "http"
    login = f"{quote(user)}:{quote(password)}@" if user else ""
    address = f"{scheme}://{login}{host}{':' + port if port else ''}"
    return {"http": address, "https": address}


def metric_crs(
    algorithm, source, parameters, name: str, context, what="CRS", measured="the distances are"
):
    """The projected CRS in metres chosen in parameter ``name``, or the UTM zone of the source's
    centre; a geographic or non-metre CRS is refused with what to choose."""
    import math

    from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsUnitTypes

    crs = algorithm.parameterAsCrs(parameters, name, context)
    if crs.isValid():
        if crs.isGeographic():
            raise QgsProcessingException(
                f"The {what} {crs.authid() or crs.description()} is geographic (degrees): "
                "choose a projected CRS in metres, or leave it empty for the points' UTM zone."
            )
        # The unit's name, not its enum, which moved between QGIS versions.
        if QgsUnitTypes.encodeUnit(crs.mapUnits()) != "meters":
            raise QgsProcessingException(
                f"The {what} {crs.authid() or crs.description()} is not in metres, and "
                f"{measured}: choose a projected CRS in metres, or leave it empty for the points' "
                "UTM zone."
            )
        return crs
    extent = source.sourceExtent()
    to_wgs84 = QgsCoordinateTransform(
        source.sourceCrs(),
        QgsCoordinateReferenceSystem("EPSG:4326"),
        context.transformContext(),
    )
    centre = to_wgs84.transform(extent.center())
    zone = math.floor((centre.x() + 180) / 6) % 60 + 1
    return QgsCoordinateReferenceSystem(f"EPSG:{(32600 if centre.y() >= 0 else 32700) + zone}")


def _shown(number: float) -> str:
    return f"{number:g}"


def _range_words(low: float, high: float) -> str:
    """ "1 to 10", or "at least 1" where QGIS's number has no upper bound (its default bounds
    are the doubles' extremes), "at most 10" where it has no lower one."""
    unbounded = sys.float_info.max / 2
    if high >= unbounded and low <= -unbounded:
        return "a number"
    if high >= unbounded:
        return f"at least {_shown(low)}"
    if low <= -unbounded:
        return f"at most {_shown(high)}"
    return f"{_shown(low)} to {_shown(high)}"
