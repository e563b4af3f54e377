"""The study manifest: every run that wrote files into a folder, so the study re-runs from one file.

Each algorithm run whose outputs are files records itself in ``mus_study.json`` in the folder of
its first output: the algorithm, its parameters as given (layers by their source, dates as ISO
text), its outputs, the run settings a classification reports (model, the weights' identity with
their hash, the label set's hash, torch and open_clip versions), the plugin's and QGIS's
versions. A run that writes the same outputs again replaces its entry, so the file always says
how the folder's current files were made. Re-run study (mus:rerunstudy) reads it.

Nothing secret is recorded: an authentication configuration is named by its id only, and keys
from the environment or Service keys… never reach the parameters.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import tempfile
from pathlib import Path

MANIFEST_NAME = "mus_study.json"
MANIFEST_VERSION = 1


def plain_value(value):
    """A parameter's value as JSON holds it: a layer by its source, a date as ISO text."""
    from qgis.core import (
        QgsMapLayer,
        QgsProcessingFeatureSourceDefinition,
        QgsProcessingOutputLayerDefinition,
        QgsProperty,
    )
    from qgis.PyQt.QtCore import QDate, QDateTime, QVariant

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, QVariant):  # QGIS's NULL (a parameter left empty) is no text "NULL"
        return None if value.isNull() else plain_value(value.value())
    if isinstance(value, (list, tuple)):
        return [plain_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): plain_value(item) for key, item in value.items()}
    if isinstance(value, QgsProcessingOutputLayerDefinition):
        return plain_value(value.sink)
    if isinstance(value, QgsProcessingFeatureSourceDefinition):
        return plain_value(value.source)
    if isinstance(value, QgsProperty):  # a static value, else the expression that gives it
        static = value.staticValue()
        return plain_value(static) if static is not None else value.expressionString()
    if isinstance(value, QgsMapLayer):
        return value.source()
    if isinstance(value, QDateTime):
        return value.toString("yyyy-MM-ddTHH:mm:ss") if value.isValid() else None
    if isinstance(value, QDate):
        return value.toString("yyyy-MM-dd") if value.isValid() else None
    return str(value)


def file_of(value) -> str:
    """The file a parameter or output value names ('' for none): a path, an OGR URI
    ('x.gpkg|layername=y', "ogr:dbname='x.gpkg' table=y")."""
    if not isinstance(value, str) or not value:
        return ""
    text = value
    if text.startswith("ogr:"):
        text = text[4:]
        if "dbname=" in text:
            text = text.split("dbname=", 1)[1].split(" table=")[0].strip().strip("'\"")
    text = text.split("|", 1)[0]
    path = Path(text)
    return str(path) if path.is_absolute() and path.suffix else ""


def output_key(value) -> tuple[str, str]:
    """What an output writes: its file and, in a file of several layers, its layer (every step of
    the demo writes into one GeoPackage, each into its own table)."""
    path = file_of(value)
    text = value if isinstance(value, str) else ""
    layer = ""
    if "layername=" in text:
        layer = text.split("layername=", 1)[1].split("|")[0]
    elif " table=" in text:
        layer = text.split(" table=", 1)[1].split(" (")[0]
    return path, layer.strip().strip("'\"")


def record_run(algorithm, parameters: dict, results: dict, feedback=None) -> Path | None:
    """Record a finished run in the manifest of its first output's folder; None when its outputs
    are no files (memory layers, temporary outputs)."""
    outputs = {
        name: value for name, value in results.items() if isinstance(value, str) and file_of(value)
    }
    if not outputs:
        return None
    folder = Path(file_of(next(iter(outputs.values())))).parent
    entry = {
        "algorithm": algorithm.id(),
        "parameters": {
            name: plain_value(value)
            for name, value in parameters.items()
            if not name.startswith("_")
        },
        "outputs": outputs,
        "recorded_utc": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "versions": _versions(),
    }
    imagery = _imagery_ids(outputs)
    if imagery:
        entry["imagery_ids"] = imagery
    if isinstance(results.get("SETTINGS"), str):
        with contextlib.suppress(ValueError):  # settings that do not read are left out
            entry["settings"] = json.loads(results["SETTINGS"])
    path = folder / MANIFEST_NAME
    manifest = read_manifest(path) if path.exists() else new_manifest()
    written = {output_key(value) for value in outputs.values()}
    manifest["runs"] = [
        run
        for run in manifest["runs"]
        if not written & {output_key(value) for value in run.get("outputs", {}).values()}
    ] + [entry]
    _write_atomic(path, manifest)
    if feedback is not None:
        feedback.pushInfo(f"Recorded in the study manifest {path}.")
    return path


def new_manifest() -> dict:
    return {"mus_qgis_study": MANIFEST_VERSION, "runs": []}


def read_manifest(path: str | Path) -> dict:
    """The manifest, checked enough to be read: a clear error for anything else."""
    from qgis.core import QgsProcessingException

    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, ValueError) as exc:
        raise QgsProcessingException(
            f"The study manifest {path} cannot be read ({exc}): give the {MANIFEST_NAME} that "
            "a run of the study wrote beside its outputs."
        ) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("runs"), list):
        raise QgsProcessingException(
            f"{path} is no study manifest (no list of runs): give the {MANIFEST_NAME} that a "
            "run of the study wrote beside its outputs."
        )
    return manifest


def _versions() -> dict:
    from qgis.core import Qgis

    from ..shared.resources import plugin_version

    return {"mus_qgis": plugin_version(), "qgis": Qgis.version(), "engine": _engine_versions()}


_ENGINE_VERSIONS: dict = {}


def _engine_versions() -> dict:
    """The engine's Python and packages, asked once per QGIS session (a warm worker answers in
    milliseconds: nothing is imported); {} when the engine cannot be asked."""
    if not _ENGINE_VERSIONS:
        from ..bridge.engine import run_job
        from ..shared.schemas.engine import VersionsParams, VersionsResult

        try:
            answer = run_job("versions", VersionsParams(), None, VersionsResult)
        except Exception:  # no engine set up, or an older one: the manifest says nothing
            return {}
        _ENGINE_VERSIONS.update(
            python=answer.python_version,
            **{name: version for name, version in answer.packages.items() if version},
        )
    return dict(_ENGINE_VERSIONS)


def _imagery_ids(outputs: dict) -> list[str]:
    """The images a fetch took ("source:id", sorted), from its output layer: which imagery the
    study read, whatever its files are called."""
    from qgis.core import QgsVectorLayer

    for value in outputs.values():
        path = file_of(value)
        if not path or not path.lower().endswith((".gpkg", ".shp", ".geojson")):
            continue
        _, table = output_key(value)
        uri = f"{path}|layername={table}" if table else path
        layer = QgsVectorLayer(uri, "imagery", "ogr")
        names = layer.fields().names() if layer.isValid() else []
        if "image_id" not in names or "fetch_status" not in names:
            continue
        return sorted(
            {
                f"{feature['source']}:{feature['image_id']}"
                for feature in layer.getFeatures()
                if feature["image_id"] not in (None, "") and str(feature["image_id"]) != "NULL"
            }
        )
    return []


def _write_atomic(path: Path, manifest: dict) -> None:
    handle, temporary = tempfile.mkstemp(prefix=".mus_study.", dir=str(path.parent))
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(manifest, out, indent=1, ensure_ascii=False)
    os.replace(temporary, path)
