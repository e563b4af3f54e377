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

from mus_qgis.engine.readings.agreement import agreement
from mus_qgis.engine.readings.boundaries import (
    alignment_test,
    label_boundaries,
    shares_from_points,
)
from mus_qgis.engine.readings.grid import resample_to_grid
from mus_qgis.engine.readings.periods import correlate_with_reference, expected_periods
from mus_qgis.engine.readings.ranking import rank_labels
from mus_qgis.shared.errors import LabelSetError, MusError

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
    counts, totals, points = reference_cells(cell, labels, len(polygons), n_labels, weights, scores)
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
    majority = {row: majority_by_rule(counts[row], totals[row]) for row in np.flatnonzero(observed)}
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
    result = resample_to_grid(
        inside[:, 0], inside[:, 1], rng.integers(0, 3, len(inside)), 3, 90.0, shape, area=area
    )
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
        [
            shapely.centroid(shapely.Polygon(result.polygon(r))).coords[0]
            for r in range(len(result.label))
        ]
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
    after = resample_to_grid(
        x[order], y[order], labels[order], k, 100.0, shape, scores=scores[order]
    )
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


# ---------------------------------------------------------------------------------------------
# Ranking: first places, shares, mean probabilities, groups summed, targets, ranks.
# ---------------------------------------------------------------------------------------------


def reference_ranking(labels, first, probabilities=None, targets=(), groups=None):
    """The ranking by its definition, in pandas: counts of first labels over the classified
    points, column means of their probabilities, groups summed in place of their members (an
    unknown stays unknown), sorted by first places, then mean probability (unknown last), then
    name; ranks 1, 2, 3 ..."""
    first = np.asarray(first)
    classified = first[first >= 0]
    named = pd.Series([labels[i] for i in classified], dtype=object)
    table = pd.DataFrame(
        {"first_places": named.value_counts().reindex(labels, fill_value=0).astype(int)}
    )
    if probabilities is None:
        table["mean_probability"] = np.nan
    else:
        rows = pd.DataFrame(np.asarray(probabilities, float)[first >= 0], columns=labels)
        table["mean_probability"] = rows.mean()
    table["target"] = [label in targets for label in labels]
    table["members"] = [() for _ in labels]
    for name, members in (groups or {}).items():
        part = table.loc[list(members)]
        table = table.drop(index=list(members))
        table.loc[name] = {
            "first_places": int(part["first_places"].sum()),
            "mean_probability": part["mean_probability"].sum(min_count=1),
            "target": name in targets or bool(part["target"].any()),
            "members": tuple(members),
        }
    table["share"] = table["first_places"] / len(classified)
    table["label"] = table.index
    table = table.sort_values(
        ["first_places", "mean_probability", "label"],
        ascending=[False, False, True],
        na_position="last",
    )
    table["rank"] = np.arange(1, len(table) + 1)
    return table.reset_index(drop=True)


def assert_same_ranking(ranked, reference):
    assert [entry.label for entry in ranked] == reference["label"].tolist()
    for entry, (_, row) in zip(ranked, reference.iterrows(), strict=True):
        assert entry.rank == row["rank"] and entry.first_places == row["first_places"]
        assert close(entry.share, row["share"])
        if math.isnan(row["mean_probability"]):
            assert math.isnan(entry.mean_probability), entry
        else:
            assert close(entry.mean_probability, row["mean_probability"]), entry
        assert entry.target == row["target"] and tuple(entry.members) == row["members"]


def test_ranking_against_a_pandas_reference_with_top_k_probabilities_and_groups():
    rng = np.random.default_rng(21)
    labels = ["Rome", "Milan", "Vatican City", "Naples", "Turin", "Bari", "Genoa", "Aosta"]
    n = 400
    full = rng.dirichlet([4, 3, 3, 2, 2, 1, 1, 0.05], n)
    first = full.argmax(axis=1)
    first[rng.random(n) < 0.1] = -1  # not classified
    # What a classified layer holds: each point's top 3 probabilities, zero elsewhere.
    top = np.argsort(-full, axis=1)[:, :3]
    kept = np.zeros_like(full)
    np.put_along_axis(kept, top, np.take_along_axis(full, top, axis=1), axis=1)
    assert (first != labels.index("Aosta")).all(), "a label with no first place"
    groups = {"Rome + Vatican City": ["Rome", "Vatican City"]}
    targets = ["Vatican City", "Turin"]
    ranked = rank_labels(labels, first, kept, targets, groups)
    assert_same_ranking(ranked, reference_ranking(labels, first, kept, targets, groups))
    # Already-averaged probabilities (a store ranked in chunks) rank the same.
    means = kept[first >= 0].mean(axis=0)
    again = rank_labels(labels, first, targets=targets, groups=groups, mean_probability=means)
    assert_same_ranking(again, reference_ranking(labels, first, kept, targets, groups))


