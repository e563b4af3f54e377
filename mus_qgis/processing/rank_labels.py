"""Processing algorithm ``mus:ranklabels``."""

from __future__ import annotations

import html

from qgis.core import (
    QgsFeature,
    QgsFields,
    QgsProcessingException,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterString,
)

from ..bridge.engine import job_file, run_job
from ..bridge.layer_settings import classification_settings
from ..bridge.qgis_enums import VECTOR_ANY_GEOMETRY, VECTOR_POINT, WKB_NO_GEOMETRY, make_field
from ..shared.labels import builtin_label_sets
from ..shared.reports import report_start
from ..shared.schemas.clip import LabelSetChoice
from ..shared.schemas.readings import RankLayer, RankParams, RankResult, StoredRanking
from .base import MusAlgorithm
from .clip_parameters import ClipParameters
from .report_layers import imagery_credits, where_words

OUTPUT_FIELDS = (
    ("label_set", "string"),
    ("label", "string"),
    ("first_places", "int"),
    ("share", "double"),
    ("mean_probability", "double"),
    ("rank", "int"),
    ("target", "int"),
    ("members", "string"),
)
REPORT_ROWS = 25


class RankLabels(ClipParameters, MusAlgorithm):
    """Every label's share of first places and mean probability, ranked, per classified layer."""

    NAME = "ranklabels"
    DISPLAY_NAME = "Rank labels"
    SHORT = "Labels ranked by their share of first places, across one or more label sets."
    GROUP = "4 · Reading the results"
    GROUP_ID = "results"
    HELP = (
        "Ranks the labels of one or more classified point layers (one per label set, e.g. "
        "Italian provinces, European capitals, world capitals for the study's multiscale "
        "reading) by their share of first places, then by mean probability. Target labels "
        "(comma-separated, e.g. 'Rome, Roma') are highlighted, and so is a group that holds a "
        "target or is named as one; groups are summed into one entry, one a line as "
        "'name = label; label' (e.g. 'Rome + Vatican City = Rome; Vatican City'). A target "
        "or group in none of the label sets is named in a warning, and when none of the "
        "targets and groups typed is found, the run stops with the labels there are. With no "
        "target, nothing is highlighted. Every label of a built-in set is listed, even with no "
        "first place. "
        "The mean probability counts a label's probability where it is among a point's top k "
        "and zero elsewhere (exact when k is the whole set).\n\n"
        "Without classifying again, label sets can also be ranked over every image embedded so "
        "far (by CLIP-classify or the engine's command line, e.g. on a GPU server) with the "
        "model and views chosen under Advanced: only the prompts go through the model, and the "
        "mean probabilities are exact.\n\n"
        "Writes a table and an HTML report with bar charts."
    )

    INPUTS = "INPUTS"
    STORED_LABEL_SETS = "STORED_LABEL_SETS"
    STORED_LABEL_FILE = "STORED_LABEL_FILE"
    TARGETS = "TARGETS"
    GROUPS = "GROUPS"
    OUTPUT = "OUTPUT"
    REPORT = "REPORT"

    def initAlgorithm(self, config=None) -> None:
        """Declare the parameters."""
        self.add_parameter(
            QgsProcessingParameterMultipleLayers(
                self.INPUTS,
                self.tr("Classified point layers"),
                VECTOR_POINT,
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.STORED_LABEL_SETS,
                self.tr("Stored images: label sets"),
                options=[entry.title for entry in builtin_label_sets()],
                allowMultiple=True,
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterFile(
                self.STORED_LABEL_FILE,
                self.tr("Stored images: own label file"),
                optional=True,
                fileFilter="Label files (*.txt *.csv *.tsv)",
            )
        )
        self.add_parameter(
            QgsProcessingParameterString(
                self.TARGETS,
                self.tr("Target labels"),
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterString(
                self.GROUPS,
                self.tr("Groups to sum"),
                multiLine=True,
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT, self.tr("Label ranking"), VECTOR_ANY_GEOMETRY
            )
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.REPORT, self.tr("Report"), self.tr("HTML files (*.html)"), optional=True
            )
        )
        self.add_advanced_parameters(
            [*self.model_parameters(), *self.view_parameters(), self.cache_parameter()]
        )

    def processAlgorithm(self, parameters, context, feedback):
        """Rank each layer's labels and write the table and the report."""
        self.require_engine()
        layers = self.parameterAsLayerList(parameters, self.INPUTS, context)
        stored_sets = self._stored_label_sets(parameters, context)
        if not layers and not stored_sets:
            raise QgsProcessingException(
                "Give classified point layers, or label sets to rank over the stored embeddings."
            )
        targets_text = self.parameterAsString(parameters, self.TARGETS, context)
        targets = [t.strip() for t in targets_text.split(",") if t.strip()]
        from ..shared.errors import MusError
        from ..shared.labels import parse_groups

        group_lines = self.parameterAsString(parameters, self.GROUPS, context).splitlines()
        try:
            parse_groups(group_lines)  # a bad line stops here, before any work
        except MusError as exc:
            raise QgsProcessingException(str(exc)) from exc
        fields = QgsFields()
        for name, kind in OUTPUT_FIELDS:
            fields.append(make_field(name, kind))
        sink, dest_id = self.parameterAsSink(
            parameters, self.OUTPUT, context, fields, WKB_NO_GEOMETRY
        )
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        stored = None
        if stored_sets:
            stored = StoredRanking(
                label_sets=stored_sets,
                model=self.model_spec(parameters, context),
                view=self.view_setting(parameters, context),
                cache_dir=self.cache_folder(parameters, context),
            )
        params = RankParams(
            layers=[self._layer_arrays(layer) for layer in layers],
            targets=targets,
            # Targets typed and found in no set are an error (a warning beside found ones).
            strict_targets=True,
            groups=group_lines,
            stored=stored,
        )
        result = run_job("rank", params, feedback, RankResult)
        if result.untrained_warning:
            feedback.reportError(result.untrained_warning, fatalError=False)
        sections = []
        for section in result.sections:
            set_name = section.set_name
            ranked = section.entries
            for entry in ranked:
                feature = QgsFeature(fields)
                feature.setAttributes(
                    [
                        set_name,
                        entry.label,
                        entry.first_places,
                        entry.share,
                        None
                        if entry.mean_probability is None
                        or entry.mean_probability != entry.mean_probability
                        else entry.mean_probability,
                        entry.rank,
                        int(entry.target),
                        "; ".join(entry.members) or None,
                    ]
                )
                self.write_feature(sink, feature, parameters, self.OUTPUT)
            sections.append((section.title or set_title(set_name), ranked))
            for entry in ranked:
                if entry.target:
                    feedback.pushInfo(
                        f"{set_name}: {entry.label} ranks {entry.rank} of "
                        f"{len(ranked)} ({entry.share:.1%} of first places)"
                    )
        results = {self.OUTPUT: dest_id}
        report = self.parameterAsFileOutput(parameters, self.REPORT, context)
        if report:
            runs = [classification_settings(layer) for layer in layers]
            if stored_sets:
                runs.append(dict(result.model))
            if result.untrained_warning and not any(run.get("untrained") for run in runs):
                runs.append({"untrained": True})  # the engine knows: the banner must show
            data = [where_words(layer) for layer in layers]
            with open(report, "w", encoding="utf-8") as out:
                out.write(_report_html(sections, runs, data, imagery_credits(layers)))
            results[self.REPORT] = report
        return results

    def _layer_arrays(self, layer) -> RankLayer:
        """A classified layer's first labels and probabilities, as a rank job reads them."""
        import numpy as np

        names = layer.fields().names()
        if "label_1" not in names:
            raise QgsProcessingException(
                f"{layer.name()} has no label_1 field: classify it with 'CLIP-classify' first."
            )
        k = 1
        while f"label_{k + 1}" in names:
            k += 1
        rows, probabilities = [], []
        for feature in layer.getFeatures():  # one pass: a layer may be a large file
            rows.append([feature[f"label_{i}"] for i in range(1, k + 1)])
            probabilities.append(
                [feature[f"prob_{i}"] if f"prob_{i}" in names else None for i in range(1, k + 1)]
            )
        if not any(_text(row[0]) for row in rows):
            raise QgsProcessingException(
                f"{layer.name()} has no classified point (label_1 is empty on all "
                f"{len(rows)} features): classify it with 'CLIP-classify' first."
            )
        set_name, labels = _label_universe(layer, rows)
        position = {label: i for i, label in enumerate(labels)}
        first = [position.get(_text(row[0]), -1) for row in rows]
        matrix = np.zeros((len(rows), len(labels)))
        for r, (row, probs) in enumerate(zip(rows, probabilities)):
            for label, prob in zip(row, probs):
                if _text(label) in position and prob not in (None, ""):
                    matrix[r, position[_text(label)]] = float(prob)
        arrays = job_file(".npz")
        np.savez(arrays, first=np.asarray(first, dtype=np.int64), probabilities=matrix)
        return RankLayer(
            set_name=set_name,
            labels=labels,
            arrays=arrays,
            has_probabilities=any(p not in (None, "") for probs in probabilities for p in probs),
        )

    def _stored_label_sets(self, parameters, context) -> list[LabelSetChoice]:
        from ..shared.errors import MusError
        from ..shared.labels import read_label_file

        entries = builtin_label_sets()
        # QGIS 3.22 reads an absent optional multiple enum as [0]: absent means none here.
        given = parameters.get(self.STORED_LABEL_SETS) not in (None, "", [])
        chosen = self.parameterAsEnums(parameters, self.STORED_LABEL_SETS, context) if given else []
        label_sets = [LabelSetChoice(builtin=entries[index].name) for index in chosen]
        path = self.parameterAsFile(parameters, self.STORED_LABEL_FILE, context)
        if path:
            try:
                read_label_file(path)  # a bad file stops here, before the engine starts
            except MusError as exc:
                raise QgsProcessingException(str(exc)) from exc
            label_sets.append(LabelSetChoice(file=path))
        return label_sets


def _text(value) -> str:
    return "" if value is None or str(value) == "NULL" else str(value)


def set_title(name: str) -> str:
    """A built-in label set's title ('Italian provinces'), else the name as given."""
    from ..shared.errors import LabelSetError
    from ..shared.labels import builtin_label_set

    try:
        return builtin_label_set(name).title or name
    except (LabelSetError, KeyError, ValueError):
        return name


def _label_universe(layer, rows) -> tuple[str, list[str]]:
    """The layer's label set (from the run settings it carries) or the labels it contains."""
    from ..shared.errors import LabelSetError
    from ..shared.labels import builtin_label_set

    seen = sorted({_text(v) for row in rows for v in row if _text(v)})
    try:
        name = classification_settings(layer).get("label_set", "")
        labels = builtin_label_set(name).texts if name else []
    except LabelSetError:
        name, labels = "", []
    extra = [label for label in seen if label not in set(labels)]
    return name or layer.name(), labels + extra


def _report_html(sections, runs: list[dict], data=(), credits=()) -> str:
    """The ranking as a reader sees it: which model and weights made it (a banner when the
    weights are random), each label set by its title, the targets marked as targets."""
    parts = [
        report_start(
            "Label ranking",
            runs,
            style=".bar{background:#4a7bb7;height:12px}.target .bar{background:#d7301f}"
            ".target{font-weight:bold}th{text-align:left}",
            what="ranks",
            data=data,
            credits=credits,
        )
    ]
    for title, ranked in sections:
        top = max((entry.share for entry in ranked), default=0) or 1
        shown = [e for e in ranked if e.rank <= REPORT_ROWS or e.target]
        targets = [html.escape(entry.label) for entry in ranked if entry.target]
        # Bold and red mark what the user asked about, not a winner: the line says so.
        key = f"<p>Targets in bold, their bars red: {', '.join(targets)}.</p>" if targets else ""
        parts.append(
            f"<h2>{html.escape(title)}</h2>{key}<table><tr><th>rank</th><th>label</th>"
            "<th>first places</th><th>share</th><th></th><th>mean probability</th></tr>"
        )
        for entry in shown:
            width = int(300 * entry.share / top)
            mean_probability = entry.mean_probability
            unknown = mean_probability is None or mean_probability != mean_probability
            mean = "" if unknown else f"{mean_probability:.3f}"
            parts.append(
                f"<tr class='{'target' if entry.target else ''}'><td>{entry.rank}</td>"
                f"<td>{html.escape(entry.label)}</td><td>{entry.first_places}</td>"
                f"<td>{entry.share:.1%}</td><td><div class='bar' style='width:{width}px'></div>"
                f"</td><td>{mean}</td></tr>"
            )
        groups = sum(1 for entry in ranked if entry.members)
        counted = f"{len(ranked) - groups} labels" + (
            f" and {groups} group{'s' if groups > 1 else ''}" if groups else ""
        )
        parts.append(
            f"</table><p>{counted}; the first {REPORT_ROWS} and the targets are shown.</p>"
        )
    parts.append("</body></html>")
    return "".join(parts)
