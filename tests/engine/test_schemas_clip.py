"""CLIP's jobs take and give their schemas: classify, train_probe and view_scores, each declared
with its two classes, their answers plain JSON that comes back equal, and the real jobs run with
the tiny model on real photos."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mus_qgis.engine.jobs import registered
from mus_qgis.shared.errors import MusError
from mus_qgis.shared.labels import builtin_label_set
from mus_qgis.shared.schemas import clip as clip_schemas
from tests.conftest import AREZZO_PHOTOS

JOBS = registered()
LABEL_SET = "urban_atlas_2018"


def carried(schema):
    """``schema`` as the worker's protocol carries it (plain JSON), read back."""
    return type(schema).from_dict(json.loads(json.dumps(schema.to_dict())))


@pytest.mark.parametrize(
    ("name", "params", "result"),
    [
        ("classify", clip_schemas.ClassifyParams, clip_schemas.ClassifyResult),
        ("train_probe", clip_schemas.TrainProbeParams, clip_schemas.TrainProbeResult),
        ("view_scores", clip_schemas.ViewScoresParams, clip_schemas.ViewScoresResult),
    ],
)
def test_each_clip_job_declares_its_schemas(name, params, result):
    assert JOBS[name].params is params
    assert JOBS[name].result is result


def test_classify_params_and_result_survive_the_pipe():
    params = clip_schemas.ClassifyParams(
        locations="/tmp/locations.json",
        label_set=clip_schemas.LabelSetChoice(builtin=LABEL_SET, templates=["a photo of {label}"]),
        model=clip_schemas.ModelChoice(
            name="ViT-B-32", pretrained="", checkpoint="/w.pt", device="cpu"
        ),
        view=clip_schemas.ViewChoice(count=8, fov=45.0, pitch=-10.0),
        top_k=3,
        cache_dir="/tmp/cache",
        batch_size=32,
        output="/tmp/scores.npz",
        full_decode=True,
        probe="/tmp/probe.npz",
    )
    back = carried(params)
    assert back == params and isinstance(back.view, clip_schemas.ViewChoice)
    result = clip_schemas.ClassifyResult(
        output="/tmp/scores.npz",
        metadata={"model": "ViT-B-32", "views": "views4-fov90-pitch0", "templates": ["{label}"]},
        untrained=True,
        counts={"images": 4, "decoded": 3, "failed": 1, "locations ok": 3},
    )
    assert carried(result) == result


def test_a_probe_result_survives_the_pipe_with_its_parts():
    result = clip_schemas.TrainProbeResult(
        output="/tmp/probe_scores.npz",
        probe="/tmp/cache/embeddings/probes/p.npz",
        report=clip_schemas.ProbeReport(
            method="leave-one-out",
            points=4,
            probe_accuracy=0.75,
            zero_shot_accuracy=0.25,
            corrected=5,
            left_out=[clip_schemas.LeftOutPoint(point="7", why="gone.jpg was never embedded")],
            scored=6,
            locations=8,
            untrained=False,
            model_identity="ViT-B-32/laion2b",
            examples_per_label={"Forests": 2, "Water": 2},
            regularisation=0.3,
        ),
        summary=clip_schemas.ProbeSummary(
            file="/tmp/cache/embeddings/probes/p.npz",
            weights_sha256="ab" * 32,
            trained_points=4,
            regularisation=0.3,
            cross_validation=clip_schemas.CrossValidationScores("leave-one-out", 4, 0.75, 0.25),
        ),
    )
    back = carried(result)
    assert back == result
    assert back.report.left_out[0].why == "gone.jpg was never embedded"
    assert back.summary.cross_validation.probe_accuracy == 0.75


def test_view_scores_params_and_result_survive_the_pipe():
    params = clip_schemas.ViewScoresParams(
        locations="/tmp/locations.json",
        label_set=clip_schemas.LabelSetChoice(builtin=LABEL_SET),
        model_identity="ViT-B-32/laion2b",
        views="centre-crop",
        cache_dir="/tmp/cache",
        logit_scale=100.0,
        output="/tmp/views.json",
    )
    back = carried(params)
    assert back == params and back.fast_decode is True and back.top_k == 3
    assert carried(clip_schemas.ViewScoresResult(output="/tmp/views.json", count=12)).count == 12


def test_a_probe_report_without_its_cross_validation_is_named():
    answer = clip_schemas.ProbeSummary(
        "p.npz", "", 4, 0.3, clip_schemas.CrossValidationScores("5-fold", 40, 0.5, 0.4)
    )
    data = answer.to_dict()
    del data["cross_validation"]["zero_shot_accuracy"]
    with pytest.raises(MusError, match="CrossValidationScores lacks zero_shot_accuracy"):
        clip_schemas.ProbeSummary.from_dict(data)


