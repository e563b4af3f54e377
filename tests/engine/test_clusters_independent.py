"""Label clusters' numbers computed a second way, without the module's code or PySAL.

Only ``label_clusters`` is imported for its answers (and, for ties that a run cannot be made to
produce, its false-discovery-rate step). Everything it is compared with is written here: the
neighbours from coordinates with scipy.spatial (the k nearest by sorted distances, a distance
band by a threshold), the join counts from their definition, their means under relabelling in
closed form, Moran's I and the local Moran's I from their formulas, the local join count's
p-value in closed form (hypergeometric) and by a conditional randomisation of our own (NumPy's
Generator, not PySAL's generator), Benjamini-Hochberg from its definition in exact fractions.

Permutation p-values are compared within Monte Carlo error: two estimates of the same p from R1
and R2 permutations differ by at most 4 standard errors, sqrt(p(1 - p)(1/R1 + 1/R2)), plus
2/R for the +1 in (count + 1)/(R + 1).

Then the false positives, measured: labels and scores shuffled at random over a 12 x 12
lattice, the share of features each local test calls significant at alpha (raw p, before FDR),
and the rejection rate of each global test, against their exact expected values under the null.
Finally properties (hypothesis): the statistics do not depend on the features' order or the
labels' names, BB + BW + WW is the number of joins, p-values lie in (0, 1].
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pyproj import Transformer
from scipy import stats
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

from mus_qgis.engine.readings.clusters import label_clusters

SIZE = 50.0  # metres between lattice nodes
ROOK = {"kind": "distance", "distance_m": 50.5}
QUEEN = {"kind": "distance", "distance_m": 71.0}


# ---------------------------------------------------------------- the reference computations


def lattice(n: int = 12, jitter: float = 0.0, seed: int = 0):
    """Nodes of an n x n lattice, SIZE metres apart; jittered, no two distances tie (so the k
    nearest are the same whichever way they are sorted)."""
    column, row = (a.ravel() for a in np.meshgrid(np.arange(n), np.arange(n)))
    x, y = column * SIZE, row * SIZE
    if jitter:
        rng = np.random.default_rng(seed)
        x = x + rng.uniform(-jitter, jitter, len(x))
        y = y + rng.uniform(-jitter, jitter, len(y))
    return x.astype(float), y.astype(float), column, row


def neighbours(x, y, kind: str, k: int = 8, distance_m: float = 0.0):
    """Binary neighbour matrix A (A[i, j] = 1: j is a neighbour of i), from the coordinates."""
    d = cdist(np.column_stack([x, y]), np.column_stack([x, y]))
    np.fill_diagonal(d, np.inf)
    a = np.zeros(d.shape)
    if kind == "knn":
        nearest = np.argsort(d, axis=1, kind="stable")[:, :k]
        a[np.arange(len(x))[:, None], nearest] = 1
    else:
        a[d <= distance_m] = 1
    return a


def join_counts(a, member):
    """BB, BW, WW: each unordered pair {i, j} once, weighted (a_ij + a_ji)/2, so a pair that
    only one of the two counts among its k nearest is half a join (esda's Join_Counts, which
    halves the sum over its directed neighbour list)."""
    i, j = np.triu_indices(len(member), 1)
    weight = (a[i, j] + a[j, i]) / 2
    both = member[i] & member[j]
    neither = ~member[i] & ~member[j]
    return weight[both].sum(), weight[~both & ~neither].sum(), weight[neither].sum()


def expected_joins(a, member):
    """E[BB], E[BW] over random relabellings (the label's count fixed): a pair of features
    both hold it with probability n1(n1 - 1)/(n(n - 1)), exactly one with 2 n1 n0/(n(n - 1))."""
    n, n1 = len(member), int(member.sum())
    s0 = a.sum()
    return s0 / 2 * n1 * (n1 - 1) / (n * (n - 1)), s0 * n1 * (n - n1) / (n * (n - 1))


def simulated_joins(a, member, permutations: int, seed: int):
    """BB and BW of random relabellings (NumPy's Generator, not PySAL's), one per row."""
    rng = np.random.default_rng(seed)
    y = np.array([rng.permutation(member) for _ in range(permutations)], float)
    lag = y @ a.T  # lag[r, i] = sum_j a_ij y_j
    bb = (y * lag).sum(axis=1) / 2
    bw = ((y * (a.sum(axis=1) - lag)).sum(axis=1) + ((1 - y) * lag).sum(axis=1)) / 2
    return bb, bw


def row_standardised(a):
    rows = a.sum(axis=1, keepdims=True)
    return np.divide(a, rows, out=np.zeros_like(a), where=rows > 0)


def moran(a, values):
    """Global Moran's I = (n / S0) z'Wz / z'z, W row-standardised."""
    w = row_standardised(a)
    z = values - values.mean()
    return len(z) / w.sum() * (z @ w @ z) / (z @ z)


def local_moran(a, values):
    """PySAL's local Moran's I, (n - 1) z_i sum_j w_ij z_j / sum z^2 (W row-standardised), and
    Anselin's (1995), z_i sum_j w_ij z_j / m2 with m2 = sum z^2 / n; and each one's lag."""
    w = row_standardised(a)
    z = values - values.mean()
    lag = w @ z
    return (len(z) - 1) * z * lag / (z @ z), z * lag / ((z @ z) / len(z)), z, lag


def upper(simulated, observed):
    return ((simulated >= observed).sum() + 1) / (len(simulated) + 1)


def two_sided(simulated, observed):
    """Twice the smaller tail (each counted with the observed value), at most 1."""
    low = ((simulated <= observed).sum() + 1) / (len(simulated) + 1)
    return min(1.0, 2 * min(low, upper(simulated, observed)))


def conditional_draws(values, i: int, k: int, permutations: int, rng):
    """``permutations`` draws of k neighbours' values for feature i: i held fixed, the others
    shuffled (k taken at random, without replacement, from the n - 1 others)."""
    others = np.delete(values, i)
    # The first k places of a random permutation of the others, per row (Fisher-Yates, stopped
    # after k swaps).
    order = np.tile(np.arange(len(others)), (permutations, 1))
    rows = np.arange(permutations)
    for place in range(k):
        swap = rng.integers(place, len(others), permutations)
        order[rows, place], order[rows, swap] = order[rows, swap], order[rows, place]
    return others[order[:, :k]]


def local_join_count_p(a, member, permutations: int, seed: int):
    """Per feature of the label with a same-label neighbour: P(at least as many same-label
    neighbours) by our own conditional randomisation, and exactly (hypergeometric: k_i drawn
    from the n - 1 others, n1 - 1 of which hold the label). NaN elsewhere."""
    rng = np.random.default_rng(seed)
    n, n1 = len(member), int(member.sum())
    degree = a.sum(axis=1).astype(int)
    observed = member * (a @ member)
    simulated, exact = np.full(n, np.nan), np.full(n, np.nan)
    for i in np.flatnonzero(member & (observed > 0)):
        draws = conditional_draws(member.astype(float), i, degree[i], permutations, rng)
        simulated[i] = upper(draws.sum(axis=1), observed[i])
        exact[i] = stats.hypergeom.sf(observed[i] - 1, n - 1, n1 - 1, degree[i])
    return observed, simulated, exact


def local_moran_p(a, values, permutations: int, seed: int):
    """Two-sided p-value of each feature's local Moran's I by our own conditional
    randomisation (its neighbours' values drawn from the others; W row-standardised, so the lag
    is their mean). NaN for a feature with no neighbour."""
    rng = np.random.default_rng(seed)
    _, _, z, lag = local_moran(a, values)
    degree = a.sum(axis=1).astype(int)
    p = np.full(len(z), np.nan)
    for i in np.flatnonzero(degree):
        draws = conditional_draws(z, i, degree[i], permutations, rng)
        p[i] = two_sided(z[i] * draws.mean(axis=1), z[i] * lag[i])
    return p


def agree(p_module, p_reference, r_module: int, r_reference: int, doubled: bool = False):
    """Two Monte Carlo estimates of one p-value agree: within 4 standard errors plus the +1's
    bias. ``doubled``: two-sided p-values, twice a tail's (the error doubles too)."""
    p_module, p_reference = np.asarray(p_module, float), np.asarray(p_reference, float)
    scale = 2.0 if doubled else 1.0
    tail = np.clip((p_module + p_reference) / 2 / scale, 0, 1)
    se = scale * np.sqrt(tail * (1 - tail) * (1 / r_module + 1 / r_reference))
    return np.abs(p_module - p_reference) <= 4 * se + scale * 2 / r_module


def benjamini_hochberg(p, alpha: float):
    """Rejected: H_(1) .. H_(k), k the largest rank with p_(k) <= k alpha / m (m the finite
    p-values), in exact fractions (a permutation p-value is (j + 1)/(R + 1))."""
    p = np.asarray(p, float)
    finite = np.flatnonzero(np.isfinite(p))
    m = len(finite)
    order = finite[np.argsort(p[finite], kind="stable")]
    a = Fraction(alpha).limit_denominator(10_000)
    k = 0
    for rank, index in enumerate(order, start=1):
        if Fraction(p[index]).limit_denominator(100_000) <= rank * a / m:
            k = rank
    rejected = np.zeros(len(p), dtype=bool)
    rejected[order[:k]] = True
    return rejected


def check_label(result, labels, label, a, permutations, seed, r_reference=2000):
    """One label's global and local join counts against the reference; returns its test."""
    member = labels == label
    test = next(t for t in result.labels if t.label == label)
    bb, bw, _ = join_counts(a, member)
    assert (test.bb, test.bw) == (bb, bw)
    expected_bb, expected_bw = expected_joins(a, member)
    sim_bb, sim_bw = simulated_joins(a, member, r_reference, seed)
    # The module's means are over its `permutations` relabellings: within 4 standard errors.
    assert abs(test.expected_bb - expected_bb) <= 4 * sim_bb.std() / math.sqrt(permutations)
    assert abs(test.expected_bw - expected_bw) <= 4 * sim_bw.std() / math.sqrt(permutations)
    # The reference's own simulations have the closed-form means too.
    assert abs(sim_bb.mean() - expected_bb) <= 4 * sim_bb.std() / math.sqrt(r_reference)
    assert agree(test.p_clustered, upper(sim_bb, bb), permutations, r_reference)
    assert agree(test.p_dispersed, upper(sim_bw, bw), permutations, r_reference)
    observed, simulated, exact = local_join_count_p(a, member, r_reference, seed)
    np.testing.assert_array_equal(result.local_count[member], observed[member])
    p = result.local_p[member]
    np.testing.assert_array_equal(np.isnan(p), np.isnan(exact[member]))
    finite = np.isfinite(p)
    assert agree(p[finite], simulated[member][finite], permutations, r_reference).all()
    assert agree(p[finite], exact[member][finite], permutations, 10**9).all()
    assert agree(simulated, exact, r_reference, 10**9)[np.isfinite(exact)].all()
    np.testing.assert_array_equal(result.in_cluster[member], benjamini_hochberg(p, 0.05))
    return test


def check_moran(result, a, values, permutations, seed, r_reference=2000):
    """Global and local Moran's I, quadrants and p-values against the reference."""
    assert result.scores.moran_i == pytest.approx(moran(a, values), abs=1e-9)
    ours, anselin, z, lag = local_moran(a, values)
    np.testing.assert_allclose(result.local_i, ours, rtol=0, atol=1e-9)
    n = len(values)
    np.testing.assert_allclose(result.local_i * n / (n - 1), anselin, rtol=0, atol=1e-9)
    island = a.sum(axis=1) == 0
    quadrant = np.select([(z > 0) & (lag > 0), lag > 0, z > 0], [1, 2, 4], 3)
    quadrant[island] = 0
    np.testing.assert_array_equal(result.quadrant, quadrant)
    # E[I] = -1/(n - 1) under random permutation of the values; our simulations give its spread.
    rng = np.random.default_rng(seed)
    simulated = np.array([moran(a, rng.permutation(values)) for _ in range(r_reference)])
    assert abs(simulated.mean() + 1 / (n - 1)) <= 4 * simulated.std() / math.sqrt(r_reference)
    bound = 4 * simulated.std() / math.sqrt(permutations)
    assert abs(result.scores.expected_i + 1 / (n - 1)) <= bound
    p = two_sided(simulated, moran(a, values))
    assert agree(result.scores.p_value, p, permutations, r_reference, doubled=True)
    local_p = local_moran_p(a, values, r_reference, seed)
    np.testing.assert_array_equal(np.isnan(result.local_i_p), island)
    assert agree(result.local_i_p[~island], local_p[~island], permutations, r_reference, True).all()
    np.testing.assert_array_equal(result.hotspot, benjamini_hochberg(result.local_i_p, 0.05))


# ---------------------------------------------------------------- cases with known answers


def test_two_half_planes_are_as_clustered_as_joins_can_be():
    """12 x 12, columns 6-11 one label: BB = 5 x 12 + 6 x 11 = 126 per half, BW = the 12 joins
    across the seam, the fewest a split of 72 cells can cut: hardly a relabelling reaches it."""
    x, y, column, _ = lattice()
    labels = (column >= 6).astype(int)
    scores = np.where(labels == 1, 0.9, 0.1) + 0.01 * np.sin(np.arange(len(x)))
    result = label_clusters(x, y, labels, 2, scores, permutations=199, seed=1, **ROOK)
    a = neighbours(x, y, "distance", distance_m=ROOK["distance_m"])
    assert a.sum() / 2 == 2 * 12 * 11  # rook joins of a 12 x 12 lattice
    # The same counts from the pairs within the band, found by a k-d tree (no matrix).
    pairs = np.array(sorted(cKDTree(np.column_stack([x, y])).query_pairs(ROOK["distance_m"])))
    same = labels[pairs[:, 0]] == labels[pairs[:, 1]]
    assert (same & (labels[pairs[:, 0]] == 1)).sum() == 126 and (~same).sum() == 12
    for label in (0, 1):
        test = check_label(result, labels, label, a, 199, seed=10 + label)
        assert (test.bb, test.bw) == (126, 12)
        assert test.p_clustered == 1 / 200 and test.verdict == "clustered"
    check_moran(result, a, scores, 199, seed=2)
    assert result.scores.verdict == "clustered"


def test_a_checkerboard_has_no_black_black_join():
    x, y, column, row = lattice()
    labels = (column + row) % 2
    result = label_clusters(x, y, labels, 2, permutations=199, **ROOK)
    a = neighbours(x, y, "distance", distance_m=ROOK["distance_m"])
    for label in (0, 1):
        test = check_label(result, labels, label, a, 199, seed=20 + label)
        assert (test.bb, test.bw) == (0, 264)
        assert test.p_dispersed == 1 / 200 and test.verdict == "dispersed"
        assert np.isnan(result.local_p).all()  # no feature has a same-label neighbour


def test_a_regular_lattice_of_a_minority_label_is_dispersed_and_nowhere_a_cluster():
    """Label 1 on every node with an even column and row: 36 nodes, none touching another
    (BB = 0); BW = the corner's 2 + 10 edge nodes' 3 + 25 inner nodes' 4 = 132 rook joins.
    The majority around them, by queen neighbours, has fewer same-label neighbours than chance."""
    x, y, column, row = lattice()
    labels = ((column % 2 == 0) & (row % 2 == 0)).astype(int)
    for weights, bw in ((ROOK, 132), (QUEEN, None)):
        result = label_clusters(x, y, labels, 2, permutations=199, **weights)
        a = neighbours(x, y, "distance", distance_m=weights["distance_m"])
        minority = check_label(result, labels, 1, a, 199, seed=31)
        majority = check_label(result, labels, 0, a, 199, seed=30)
        assert minority.bb == 0 and minority.verdict == "dispersed"
        assert bw is None or minority.bw == bw
        assert majority.verdict == "dispersed"
        assert not result.in_cluster.any()


@pytest.mark.parametrize("kind", ["knn", "distance"])
def test_random_labels_and_scores_on_either_kind_of_neighbours(kind):
    """A jittered lattice (no tied distances), three labels, a score with a trend."""
    x, y, column, _ = lattice(jitter=4.0, seed=5)
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 3, len(x))
    scores = column / 11 + rng.normal(size=len(x))
    settings_ = {"kind": "knn", "k": 6} if kind == "knn" else {"kind": "distance", "distance_m": 75}
    result = label_clusters(x, y, labels, 3, scores, permutations=199, seed=7, **settings_)
    a = neighbours(x, y, **settings_)
    if kind == "knn":
        assert (a.sum(axis=1) == 6).all() and (a != a.T).any()  # asymmetric: half joins
    for label in range(3):
        check_label(result, labels, label, a, 199, seed=50 + label)
    check_moran(result, a, scores, 199, seed=8)


