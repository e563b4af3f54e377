"""Every reading's numbers computed a second way, without the module's own helpers.

Each test imports only the public function under test, for its answer, and computes the same
statistic independently: from the textbook definition in a few lines of NumPy or shapely, or
through a reference library called directly (scipy.stats, sklearn.metrics, pandas, pyproj). The
cases are built so that the answer is known in advance (clustered, checkerboard, random, ties,
NULLs, a class with no member, one point; a projected and a geographic case where coordinates
are involved). Properties that must hold for every input are checked with hypothesis.

The cells of a grid are found again with shapely (each point within a cell polygon, distances
between polygon centroids), never with the grid's own index arithmetic; the rules that the code
documents (ties to the higher total score, a NULL score counting 1, then the first label) are
written out here from the README's words.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict

import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod, Transformer
from scipy import stats
from sklearn import metrics

from mus_qgis.engine.errors import LabelSetError, MusError
from mus_qgis.engine.readings.agreement import agreement
from mus_qgis.engine.readings.boundaries import (
    alignment_test,
    label_boundaries,
    shares_from_points,
)
from mus_qgis.engine.readings.grid import resample_to_grid
from mus_qgis.engine.readings.periods import correlate_with_reference, expected_periods
from mus_qgis.engine.readings.ranking import rank_labels

EXACT = 1e-9  # relative tolerance where the answer is exact (sums in another order differ)
# Small property runs: the whole file stays within seconds on two cores.
PROPERTIES = settings(max_examples=40, deadline=None, database=None)

# Rome, for the geographic cases: WGS 84 degrees and the UTM zone a user's layer would use.
WGS84, UTM33 = "EPSG:4326", "EPSG:32633"
TO_UTM = Transformer.from_crs(WGS84, UTM33, always_xy=True)
TO_LONLAT = Transformer.from_crs(UTM33, WGS84, always_xy=True)
GEOD = Geod(ellps="WGS84")
# Grid (UTM) distance against the ellipsoid's near Rome: the zone's scale factor, about 1.0001.
METRES = 1e-3


def close(a, b, rel=EXACT, abs_=1e-12) -> bool:
    return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=abs_)


# ---------------------------------------------------------------------------------------------
# Grid: shares, entropy, majority and its tie rule, filling and its distance.
# ---------------------------------------------------------------------------------------------


def cell_polygons(result):
    return shapely.polygons(np.array([result.polygon(row) for row in range(len(result.label))]))


def cell_of_points(polygons, x, y):
    """The cell polygon each point lies within (shapely, not the grid's index arithmetic)."""
    points = shapely.points(np.asarray(x, float), np.asarray(y, float))
    point_index, cell_index = shapely.STRtree(polygons).query(points, predicate="within")
    cell = np.full(len(points), -1)
    cell[point_index] = cell_index
    assert np.bincount(point_index, minlength=len(points)).tolist() == [1] * len(points), (
        "every point lies within exactly one cell"
    )
    return cell


def majority_by_rule(counts, scores) -> int:
    """The README's rule: the most frequent label; ties to the higher total score (a NULL score
    counts 1, applied by the caller), then to the label that comes first."""
    best = max(counts)
    tied = [label for label, c in enumerate(counts) if close(c, best)]
    best_score = max(scores[label] for label in tied)
    tied = [label for label in tied if close(scores[label], best_score)]
    return tied[0]


def reference_cells(cell, labels, n_cells, n_labels, weights=None, scores=None):
    """Per cell: weighted label counts, total scores per label (NaN score: 1), points."""
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, float)
    scores = weights if scores is None else np.asarray(scores, float)
    counts = np.zeros((n_cells, n_labels))
    totals = np.zeros((n_cells, n_labels))
    points = np.zeros(n_cells, dtype=int)
    for c, label, w, s in zip(cell, labels, weights, scores, strict=True):
        counts[c, label] += 0.0 if math.isnan(w) else w
        totals[c, label] += 1.0 if math.isnan(s) else s
        points[c] += 1
    return counts, totals, points


