"""Each view's reading for a whole classified layer, asked of the engine once, in the background.

The layer holds the pooled labels; what each image read alone comes from the ``view_scores``
engine job (stored embeddings only: no image is read, no model loaded). One job covers every
point of the layer, so stepping through points afterwards asks nothing more.
"""

from __future__ import annotations

import json

from qgis.core import QgsApplication, QgsTask

from ..bridge.engine import job_file, plugin_cache_dir, run_job
from ..bridge.layer_settings import classification_settings
from ..shared.errors import MusError
from ..shared.labels import builtin_label_set
from ..shared.schemas.clip import LabelSetChoice, ViewScoresParams, ViewScoresResult
from ..shared.sequences import zip_same_length
from .point import logit_scale_of, point_of


def view_scores_job(layer) -> dict:
    """The job's parameters for every point of ``layer``; a MusError says why there are none."""
    settings = classification_settings(layer)
    if not settings.get("model_identity"):
        raise MusError(
            "This layer has no CLIP-classify run settings (model, views): each view's reading "
            "cannot be asked for; the pooled labels are the layer's own."
        )
    name = settings.get("label_set", "")
    try:
        builtin_label_set(name)
    except MusError as exc:
        raise MusError(
            f"Each view's reading needs the label set; {name!r} is not a built-in set (a label "
            "file is not recorded in the run settings)."
        ) from exc
    logit_scale = logit_scale_of(layer, settings)
    if logit_scale is None:
        raise MusError("The layer holds no scores to read the model's logit scale from.")
    fids, rows = [], []
    for feature in layer.getFeatures():  # one pass over the layer, not one query a point
        point = point_of(feature, settings)
        fids.append(feature.id())
        rows.append([point.paths, point.bearing, point.heading])
    locations = job_file(".json")
    with open(locations, "w", encoding="utf-8") as handle:
        json.dump(rows, handle)
    return {
        "fids": fids,
        "params": ViewScoresParams(
            locations=locations,
            label_set=LabelSetChoice(builtin=name, templates=settings.get("templates") or None),
            model_identity=settings["model_identity"],
            views=settings.get("views", ""),
            fast_decode=bool(settings.get("jpeg_draft_decode", True)),
            cache_dir=settings.get("cache_folder") or str(plugin_cache_dir()),
            logit_scale=logit_scale,
            top_k=int(settings.get("top_k") or 3),
            output=job_file(".json"),
        ),
    }


def run_view_scores(job: dict) -> dict[int, dict]:
    """Run the job (blocking: call it from a task); each point's reading by feature id."""
    result = run_job("view_scores", job["params"], None, ViewScoresResult)
    with open(result.output, encoding="utf-8") as handle:
        readings = json.load(handle)
    return dict(zip_same_length(job["fids"], readings))


class ViewScores:
    """Each layer's readings, asked for once per layer; ``done(layer_id)`` when they arrive."""

    def __init__(self, done) -> None:
        self.readings: dict[str, dict[int, dict]] = {}
        self.errors: dict[str, str] = {}
        self._done = done
        self._tasks: dict[str, QgsTask] = {}

    def pending(self, layer_id: str) -> bool:
        return layer_id in self._tasks

    def ask(self, layer) -> None:
        """Start the layer's job, unless its readings are here or on their way."""
        layer_id = layer.id()
        if layer_id in self.readings or layer_id in self.errors or layer_id in self._tasks:
            return
        try:
            job = view_scores_job(layer)
        except MusError as exc:
            self.errors[layer_id] = str(exc)
            self._done(layer_id)
            return

        def work(task):
            return run_view_scores(job)

        def finished(exception, result=None):
            self._tasks.pop(layer_id, None)
            if exception is None and result is not None:
                self.readings[layer_id] = result
            else:
                self.errors[layer_id] = str(exception or "the engine gave no answer")
            self._done(layer_id)

        task = QgsTask.fromFunction(
            f"Each view's reading: {layer.name()}", work, on_finished=finished
        )
        self._tasks[layer_id] = task
        QgsApplication.taskManager().addTask(task)

    def stop(self) -> None:
        """Wait for the jobs on their way (the engine job itself cannot be cut short)."""
        from .thumbnails import stop_task

        for task in list(self._tasks.values()):
            stop_task(task)

    def forget(self, layer_id: str) -> None:
        self.readings.pop(layer_id, None)
        self.errors.pop(layer_id, None)