def test_local_clusters_where_the_labels_gather():
    """Two half-planes by queen neighbours: an inner feature has 8 same-label neighbours of 8,
    p = P(hypergeometric >= 8) = C(71, 8)/C(143, 8), about 0.0035: with 999 permutations the
    inner features pass the FDR cut-off, and those are what Benjamini-Hochberg says."""
    x, y, column, row = lattice()
    labels = (column >= 6).astype(int)
    result = label_clusters(x, y, labels, 2, permutations=999, seed=3, **QUEEN)
    a = neighbours(x, y, "distance", distance_m=QUEEN["distance_m"])
    for label in (0, 1):
        check_label(result, labels, label, a, 999, seed=60 + label)
    inner = (np.abs(column - 5.5) > 1) & (column % 11 != 0) & (row % 11 != 0)  # 8 alike
    assert stats.hypergeom.sf(7, 143, 71, 8) == pytest.approx(math.comb(71, 8) / math.comb(143, 8))
    assert result.in_cluster[inner].all()


def test_labels_with_nothing_to_test():
    x, y, _, _ = lattice(4)
    one_label = label_clusters(x, y, np.zeros(16, int), 3, np.ones(16), permutations=9, k=3)
    assert [(t.label, t.count, t.verdict) for t in one_label.labels] == [
        (0, 16, "not tested: every feature has it")
    ]  # no row for labels 1 and 2: nothing holds them
    assert math.isnan(one_label.labels[0].bb) and np.isnan(one_label.local_p).all()
    assert one_label.scores.verdict == "not tested: every value is the same"
    labels = np.zeros(16, int)
    labels[3] = 1
    single = label_clusters(x, y, labels, 2, permutations=9, k=3)
    assert single.labels[1].verdict == "not tested: a single feature"
    assert math.isnan(single.labels[1].p_clustered) and np.isnan(single.local_p[3])
    alone = label_clusters([0.0], [0.0], [0], 1, [1.0], permutations=9)
    assert alone.labels == [] and alone.notes == [
        "Fewer than 3 labelled features: no join count test."
    ]
    assert alone.scores.verdict == "not tested: fewer than 3 features with a value"