def test_ranking_ties_go_to_the_mean_probability_then_the_name():
    labels = ["b", "a", "c", "d"]
    first = [0, 1, 2, 2, -1]
    # b and a: one first place each and the same mean probability; d none.
    probabilities = np.array(
        [
            [0.4, 0.4, 0.1, 0.1],
            [0.3, 0.3, 0.3, 0.1],
            [0.2, 0.2, 0.5, 0.1],
            [0.1, 0.1, 0.7, 0.1],
            [0.9, 0.0, 0.0, 0.1],
        ]
    )
    ranked = rank_labels(labels, first, probabilities)
    assert [(e.label, e.rank, e.first_places) for e in ranked] == [
        ("c", 1, 2),
        ("a", 2, 1),
        ("b", 3, 1),
        ("d", 4, 0),
    ]
    assert [e.share for e in ranked] == pytest.approx([2 / 4, 1 / 4, 1 / 4, 0])
    assert ranked[0].mean_probability == pytest.approx((0.1 + 0.3 + 0.5 + 0.7) / 4)
    assert_same_ranking(ranked, reference_ranking(labels, first, probabilities))


def test_ranking_without_probabilities_leaves_every_mean_unknown_groups_included():
    labels = ["A", "B", "C", "D"]
    first = [0, 0, 1, 2]
    groups = {"Z": ["B", "C"]}  # two first places, as A has
    ranked = rank_labels(labels, first, groups=groups, targets=["C"])
    # No probability at all: the group's mean is as unknown as its members', so the tie of A
    # and Z goes to the name, not to a 0 the group does not have.
    assert [(e.label, e.rank) for e in ranked] == [("A", 1), ("Z", 2), ("D", 3)]
    assert all(math.isnan(e.mean_probability) for e in ranked)
    assert ranked[1].target and ranked[1].members == ("B", "C")
    assert_same_ranking(ranked, reference_ranking(labels, first, None, ["C"], groups))


def test_ranking_of_one_point_and_an_unknown_target():
    ranked = rank_labels(["A", "B"], [1], np.array([[0.3, 0.7]]))
    assert [(e.label, e.rank, e.first_places, e.share) for e in ranked] == [
        ("B", 1, 1, 1.0),
        ("A", 2, 0, 0.0),
    ]
    assert [e.mean_probability for e in ranked] == pytest.approx([0.7, 0.3])
    with pytest.raises(LabelSetError, match="'Roma'"):
        rank_labels(["A", "B"], [1], targets=["Roma"])
    with pytest.raises(LabelSetError, match="'Q'"):
        rank_labels(["A", "B"], [1], groups={"G": ["A", "Q"]})


# ---------------------------------------------------------------------------------------------
# Agreement: confusion matrix, overall accuracy, Cohen's kappa, precision, recall, F1.
# ---------------------------------------------------------------------------------------------


def sklearn_agreement(reference, predicted, classes=None):
    """The same statistics from sklearn.metrics, on the pairs where both values are given."""
    import warnings

    pairs = [
        (str(r), str(p))
        for r, p in zip(reference, predicted, strict=True)
        if r not in (None, "") and p not in (None, "")
    ]
    truth = [r for r, _ in pairs]
    guess = [p for _, p in pairs]
    classes = list(classes) if classes is not None else sorted(set(truth) | set(guess))
    inside = [(t, g) for t, g in pairs if t in classes and g in classes]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns where a statistic is 0/0
        if not inside:
            return classes, np.zeros((len(classes),) * 2, int), math.nan, math.nan, None
        truth, guess = [t for t, _ in inside], [g for _, g in inside]
        matrix = metrics.confusion_matrix(truth, guess, labels=classes)
        accuracy = metrics.accuracy_score(truth, guess)
        kappa = metrics.cohen_kappa_score(truth, guess, labels=classes)
        per_class = {
            name: function(truth, guess, labels=classes, average=None, zero_division=np.nan)
            for name, function in (
                ("precision", metrics.precision_score),
                ("recall", metrics.recall_score),
                ("f1", metrics.f1_score),
            )
        }
        _, _, _, support = metrics.precision_recall_fscore_support(
            truth, guess, labels=classes, zero_division=np.nan
        )
    per_class["support"] = support
    return classes, matrix, accuracy, kappa, per_class


