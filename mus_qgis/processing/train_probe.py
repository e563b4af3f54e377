"""Processing algorithm ``mus:trainprobe``."""

from __future__ import annotations

import html
import json
from functools import partial

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterVectorLayer,
)

from ..bridge.engine import job_file, run_job
from ..bridge.layer_settings import classification_settings
from ..bridge.qgis_enums import (
    FIELD_NUMERIC,
    FIELD_STRING,
    FILE_FOLDER,
    GEOMETRY_POINT,
    NUMBER_DOUBLE,
    VECTOR_POINT,
)
from ..shared.defaults import DEVICES
from ..shared.schemas.clip import ProbeReport, TrainProbeParams, TrainProbeResult
from .base import MusAlgorithm, first_layer_with, style_on_load
from .classify_clip import (
    _number,
    _save_metadata,
    style_classified_layer,
)
from .clip_parameters import ClipParameters

DEFAULT_REGULARISATION = 0.3  # the engine's probe.DEFAULT_REGULARISATION (QGIS imports no torch)


class TrainProbe(ClipParameters, MusAlgorithm):
    """Teach the model with corrected points: a probe on stored embeddings re-scores them all."""

    NAME = "trainprobe"
    DISPLAY_NAME = "Train a probe on corrected points"
    SHORT = "Corrected labels teach a probe that re-scores every point of a classified layer."
    GROUP = "3 · Classification"
    GROUP_ID = "classification"
    HELP = (
        "Takes a layer classified by CLIP-classify in which some points have their right label "
        "in a text field (label_user, as the street inspector writes it; empty means not "
        "corrected), and fits a probe on the corrected points' image embeddings: a logistic "
        "regression on the normalised embeddings that starts from the zero-shot classifier "
        "(the model's logit scale times the label set's text embeddings) and is pulled back "
        "toward it (Regularisation: higher stays nearer zero-shot), so a few corrections per "
        "label suffice. The embeddings are read from the store in the cache folder, found by "
        "each point's image paths: no image is read, and the model only encodes the prompts.\n\n"
        "The label set, model, weights and views are those the layer's run settings record; "
        "a label file or checkpoint file must be given again. So are the fields of the image "
        "paths, street bearing and panorama heading, and the folder relative paths start "
        "from (advanced: each can be overridden, e.g. for a copy whose fields were renamed). "
        "A label_user value that is not a label of the set stops the run, naming it; fewer "
        "than two labels corrected too. A corrected point without a stored embedding is left "
        "out of training and said.\n\n"
        "Accuracy: cross-validated on the corrected points (leave-one-out up to 40 points, "
        "else 5 stratified folds), beside zero-shot's on the same points, in the log and the "
        "report.\n\n"
        "Output: the layer with probe_label_1..k, probe_code_1, probe_prob_1..k, probe_margin, "
        "probe_scored_by and probe_status added (the zero-shot fields kept), coloured by "
        "probe_label_1. A corrected point is scored by the cross-validation probe that was "
        "trained without it, never by one that saw it. The probe is saved (.npz, with a .json "
        "beside it to read) next to the embedding store unless a file is given, with its label "
        "set, model, views, regularisation and the points it was trained on; CLIP-classify "
        "can score with it instead of the prompts (Trained probe)."
    )

    INPUT = "INPUT"
    LABEL_FIELD = "LABEL_FIELD"
    REGULARISATION = "REGULARISATION"
    OUTPUT = "OUTPUT"
    PROBE = "PROBE"
    REPORT = "REPORT"

    def initAlgorithm(self, config=None) -> None:
        """Declare the parameters."""
        self.add_parameter(
            QgsProcessingParameterVectorLayer(
                self.INPUT,
                self.tr("Classified points (CLIP-classify output)"),
                [VECTOR_POINT],
                defaultValue=first_layer_with(("label_1",), GEOMETRY_POINT),
            )
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.LABEL_FIELD,
                self.tr("Corrected label field"),
                defaultValue="label_user",
                parentLayerParameterName=self.INPUT,
                type=FIELD_STRING,
                optional=True,
            )
        )
        self.add_parameter(self.top_k_parameter())
        self.add_advanced_parameters(
            [
                QgsProcessingParameterNumber(
                    self.REGULARISATION,
                    self.tr("Regularisation toward zero-shot"),
                    NUMBER_DOUBLE,
                    defaultValue=DEFAULT_REGULARISATION,
                    minValue=1e-6,
                    maxValue=1e6,
                ),
                # Empty: what the classification read (the run settings), as the inspector does.
                QgsProcessingParameterField(
                    self.IMAGE_FIELD,
                    self.tr("Image path field"),
                    parentLayerParameterName=self.INPUT,
                    type=FIELD_STRING,
                    optional=True,
                ),
                QgsProcessingParameterField(
                    self.BEARING_FIELD,
                    self.tr("Street bearing field"),
                    parentLayerParameterName=self.INPUT,
                    type=FIELD_NUMERIC,
                    optional=True,
                ),
                QgsProcessingParameterField(
                    self.HEADING_FIELD,
                    self.tr("Panorama heading field"),
                    parentLayerParameterName=self.INPUT,
                    type=FIELD_NUMERIC,
                    optional=True,
                ),
                QgsProcessingParameterFile(
                    self.IMAGE_FOLDER,
                    self.tr("Image folder"),
                    behavior=FILE_FOLDER,
                    optional=True,
                ),
                QgsProcessingParameterFile(
                    self.LABEL_FILE,
                    self.tr("Classification's label file"),
                    optional=True,
                    fileFilter="Label files (*.txt *.csv *.tsv)",
                ),
                QgsProcessingParameterFile(
                    self.CHECKPOINT,
                    self.tr("Classification's checkpoint"),
                    optional=True,
                    fileFilter="Checkpoints (*.pt *.pth *.bin *.safetensors)",
                ),
                QgsProcessingParameterEnum(
                    self.DEVICE, self.tr("Device"), options=list(DEVICES), defaultValue=0
                ),
                self.cache_parameter(),
            ]
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT, self.tr("Re-scored points"), VECTOR_POINT
            )
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.PROBE,
                self.tr("Probe file"),
                self.tr("Probe files (*.npz)"),
                optional=True,
                createByDefault=False,
            )
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.REPORT, self.tr("Report"), self.tr("HTML files (*.html)"), optional=True
            )
        )
        self.add_output(
            QgsProcessingOutputNumber("PROBE_ACCURACY", self.tr("Probe accuracy, cross-validated"))
        )
        self.add_output(
            QgsProcessingOutputNumber(
                "ZERO_SHOT_ACCURACY", self.tr("Zero-shot accuracy on the same points")
            )
        )
        self.add_output(QgsProcessingOutputString("PROBE_FILE", self.tr("Probe file written")))
        self.add_output(
            QgsProcessingOutputNumber("UNTRAINED", self.tr("1 when the model's weights are random"))
        )

    def processAlgorithm(self, parameters, context, feedback):
        """Send the corrected points to the engine to train on, then write the re-scored points."""
        self.require_engine()
        import numpy as np

        layer = self.parameterAsVectorLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, self.INPUT))
        settings = classification_settings(layer)
        if not settings:
            raise QgsProcessingException(
                f"{layer.name()} carries no CLIP-classify run settings: train the probe on a "
                "layer that CLIP-classify wrote (or its GeoPackage)."
            )
        label_index = self.field_index(
            layer,
            parameters,
            self.LABEL_FIELD,
            context,
            what="corrected labels",
            required=True,
            candidates=("label_user",),
        )
        rows, features = self.locations(
            layer, recorded_fields(self, parameters, settings, layer), context
        )
        labels = [features_value(f, label_index) for f in features]
        ids = [str(f.id()) for f in features]
        points_file, output = job_file(".json"), job_file(".npz")
        with open(points_file, "w", encoding="utf-8") as handle:
            json.dump({"rows": rows, "labels": labels, "ids": ids}, handle)
        result = run_job(
            "train_probe",
            TrainProbeParams(
                points=points_file,
                settings=settings,
                label_file=self.parameterAsFile(parameters, self.LABEL_FILE, context),
                checkpoint=self.parameterAsFile(parameters, self.CHECKPOINT, context),
                device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
                cache_dir=self.cache_folder(parameters, context),
                regularisation=self.parameterAsDouble(parameters, self.REGULARISATION, context),
                top_k=self.parameterAsInt(parameters, self.TOP_K, context),
                probe=self.parameterAsFileOutput(parameters, self.PROBE, context),
                output=output,
            ),
            feedback,
            TrainProbeResult,
        )
        report = result.report
        if report.untrained:
            feedback.reportError(
                self.tr("Untrained model: the accuracies and labels below mean nothing."),
                fatalError=False,
            )
        label_set = _label_set_of(settings, parameters, self, context)
        with np.load(output, allow_pickle=False) as scores:
            dest_id = self._write(layer, features, dict(scores), label_set, parameters, context)
        settings = dict(settings, probe=result.summary.to_dict())
        _save_metadata(dest_id, settings, feedback)
        style_on_load(
            context,
            dest_id,
            partial(_style_probe_layer, label_set=label_set, settings=settings),
        )
        results = {
            self.OUTPUT: dest_id,
            "PROBE_ACCURACY": report.probe_accuracy,
            "ZERO_SHOT_ACCURACY": report.zero_shot_accuracy,
            "PROBE_FILE": result.probe,
            "UNTRAINED": int(bool(report.untrained)),
            self.PROBE: result.probe,
        }
        path = self.parameterAsFileOutput(parameters, self.REPORT, context)
        if path:
            with open(path, "w", encoding="utf-8") as out:
                out.write(report_html(report, result.probe, settings))
            results[self.REPORT] = path
        return results

    def _write(self, layer, features, scores, label_set, parameters, context) -> str:
        k = scores["top_index"].shape[1]
        ours = [(f"probe_label_{i}", "string") for i in range(1, k + 1)]
        ours += [("probe_code_1", "string")]
        ours += [(f"probe_prob_{i}", "double") for i in range(1, k + 1)]
        ours += [("probe_margin", "double"), ("probe_scored_by", "string")]
        ours += [("probe_status", "string")]
        labels = label_set.labels
        rows = []
        for row in range(len(features)):
            top = [int(i) for i in scores["top_index"][row]]
            values = [labels[i].text if i >= 0 else None for i in top]
            values.append(labels[top[0]].code or None if top[0] >= 0 else None)
            values += [_number(v) for v in scores["probability"][row]]
            values += [
                _number(scores["margin"][row]),
                str(scores["scored_by"][row]) or None,
                str(scores["status"][row]),
            ]
            rows.append(values)
        # Training again replaces the probe's fields (any k) instead of clashing with them.
        return self.write_points(
            layer,
            features,
            ours,
            rows,
            parameters,
            context,
            replaced=lambda name: name.startswith("probe_"),
        )