def test_islands_take_part_in_no_join_and_no_local_test():
    """A band shorter than every distance: nothing to test. A band that leaves two features
    alone: they join nothing, and have no local p-value (neither join count nor Moran)."""
    x, y, column, _ = lattice(8)
    labels = (column >= 4).astype(int)
    scores = column + np.random.default_rng(4).normal(size=len(x))
    none = label_clusters(x, y, labels, 2, scores, kind="distance", distance_m=40, permutations=9)
    assert any("No feature has a neighbour" in note for note in none.notes)
    assert none.labels == [] and np.isnan(none.local_p).all()
    assert none.scores.verdict == "not tested: no feature has a neighbour"
    x[0], x[63] = -5_000.0, 9_000.0  # a label-0 and a label-1 feature far from the rest
    result = label_clusters(x, y, labels, 2, scores, permutations=199, seed=4, **ROOK)
    a = neighbours(x, y, "distance", distance_m=ROOK["distance_m"])
    island = a.sum(axis=1) == 0
    assert np.flatnonzero(island).tolist() == [0, 63]
    assert any("2 features have no neighbour" in note for note in result.notes)
    for label in (0, 1):
        check_label(result, labels, label, a, 199, seed=70 + label)
    assert (result.local_count[island] == 0).all() and np.isnan(result.local_p[island]).all()
    check_moran(result, a, scores, 199, seed=5)  # S0 = n - 2: the islands' rows are empty
    assert not result.hotspot[island].any() and (result.quadrant[island] == 0).all()