def assert_agrees_with_sklearn(result, reference, predicted, classes=None):
    names, matrix, accuracy, kappa, per_class = sklearn_agreement(reference, predicted, classes)
    assert result.classes == names
    assert result.matrix.tolist() == matrix.tolist()
    for mine, theirs in ((result.overall_accuracy, accuracy), (result.kappa, kappa)):
        assert (math.isnan(mine) and math.isnan(theirs)) or close(mine, theirs)
    if per_class is not None:
        for name in ("precision", "recall", "f1"):
            np.testing.assert_allclose(getattr(result, name), per_class[name], rtol=EXACT)
        assert result.support.tolist() == per_class["support"].tolist()


def test_agreement_against_sklearn_with_missing_values_and_a_class_with_no_member():
    rng = np.random.default_rng(31)
    classes = ["11100", "12100", "14100", "21000", "31000", "50000", "99999"]  # 99999: none
    truth = [classes[i] for i in rng.integers(0, 6, 3000)]
    guess = [t if rng.random() < 0.55 else classes[rng.integers(0, 6)] for t in truth]
    for i in rng.choice(3000, 150, replace=False):
        (truth if i % 2 else guess)[i] = None if i % 3 else ""
    result = agreement(truth, guess, classes)
    assert_agrees_with_sklearn(result, truth, guess, classes)
    last = classes.index("99999")
    assert result.support[last] == 0
    assert math.isnan(result.precision[last]) and math.isnan(result.recall[last])
    assert math.isnan(result.f1[last])
    # Without the classes given: those found, in sorted order.
    assert_agrees_with_sklearn(agreement(truth, guess), truth, guess)


def test_agreement_known_cases_by_hand():
    perfect = agreement(list("AABBC"), list("AABBC"))
    assert (perfect.overall_accuracy, perfect.kappa) == (1.0, 1.0)
    # Every answer swapped between two balanced classes: po 0, pe 1/2, kappa -1.
    swapped = agreement(list("AABB"), list("BBAA"))
    assert (swapped.overall_accuracy, swapped.kappa) == (0.0, -1.0)
    assert swapped.f1.tolist() == [0.0, 0.0]
    # Prediction independent of the truth: po = pe = 1/2, kappa 0.
    chance = agreement(list("AABB"), list("ABAB"))
    assert chance.overall_accuracy == 0.5 and chance.kappa == pytest.approx(0.0, abs=1e-15)
    # A class in the reference but never predicted: precision unknown, recall and F1 0.
    never = agreement(["A", "B"], ["A", "A"])
    assert math.isnan(never.precision[1]) and never.recall[1] == 0 and never.f1[1] == 0
    assert never.kappa == 0.0  # po 1/2, pe (1·2 + 1·0)/4 = 1/2
    # One pair: right (pe = 1, kappa undefined) and wrong (pe = 0, kappa 0).
    one = agreement(["A"], ["A"])
    assert one.overall_accuracy == 1.0 and math.isnan(one.kappa)
    wrong = agreement(["A"], ["B"])
    assert (wrong.overall_accuracy, wrong.kappa) == (0.0, 0.0)
    # Codes compared as text, numbers or not; pairs with a missing side left out.
    codes = agreement([11100, 12100, None, 14100], ["11100", "12100", "11100", ""])
    assert (codes.total, codes.overall_accuracy, codes.kappa) == (2, 1.0, 1.0)
    nothing = agreement([None, ""], ["A", "B"])
    assert nothing.total == 0 and math.isnan(nothing.overall_accuracy)
    assert math.isnan(nothing.kappa)
    for case in (perfect, swapped, chance, never, one, wrong):
        reference = [case.classes[i] for i, row in enumerate(case.matrix) for _ in range(row.sum())]
        predicted = [
            case.classes[j] for row in case.matrix for j, n in enumerate(row) for _ in range(n)
        ]
        assert_agrees_with_sklearn(case, reference, predicted, case.classes)


VALUES = st.sampled_from(["a", "b", "c", "d", None, ""])


