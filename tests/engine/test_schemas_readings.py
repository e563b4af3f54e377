"""The readings' jobs (rank, grid, clusters, boundaries, periods) take and give their schemas:
each survives the pipe as plain JSON, nested records included, and the real jobs answer in them
with no NaN (JSON has none: a statistic not computed travels as None)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mus_qgis.engine.jobs import registered
from mus_qgis.shared.errors import MusError
from mus_qgis.shared.progress import LoggingProgress
from mus_qgis.shared.schemas import readings as readings_schemas
from mus_qgis.shared.schemas.clip import LabelSetChoice, ModelChoice, ViewChoice
from tests.engine.helpers import square_rings

JOBS = registered()


def carried(schema):
    """As the worker's protocol carries it: JSON, and no NaN in it (``allow_nan=False`` says
    so)."""
    return json.loads(json.dumps(schema.to_dict(), allow_nan=False))


@pytest.mark.parametrize(
    ("name", "params", "result"),
    [
        ("rank", readings_schemas.RankParams, readings_schemas.RankResult),
        ("grid", readings_schemas.GridParams, readings_schemas.GridResult),
        ("clusters", readings_schemas.ClustersParams, readings_schemas.ClustersResult),
        ("boundaries", readings_schemas.BoundariesParams, readings_schemas.BoundariesResult),
        ("periods", readings_schemas.PeriodsParams, readings_schemas.PeriodsResult),
    ],
)
def test_each_readings_job_declares_its_schemas(name, params, result):
    run = JOBS[name]
    assert run.params is params
    assert run.result is result


# -- round trips of realistic values, nested records included ----------------------------------
RANK_RESULT = readings_schemas.RankResult(
    sections=[
        readings_schemas.RankSection(
            set_name="european_capitals",
            entries=[
                readings_schemas.RankEntry(
                    1, "Rome + Vatican City", 4, 4 / 7, None, True, ["Rome", "Vatican City"]
                ),
                readings_schemas.RankEntry(2, "Paris", 3, 3 / 7, 0.31, False, []),
                readings_schemas.RankEntry(3, "Berlin", 0, 0.0, None, False, []),
            ],
        ),
        readings_schemas.RankSection(
            set_name="italian_provinces (all 12 stored images)",
            title="Italian provinces (all 12 stored images)",
            entries=[readings_schemas.RankEntry(1, "Roma", 12, 1.0, 0.87, True)],
        ),
    ],
    untrained_warning="",
    model={"model": "ViT-B-32", "pretrained": "", "checkpoint": "tiny.pt", "untrained": False},
)

CLUSTERS_RESULT = readings_schemas.ClustersResult(
    output="/tmp/clusters.npz",
    neighbours="the 3 nearest features",
    notes=["1 features have no neighbour within the band: they take part in no test."],
    labels=[
        readings_schemas.LabelJoinTest(0, 14, 17.0, 12.5, 0.01, 3.0, 7.2, 0.99, 6, "clustered"),
        readings_schemas.LabelJoinTest(
            1, 1, None, None, None, None, None, None, 0, "not tested: a single feature"
        ),
    ],
    scores=readings_schemas.ScoreMoranTest(16, 0.82, -1 / 15, 5.1, 0.002, 9, "clustered"),
)


@pytest.mark.parametrize(
    "value",
    [
        RANK_RESULT,
        readings_schemas.GridResult(output="/tmp/cells.npz", cells=42),
        CLUSTERS_RESULT,
        readings_schemas.ClustersResult("/tmp/c.npz", "features within 50 m", [], [], None),
        readings_schemas.BoundariesResult(
            output="/tmp/lines.json",
            edges=10,
            neighbour_pairs=180,
            total_length=1000.0,
            alignment=readings_schemas.BoundaryAlignment(1.0, 0.18, 0.01, 99, 30.0),
        ),
        readings_schemas.BoundariesResult("/tmp/lines.json", 0, 12, 0.0, None),
        readings_schemas.PeriodsResult(
            output="/tmp/periods.npz",
            correlation=readings_schemas.PeriodCorrelation(
                rho=0.64, p_value=0.003, pairs=25, permutations=999
            ),
            untrained=False,
            metadata={"model": "ViT-B-32", "label_set": "architects", "views": 4},
            dated_labels=30,
            labels=31,
        ),
        readings_schemas.PeriodsResult("/tmp/periods.npz", None, True, {}, 0, 3),
    ],
    ids=lambda value: type(value).__name__,
)
def test_a_readings_result_survives_the_pipe(value):
    back = type(value).from_dict(carried(value))
    assert back == value
    assert type(back) is type(value)


def test_the_nested_records_come_back_as_their_schemas():
    rank = readings_schemas.RankResult.from_dict(carried(RANK_RESULT))
    assert all(isinstance(section, readings_schemas.RankSection) for section in rank.sections)
    entry = rank.sections[0].entries[0]
    assert isinstance(entry, readings_schemas.RankEntry)
    assert entry.members == ["Rome", "Vatican City"] and entry.mean_probability is None
    assert rank.sections[1].title.startswith("Italian provinces")
    assert rank.sections[0].title == ""  # a layer's section has none: the QGIS side words it
    clusters = readings_schemas.ClustersResult.from_dict(carried(CLUSTERS_RESULT))
    assert [type(test) for test in clusters.labels] == [
        readings_schemas.LabelJoinTest,
        readings_schemas.LabelJoinTest,
    ]
    assert (
        isinstance(clusters.scores, readings_schemas.ScoreMoranTest)
        and clusters.scores.moran_i == 0.82
    )
    boundaries = readings_schemas.BoundariesResult.from_dict(
        carried(
            readings_schemas.BoundariesResult(
                "/tmp/l.json", 1, 2, 100.0, readings_schemas.BoundaryAlignment(1, 0.5, 0.2, 9, 5)
            )
        )
    )
    assert isinstance(boundaries.alignment, readings_schemas.BoundaryAlignment)
    periods = readings_schemas.PeriodsResult.from_dict(
        carried(
            readings_schemas.PeriodsResult(
                "/tmp/p.npz", readings_schemas.PeriodCorrelation(0.5, 0.1, 9, 99), False, {}, 3, 3
            )
        )
    )
    assert isinstance(periods.correlation, readings_schemas.PeriodCorrelation)


def test_the_params_the_qgis_side_builds_survive_the_pipe():
    rank = readings_schemas.RankParams(
        layers=[readings_schemas.RankLayer("capitals", ["Rome", "Paris"], "/tmp/first.npz", True)],
        targets=["Rome"],
        groups=["Rome + Vatican City = Rome; Vatican City"],
        stored=readings_schemas.StoredRanking(
            model=ModelChoice(checkpoint="/tmp/tiny.pt", device="cpu"),
            view=ViewChoice(count=1, centre_crop=True),
            cache_dir="/tmp/store",
            label_sets=[LabelSetChoice(builtin="european_capitals"), LabelSetChoice(file="a.txt")],
        ),
    )
    back = readings_schemas.RankParams.from_dict(carried(rank))
    assert back == rank
    assert isinstance(back.layers[0], readings_schemas.RankLayer) and isinstance(
        back.stored, readings_schemas.StoredRanking
    )
    assert [type(choice) for choice in back.stored.label_sets] == [LabelSetChoice] * 2
    assert isinstance(back.stored.model, ModelChoice) and back.stored.model.device == "cpu"
    periods = readings_schemas.PeriodsParams(
        locations="/tmp/locations.json",
        label_set=LabelSetChoice(builtin="architects", templates=["a building by {}."]),
        model=ModelChoice(),
        view=ViewChoice(pitch=10.0),
        cache_dir="/tmp/store",
        permutations=999,
        output="/tmp/periods.npz",
        reference="/tmp/reference.npz",
        points="/tmp/points.npz",
    )
    back = readings_schemas.PeriodsParams.from_dict(carried(periods))
    assert back == periods
    assert isinstance(back.label_set, LabelSetChoice) and isinstance(back.view, ViewChoice)
    for value in (
        readings_schemas.GridParams(
            "/tmp/p.npz", 3, 100.0, "hexagon", "/tmp/c.npz", True, "POLYGON ((0 0, 1 0, 0 0))"
        ),
        readings_schemas.ClustersParams(
            "/tmp/f.npz", 2, "knn", 99, 0.05, "/tmp/c.npz", k=4, seed=7
        ),
        readings_schemas.BoundariesParams(
            "/tmp/c.npz", 2, 30.0, 99, "/tmp/l.json", ["LINESTRING (0 0, 1 1)"], 3
        ),
    ):
        assert type(value).from_dict(carried(value)) == value


def test_the_defaults_are_those_the_engine_took_for_a_missing_key():
    assert readings_schemas.ClustersParams.from_dict(
        {
            "features": "f.npz",
            "n_labels": 2,
            "kind": "knn",
            "permutations": 99,
            "alpha": 0.05,
            "output": "o.npz",
        }
    ) == readings_schemas.ClustersParams(
        "f.npz", 2, "knn", 99, 0.05, "o.npz", k=8, distance_m=0.0, seed=0
    )
    rank = readings_schemas.RankParams.from_dict({})
    assert (rank.layers, rank.targets, rank.groups, rank.stored) == ([], [], [], None)
    assert rank.strict_targets is True


def test_a_stray_or_missing_key_is_named():
    with pytest.raises(MusError, match=r"RankLayer has no field probabilities"):
        readings_schemas.RankParams.from_dict(
            {"layers": [{"set_name": "a", "labels": [], "arrays": "a.npz", "probabilities": 1}]}
        )
    with pytest.raises(MusError, match=r"BoundariesResult lacks alignment"):
        readings_schemas.BoundariesResult.from_dict(
            {"output": "o", "edges": 0, "neighbour_pairs": 0, "total_length": 0.0}
        )


# -- the real jobs, on small inputs ------------------------------------------------------------
LABELS = ["Rome", "Paris", "Vatican City", "Berlin"]
FIRST = [0, 1, 1, 2, 2, 2, 1, -1]


def test_the_rank_job_answers_in_its_schema(tmp_path):
    arrays = tmp_path / "first.npz"
    np.savez(arrays, first=np.array(FIRST), probabilities=np.zeros((len(FIRST), 4)))
    params = readings_schemas.RankParams(
        layers=[readings_schemas.RankLayer("capitals", LABELS, str(arrays))],  # no probabilities
        targets=["Rome"],
        groups=["Rome + Vatican City = Rome; Vatican City"],
    )
    answer = JOBS["rank"](params.to_dict(), LoggingProgress())
    result = readings_schemas.RankResult.from_dict(json.loads(json.dumps(answer, allow_nan=False)))
    (section,) = result.sections
    assert section.set_name == "capitals" and section.title == ""
    rows = [(e.rank, e.label, e.first_places, e.target) for e in section.entries]
    # 7 classified points: Rome 1, Paris 3, Vatican City 3, Berlin 0; the group sums Rome's
    # and Vatican City's and is a target through Rome.
    assert rows == [
        (1, "Rome + Vatican City", 4, True),
        (2, "Paris", 3, False),
        (3, "Berlin", 0, False),
    ]
    assert section.entries[0].members == ["Rome", "Vatican City"]
    assert section.entries[1].share == pytest.approx(3 / 7)
    # Without probabilities the mean is unknown: None, not NaN, crosses the pipe.
    assert all(entry.mean_probability is None for entry in section.entries)
    assert result.untrained_warning == "" and result.model == {}


def test_the_grid_job_answers_in_its_schema(tmp_path):
    points, output = tmp_path / "points.npz", tmp_path / "cells.npz"
    np.savez(
        points,
        x=np.array([10.0, 20.0, 30.0, 150.0]),
        y=np.array([10.0, 20.0, 30.0, 50.0]),
        label=np.array([0, 0, 1, 2]),
        weight=np.ones(4),
    )
    params = readings_schemas.GridParams(
        str(points),
        3,
        100.0,
        "square",
        str(output),
        area_wkt="POLYGON ((0 0, 300 0, 300 100, 0 100, 0 0))",
    )
    answer = JOBS["grid"](params.to_dict(), LoggingProgress())
    result = readings_schemas.GridResult.from_dict(json.loads(json.dumps(answer, allow_nan=False)))
    assert result == readings_schemas.GridResult(
        output=str(output), cells=3
    )  # two observed, one filled
    with np.load(result.output) as cells:
        assert cells["label"].tolist() == [0, 2, 2] and cells["filled"].tolist() == [0, 0, 1]


def lattice(n: int, size: float = 50.0):
    columns, rows = np.meshgrid(np.arange(n), np.arange(n))
    return columns.ravel() * size, rows.ravel() * size, columns.ravel(), rows.ravel()


def test_the_clusters_job_answers_in_its_schema_with_none_for_what_was_not_tested(tmp_path):
    x, y, column, _ = lattice(6)
    labels = (column >= 3).astype(np.int64)
    labels[0] = 2  # a label of a single feature: not tested, its statistics unknown
    scores = np.where(labels == 1, 0.9, 0.1) + 0.01 * np.sin(np.arange(len(x)))
    features, output = tmp_path / "features.npz", tmp_path / "local.npz"
    np.savez(features, x=x, y=y, label=labels, score=scores)
    params = readings_schemas.ClustersParams(
        str(features), 3, "distance", 19, 0.05, str(output), distance_m=71.0, seed=1
    )
    answer = JOBS["clusters"](params.to_dict(), LoggingProgress())
    result = readings_schemas.ClustersResult.from_dict(
        json.loads(json.dumps(answer, allow_nan=False))
    )
    by_label = {test.label: test for test in result.labels}
    assert set(by_label) == {0, 1, 2}
    assert all(isinstance(test, readings_schemas.LabelJoinTest) for test in result.labels)
    single = by_label[2]
    assert single.count == 1 and single.verdict == "not tested: a single feature"
    assert single.bb is None and single.p_clustered is None
    assert by_label[1].verdict == "clustered" and by_label[1].bb > by_label[1].expected_bb
    assert isinstance(
        result.scores, readings_schemas.ScoreMoranTest
    ) and result.scores.count == len(x)
    assert result.scores.moran_i > 0.5
    assert result.output == str(output) and output.exists()


def test_the_boundaries_job_answers_in_its_schema(tmp_path):
    # Two half-planes: one straight discontinuity along x = 500, on the reference line.
    cells, output = tmp_path / "cells.npz", tmp_path / "lines.json"
    labels = np.array([int(column >= 5) for row in range(10) for column in range(10)])
    np.savez(cells, rings=square_rings(10, 10), label=labels, share=np.ones(100))
    params = readings_schemas.BoundariesParams(
        str(cells), 2, 30.0, 99, str(output), reference_wkt=["LINESTRING (500 -50, 500 1050)"]
    )
    answer = JOBS["boundaries"](params.to_dict(), LoggingProgress())
    result = readings_schemas.BoundariesResult.from_dict(
        json.loads(json.dumps(answer, allow_nan=False))
    )
    assert (result.edges, result.neighbour_pairs) == (10, 180)
    assert result.total_length == pytest.approx(1000.0)
    assert isinstance(result.alignment, readings_schemas.BoundaryAlignment)
    assert result.alignment.observed == pytest.approx(1.0) and result.alignment.p_value <= 0.05
    assert (result.alignment.permutations, result.alignment.buffer_m) == (99, 30.0)
    lines = json.loads(output.read_text(encoding="utf-8"))
    assert sum(line["length_m"] for line in lines) == pytest.approx(1000.0)
    # No reference: no alignment, said as None.
    alone = readings_schemas.BoundariesParams(str(cells), 2, 30.0, 99, str(output))
    answer = JOBS["boundaries"](alone.to_dict(), LoggingProgress())
    assert readings_schemas.BoundariesResult.from_dict(answer).alignment is None