def test_a_geographic_layout_projected_by_the_caller_gives_the_answer_in_metres():
    """The module takes metres. A 10 x 10 lattice in Rome's UTM zone (33N), given as longitude
    and latitude (as a geographic layer holds it) and projected back with pyproj, gives what
    the lattice gives in metres; so does the same layout measured in metres on a local plane
    from its degrees (no UTM). Degrees given as if metres are another answer."""
    x, y, column, row = lattice(10)
    x, y = x + 291_000.0, y + 4_640_000.0
    labels = ((column >= 5) ^ (row % 7 == 0)).astype(int)
    scores = np.sin(column / 3) + np.cos(row / 4)
    lon, lat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True).transform(x, y)
    px, py = Transformer.from_crs("EPSG:4326", "EPSG:32633", always_xy=True).transform(lon, lat)
    radius = 6_371_008.8  # a local plane: metres along the parallel and the meridian
    lat0 = math.radians(np.mean(lat))
    ex = radius * math.cos(lat0) * np.radians(lon - lon.mean())
    ey = radius * np.radians(lat - lat.mean())
    band = {"kind": "distance", "distance_m": 60.0}  # rook: 50 m; the diagonals, 70.7 m
    runs = [
        label_clusters(u, v, labels, 2, scores, permutations=99, seed=9, **band)
        for u, v in ((x, y), (px, py), (ex, ey))
    ]
    metres = runs[0]
    for other in runs[1:]:
        for mine, theirs in zip(metres.labels, other.labels, strict=True):
            assert (mine.bb, mine.bw, mine.p_clustered, mine.p_dispersed) == (
                theirs.bb,
                theirs.bw,
                theirs.p_clustered,
                theirs.p_dispersed,
            )
        np.testing.assert_array_equal(metres.local_p, other.local_p)
        assert other.scores.moran_i == pytest.approx(metres.scores.moran_i, abs=1e-9)
        np.testing.assert_allclose(other.local_i, metres.local_i, atol=1e-9)
        assert other.scores.p_value == metres.scores.p_value
    a = neighbours(x, y, **band)
    check_label(metres, labels, 1, a, 99, seed=80)
    degrees = label_clusters(lon, lat, labels, 2, permutations=99, seed=9, **band)
    assert degrees.labels[1].bb != metres.labels[1].bb  # every feature within "60" of all


