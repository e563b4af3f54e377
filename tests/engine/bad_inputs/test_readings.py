"""The readings (grid, agreement, ranking) given bad, odd or hostile input: each case ends in a
clear error that names the input and what to fix, or in a complete, true result.

The grid is checked against an independent brute-force reading of its stated rule: a cell of the
study area is every cell that overlaps it; an empty cell takes the label most frequent among the
observed cells nearest to it (centre to centre); ties go to the tied label whose points have the
higher total score, then to the label that comes first in the label set.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import shapely

from mus_qgis.engine.jobs import registered
from mus_qgis.engine.readings.agreement import agreement, land_use_code_problem
from mus_qgis.engine.readings.grid import resample_to_grid
from mus_qgis.engine.readings.ranking import rank_labels
from mus_qgis.shared.errors import CanceledError, LabelSetError, MusError, StudyAreaError
from mus_qgis.shared.progress import LoggingProgress

JOBS = registered()


# -- the grid: an independent reading of the stated rule ---------------------------------------
def brute_force_fill(result, x, y, labels, scores, n_labels):
    """For each filled cell, the label the stated rule gives, by looping over every cell."""
    observed = np.flatnonzero(~result.filled)
    cell_of = {tuple(result.index[row]): row for row in observed}
    # Each observed cell's label counts and score sums, point by point.
    counts = {row: Counter() for row in observed}
    score_sums = {row: Counter() for row in observed}
    for px, py, lab, score in zip(x, y, labels, scores, strict=True):
        distances = (result.centres[observed, 0] - px) ** 2 + (
            result.centres[observed, 1] - py
        ) ** 2
        row = observed[int(np.argmin(distances))]
        counts[row][lab] += 1
        score_sums[row][lab] += score
    assert len(cell_of) == len(observed)
    majority = {
        row: min(range(n_labels), key=lambda lab: (-c[lab], -score_sums[row][lab], lab))
        for row, c in counts.items()
    }
    expected = {}
    for row in np.flatnonzero(result.filled):
        d = np.hypot(*(result.centres[observed] - result.centres[row]).T)
        nearest = observed[d <= d.min() * (1 + 1e-9)]
        votes = Counter(majority[n] for n in nearest)
        tie_score = Counter()
        for n in nearest:
            tie_score.update(score_sums[n])
        label = min(votes, key=lambda lab: (-votes[lab], -tie_score[lab], lab))
        expected[row] = (label, d.min())
    return majority, expected


@pytest.mark.parametrize("shape", ["square", "hexagon"])
def test_an_island_no_point_reaches_is_labelled_from_the_nearest_observed_cells(shape):
    """The finding: a detached part of the study area kept cells with no label."""
    rng = np.random.default_rng(11)
    main = shapely.box(0, 0, 1000, 600)
    island = shapely.Point(1700, 300).buffer(150)
    area = shapely.MultiPolygon([main, island])
    x, y = rng.uniform(100, 900, 60), rng.uniform(100, 500, 60)
    labels = rng.integers(0, 3, 60)
    scores = rng.uniform(0.1, 0.9, 60).round(2)
    result = resample_to_grid(x, y, labels, 3, 100.0, shape=shape, area=area, scores=scores)
    assert (result.label >= 0).all(), "a cell of the study area has no label"
    on_island = shapely.intersects(
        island, shapely.points(result.centres[:, 0], result.centres[:, 1])
    )
    assert on_island.any() and result.filled[on_island].all()
    majority, expected = brute_force_fill(result, x, y, labels, scores, 3)
    for row in np.flatnonzero(~result.filled):
        assert result.label[row] == majority[row]
    for row, (label, distance) in expected.items():
        assert result.label[row] == label, tuple(result.index[row])
        assert result.fill_distance[row] == pytest.approx(distance)
    assert result.fill_distance[on_island].min() > 500


@pytest.mark.parametrize("shape", ["square", "hexagon"])
def test_filling_takes_the_most_frequent_label_of_the_nearest_observed_cells(shape):
    """Not ring by ring (where filled cells vote for the next ring): sparse, scattered points
    over a wide area, so that rings and nearest cells disagree often."""
    rng = np.random.default_rng(12)
    x, y = rng.uniform(0, 2000, 40), rng.uniform(0, 2000, 40)
    labels = rng.integers(0, 4, 40)
    scores = rng.uniform(0.1, 0.9, 40).round(3)
    area = shapely.box(0, 0, 2000, 2000)
    result = resample_to_grid(x, y, labels, 4, 100.0, shape=shape, area=area, scores=scores)
    _, expected = brute_force_fill(result, x, y, labels, scores, 4)
    wrong = [row for row, (label, _) in expected.items() if result.label[row] != label]
    assert not wrong and len(expected) > 300


def test_cells_that_overlap_the_study_area_cover_all_of_it():
    """The finding: a cell counted as inside by its centre left about 2 % of the area under no
    cell. A cell that only touches the area along an edge is not in it."""
    area = shapely.Point(512, 487).buffer(430)
    result = resample_to_grid([500, 520], [480, 500], [0, 1], 2, 50.0, area=area)
    cells = shapely.union_all(
        [shapely.Polygon(result.polygon(r)) for r in range(len(result.label))]
    )
    assert area.difference(cells).area == pytest.approx(0, abs=1e-6)
    overlaps = [
        shapely.Polygon(result.polygon(r)).intersection(area).area > 0
        for r in range(len(result.label))
    ]
    assert all(overlaps)
    boxed = resample_to_grid(
        [10, 150], [10, 50], [0, 1], 2, 100.0, area=shapely.box(0, 0, 300, 100)
    )
    assert sorted(map(tuple, boxed.index.tolist())) == [(0, 0), (1, 0), (2, 0)]


@pytest.mark.parametrize(
    ("labels", "scores", "weights", "expected"),
    [
        ([1, 0], [0.9, 0.2], None, 1),  # an even split goes to the higher total score
        ([1, 0], [0.5, 0.5], None, 0),  # then to the label set's order
        ([0, 1, 1], [0.9, 0.3, 0.3], [0.9, 0.3, 0.3], 0),  # weighted: scores counted
    ],
    ids=["tie-to-higher-score", "tie-to-label-order", "weighted-majority"],
)
def test_ties_in_an_observed_cell_follow_the_stated_rule(labels, scores, weights, expected):
    n = len(labels)
    result = resample_to_grid(
        [5] * n, [5] * n, labels, 2, 100.0, fill=False, scores=scores, weights=weights
    )
    assert result.label.tolist() == [expected]


def test_a_study_area_far_from_the_points_is_refused_with_the_distance():
    area = shapely.box(50_000, 0, 51_000, 1_000)
    with pytest.raises(
        StudyAreaError,
        match=r"No labelled point falls in the study area: the "
        r"nearest lies 49\.9 km",
    ):
        resample_to_grid([10, 90], [10, 90], [0, 1], 2, 100.0, area=area)


@pytest.mark.parametrize(
    "size", [0.0, -50.0, math.nan, math.inf], ids=["zero", "negative", "nan", "infinite"]
)
def test_a_cell_size_that_is_not_a_positive_number_is_refused(size):
    with pytest.raises(ValueError, match="cell size must be a positive number of metres"):
        resample_to_grid([1, 2], [1, 2], [0, 0], 1, size)


def test_an_absurd_cell_size_is_refused_with_the_cell_count():
    with pytest.raises(MusError, match=r"about [\d,]+ cells, more than 1,000,000.*at least"):
        resample_to_grid([0, 5000], [0, 5000], [0, 1], 2, 1.0, area=shapely.box(0, 0, 5000, 5000))


def test_a_study_area_with_no_labelled_point_at_all_is_refused():
    with pytest.raises(MusError, match="No point has a label: classify the points first"):
        resample_to_grid([1, 2], [1, 2], [-1, -1], 2, 100.0, area=shapely.box(0, 0, 500, 500))


def test_points_with_no_coordinates_or_an_unknown_label_are_left_out():
    result = resample_to_grid(
        [10, math.nan, 20, 30], [10, 10, math.inf, 30], [0, 0, 0, 7], 2, 100.0, fill=False
    )
    assert result.points.tolist() == [1]


def test_a_self_crossing_study_area_is_mended_and_fully_labelled():
    bowtie = shapely.Polygon([(0, 0), (1000, 1000), (1000, 0), (0, 1000), (0, 0)])
    assert not bowtie.is_valid
    result = resample_to_grid([500, 900], [400, 100], [0, 1], 2, 100.0, area=bowtie)
    assert (result.label >= 0).all() and result.filled.sum() > 20


@pytest.mark.parametrize(
    "area",
    [shapely.Polygon(), shapely.LineString([(0, 0), (500, 500)])],
    ids=["empty", "no-area"],
)
def test_a_study_area_with_nothing_to_cover_is_refused(area):
    with pytest.raises(StudyAreaError, match="study area"):
        resample_to_grid([1, 2], [1, 2], [0, 0], 1, 100.0, area=area)


class CancelAfter(LoggingProgress):
    def __init__(self, asks: int) -> None:
        super().__init__()
        self.asks = asks

    def is_canceled(self) -> bool:
        self.asks -= 1
        return self.asks < 0


def test_filling_a_large_grid_stops_on_a_cancel():
    rng = np.random.default_rng(13)
    x, y = rng.uniform(0, 50_000, 200), rng.uniform(0, 50_000, 200)
    area = shapely.box(0, 0, 50_000, 50_000)  # 250,000 cells of 100 m
    with pytest.raises(CanceledError):
        resample_to_grid(
            x, y, rng.integers(0, 3, 200), 3, 100.0, area=area, progress=CancelAfter(3)
        )


# -- agreement ---------------------------------------------------------------------------------
def test_f1_is_zero_where_a_class_is_never_right():
    """The finding: F1 was blank where precision and recall were zero."""
    result = agreement(["A", "B", "B"], ["A", "A", "C"], ["A", "B", "C"])
    assert result.f1.tolist() == pytest.approx([2 / 3, 0.0, 0.0])
    assert math.isnan(result.precision[1]) and result.recall[1] == 0.0


@pytest.mark.parametrize(
    ("predicted", "error", "warning"),
    [
        (["Rome", "Paris", "Rome"], "are not Urban Atlas or CORINE land-use codes", ""),
        (["", None], "No compared point has a predicted code", ""),
        (["11100", "Rome"], "", "1 of 2 compared points have a predicted value that is not"),
        (["11100", "12100"], "", ""),
    ],
    ids=["city-names", "no-codes", "some-not-codes", "codes"],
)
def test_values_that_are_not_land_use_codes_are_named(predicted, error, warning):
    found_error, found_warning = land_use_code_problem(predicted, {"11100", "12100"})
    assert (error in found_error if error else found_error == "") and (
        warning in found_warning if warning else found_warning == ""
    )


def test_the_agreement_job_refuses_city_names_instead_of_a_kappa_of_zero(tmp_path):
    import json

    pairs = tmp_path / "pairs.json"
    pairs.write_text(
        json.dumps({"reference": ["11100", "12100"], "predicted": ["Rome", "Paris"]}),
        encoding="utf-8",
    )
    with pytest.raises(MusError, match=r"'Paris', 'Rome'\) are not Urban Atlas or CORINE"):
        JOBS["agreement"]({"pairs": str(pairs)}, LoggingProgress())


# -- ranking -----------------------------------------------------------------------------------
LABELS = ["Rome", "Paris", "Vatican City", "Berlin"]
FIRST = [0, 1, 1, 2, 2, 2, 1, -1]


@pytest.mark.parametrize(
    ("targets", "highlighted"),
    [
        ([], []),
        (["Berlin"], ["Berlin"]),
        (["Paris"], ["West"]),
        (["Rome"], ["Rome + Vatican City"]),  # a group holding a target is one
        (["Rome + Vatican City"], ["Rome + Vatican City"]),
    ],
    ids=["none", "a-label", "a-member-of-a-one-label-group", "a-member", "a-group-name"],
)
def test_only_target_groups_are_highlighted(targets, highlighted):
    """The finding: every group was highlighted as a target."""
    groups = {"Rome + Vatican City": ["Rome", "Vatican City"], "West": ["Paris"]}
    ranked = rank_labels(LABELS, FIRST, targets=targets, groups=groups)
    assert [r.label for r in ranked if r.target] == highlighted


def test_an_unknown_target_names_itself_and_the_labels_there_are():
    with pytest.raises(
        LabelSetError,
        match=r"Not in the label set: 'Roma'\. The labels are: Rome, "
        r"Paris, Vatican City, Berlin\.",
    ):
        rank_labels(LABELS, FIRST, targets=["Roma"])


def rank_job(tmp_path, targets):
    arrays = tmp_path / "first.npz"
    np.savez(arrays, first=np.array(FIRST), probabilities=np.zeros((len(FIRST), 4)))
    layer = {"set_name": "capitals", "labels": LABELS, "arrays": str(arrays)}
    progress = LoggingProgress()
    result = JOBS["rank"]({"layers": [layer], "targets": targets, "groups": []}, progress)
    return result, progress


def test_the_rank_job_refuses_targets_found_in_no_label_set(tmp_path):
    with pytest.raises(
        LabelSetError,
        match=r"Not a label of any label set ranked: 'Rmoe'\. "
        r"capitals: The labels are: Rome, Paris",
    ):
        rank_job(tmp_path, ["Rmoe"])


def test_the_rank_job_warns_of_a_target_found_nowhere_beside_one_found(tmp_path):
    result, progress = rank_job(tmp_path, ["Rome", "Roma"])
    (entries,) = [s["entries"] for s in result["sections"]]
    assert [e["label"] for e in entries if e["target"]] == ["Rome"]
    assert any("Not a label of any label set ranked: 'Roma'" in m for m in progress.messages)
