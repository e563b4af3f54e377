"""CLIP's jobs: classify, train a probe, score one point's views; and the inputs other
domains' jobs share (a label set, a model and view setting from a job's parameters)."""

from __future__ import annotations

import json

from ...shared.errors import MusError
from ...shared.schemas.clip import (
    ClassifyParams,
    ClassifyResult,
    CrossValidationScores,
    DownloadWeightsParams,
    DownloadWeightsResult,
    LabelSetChoice,
    LeftOutPoint,
    ModelChoice,
    ProbeReport,
    ProbeSummary,
    TrainProbeParams,
    TrainProbeResult,
    ViewChoice,
    ViewScoresParams,
    ViewScoresResult,
)
from ..deps import require
from ..jobs import job


def label_set_from_spec(spec):
    """The label set a job names (a ``LabelSetChoice``, or its dict)."""
    from ...shared.labels import builtin_label_set, read_label_file

    choice = LabelSetChoice.from_dict(spec)
    templates = choice.templates or None
    if choice.file:
        return read_label_file(choice.file, templates)
    return builtin_label_set(choice.builtin, templates)


def model_and_view(params):
    """The engine's model and view settings from a job's ``model`` and ``view`` (schemas, or
    their dicts)."""
    from ..imagery.panorama import ViewSetting
    from .models import ModelSpec

    model = params["model"] if isinstance(params, dict) else params.model
    view = params["view"] if isinstance(params, dict) else params.view
    return (
        ModelSpec(**ModelChoice.from_dict(model).to_dict()),
        ViewSetting(**ViewChoice.from_dict(view).to_dict()),
    )


@job("classify", params=ClassifyParams, result=ClassifyResult)
def classify(params: ClassifyParams, progress) -> ClassifyResult:
    """Classify locations' images; scores go to a NumPy file, row for row with the input."""
    require("numpy", "PIL", "torch", "open_clip")
    import numpy as np

    from .classify import classify_locations
    from .embedding import Location

    with open(params.locations, encoding="utf-8") as handle:
        rows = json.load(handle)
    locations = [Location(tuple(paths), bearing, heading) for paths, bearing, heading in rows]
    spec, view = model_and_view(params)
    probe = None
    if params.probe:
        from .probe import load_probe

        probe = load_probe(params.probe)
    try:
        run = classify_locations(
            locations,
            label_set_from_spec(params.label_set),
            spec,
            view,
            int(params.top_k),
            params.cache_dir,
            progress,
            int(params.batch_size),
            fast_decode=not params.full_decode,
            probe=probe,
        )
    except ValueError as exc:  # a setting the engine refuses (e.g. a view it cannot cut)
        raise MusError(str(exc)) from exc
    scores = run.scores
    np.savez(
        params.output,
        top_index=scores.top_index,
        cosine=scores.cosine,
        probability=scores.probability,
        margin=scores.margin,
        images_used=np.asarray(run.embeddings.images_used, dtype=np.int64),
        status=np.asarray(run.embeddings.status, dtype=str),
    )
    return ClassifyResult(
        output=params.output,
        metadata=run.metadata,
        untrained=bool(run.model.untrained),
        counts={name: int(count) for name, count in run.embeddings.counts.items()},
    )


@job("train_probe", params=TrainProbeParams, result=TrainProbeResult)
def train_probe_job(params: TrainProbeParams, progress) -> TrainProbeResult:
    """Train a probe on a classified layer's corrected points and score every point with it;
    the scores go to a NumPy file, row for row with the input."""
    require("numpy", "torch", "open_clip")
    import numpy as np

    from .embedding import Location
    from .teach import classification_of, train_and_rescore

    with open(params.points, encoding="utf-8") as handle:
        points = json.load(handle)
    settings = params.settings
    label_set, spec, view, fast_decode = classification_of(
        settings, params.label_file, params.checkpoint, params.device
    )
    run = train_and_rescore(
        [Location(tuple(paths), bearing, heading) for paths, bearing, heading in points["rows"]],
        points["labels"],
        points["ids"],
        label_set,
        spec,
        view,
        params.cache_dir,
        fast_decode,
        float(params.regularisation),
        int(params.top_k),
        params.probe or None,
        settings.get("model_identity", ""),
        progress,
    )
    np.savez(
        params.output,
        top_index=run.top_index,
        probability=run.probability,
        margin=run.margin,
        status=np.asarray(run.status, dtype=str),
        scored_by=np.asarray(run.scored_by, dtype=str),
    )
    report = run.report
    summary = run.probe.summary()
    validation = summary["cross_validation"]
    return TrainProbeResult(
        output=params.output,
        probe=str(run.probe_path),
        report=ProbeReport(
            method=report["method"],
            points=int(report["points"]),
            probe_accuracy=float(report["probe_accuracy"]),
            zero_shot_accuracy=float(report["zero_shot_accuracy"]),
            corrected=int(report["corrected"]),
            left_out=[LeftOutPoint(item["point"], item["why"]) for item in report["left_out"]],
            scored=int(report["scored"]),
            locations=int(report["locations"]),
            untrained=bool(report["untrained"]),
            model_identity=report["model_identity"],
            examples_per_label=dict(report["examples_per_label"]),
            regularisation=float(report["regularisation"]),
        ),
        summary=ProbeSummary(
            file=str(run.probe_path),
            weights_sha256=summary["weights_sha256"],
            trained_points=int(summary["trained_points"]),
            regularisation=float(summary["regularisation"]),
            cross_validation=CrossValidationScores(
                method=validation["method"],
                points=int(validation["points"]),
                probe_accuracy=float(validation["probe_accuracy"]),
                zero_shot_accuracy=float(validation["zero_shot_accuracy"]),
            ),
        ),
    )


@job("view_scores", params=ViewScoresParams, result=ViewScoresResult)
def view_scores_job(params: ViewScoresParams, progress) -> ViewScoresResult:
    """Each view's top labels and the pooled ones, from the stores a classification filled."""
    require("numpy")
    from .classify import store_key
    from .embedding import Location
    from .view_scores import score_views, view_setting_from_key

    with open(params.locations, encoding="utf-8") as handle:
        rows = json.load(handle)
    locations = [Location(tuple(paths), bearing, heading) for paths, bearing, heading in rows]
    # The run settings' view setting and decode name the store the classification filled.
    store = store_key(view_setting_from_key(params.views), params.fast_decode)
    readings = score_views(
        locations,
        label_set_from_spec(params.label_set),
        params.model_identity,
        store,
        params.cache_dir,
        float(params.logit_scale),
        int(params.top_k),
    )
    with open(params.output, "w", encoding="utf-8") as handle:
        json.dump(readings, handle)
    return ViewScoresResult(output=params.output, count=len(readings))


@job("download_weights", params=DownloadWeightsParams, result=DownloadWeightsResult)
def download_weights_job(params: DownloadWeightsParams, progress) -> DownloadWeightsResult:
    """Fetch a pretrained tag's weights into the cache, with the download's progress."""
    require("open_clip")
    from .classify import model_cache_dir
    from .models import download_weights

    path, size, cached = download_weights(
        params.model, params.pretrained, model_cache_dir(params.cache_dir), progress
    )
    return DownloadWeightsResult(path=path, bytes=size, cached=cached)