def test_the_false_discovery_rate_cut_off_is_benjamini_hochberg():
    """The module's FDR step against Benjamini-Hochberg from its definition, on p-values as
    permutations give them, ties on the bound k alpha / m included (p_(k) <= k alpha / m
    rejects: two of 50 tests at 0.001 and 0.002, alpha 0.05, are both rejected)."""
    from mus_qgis.engine.readings.clusters import _fdr_significant  # the code under test

    tie = np.array([0.001, 0.002] + [0.5] * 48)
    assert benjamini_hochberg(tie, 0.05)[:2].all() and _fdr_significant(tie, 0.05)[:2].all()
    rng = np.random.default_rng(11)
    for _ in range(400):
        m = int(rng.integers(1, 60))
        r = int(rng.choice([19, 99, 999]))
        p = (rng.integers(0, r + 1, m) * rng.random(m) ** 2).astype(int)
        p = (np.minimum(p, r) + 1) / (r + 1)
        p[rng.random(m) < 0.1] = np.nan
        alpha = float(rng.choice([0.01, 0.05, 0.1, 0.2]))
        np.testing.assert_array_equal(_fdr_significant(p, alpha), benjamini_hochberg(p, alpha))


# ---------------------------------------------------------------- false positives, measured

FALSE_POSITIVE_SEEDS = range(24)
R_NULL = 99


