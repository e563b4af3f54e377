"""Processing algorithm ``mus:rerunstudy``."""

from __future__ import annotations

import html
import math
from pathlib import Path

from qgis.core import (
    QgsFeature,
    QgsFields,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsVectorLayer,
)

from ..bridge.qgis_enums import FILE_FOLDER, NUMBER_DOUBLE, make_field
from ..shared.reports import report_start
from .base import MusAlgorithm, attribute_text
from .study_manifest import MANIFEST_NAME, file_of, output_key, read_manifest

COMPARISON_FIELDS = (
    ("step", "int"),
    ("algorithm", "string"),
    ("output", "string"),
    ("verdict", "string"),
    ("features_before", "int"),
    ("features_now", "int"),
    ("features_differing", "int"),
    ("texts_differing", "int"),
    ("largest_difference", "double"),
    ("detail", "string"),
)
MATCH = "match"


class RerunStudy(MusAlgorithm):
    """Run a study's recorded steps again into another folder, and say where the results differ."""

    NAME = "rerunstudy"
    DISPLAY_NAME = "Re-run a study"
    SHORT = (
        "Every step a study's manifest records, run again; which outputs match, and by how much."
    )
    GROUP = "5 · The study"
    GROUP_ID = "study"
    STUDY_STEP = False  # its steps record themselves, in the new folder
    HELP = (
        f"Every run of the plugin that writes files records itself in {MANIFEST_NAME} beside "
        "its outputs: the algorithm, its parameters, the model and the weights' identity, the "
        "label set's hash, the versions. This runs those steps again, in their order, on this "
        "computer, writing into a new folder; a step that read an earlier step's output reads "
        "the new one.\n\n"
        "Then each output layer is compared with the one recorded: the same number of "
        "features, the same texts (labels, ids, statuses), numbers within the tolerance, the "
        "same positions. The table and the report say, per output, match or differs, how many "
        "features differ and the largest difference. Reports and figures are written again but "
        "not compared.\n\n"
        "Inputs are read where the manifest says (copy them to the same place on another "
        "computer). Keys are not in the manifest: give them as for the first run (Service "
        "keys…, or the environment)."
    )

    STUDY = "STUDY"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"
    TOLERANCE = "TOLERANCE"
    OUTPUT = "OUTPUT"
    REPORT = "REPORT"

    def initAlgorithm(self, config=None) -> None:
        """Declare the parameters."""
        self.add_parameter(
            QgsProcessingParameterFile(
                self.STUDY, self.tr("Study manifest"), fileFilter="Study manifest (*.json)"
            )
        )
        self.add_parameter(
            QgsProcessingParameterFile(
                self.OUTPUT_FOLDER, self.tr("Folder for the new outputs"), behavior=FILE_FOLDER
            )
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.TOLERANCE,
                self.tr("Tolerance for numbers"),
                NUMBER_DOUBLE,
                defaultValue=1e-6,
                minValue=0.0,
            ),
            decimals=9,
        )
        self.add_parameter(QgsProcessingParameterFeatureSink(self.OUTPUT, self.tr("Comparison")))
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.REPORT, self.tr("Report"), self.tr("HTML files (*.html)"), optional=True
            )
        )
        for name, label in (
            ("STEPS", "Steps run"),
            ("MATCHING", "Outputs that match"),
            ("DIFFERING", "Outputs that differ or are missing"),
        ):
            self.add_output(QgsProcessingOutputNumber(name, self.tr(label)))

    def processAlgorithm(self, parameters, context, feedback):
        """Run each recorded step into the new folder, then compare what each wrote."""
        from qgis import processing

        manifest_path = Path(self.parameterAsFile(parameters, self.STUDY, context))
        manifest = read_manifest(manifest_path)
        old_folder = manifest_path.parent.resolve()
        new_folder = Path(self.parameterAsFile(parameters, self.OUTPUT_FOLDER, context))
        if not str(new_folder):
            raise QgsProcessingException("Choose a folder for the new outputs.")
        new_folder.mkdir(parents=True, exist_ok=True)
        if new_folder.resolve() == old_folder:
            raise QgsProcessingException(
                "The new outputs would overwrite the study's own: choose another folder."
            )
        tolerance = self.parameterAsDouble(parameters, self.TOLERANCE, context)
        runs = manifest["runs"]
        # What the study's steps wrote: read from the new folder when a later step reads it.
        outputs = {output_key(value) for run in runs for value in run.get("outputs", {}).values()}
        rows = []
        for number, run in enumerate(runs, start=1):
            if feedback.isCanceled():
                break
            algorithm = run.get("algorithm", "")
            feedback.pushInfo(f"Step {number} of {len(runs)}: {algorithm} ...")
            moved = _as_given(_moved(run.get("parameters", {}), old_folder, new_folder, outputs))
            try:
                processing.run(
                    algorithm, moved, context=context, feedback=feedback, is_child_algorithm=True
                )
            except QgsProcessingException as exc:
                failure = [None] * 5 + [" ".join(str(exc).split())[:300]]
                for name in run.get("outputs", {}):
                    rows.append([number, algorithm, name, "failed", *failure])
                feedback.reportError(f"Step {number} ({algorithm}) failed: {exc}")
                continue
            for name, value in run.get("outputs", {}).items():
                old_value = value
                new_value = _moved(value, old_folder, new_folder, outputs)
                rows.append([number, algorithm, name, *_compare(old_value, new_value, tolerance)])
            feedback.setProgress(100.0 * number / max(len(runs), 1))
        fields = QgsFields()
        for name, kind in COMPARISON_FIELDS:
            fields.append(make_field(name, kind))
        sink, dest_id = self.parameterAsSink(parameters, self.OUTPUT, context, fields)
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        for row in rows:
            feature = QgsFeature(fields)
            feature.setAttributes(row)
            self.write_feature(sink, feature, parameters, self.OUTPUT)
        del sink
        compared = [row for row in rows if row[3] != "not compared"]
        matching = sum(1 for row in compared if row[3] == MATCH)
        feedback.pushInfo(
            f"{matching} of {len(compared)} outputs compared match the study's "
            f"(tolerance {tolerance:g})."
        )
        results = {
            self.OUTPUT: dest_id,
            "STEPS": len(runs),
            "MATCHING": matching,
            "DIFFERING": len(compared) - matching,
        }
        report = self.parameterAsFileOutput(parameters, self.REPORT, context)
        if report:
            Path(report).write_text(
                _report(manifest_path, new_folder, rows, tolerance), encoding="utf-8"
            )
            results[self.REPORT] = report
        return results