@PROPERTIES
@given(st.lists(st.tuples(VALUES, VALUES), max_size=60), st.randoms())
def test_property_agreement_bounds_renaming_and_order(pairs, random):
    reference = [r for r, _ in pairs]
    predicted = [p for _, p in pairs]
    result = agreement(reference, predicted)
    assert_agrees_with_sklearn(result, reference, predicted)
    assert math.isnan(result.kappa) or -1 - 1e-12 <= result.kappa <= 1 + 1e-12
    assert math.isnan(result.overall_accuracy) or 0 <= result.overall_accuracy <= 1
    # Renaming the classes (so that their sorted order changes) changes nothing but the names.
    new_names = ["w", "x", "y", "z"]
    random.shuffle(new_names)
    rename = dict(zip("abcd", new_names, strict=True)) | {None: None, "": ""}
    renamed = agreement([rename[r] for r in reference], [rename[p] for p in predicted])
    where = [renamed.classes.index(rename[c]) for c in result.classes]
    assert renamed.matrix[np.ix_(where, where)].tolist() == result.matrix.tolist()
    for name in ("overall_accuracy", "kappa"):
        a, b = getattr(result, name), getattr(renamed, name)
        assert (math.isnan(a) and math.isnan(b)) or close(a, b)
    for name in ("precision", "recall", "f1", "support"):
        np.testing.assert_allclose(getattr(renamed, name)[where], getattr(result, name))
    # The order of the pairs changes nothing.
    order = list(range(len(pairs)))
    random.shuffle(order)
    shuffled = agreement([reference[i] for i in order], [predicted[i] for i in order])
    assert shuffled.matrix.tolist() == result.matrix.tolist()
    for name in ("overall_accuracy", "kappa"):
        a, b = getattr(result, name), getattr(shuffled, name)
        assert (math.isnan(a) and math.isnan(b)) or a == b


# ---------------------------------------------------------------------------------------------
# Boundaries: discontinuity edges, their lengths per label pair, strength, alignment.
# ---------------------------------------------------------------------------------------------


def square_grid(columns: int, rows: int, size: float = 100.0, x0: float = 0.0, y0: float = 0.0):
    """Rings of a columns × rows square grid, corners on exact multiples of the size."""
    rings = [
        [
            (x0 + size * c, y0 + size * r),
            (x0 + size * (c + 1), y0 + size * r),
            (x0 + size * (c + 1), y0 + size * (r + 1)),
            (x0 + size * c, y0 + size * (r + 1)),
            (x0 + size * c, y0 + size * r),
        ]
        for r in range(rows)
        for c in range(columns)
    ]
    return np.array(rings, dtype=float)


def hexagon_grid(columns: int, rows: int, size: float = 100.0):
    """Rings of pointy-top hexagons with a size² area. Every corner is (w·i, h·j) for whole i, j
    (w = radius·√3/2, h = radius/2), so neighbours share their corners bit for bit."""
    radius = size * math.sqrt(2 / (3 * math.sqrt(3)))
    w, h = radius * math.sqrt(3) / 2, radius / 2
    corners = [(1, 1), (0, 2), (-1, 1), (-1, -1), (0, -2), (1, -1), (1, 1)]
    rings = []
    for r in range(rows):
        for c in range(columns):
            i, j = 2 * c + (r % 2), 3 * r  # offset rows: a compact block of cells
            rings.append([(w * (i + di), h * (j + dj)) for di, dj in corners])
    return np.array(rings, dtype=float)


def shared_edges(polygons):
    """Every pair of cells sharing a boundary of positive length, and that length (shapely)."""
    left, right = shapely.STRtree(polygons).query(polygons, predicate="touches")
    keep = left < right
    left, right = left[keep], right[keep]
    common = shapely.intersection(polygons[left], polygons[right])
    length = shapely.length(common)
    keep = length > 0
    return left[keep], right[keep], common[keep], length[keep]


def total_variation(p, q):
    """Total variation distance of two distributions, as 1 − Σ min(p, q)."""
    return 1.0 - np.minimum(p, q).sum()


