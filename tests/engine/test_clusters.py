"""Join counts and Moran's I against cases with known answers and against PySAL itself."""

from __future__ import annotations

import esda
import libpysal
import numpy as np
import pytest

from mus_qgis.engine.readings.clusters import label_clusters
from mus_qgis.shared.errors import MusError

PERMUTATIONS = 99


def lattice(n: int = 12, size: float = 50.0):
    """Centres of an n×n grid of square cells, ``size`` metres apart (rook neighbours at 1.01×)."""
    columns, rows = np.meshgrid(np.arange(n), np.arange(n))
    return columns.ravel() * size, rows.ravel() * size, columns.ravel(), rows.ravel()


ROOK = {"kind": "distance", "distance_m": 50.5}
# Rook and diagonal neighbours: with 4 rook neighbours in a half-and-half map, even a cell whose
# neighbours all share its label has a local p of about 0.5^4 = 0.06, never significant.
QUEEN = {"kind": "distance", "distance_m": 71.0}


def test_a_checkerboard_is_dispersed():
    x, y, column, row = lattice()
    labels = (column + row) % 2
    result = label_clusters(x, y, labels, 2, permutations=PERMUTATIONS, **ROOK)
    for test in result.labels:
        assert test.bb == 0  # no two black cells touch
        assert test.verdict == "dispersed"
        assert test.p_dispersed == pytest.approx(1 / (PERMUTATIONS + 1))
        assert test.local_significant == 0
    assert not result.in_cluster.any()


def test_a_label_with_fewer_same_label_neighbours_than_chance_is_no_local_cluster():
    """The majority label around a regular lattice of the other: each of its features has 4
    same-label neighbours of 8 where chance gives 6. The local test's alternative is 'more than
    chance' (one-sided): none of them may come out significant, and the global test says
    dispersed. (esda's own p_sim takes the observed tail: 60 of these features had p < 0.05.)"""
    x, y, column, row = lattice(22)
    labels = ((column % 2 == 0) & (row % 2 == 0)).astype(int)  # label 1 on every other node
    result = label_clusters(x, y, labels, 2, permutations=199, kind="knn", k=8)
    majority = result.labels[0]
    assert majority.verdict == "dispersed" and majority.bw > majority.expected_bw
    p = result.local_p[labels == 0]
    assert np.isfinite(p).all() and (p < 0.05).sum() == 0
    assert not result.in_cluster.any()


def test_two_half_planes_are_clustered_and_their_cores_are_local_clusters():
    x, y, column, _ = lattice()
    labels = (column >= 6).astype(int)
    scores = np.where(labels == 1, 0.9, 0.1) + 0.01 * np.sin(np.arange(len(x)))
    result = label_clusters(x, y, labels, 2, scores, permutations=PERMUTATIONS, **QUEEN)
    for test in result.labels:
        assert test.verdict == "clustered"
        assert test.p_clustered == pytest.approx(1 / (PERMUTATIONS + 1))
        assert test.local_significant > 0
    # Local clusters lie inside the halves, away from the seam where labels mix.
    assert result.in_cluster[(column == 0) | (column == 11)].mean() > 0.5
    assert result.scores.verdict == "clustered" and result.scores.moran_i > 0.8
    hot = result.hotspot & (result.quadrant == 1)
    cold = result.hotspot & (result.quadrant == 3)
    assert hot.any() and cold.any()
    assert set(labels[hot]) == {1} and set(labels[cold]) == {0}


def test_random_labellings_are_significant_at_about_the_stated_rate():
    x, y, _, _ = lattice(8)
    clustered, local = 0, []
    # PySAL's global join count takes milliseconds per permutation: few seeds, few permutations.
    for seed in range(12):
        labels = np.random.default_rng(seed).integers(0, 2, len(x))
        result = label_clusters(
            x, y, labels, 2, permutations=19, alpha=0.1, seed=seed, kind="knn", k=4
        )
        clustered += sum(test.verdict == "clustered" for test in result.labels)
        local.append(result.local_p)
    # 24 tests at alpha 0.1: 2.4 expected; 8 or more has a probability below 1 %.
    assert clustered <= 7
    p = np.concatenate(local)
    p = p[np.isfinite(p)]
    assert 0.03 < (p <= 0.1).mean() < 0.2
    # Moran's I of random scores: rejected at about the stated rate over many seeds (fast).
    rejected = 0
    for seed in range(60):
        values = np.random.default_rng(1000 + seed).normal(size=len(x))
        np.random.seed(seed)
        result = label_clusters(
            x, y, np.zeros(len(x)), 1, values, kind="knn", k=4, permutations=PERMUTATIONS, seed=seed
        )
        rejected += result.scores.p_value <= 0.2
    assert 4 <= rejected <= 21  # 12 expected (two-sided at 0.2)