@pytest.mark.parametrize("shape", ["square", "hexagon"])
@pytest.mark.parametrize("weighted", [False, True])
def test_grid_cells_against_shapely_binning_and_scipy_entropy(shape, weighted):
    rng = np.random.default_rng(11)
    n, n_labels = 500, 4
    x, y = rng.uniform(0, 1000, n), rng.uniform(0, 800, n)
    labels = rng.choice([0, 1, 3], n)  # label 2: a class with no member
    scores = rng.uniform(0.05, 1.0, n)
    scores[rng.random(n) < 0.1] = np.nan  # NULL scores
    weights = scores if weighted else None
    result = resample_to_grid(
        x, y, labels, n_labels, 100.0, shape, weights=weights, scores=scores, fill=False
    )
    polygons = cell_polygons(result)
    cell = cell_of_points(polygons, x, y)
    counts, totals, points = reference_cells(
        cell, labels, len(polygons), n_labels, weights, scores
    )
    assert (points > 0).all(), "without filling, every cell holds a point"
    assert result.points.tolist() == points.tolist()
    assert not result.filled.any() and (result.fill_distance == 0).all()
    ties = 0
    for row in range(len(polygons)):
        share = counts[row].max() / counts[row].sum()
        assert close(result.share[row], share)
        assert close(result.entropy[row], stats.entropy(counts[row], base=2))
        assert result.label[row] == majority_by_rule(counts[row], totals[row])
        ties += (counts[row] == counts[row].max()).sum() > 1
    assert weighted or ties > 5, "the case exercises the tie rule"
    # The hexagons have the squares' area.
    assert shapely.area(polygons) == pytest.approx(np.full(len(polygons), 100.0 * 100.0))


def test_grid_tie_rule_by_hand_in_observed_and_filled_cells():
    nan = math.nan
    # Observed cell: one point each; the higher score wins over the first label.
    tie = resample_to_grid([5, 6], [5, 6], [0, 1], 2, 100.0, fill=False, scores=[0.4, 0.7])
    assert tie.label.tolist() == [1]
    equal = resample_to_grid([5, 6], [5, 6], [1, 0], 2, 100.0, fill=False, scores=[0.5, 0.5])
    assert equal.label.tolist() == [0]  # then the first label
    # A NULL score counts 1: above 0.9, below 1.2.
    null = resample_to_grid([5, 6], [5, 6], [0, 1], 2, 100.0, fill=False, scores=[nan, 0.9])
    assert null.label.tolist() == [0]
    null = resample_to_grid([5, 6], [5, 6], [0, 1], 2, 100.0, fill=False, scores=[nan, 1.2])
    assert null.label.tolist() == [1]
    # Filled cell (1, 0) between observed (0, 0) and (2, 0), 100 m from each, their labels
    # differ: the label whose points in those two cells score higher in total.
    area = shapely.box(0, 0, 300, 100)

    def middle(labels, cells, scores):
        """The label of the empty cell (1, 0); points at x 10, 13, ... in their cell."""
        x = [cell * 100 + 10 + 3 * i for i, cell in enumerate(cells)]
        result = resample_to_grid(x, [50] * len(x), labels, 2, 100.0, area=area, scores=scores)
        row = [tuple(i) for i in result.index.tolist()].index((1, 0))
        assert result.filled[row] and result.fill_distance[row] == pytest.approx(100.0)
        return int(result.label[row])

    # (0, 0) holds label 1 (score 0.8); (2, 0) label 0 with a NULL score: 1 > 0.8.
    assert middle([1, 0], [0, 2], [0.8, nan]) == 0
    assert middle([1, 0], [0, 2], [0.8, 0.5]) == 1
    assert middle([1, 0], [0, 2], [0.5, 0.5]) == 0  # equal totals: the first label
    # Every point of a tied label in those cells counts, the minority ones too: (0, 0) is
    # label 1 (0.3 + 0.3), (2, 0) is label 0 (0.4 + 0.4) with one label-1 point (0.5) in it;
    # label 1 totals 1.1 against label 0's 0.8.
    assert middle([1, 1, 0, 0, 1], [0, 0, 2, 2, 2], [0.3, 0.3, 0.4, 0.4, 0.5]) == 1