def _as_given(parameters: dict) -> dict:
    """The recorded parameters as the step was given them: a null was a value left empty
    ('PRETRAINED=' on qgis_process's command line, for random weights), which an empty text
    gives again; left out, it would take the parameter's default."""
    return {name: "" if value is None else value for name, value in parameters.items()}


# A cache in the study's folder is the study's own: the re-run starts its own there, so every
# embedding is computed again.
MOVED_FOLDERS = ("CACHE_FOLDER",)


def _moved(value, old_folder: Path, new_folder: Path, outputs: set, name: str = ""):
    """A recorded value with the study's folder replaced by the new one: the outputs, the inputs
    that were earlier steps' outputs, and a cache folder there. Anything else in the study's
    folder that no step wrote (a file or a model folder someone put there) is an input: it is
    read where it is."""
    if isinstance(value, str):
        for old in {str(old_folder), str(old_folder.resolve())}:
            if old in value:
                key = output_key(value)
                existing = Path(key[0] or value).exists()
                if existing and key not in outputs and name not in MOVED_FOLDERS:
                    return value
                return value.replace(old, str(new_folder))
        return value
    if isinstance(value, list):
        return [_moved(item, old_folder, new_folder, outputs, name) for item in value]
    if isinstance(value, dict):
        return {
            key: _moved(item, old_folder, new_folder, outputs, key) for key, item in value.items()
        }
    return value