@pytest.mark.parametrize("grid", ["square", "hexagon"])
def test_boundaries_against_shapely_unions_and_shared_edges(grid):
    rng = np.random.default_rng(41)
    rings = square_grid(9, 7) if grid == "square" else hexagon_grid(9, 7)
    polygons = shapely.polygons(rings)
    n, n_labels = len(rings), 4
    # Blocks of labels with noise, a label with no cell (3) and cells with none (-1).
    labels = np.where(np.arange(n) % 9 < 4, 0, 1)
    labels[rng.random(n) < 0.25] = 2
    labels[rng.random(n) < 0.08] = -1
    shares = rng.dirichlet(np.ones(n_labels), n)
    result = label_boundaries(rings, labels, shares=shares)

    left, right, common, length = shared_edges(polygons)
    assert result.neighbour_pairs == len(left)
    differ = (labels[left] >= 0) & (labels[right] >= 0) & (labels[left] != labels[right])
    reference = {
        (int(i), int(j)): (geometry, float(size))
        for i, j, geometry, size, d in zip(left, right, common, length, differ, strict=True)
        if d
    }
    mine = {tuple(sorted(pair)): row for row, pair in enumerate(result.pairs.tolist())}
    assert set(mine) == set(reference)
    for pair, row in mine.items():
        geometry, size = reference[pair]
        edge = result.edges[row]
        assert close(edge.length, size)
        assert shapely.hausdorff_distance(edge, geometry) <= 1e-9 * size  # the shared edge
        i, j = pair
        assert close(result.strength[row], total_variation(shares[i], shares[j]))
    assert close(result.total_length, sum(size for _, size in reference.values()))
    # Per pair of labels: the length where the two labels' regions meet (unions of cells).
    regions = {a: shapely.union_all(polygons[labels == a]) for a in range(n_labels)}
    found = defaultdict(lambda: [0.0, 0, 0.0])
    side = float(length[0])  # every shared edge is one side long
    assert np.allclose(length, side, rtol=EXACT, atol=0)
    for line in result.lines:
        total = found[line["labels"]]
        total[0] += line["length_m"]
        total[1] += line["edges"]
        total[2] += line["strength"] * line["edges"]
        assert close(line["length_m"], line["geometry"].length)
        # A line is made of whole edges: no sliver where edges meet at a corner.
        assert line["edges"] >= 1 and close(line["length_m"], line["edges"] * side), line
    pairs = {tuple(sorted((labels[i], labels[j]))) for i, j in reference}
    assert set(found) == {(int(a), int(b)) for a, b in pairs}
    for a, b in itertools.combinations(range(n_labels), 2):
        meeting = shapely.length(shapely.intersection(regions[a], regions[b]))
        on_pair = [p for p in reference if {labels[p[0]], labels[p[1]]} == {a, b}]
        if not on_pair:
            assert (a, b) not in found and meeting == 0
            continue
        length_m, edges, strength = found[(a, b)]
        assert close(length_m, meeting) and edges == len(on_pair)
        # As many lines as the regions' meeting line has pieces between its junctions.
        parts = shapely.get_parts(shapely.intersection(regions[a], regions[b]))
        merged = shapely.line_merge(shapely.union_all(parts[shapely.length(parts) > 0]))
        lines_here = sum(line["labels"] == (a, b) for line in result.lines)
        assert lines_here == len(shapely.get_parts(merged))
        assert close(strength, sum(total_variation(shares[i], shares[j]) for i, j in on_pair))


def test_boundaries_clustered_checkerboard_and_majority_shares():
    rings = square_grid(6, 4)
    polygons = shapely.polygons(rings)
    column, row = np.arange(24) % 6, np.arange(24) // 6
    # Clustered: west half and east half; one straight boundary, 4 cells long.
    halves = label_boundaries(rings, (column >= 3).astype(int))
    assert halves.neighbour_pairs == 6 * 3 + 5 * 4  # by hand: rows' and columns' neighbours
    assert halves.total_length == 400.0 and len(halves.lines) == 1
    line = halves.lines[0]
    assert (line["labels"], line["edges"], line["length_m"]) == ((0, 1), 4, 400.0)
    assert line["geometry"].equals(shapely.LineString([(300, 0), (300, 400)]))
    # Checkerboard: every pair of neighbours differs.
    board = label_boundaries(rings, (column + row) % 2)
    assert len(board.edges) == board.neighbour_pairs == 38
    assert board.total_length == pytest.approx(shapely.length(shared_edges(polygons)[2]).sum())
    # Without shares: the majority with its share, the rest unknown but common to both cells.
    share = np.array([0.6, 0.9, math.nan, 0.5] + [1.0] * 20)
    labels = np.array([0, 1, 2, 0] + [0] * 20)
    majority = label_boundaries(rings, labels, majority_share=share)
    for (i, j), strength in zip(majority.pairs.tolist(), majority.strength, strict=True):
        s_i, s_j = (1.0 if math.isnan(share[k]) else share[k] for k in (i, j))
        p = np.zeros(4)  # labels 0..2, then the common unknown remainder
        q = np.zeros(4)
        p[labels[i]], p[3] = s_i, 1 - s_i
        q[labels[j]], q[3] = s_j, 1 - s_j
        assert close(strength, total_variation(p, q))
    # Two cells of one label: no edge; one cell: not a grid.
    assert label_boundaries(rings[:2], [1, 1]).edges == []
    with pytest.raises(MusError, match="at least two cells"):
        label_boundaries(rings[:1], [1])