@pytest.fixture(scope="module")
def classified(tiny_spec, tmp_path_factory):
    """Four Arezzo photos classified by the classify job itself, with the tiny model."""
    folder = tmp_path_factory.mktemp("clip_schemas")
    rows = [[[str(path)], None, None] for path in AREZZO_PHOTOS[:4]]
    (folder / "locations.json").write_text(json.dumps(rows), encoding="utf-8")
    params = clip_schemas.ClassifyParams(
        locations=str(folder / "locations.json"),
        label_set=clip_schemas.LabelSetChoice(builtin=LABEL_SET),
        model=clip_schemas.ModelChoice(
            name=tiny_spec.name,
            pretrained="",
            checkpoint=tiny_spec.checkpoint,
            device="cpu",
        ),
        view=clip_schemas.ViewChoice(),
        top_k=2,
        cache_dir=str(folder / "cache"),
        batch_size=8,
        output=str(folder / "scores.npz"),
    )
    answer = JOBS["classify"](params.to_dict(), None)
    return folder, rows, params, answer


def test_the_classify_job_gives_its_result(classified):
    _, rows, params, answer = classified
    json.dumps(answer)  # plain JSON, nothing NumPy
    result = clip_schemas.ClassifyResult.from_dict(answer)
    assert result.output == params.output
    assert result.untrained is False  # weights from a checkpoint file (random, but given)
    assert result.counts["locations ok"] == len(rows)
    assert result.metadata["label_set"] == LABEL_SET and result.metadata["top_k"] == 2
    with np.load(result.output) as scores:
        assert scores["top_index"].shape == (len(rows), 2)


def test_the_view_scores_job_gives_its_result(classified):
    folder, rows, params, answer = classified
    metadata = clip_schemas.ClassifyResult.from_dict(answer).metadata
    view_params = clip_schemas.ViewScoresParams(
        locations=params.locations,
        label_set=params.label_set,
        model_identity=metadata["model_identity"],
        views=metadata["views"],
        cache_dir=params.cache_dir,
        logit_scale=metadata["logit_scale"],
        output=str(folder / "views.json"),
        top_k=2,
    )
    result = clip_schemas.ViewScoresResult.from_dict(
        JOBS["view_scores"](view_params.to_dict(), None)
    )
    assert result == clip_schemas.ViewScoresResult(output=view_params.output, count=len(rows))
    readings = json.loads((folder / "views.json").read_text(encoding="utf-8"))
    assert len(readings) == len(rows) and len(readings[0]["pooled"]["labels"]) == 2


def test_the_train_probe_job_gives_its_result_with_its_parts(classified):
    folder, rows, params, answer = classified
    settings = dict(
        clip_schemas.ClassifyResult.from_dict(answer).metadata, cache_folder=params.cache_dir
    )
    texts = builtin_label_set(LABEL_SET).texts
    never = str(folder / "never.jpg")
    points = {
        "rows": [*rows, [[never], None, None]],
        "labels": [texts[0], texts[0], texts[1], texts[1], texts[1]],
        "ids": ["1", "2", "3", "4", "5"],
    }
    (folder / "points.json").write_text(json.dumps(points), encoding="utf-8")
    probe_params = clip_schemas.TrainProbeParams(
        points=str(folder / "points.json"),
        settings=settings,
        device="cpu",
        cache_dir=params.cache_dir,
        regularisation=0.3,
        top_k=2,
        output=str(folder / "probe_scores.npz"),
        checkpoint=params.model.checkpoint,
        probe=str(folder / "probe.npz"),
    )
    answer = JOBS["train_probe"](probe_params.to_dict(), None)
    json.dumps(answer)  # plain JSON, nothing NumPy
    result = clip_schemas.TrainProbeResult.from_dict(answer)
    assert result.output == probe_params.output and result.probe == str(folder / "probe.npz")
    report = result.report
    assert (report.method, report.points, report.corrected) == ("leave-one-out", 4, 5)
    assert report.left_out == [clip_schemas.LeftOutPoint(point="5", why=report.left_out[0].why)]
    assert "never.jpg" in report.left_out[0].why
    assert report.examples_per_label == {texts[0]: 2, texts[1]: 2}
    assert 0.0 <= report.probe_accuracy <= 1.0 and report.untrained is False
    summary = result.summary
    assert summary.file == result.probe and summary.trained_points == 4
    assert summary.cross_validation == clip_schemas.CrossValidationScores(
        report.method, report.points, report.probe_accuracy, report.zero_shot_accuracy
    )
    assert carried(result) == result