@pytest.fixture(scope="module")
def shuffled_labels():
    """Two labels shuffled at random over a 12 x 12 lattice, 8 nearest neighbours; per seed
    the result and the labels."""
    x, y, _, _ = lattice()
    runs = []
    for seed in FALSE_POSITIVE_SEEDS:
        labels = np.random.default_rng(100 + seed).integers(0, 2, len(x))
        result = label_clusters(
            x, y, labels, 2, permutations=R_NULL, seed=2 * seed, kind="knn", k=8
        )
        runs.append((labels, result))
    return runs


def significant_share(p_true, alpha: float, permutations: int):
    """P((B + 1)/(R + 1) <= alpha) for B ~ Binomial(R, p_true): how often a pseudo p-value
    from R permutations comes out significant when its exact p is p_true."""
    largest = math.floor(alpha * (permutations + 1) + 1e-9) - 1
    return stats.binom.cdf(largest, permutations, p_true) if largest >= 0 else 0.0


def spread(groups, rate: float, total: int):
    """Standard error of a share pooled over groups of features: esda draws one set of
    neighbours per permutation for all features of a run, so their calls move together and
    the groups' own spread counts; never below the binomial error of ``total`` features."""
    return max(np.std(groups) / math.sqrt(len(groups)), math.sqrt(rate * (1 - rate) / total))