def test_label_shares_counted_from_points_within_each_cell():
    rng = np.random.default_rng(42)
    rings = square_grid(5, 4)
    polygons = shapely.polygons(rings)
    x, y = rng.uniform(0, 500, 120), rng.uniform(0, 400, 120)
    keep = ~((x > 300) & (y > 200))  # the north-east cells stay empty (filled)
    x, y = x[keep], y[keep]
    point_labels = rng.integers(-1, 3, len(x))  # -1: a point without a label
    cell_labels = rng.integers(0, 3, 20)
    shares = shares_from_points(rings, x, y, point_labels, cell_labels, 3)
    cell = cell_of_points(polygons, x, y)
    counts = np.zeros((20, 3))
    for c, label in zip(cell, point_labels, strict=True):
        if label >= 0:
            counts[c, label] += 1
    for c in range(20):
        if counts[c].sum():
            np.testing.assert_allclose(shares[c], counts[c] / counts[c].sum(), rtol=EXACT)
        else:  # no labelled point: wholly its own label
            assert shares[c].tolist() == np.eye(3)[cell_labels[c]].tolist()
    assert (counts.sum(axis=1) == 0).sum() >= 4
    # On an edge or a corner, the cell up and to the right, where floor(x / size) puts it.
    edge = shares_from_points(
        rings, [100.0, 200.0, 0.0], [50.0, 100.0, 0.0], [0, 1, 2], [2] * 20, 3
    )
    assert edge[1].tolist() == [1.0, 0.0, 0.0]  # (100, 50): column 1, row 0
    assert edge[7].tolist() == [0.0, 1.0, 0.0]  # (200, 100): column 2, row 1
    assert edge[0].tolist() == [0.0, 0.0, 1.0]  # (0, 0): column 0, row 0


@pytest.mark.parametrize("grid", ["square", "hexagon"])
def test_boundaries_of_a_geographic_grid_are_in_metres(grid):
    """A grid made in the points' UTM zone from WGS 84 degrees: each line's length_m is its
    length on the ground, measured on the ellipsoid after projecting it back to degrees."""
    x0, y0 = TO_UTM.transform(12.48, 41.89)
    rings = square_grid(8, 6, 200.0) if grid == "square" else hexagon_grid(8, 6, 200.0)
    rings = rings + np.array([round(x0, -2), round(y0, -2)])
    rng = np.random.default_rng(43)
    labels = rng.integers(0, 3, len(rings))
    result = label_boundaries(rings, labels)
    assert result.lines
    for line in result.lines:
        lon, lat = TO_LONLAT.transform(*np.asarray(line["geometry"].coords).T)
        ground = GEOD.geometry_length(shapely.LineString(np.column_stack([lon, lat])))
        assert line["edges"] >= 1
        assert line["length_m"] == pytest.approx(ground, rel=METRES)
    side = 200.0 if grid == "square" else 200.0 * math.sqrt(2 / (3 * math.sqrt(3)))
    assert result.total_length == pytest.approx(len(result.edges) * side, rel=EXACT)


def moved_zone_shares(edges, zone, extent, placements, seed):
    """The alignment test's null, written with shapely.affinity's rotate and translate: the
    share of the edges' length inside the zone rotated about the extent's centre by a uniform
    angle and shifted uniformly by up to half the extent each way."""
    from shapely import affinity

    rng = np.random.default_rng(seed)
    lines = shapely.union_all(edges)
    x0, y0, x1, y1 = extent
    centre = ((x0 + x1) / 2, (y0 + y1) / 2)
    shares = np.empty(placements)
    for k in range(placements):
        moved = affinity.rotate(zone, rng.uniform(0, 360), origin=centre)
        moved = affinity.translate(
            moved, rng.uniform(-0.5, 0.5) * (x1 - x0), rng.uniform(-0.5, 0.5) * (y1 - y0)
        )
        shares[k] = lines.intersection(moved).length / lines.length
    return shares


def test_alignment_of_a_known_boundary_with_references_by_hand():
    rings = square_grid(6, 4)
    column = np.arange(24) % 6
    edges = label_boundaries(rings, (column >= 3).astype(int)).edges  # x = 300, y 0..400
    extent = (0.0, 0.0, 600.0, 400.0)

    def share(reference, buffer_m):
        return alignment_test(edges, reference, buffer_m, extent, permutations=49).observed

    line = shapely.LineString
    assert share([line([(300, -50), (300, 450)])], 10) == pytest.approx(1.0, rel=EXACT)
    assert share([line([(315, -50), (315, 450)])], 10) == 0.0
    # Half the boundary, and the buffer's round end reaches 25 m further along it.
    assert share([line([(300, 0), (300, 150)])], 25) == pytest.approx(175 / 400, rel=EXACT)
    # A polygon counts by its outline: its west side lies on 200 m of the boundary, and its
    # corners' buffer reaches 5 m beyond each end.
    assert share([shapely.box(300, 100, 500, 300)], 5) == pytest.approx(210 / 400, rel=EXACT)
    # A polygon over the whole boundary, its sides 50 m off: only where its south and north
    # sides cross the boundary, 10 m each.
    assert share([shapely.box(250, 0, 350, 400)], 10) == pytest.approx(20 / 400, rel=EXACT)
    far = alignment_test(edges, [line([(315, -50), (315, 450)])], 10, extent, permutations=99)
    assert far.p_value == 1.0 and 0 <= far.expected <= 1  # every placement does at least as well