@pytest.mark.parametrize("shape", ["square", "hexagon"])
def test_grid_fill_from_the_nearest_observed_cells_by_brute_force(shape):
    rng = np.random.default_rng(12)
    n, n_labels = 30, 3
    x, y = rng.uniform(100, 900, n), rng.uniform(100, 900, n)
    labels = rng.integers(0, n_labels, n)
    scores = np.round(rng.uniform(0.1, 1, n), 1)  # coarse scores: some filled ties go further
    scores[::7] = np.nan
    # The study area: a disc, and an island that no point reaches.
    area = shapely.Point(500, 500).buffer(450).union(shapely.box(1500, 1500, 1700, 1650))
    result = resample_to_grid(x, y, labels, n_labels, 100.0, shape, area=area, scores=scores)
    polygons = cell_polygons(result)
    cell = cell_of_points(polygons, x, y)
    counts, totals, points = reference_cells(cell, labels, len(polygons), n_labels, None, scores)
    observed = points > 0
    assert result.filled.tolist() == (~observed).tolist()
    assert (result.points[~observed] == 0).all() and np.isnan(result.share[~observed]).all()
    majority = {
        row: majority_by_rule(counts[row], totals[row]) for row in np.flatnonzero(observed)
    }
    centroids = shapely.get_coordinates(shapely.centroid(polygons))
    observed_rows = np.flatnonzero(observed)
    island = shapely.box(1500, 1500, 1700, 1650)
    assert any(shapely.intersects(island, polygons[r]) for r in np.flatnonzero(~observed))
    vote_ties = 0
    for row in np.flatnonzero(~observed):
        distances = np.hypot(*(centroids[observed_rows] - centroids[row]).T)
        least = distances.min()
        assert close(result.fill_distance[row], least)
        nearest = observed_rows[np.abs(distances - least) <= 1e-9 * least]
        votes = Counter(majority[r] for r in nearest)
        vote_counts = [votes.get(label, 0) for label in range(n_labels)]
        vote_ties += vote_counts.count(max(vote_counts)) > 1
        score = totals[nearest].sum(axis=0)
        assert result.label[row] == majority_by_rule(vote_counts, score), row
    assert vote_ties > 0, "the case exercises a filled cell's tie"
    assert (result.fill_distance[observed] == 0).all()


@pytest.mark.parametrize("shape", ["square", "hexagon"])
def test_grid_covers_the_study_area_with_exactly_the_cells_that_overlap_it(shape):
    rng = np.random.default_rng(13)
    area = shapely.Polygon([(0, 0), (730, 40), (910, 620), (380, 870), (60, 500)]).union(
        shapely.Point(1400, 300).buffer(120)  # a detached piece
    )
    inside = shapely.points(rng.uniform(0, 900, (400, 2)))
    inside = shapely.get_coordinates(inside[shapely.contains(area, inside)][:40])
    result = resample_to_grid(inside[:, 0], inside[:, 1], rng.integers(0, 3, len(inside)), 3,
                              90.0, shape, area=area)
    polygons = cell_polygons(result)
    # Each cell overlaps the area (more than an edge), the cells tile without overlap, and
    # together they leave no part of the area uncovered: then no overlapping cell is missing.
    assert (shapely.area(shapely.intersection(polygons, area)) > 0).all()
    union = shapely.union_all(polygons)
    assert union.area == pytest.approx(shapely.area(polygons).sum(), rel=1e-9)
    assert area.difference(union).area <= 1e-9 * area.area
    assert (result.label >= 0).all()


def test_grid_clustered_dispersed_and_mixed_cells():
    size = 100.0
    columns, rows = np.meshgrid(np.arange(6), np.arange(4), indexing="ij")
    columns, rows = columns.ravel(), rows.ravel()
    offsets = np.array([[20, 30], [70, 60], [40, 80]])
    x = (columns[:, None] * size + offsets[None, :, 0]).ravel()
    y = (rows[:, None] * size + offsets[None, :, 1]).ravel()
    cell_column = np.repeat(columns, 3)
    cell_row = np.repeat(rows, 3)
    # Clustered: west half one label, east half another. Checkerboard: alternate cells.
    for labels in (cell_column >= 3, (cell_column + cell_row) % 2):
        labels = labels.astype(int)
        result = resample_to_grid(x, y, labels, 2, size)
        polygons = cell_polygons(result)
        cell = cell_of_points(polygons, x, y)
        assert len(polygons) == 24 and not result.filled.any()
        assert (result.share == 1).all() and (result.entropy == 0).all()
        for row in range(len(polygons)):
            assert set(labels[cell == row]) == {result.label[row]}
    # Every cell an even mix of two labels: share 1/2, entropy exactly 1 bit, and the tie to
    # the first label (scores all 1).
    x2 = np.concatenate([x[::3], x[1::3]])
    y2 = np.concatenate([y[::3], y[1::3]])
    labels = np.concatenate([np.ones(24, int), np.zeros(24, int)])
    mixed = resample_to_grid(x2, y2, labels, 2, size)
    assert (mixed.share == 0.5).all() and (mixed.entropy == 1.0).all()
    assert (mixed.label == 0).all()
    # Random labels, four equally likely, 400 points a cell: entropy near log2(4) = 2 bits.
    rng = np.random.default_rng(14)
    many = resample_to_grid(
        rng.uniform(0, 200, 1600), rng.uniform(0, 200, 1600), rng.integers(0, 4, 1600), 4, size
    )
    assert ((many.entropy > 1.95) & (many.entropy <= 2 + 1e-12)).all()
    assert ((many.share >= 0.25) & (many.share < 0.35)).all()