def test_local_join_count_false_positives(shuffled_labels):
    """The one-sided local join count on shuffled labels: at most alpha plus 3 binomial
    standard errors, and at its exact rate under the null, sum over counts x >= 1 of P(x)
    P((B + 1)/(R + 1) <= alpha), B ~ Binomial(R, P(X >= x)), X hypergeometric. Counts among 8
    neighbours take few values: a test at 0.05 can only reject 7 or 8 (P about 0.035), and
    with 99 permutations less, so the exact rate is well below alpha (measured: 0.021 against
    0.023 at 0.05; 0.047 against 0.054 at 0.1)."""
    for alpha in (0.05, 0.1):
        calls, expected, groups = [], [], []
        for labels, result in shuffled_labels:
            p = result.local_p
            for label in (0, 1):
                member = (labels == label) & np.isfinite(p)
                n1 = int((labels == label).sum())
                x = np.arange(1, 9)
                pmf = stats.hypergeom.pmf(x, 143, n1 - 1, 8)
                exact_p = stats.hypergeom.sf(x - 1, 143, n1 - 1, 8)
                rate = (pmf * significant_share(exact_p, alpha, R_NULL)).sum() / pmf.sum()
                calls.extend(p[member] <= alpha)
                expected.extend([rate] * member.sum())
                groups.append(np.mean(p[member] <= alpha))
        share, expected = np.mean(calls), np.mean(expected)
        print(f"local join count, alpha {alpha}: {share:.4f} significant, exact {expected:.4f}")
        assert share <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / len(calls))
        assert abs(share - expected) <= 3 * spread(groups, expected, len(calls))


def test_global_join_count_false_positives(shuffled_labels):
    """Per seed and label, BB (clustered) and BW (dispersed) one-sided p-values: rejected at
    about alpha (BB takes many values, so hardly below it); with two labels BW is the same
    test for both, counted once."""
    p = np.array([[t.p_clustered for t in result.labels] for _, result in shuffled_labels])
    p_bw = np.array([result.labels[0].p_dispersed for _, result in shuffled_labels])
    tests = np.concatenate([p.ravel(), p_bw])
    for alpha in (0.1, 0.2, 0.5):
        rate = (tests <= alpha).mean()
        se = math.sqrt(alpha * (1 - alpha) / len(tests))
        print(f"global join count, alpha {alpha}: {rate:.3f} rejected of {len(tests)}")
        assert abs(rate - alpha) <= 3 * se + 1 / (R_NULL + 1)


@pytest.fixture(scope="module")
def shuffled_scores():
    x, y, _, _ = lattice()
    runs = []
    for seed in range(80):
        values = np.random.default_rng(200 + seed).normal(size=len(x))
        no_labels = -np.ones(len(x), int)
        runs.append(label_clusters(x, y, no_labels, 1, values, permutations=R_NULL, seed=seed, k=8))
    return runs


def folded_size(alpha: float, permutations: int):
    """Exact rate of 2 (min(B, R - B) + 1)/(R + 1) <= alpha for a continuous statistic under
    the null (B, the permutations at least as high, uniform on 0..R); esda's folding keeps B
    where B <= R - B."""
    b = np.arange(permutations + 1)
    tail = np.where(permutations - b < b, permutations - b, b)
    return np.mean(np.minimum(1, 2 * (tail + 1) / (permutations + 1)) <= alpha)


def test_local_moran_false_positives(shuffled_scores):
    """Two-sided local Moran on shuffled scores: at its exact rate, which with 99
    permutations is 0.04 at alpha 0.05 (the p-values are multiples of 0.02) and 0.1 at 0.1."""
    for alpha in (0.05, 0.1):
        p = np.concatenate([r.local_i_p for r in shuffled_scores])
        groups = [np.mean(r.local_i_p <= alpha) for r in shuffled_scores]
        share, size = (p <= alpha).mean(), folded_size(alpha, R_NULL)
        print(f"local Moran, alpha {alpha}: {share:.4f} significant, exact {size:.4f}")
        assert abs(share - size) <= 3 * spread(groups, size, len(p))
        assert size >= 0.75 * alpha