def test_equal_to_pysal_on_the_same_weights():
    x, y, column, _ = lattice(10)
    rng = np.random.default_rng(7)
    labels = np.where(column + rng.integers(-2, 3, len(x)) > 5, 1, 0)
    scores = column + rng.normal(size=len(x))
    result = label_clusters(
        x, y, labels, 2, scores, kind="knn", k=6, permutations=PERMUTATIONS, seed=3
    )
    w = libpysal.weights.KNN.from_array(np.column_stack([x, y]), k=6)
    np.random.seed(3 + 1)
    theirs = esda.Join_Counts((labels == 1).astype(int), w, permutations=PERMUTATIONS)
    mine = result.labels[1]
    assert (mine.bb, mine.bw) == (theirs.bb, theirs.bw)
    assert (mine.p_clustered, mine.p_dispersed) == (theirs.p_sim_bb, theirs.p_sim_bw)
    np.random.seed(3 + 1)
    local = esda.Join_Counts_Local(connectivity=w, permutations=PERMUTATIONS).fit(
        (labels == 1).astype(int), permutations=PERMUTATIONS
    )
    ones = labels == 1
    np.testing.assert_array_equal(result.local_count[ones], local.LJC[ones])
    # The one-sided p-value, from the same simulations: at least as many same-label neighbours.
    at_least = (local.rjoins >= local.LJC[:, None]).sum(axis=1)
    one_sided = np.where(local.LJC > 0, (at_least + 1) / (PERMUTATIONS + 1), np.nan)
    np.testing.assert_array_equal(result.local_p[ones], one_sided[ones])
    # Benjamini-Hochberg by its definition (esda.fdr asks for p strictly below the bound).
    tested = np.sort(one_sided[ones][np.isfinite(one_sided[ones])])
    bounds = 0.05 * np.arange(1, len(tested) + 1) / len(tested)
    passing = np.flatnonzero(tested <= bounds + 1e-12)
    cut = tested[passing[-1]] if len(passing) else -1.0
    np.testing.assert_array_equal(result.in_cluster[ones], one_sided[ones] <= cut)
    w.transform = "r"
    np.random.seed(3)
    moran = esda.Moran(scores, w, permutations=PERMUTATIONS)
    assert result.scores.moran_i == pytest.approx(moran.I)
    assert result.scores.p_value == min(1, 2 * moran.p_sim)
    local_i = esda.Moran_Local(scores, w, permutations=PERMUTATIONS, seed=3)
    np.testing.assert_allclose(result.local_i, local_i.Is)
    np.testing.assert_array_equal(result.local_i_p, np.minimum(1, 2 * local_i.p_sim))


def test_labels_that_cannot_be_tested_and_bad_settings():
    x, y, _, _ = lattice(4)
    labels = np.zeros(len(x), dtype=int)
    labels[0], labels[1] = 1, -1
    result = label_clusters(x, y, labels, 3, permutations=19, kind="knn", k=3)
    verdicts = {t.label: t.verdict for t in result.labels}
    assert verdicts[1] == "not tested: a single feature"
    assert 2 not in verdicts  # absent labels have no row
    assert np.isnan(result.local_p[1])
    with pytest.raises(MusError, match="Nearest neighbours"):
        label_clusters(x, y, labels, 3, kind="knn", k=16)
    with pytest.raises(MusError, match="distance band"):
        label_clusters(x, y, labels, 3, kind="distance", distance_m=-1)
    with pytest.raises(MusError, match="permutations"):
        label_clusters(x, y, labels, 3, permutations=1)
    lonely = label_clusters(
        x * 10, y * 10, labels, 3, kind="distance", distance_m=60, permutations=19
    )
    assert any("No feature has a neighbour" in note for note in lonely.notes)
    assert all(t.verdict.startswith("not tested") for t in lonely.labels if t.count > 1) or not [
        t for t in lonely.labels if t.bb == t.bb
    ]
    x[0] = 10_000  # one feature far from the rest: an island, said
    islands = label_clusters(x, y, labels, 3, kind="distance", distance_m=60, permutations=19)
    assert any("1 features have no neighbour" in note for note in islands.notes)