def test_alignment_null_and_p_value_against_an_independent_simulation():
    rings = square_grid(6, 4)
    column, row = np.arange(24) % 6, np.arange(24) // 6
    labels = np.where(column + (row >= 2) >= 3, 1, 0)  # a stepped boundary, with a jog
    edges = label_boundaries(rings, labels).edges
    extent = (0.0, 0.0, 600.0, 400.0)
    reference = [shapely.LineString([(300, 0), (300, 150)])]
    buffer_m = 25.0
    result = alignment_test(edges, reference, buffer_m, extent, permutations=999, seed=5)
    zone = reference[0].buffer(buffer_m)
    assert result.observed == pytest.approx(
        shapely.union_all(edges).intersection(zone).length / shapely.union_all(edges).length,
        rel=EXACT,
    )
    null = moved_zone_shares(edges, zone, extent, 3000, seed=99)
    exceed = np.mean(null >= result.observed - 1e-12)
    # Two simulations of one distribution: the mean and the tail agree within sampling error.
    spread = math.sqrt(null.var() / 999 + null.var() / 3000)
    assert abs(result.expected - null.mean()) <= 4 * spread
    tail = math.sqrt(exceed * (1 - exceed) * (1 / 999 + 1 / 3000)) + 1 / 1000
    assert abs(result.p_value - exceed) <= 4 * tail
    assert 1 / 1000 <= result.p_value <= 1


# ---------------------------------------------------------------------------------------------
# Periods: expected year and spread per location; Spearman's rho with the nearest reference.
# ---------------------------------------------------------------------------------------------


def test_expected_periods_against_numpy_weighted_statistics():
    rng = np.random.default_rng(51)
    years = np.array([1420.0, 1500.0, math.nan, 1650.0, 1880.0, 1930.0, math.nan, 1300.0])
    p = rng.dirichlet(np.ones(len(years)), 200)
    p[:, 7] = 0.0  # a dated label no location gives any probability to
    p[5] = [0, 0, 0.6, 0, 0, 0, 0.4, 0]  # all on undated labels: no period
    p[6, 3] = math.nan  # an unscored location
    p[7] = np.eye(len(years))[4]  # certain: no spread
    mean, spread, dated = expected_periods(p, years)
    known = np.isfinite(years)
    for i in range(len(p)):
        if i in (5, 6):
            assert math.isnan(mean[i]) and math.isnan(spread[i])
            continue
        weights = p[i, known]
        assert close(mean[i], np.average(years[known], weights=weights))
        variance = np.cov(years[known], aweights=weights, ddof=0)
        assert close(spread[i], math.sqrt(variance), abs_=1e-9)
        assert close(dated[i], weights.sum())
    assert (mean[7], spread[7], dated[7]) == (1880.0, 0.0, 1.0)
    # No probability on a dated label: no period, and a probability of 0 on dated labels (it
    # is known); an unscored location knows neither.
    assert dated[5] == 0.0 and math.isnan(dated[6])
    # By hand: 1900 and 2000 with 1/4 and 3/4: 1975, √(¼·75² + ¾·25²) = √1875.
    by_hand = expected_periods([[0.25, 0.75]], [1900, 2000])
    assert by_hand[0][0] == 1975.0 and by_hand[1][0] == pytest.approx(math.sqrt(1875), rel=EXACT)


def spearman_by_definition(a, b) -> float:
    """Pearson's r of the average ranks (ties share their mean rank), in pandas and NumPy."""
    ranks_a = pd.Series(a).rank(method="average").to_numpy()
    ranks_b = pd.Series(b).rank(method="average").to_numpy()
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def test_spearman_with_the_nearest_reference_by_brute_force():
    rng = np.random.default_rng(52)
    x, y = rng.uniform(0, 2000, 80), rng.uniform(0, 2000, 80)
    rx, ry = rng.uniform(0, 2000, 50), rng.uniform(0, 2000, 50)
    ref_years = np.round(rng.uniform(1500, 1950, 50), -1)  # whole decades: ties
    ref_years[3] = math.nan  # a reference without a year is never the nearest
    expected = np.round(1400 + rx.mean() / 4 + x / 8 + rng.normal(0, 60, 80), -1)
    expected[[5, 17]] = math.nan  # no period
    result = correlate_with_reference(expected, x, y, rx, ry, ref_years, permutations=99)
    usable = np.isfinite(ref_years)
    distances = np.hypot(x[:, None] - rx[usable][None, :], y[:, None] - ry[usable][None, :])
    assert result.distance_m == pytest.approx(distances.min(axis=1), rel=EXACT)
    nearest_year = ref_years[usable][distances.argmin(axis=1)]
    assert result.nearest_year.tolist() == nearest_year.tolist()
    both = np.isfinite(expected)
    assert result.pairs == both.sum() == 78
    assert close(result.rho, spearman_by_definition(expected[both], nearest_year[both]))
    # Within a distance only: the others have no reference year.
    within = correlate_with_reference(
        expected, x, y, rx, ry, ref_years, max_distance_m=150, permutations=99
    )
    near = distances.min(axis=1) <= 150
    assert np.isnan(within.nearest_year[~near]).all()
    assert within.pairs == (near & both).sum()
    assert close(
        within.rho, spearman_by_definition(expected[near & both], nearest_year[near & both])
    )