def test_global_moran_false_positives(shuffled_scores):
    p = np.array([r.scores.p_value for r in shuffled_scores])
    for alpha in (0.1, 0.2, 0.5):
        rate, size = (p <= alpha).mean(), folded_size(alpha, R_NULL)
        print(f"global Moran, alpha {alpha}: {rate:.3f} rejected of {len(p)}, exact {size:.3f}")
        assert abs(rate - size) <= 3 * math.sqrt(size * (1 - size) / len(p))


# ---------------------------------------------------------------- properties

PROPERTY = settings(
    max_examples=12, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def random_layout(seed: int, n: int, n_labels: int):
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(0, 500, n), rng.uniform(0, 500, n)
    labels = rng.integers(0, n_labels, n)
    labels[rng.random(n) < 0.1] = -1  # some features without a label
    return x, y, labels, rng.normal(size=n) + x / 200


WEIGHTS = st.sampled_from(
    [{"kind": "knn", "k": 3}, {"kind": "knn", "k": 5}, QUEEN | {"distance_m": 120}]
)


@PROPERTY
@given(seed=st.integers(0, 2**31), n=st.integers(8, 30), n_labels=st.integers(2, 4), w=WEIGHTS)
def test_order_and_names_change_nothing(seed, n, n_labels, w):
    x, y, labels, scores = random_layout(seed, n, n_labels)
    assume((labels >= 0).sum() > 6)
    base = label_clusters(x, y, labels, n_labels, scores, permutations=9, seed=1, **w)
    order = np.random.default_rng(seed + 1).permutation(n)
    names = np.random.default_rng(seed + 2).permutation(n_labels)
    renamed = np.where(labels >= 0, names[np.maximum(labels, 0)], -1)
    moved = label_clusters(
        x[order], y[order], renamed[order], n_labels, scores[order], permutations=9, seed=1, **w
    )
    theirs = {t.label: t for t in moved.labels}
    for mine in base.labels:
        other = theirs[names[mine.label]]
        assert (other.count, other.verdict.startswith("not tested")) == (
            mine.count,
            mine.verdict.startswith("not tested"),
        )
        assert (other.bb, other.bw) == pytest.approx((mine.bb, mine.bw), nan_ok=True)
    np.testing.assert_array_equal(moved.local_count, base.local_count[order])
    if base.scores.moran_i == base.scores.moran_i:
        assert moved.scores.moran_i == pytest.approx(base.scores.moran_i, abs=1e-12)
        np.testing.assert_allclose(moved.local_i, base.local_i[order], atol=1e-12)
        np.testing.assert_array_equal(moved.quadrant, base.quadrant[order])
        # An affine change of the score's unit changes neither.
        scaled = label_clusters(x, y, labels, n_labels, 3 * scores + 7, permutations=9, **w)
        assert scaled.scores.moran_i == pytest.approx(base.scores.moran_i, abs=1e-12)


@PROPERTY
@given(seed=st.integers(0, 2**31), n=st.integers(8, 30), n_labels=st.integers(2, 4), w=WEIGHTS)
def test_joins_add_up_and_p_values_are_probabilities(seed, n, n_labels, w):
    x, y, labels, scores = random_layout(seed, n, n_labels)
    labelled = labels >= 0
    assume(labelled.sum() > 6)
    result = label_clusters(x, y, labels, n_labels, scores, permutations=9, seed=seed, **w)
    a = neighbours(x[labelled], y[labelled], **w)
    joins = a.sum() / 2  # esda's J = S0 / 2
    tested = [t for t in result.labels if not t.verdict.startswith("not tested")]
    for test in tested:
        member = labels[labelled] == test.label
        bb, bw, ww = join_counts(a, member)
        assert (test.bb, test.bw) == pytest.approx((bb, bw), abs=1e-12)
        assert bb + bw + ww == pytest.approx(joins)
        assert 0 < test.p_clustered <= 1 and 0 < test.p_dispersed <= 1
    if len(tested) == len(result.labels) >= 2:
        # Every join is BB of one label or BW of two: sum BB + sum BW / 2 = the joins.
        total = sum(t.bb for t in tested) + sum(t.bw for t in tested) / 2
        assert total == pytest.approx(joins)
    for p in (result.local_p, result.local_i_p):
        finite = p[np.isfinite(p)]
        assert ((finite > 0) & (finite <= 1)).all()
    if result.scores.p_value == result.scores.p_value:
        assert 0 < result.scores.p_value <= 1