def recorded_fields(algorithm, parameters, settings: dict, layer) -> dict:
    """``parameters`` with the image, bearing and heading fields and the image folder that the
    classification read (its run settings, as the street inspector reads them) where none is
    given: the stored embeddings are found by the same paths and views. A layer classified
    before the settings recorded them: the classification's defaults."""
    names = layer.fields().names()
    given = dict(parameters)
    for name, key, default in (
        (algorithm.IMAGE_FIELD, "image_field", "image_paths"),
        (algorithm.BEARING_FIELD, "bearing_field", "bearing"),
        (algorithm.HEADING_FIELD, "heading_field", "image_heading"),
        (algorithm.IMAGE_FOLDER, "image_folder", ""),
    ):
        if given.get(name) not in (None, "", []):
            continue  # the user's override
        recorded = settings.get(key)
        if recorded is None:
            recorded = default if name == algorithm.IMAGE_FIELD or default in names else ""
        given[name] = recorded
    return given


def features_value(feature, index: int):
    value = feature.attributes()[index]
    return None if value is None or str(value) in ("", "NULL") else str(value)


def _label_set_of(settings: dict, parameters, algorithm, context):
    """The label set the classification used (for label texts, codes and colours)."""
    from ..shared.labels import builtin_label_set, read_label_file

    templates = settings.get("templates") or None
    path = algorithm.parameterAsFile(parameters, algorithm.LABEL_FILE, context)
    if path:
        return read_label_file(path, templates)
    return builtin_label_set(settings["label_set"], templates)