@pytest.mark.parametrize("shape", ["square", "hexagon"])
def test_grid_from_one_point_fills_every_cell_at_the_centroid_distance(shape):
    area = shapely.box(0, 0, 500, 400)
    result = resample_to_grid([123.0], [234.0], [2], 3, 100.0, shape, area=area)
    polygons = cell_polygons(result)
    (home,) = np.flatnonzero(~result.filled)
    assert shapely.contains_xy(polygons[home], 123.0, 234.0)
    assert (result.points[home], result.share[home], result.entropy[home]) == (1, 1.0, 0.0)
    assert (result.label == 2).all()
    centroids = shapely.centroid(polygons)
    assert result.fill_distance == pytest.approx(
        shapely.distance(centroids, centroids[home]), rel=EXACT, abs=1e-9
    )


@pytest.mark.parametrize("shape", ["square", "hexagon"])
def test_grid_of_geographic_points_is_in_metres(shape):
    """Points in WGS 84 degrees, projected to their UTM zone as a user's QGIS would: the cells
    measure the cell size on the ground, and fill distances are ground distances."""
    rng = np.random.default_rng(15)
    lon, lat = rng.uniform(12.46, 12.50, 40), rng.uniform(41.88, 41.91, 40)
    x, y = TO_UTM.transform(lon, lat)
    outline = shapely.box(12.455, 41.875, 12.505, 41.915)
    area = shapely.Polygon(np.column_stack(TO_UTM.transform(*outline.exterior.xy)))
    size = 250.0
    result = resample_to_grid(x, y, rng.integers(0, 2, 40), 2, size, shape, area=area)
    assert result.filled.any()
    for row in range(len(result.label)):
        ring_lon, ring_lat = TO_LONLAT.transform(*np.array(result.polygon(row)).T)
        area_m2 = abs(GEOD.polygon_area_perimeter(ring_lon[:-1], ring_lat[:-1])[0])
        assert area_m2 == pytest.approx(size * size, rel=2 * METRES)
        if shape == "square":
            _, _, sides = GEOD.inv(ring_lon[:-1], ring_lat[:-1], ring_lon[1:], ring_lat[1:])
            assert sides == pytest.approx(np.full(4, size), rel=METRES)
    centres = np.array(
        [shapely.centroid(shapely.Polygon(result.polygon(r))).coords[0] for r in range(len(result.label))]
    )
    centre_lon, centre_lat = TO_LONLAT.transform(centres[:, 0], centres[:, 1])
    observed = np.flatnonzero(~result.filled)
    for row in np.flatnonzero(result.filled):
        _, _, ground = GEOD.inv(
            np.full(len(observed), centre_lon[row]),
            np.full(len(observed), centre_lat[row]),
            centre_lon[observed],
            centre_lat[observed],
        )
        assert result.fill_distance[row] == pytest.approx(ground.min(), rel=METRES)


@st.composite
def labelled_points(draw, max_points=25, max_labels=5):
    """Points at half-metre coordinates (exact under whole-cell shifts), labels and a count."""
    k = draw(st.integers(1, max_labels))
    n = draw(st.integers(1, max_points))
    xs = draw(st.lists(st.integers(0, 999), min_size=n, max_size=n))
    ys = draw(st.lists(st.integers(0, 699), min_size=n, max_size=n))
    labels = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    return np.array(xs) + 0.5, np.array(ys) + 0.5, np.array(labels), k


@PROPERTIES
@given(labelled_points(max_points=40), st.sampled_from(["square", "hexagon"]))
def test_property_grid_counts_shares_and_entropy_bounds(data, shape):
    x, y, labels, k = data
    result = resample_to_grid(x, y, labels, k, 100.0, shape)
    observed = ~result.filled
    assert result.points.sum() == len(x)  # the label counts sum to the points
    assert (result.points[observed] >= 1).all() and (result.points[result.filled] == 0).all()
    share, entropy = result.share[observed], result.entropy[observed]
    assert ((share > 0) & (share <= 1)).all()
    present = min(k, len(set(labels.tolist())))
    assert (share >= 1 / present - 1e-12).all()  # the majority has at least an even share
    assert ((entropy >= 0) & (entropy <= math.log2(k) + 1e-12)).all()
    assert ((share == 1) == (entropy == 0)).all()
    assert (result.label >= 0).all() and (result.label < k).all()