def _open(value: str):
    path, table = output_key(value)
    if not path or not Path(path).exists():
        return None
    layer = QgsVectorLayer(f"{path}|layername={table}" if table else path, "compared", "ogr")
    return layer if layer.isValid() else None


def _compare(old_value: str, new_value: str, tolerance: float) -> list:
    """verdict, features before and now, features differing, texts differing, largest number
    difference, detail."""
    if Path(file_of(old_value)).suffix.lower() not in (".gpkg", ".shp", ".geojson", ".csv"):
        return ["not compared", None, None, None, None, None, "a report or figure"]
    old, new = _open(old_value), _open(new_value)
    if old is None or new is None:
        missing = "the study's" if old is None else "the new"
        return ["missing", None, None, None, None, None, f"{missing} output cannot be read"]
    old_features = list(old.getFeatures())
    new_features = list(new.getFeatures())
    names = [n for n in old.fields().names() if n in set(new.fields().names()) and n != "fid"]
    differing, texts, largest = 0, 0, 0.0
    for before, now in zip(old_features, new_features):
        differs = False
        for name in names:
            a, b = before[name], now[name]
            if _is_number(a) and _is_number(b):
                gap = abs(float(a) - float(b))
                if not (math.isnan(float(a)) and math.isnan(float(b))):
                    largest = max(largest, gap)
                    differs = differs or gap > tolerance
            elif attribute_text(a) != attribute_text(b):
                texts += 1
                differs = True
        geometry_a, geometry_b = before.geometry(), now.geometry()
        either = not geometry_a.isNull() or not geometry_b.isNull()
        if either and (
            geometry_a.isNull() != geometry_b.isNull() or not geometry_a.equals(geometry_b)
        ):
            gap = geometry_a.distance(geometry_b) if not geometry_a.isNull() else math.inf
            differs = differs or gap > tolerance
        differing += differs
    lost = set(old.fields().names()) ^ set(new.fields().names())
    detail = f"fields in one only: {', '.join(sorted(lost))}" if lost else ""
    same = len(old_features) == len(new_features) and differing == 0 and not lost
    return [
        MATCH if same else "differs",
        len(old_features),
        len(new_features),
        differing + abs(len(old_features) - len(new_features)),
        texts,
        largest,
        detail,
    ]


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _report(manifest_path: Path, new_folder: Path, rows: list, tolerance: float) -> str:
    compared = [row for row in rows if row[3] != "not compared"]
    matching = sum(1 for row in compared if row[3] == MATCH)
    verdict = (
        "The study is reproduced: every output compared matches."
        if compared and matching == len(compared)
        else f"{len(compared) - matching} of {len(compared)} outputs compared differ."
    )
    parts = [
        report_start("Study re-run", [], style="th{text-align:left}", credits=()),
        f"<p>Study: {html.escape(str(manifest_path))}; new outputs in "
        f"{html.escape(str(new_folder))}; numbers compared within {tolerance:g}.</p>",
        f"<p><b>{html.escape(verdict)}</b></p><table><tr><th>step</th><th>algorithm</th>"
        "<th>output</th><th>verdict</th><th>features</th><th>differing</th>"
        "<th>largest difference</th><th>detail</th></tr>",
    ]
    for step, algorithm, output, verdict_, before, now, differing, _, largest, detail in rows:
        features = "" if before is None else f"{before} → {now}"
        gap = "" if largest is None else f"{largest:.3g}"
        parts.append(
            f"<tr><td>{step}</td><td>{html.escape(algorithm)}</td><td>{html.escape(output)}</td>"
            f"<td>{html.escape(verdict_)}</td><td>{features}</td>"
            f"<td>{'' if differing is None else differing}</td><td>{gap}</td>"
            f"<td>{html.escape(detail or '')}</td></tr>"
        )
    parts.append("</table></body></html>")
    return "".join(parts)