def _style_probe_layer(layer, label_set, settings) -> None:
    """The classification's style and settings, coloured by the probe's first label."""
    style_classified_layer(layer, label_set, settings, field="probe_label_1")


def report_html(report: ProbeReport, probe_path: str, settings: dict) -> str:
    """The probe's cross-validated accuracy beside zero-shot's, what it learnt from, and where
    it is saved; a banner when the weights are random."""
    parts = [
        "<html><head><meta charset='utf-8'><title>Trained probe</title><style>"
        "body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}"
        ".warning{background:#fde0dd;border:2px solid #d7301f;padding:6px 10px}</style></head>"
        "<body><h1>Trained probe</h1>"
    ]
    if report.untrained:
        parts.append(
            "<p class='warning'><b>Random weights.</b> The model has untrained weights: these "
            "accuracies and the probe's labels say nothing about the images.</p>"
        )
    title = settings.get("label_set_title") or settings.get("label_set", "")
    parts.append(
        f"<p>Label set: {html.escape(title)}. Model: {html.escape(report.model_identity)}. "
        f"Regularisation: {report.regularisation:g}.</p>"
        f"<h2>Accuracy on the {report.points} corrected points</h2>"
        f"<p>Cross-validated ({html.escape(report.method)}): every point is predicted by a "
        "probe trained without it.</p><table><tr><th></th><th>accuracy</th></tr>"
        f"<tr><td>probe</td><td>{report.probe_accuracy:.1%}</td></tr>"
        f"<tr><td>zero-shot (the prompts)</td><td>{report.zero_shot_accuracy:.1%}</td></tr>"
        "</table><h2>Corrections per label</h2><table>"
    )
    for label, count in report.examples_per_label.items():
        parts.append(f"<tr><td>{html.escape(label)}</td><td>{count}</td></tr>")
    parts.append("</table>")
    if report.left_out:
        parts.append(
            f"<h2>Left out of training ({len(report.left_out)})</h2><ul>"
            + "".join(
                f"<li>point {html.escape(item.point)}: {html.escape(item.why)}</li>"
                for item in report.left_out
            )
            + "</ul>"
        )
    parts.append(
        f"<p>{report.scored} of {report.locations} points re-scored. Probe saved to "
        f"{html.escape(probe_path)}.</p></body></html>"
    )
    return "".join(parts)