@pytest.mark.filterwarnings("ignore:An input array is constant")
def test_spearman_known_cases_monotone_reversed_and_without_ties():
    x = np.arange(10.0) * 100
    years = 1500 + np.arange(10.0) * 30
    up = correlate_with_reference(years**1.5, x, 0 * x, x, 0 * x, years, permutations=99)
    assert close(up.rho, 1.0) and close(stats.kendalltau(years**1.5, years).statistic, 1.0)
    assert up.p_value == pytest.approx(1 / 100)  # 2 of 10! orderings reach |rho| = 1
    down = correlate_with_reference(-years, x, 0 * x, x, 0 * x, years, permutations=99)
    assert close(down.rho, -1.0) and down.p_value == pytest.approx(1 / 100)
    # Without ties, the textbook formula 1 − 6 Σ d² / (n (n² − 1)).
    rng = np.random.default_rng(53)
    expected = rng.permutation(10).astype(float)
    d = expected - np.arange(10)  # ranks of the expected years minus those of the reference
    formula = 1 - 6 * (d**2).sum() / (10 * (10**2 - 1))
    shuffled = correlate_with_reference(expected, x, 0 * x, x, 0 * x, years, permutations=99)
    assert close(shuffled.rho, formula)
    # Fewer than three pairs, or one side all the same: no rho.
    with pytest.raises(MusError, match="at least 3"):
        correlate_with_reference(years[:2], x[:2], x[:2], x[:2], x[:2], years[:2])
    with pytest.raises(MusError, match="undefined"):
        correlate_with_reference(np.full(10, 1700.0), x, 0 * x, x, 0 * x, years)


def test_spearman_permutation_p_value_against_the_exact_distribution():
    """Six locations: all 720 orderings give the exact two-sided permutation p-value, which a
    Monte Carlo p-value must approach."""
    expected = np.array([1510.0, 1620.0, 1580.0, 1700.0, 1690.0, 1800.0])
    years = np.array([1500.0, 1560.0, 1610.0, 1640.0, 1720.0, 1750.0])
    x = np.arange(6) * 100.0
    rho = spearman_by_definition(expected, years)
    permuted = [spearman_by_definition(order, years) for order in itertools.permutations(expected)]
    exact = np.mean(np.abs(permuted) >= abs(rho) - 1e-12)
    result = correlate_with_reference(expected, x, 0 * x, x, 0 * x, years, permutations=5000)
    assert close(result.rho, rho)
    sampling = math.sqrt(exact * (1 - exact) / 5000) + 1 / 5001
    assert abs(result.p_value - exact) <= 4 * sampling
    assert 0.01 < exact < 0.2  # a case where the p-value says something


def test_spearman_of_geographic_points_uses_metres():
    """Locations in WGS 84 degrees with a reference feature 300 m from each, on the ground
    (pyproj's geodesic), projected to UTM as QGIS would: the distances come back in metres."""
    rng = np.random.default_rng(54)
    lon, lat = (
        g.ravel() for g in np.meshgrid(12.44 + 0.02 * np.arange(4), 41.86 + 0.02 * np.arange(3))
    )
    ref_lon, ref_lat, _ = GEOD.fwd(lon, lat, rng.uniform(0, 360, 12), np.full(12, 300.0))
    x, y = TO_UTM.transform(lon, lat)
    rx, ry = TO_UTM.transform(ref_lon, ref_lat)
    years = 1500 + 10 * np.arange(12.0)
    result = correlate_with_reference(
        years + rng.normal(0, 5, 12), x, y, rx, ry, years, max_distance_m=400, permutations=99
    )
    assert result.pairs == 12
    assert result.distance_m == pytest.approx(np.full(12, 300.0), rel=METRES)