@PROPERTIES
@given(labelled_points(), st.sampled_from(["square", "hexagon"]), st.randoms())
def test_property_grid_unchanged_by_renaming_labels(data, shape, random):
    x, y, labels, k = data
    # Scores 2^i: no two different sets of points have the same total, so the only ties left
    # to the label order never arise, and a renaming must change nothing but the names.
    scores = 2.0 ** np.arange(len(x))
    random.shuffle(scores)
    rename = np.array(random.sample(range(k), k))
    before = resample_to_grid(x, y, labels, k, 100.0, shape, scores=scores)
    after = resample_to_grid(x, y, rename[labels], k, 100.0, shape, scores=scores)
    assert after.index.tolist() == before.index.tolist()
    assert rename[before.label].tolist() == after.label.tolist()
    for name in ("points", "share", "entropy", "filled", "fill_distance"):
        np.testing.assert_allclose(getattr(after, name), getattr(before, name), rtol=EXACT)


@PROPERTIES
@given(
    labelled_points(),
    st.sampled_from(["square", "hexagon"]),
    st.randoms(),
    st.lists(st.sampled_from([0.25, 0.5, 0.75, 1.0, math.nan]), min_size=40, max_size=40),
)
def test_property_grid_unchanged_by_feature_order(data, shape, random, score_pool):
    x, y, labels, k = data
    scores = np.array(score_pool[: len(x)])  # ties and NULLs welcome: the rule is order-free
    order = list(range(len(x)))
    random.shuffle(order)
    before = resample_to_grid(x, y, labels, k, 100.0, shape, scores=scores)
    after = resample_to_grid(x[order], y[order], labels[order], k, 100.0, shape, scores=scores[order])
    assert after.index.tolist() == before.index.tolist()
    assert after.label.tolist() == before.label.tolist()
    for name in ("points", "share", "entropy", "filled", "fill_distance"):
        np.testing.assert_allclose(getattr(after, name), getattr(before, name), rtol=EXACT)


@PROPERTIES
@given(labelled_points(), st.integers(-50, 50), st.integers(-50, 50))
def test_property_square_grid_unchanged_by_a_whole_cell_translation(data, dx, dy):
    x, y, labels, k = data
    scores = np.linspace(0.1, 1, len(x))
    before = resample_to_grid(x, y, labels, k, 100.0, scores=scores)
    after = resample_to_grid(x + 100.0 * dx, y + 100.0 * dy, labels, k, 100.0, scores=scores)
    assert (after.index - [dx, dy]).tolist() == before.index.tolist()
    assert after.label.tolist() == before.label.tolist()
    np.testing.assert_allclose(after.centres - [100.0 * dx, 100.0 * dy], before.centres)
    for name in ("points", "share", "entropy", "filled", "fill_distance"):
        np.testing.assert_allclose(getattr(after, name), getattr(before, name), rtol=EXACT)


def test_hexagon_grid_unchanged_by_a_translation_along_the_lattice():
    rng = np.random.default_rng(16)
    size = 100.0
    radius = size * math.sqrt(2 / (3 * math.sqrt(3)))  # the hexagon of a size² area
    x, y = rng.uniform(0, 1000, 60), rng.uniform(0, 700, 60)
    labels = rng.integers(0, 3, 60)
    before = resample_to_grid(x, y, labels, 3, size, "hexagon")
    neighbour = before.centres[None, :, :] - before.centres[:, None, :]
    steps = np.hypot(neighbour[..., 0], neighbour[..., 1])
    # The lattice's step is the distance between neighbouring centres: √3 × radius.
    assert steps[steps > 1e-6].min() == pytest.approx(math.sqrt(3) * radius, rel=EXACT)
    for q, r in [(3, 0), (-2, 5), (7, -4)]:
        shift = np.array([math.sqrt(3) * radius * (q + r / 2), 1.5 * radius * r])
        after = resample_to_grid(x + shift[0], y + shift[1], labels, 3, size, "hexagon")
        np.testing.assert_allclose(after.centres - shift, before.centres, atol=1e-6)
        assert after.label.tolist() == before.label.tolist()
        np.testing.assert_allclose(after.fill_distance, before.fill_distance, rtol=1e-9)
        np.testing.assert_allclose(after.share, before.share, rtol=EXACT)
