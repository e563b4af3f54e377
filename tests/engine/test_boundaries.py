"""Grid discontinuities against a hand-computed grid, and the alignment test both ways."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from mus_qgis.engine.readings.boundaries import (
    alignment_test,
    label_boundaries,
    shares_from_points,
)
from mus_qgis.engine.readings.grid import resample_to_grid
from mus_qgis.shared.errors import MusError
from tests.engine.helpers import square_rings


def test_hand_computed_three_by_three_grid():
    # Labels, bottom row first:   0 0 1
    #                             0 1 1
    #                             2 2 1
    labels = [0, 0, 1, 0, 1, 1, 2, 2, 1]
    result = label_boundaries(square_rings(3, 3), labels)
    # 12 neighbouring pairs; by hand, differing: across rows 0|1 twice and 2|1 once, up the
    # columns 0|1, 0|2 and 1|2: 6 edges of 100 m.
    assert result.neighbour_pairs == 12
    assert len(result.edges) == 6
    assert result.total_length == pytest.approx(600.0)
    assert sum(line["length_m"] for line in result.lines) == pytest.approx(600.0)
    by_pair = {}
    for line in result.lines:
        by_pair[line["labels"]] = by_pair.get(line["labels"], 0) + line["length_m"]
    assert by_pair == pytest.approx({(0, 1): 300.0, (0, 2): 100.0, (1, 2): 200.0})
    # Without shares every label is whole: strength 1.
    assert np.all(result.strength == 1)


def test_strength_is_the_difference_of_label_shares():
    shares = np.array([[0.6, 0.4], [0.4, 0.6]])
    result = label_boundaries(square_rings(2, 1), [0, 1], shares=shares)
    assert result.strength == pytest.approx([0.2])
    # Counted from points: 3 of label 0 and 2 of label 1 in the west cell, the east cell empty
    # (filled with label 1, so wholly label 1).
    counted = shares_from_points(
        square_rings(2, 1), [10, 20, 30, 40, 50], [50] * 5, [0, 0, 0, 1, 1], [0, 1], 2
    )
    assert counted == pytest.approx(np.array([[0.6, 0.4], [0.0, 1.0]]))
    # A point on the edge between the cells counts in the east one, as the grid binned it.
    on_edge = shares_from_points(square_rings(2, 1), [100, 10], [50, 50], [0, 1], [1, 0], 2)
    assert on_edge == pytest.approx(np.array([[0.0, 1.0], [1.0, 0.0]]))
    assert label_boundaries(square_rings(2, 1), [0, 1], shares=counted).strength == pytest.approx(
        [0.6]
    )
    majority = label_boundaries(square_rings(2, 1), [0, 1], majority_share=[0.6, np.nan])
    assert majority.strength == pytest.approx([1.0])


def test_hexagonal_grid_edges_have_the_hexagon_side():
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 1000, 400), rng.uniform(0, 1000, 400)
    grid = resample_to_grid(x, y, (x > 500).astype(int), 2, 100.0, "hexagon")
    rings = np.array([grid.polygon(row) for row in range(len(grid.label))])
    result = label_boundaries(rings, grid.label)
    radius = 100.0 * np.sqrt(2 / (3 * np.sqrt(3)))
    assert len(result.edges) > 5
    assert all(edge.length == pytest.approx(radius) for edge in result.edges)
    # Each edge is shared: its midpoint lies on both cells' outlines.
    cells = shapely.polygons(rings)
    for (i, j), edge in zip(result.pairs, result.edges, strict=True):
        middle = edge.interpolate(0.5, normalized=True)
        assert cells[i].boundary.distance(middle) < 1e-6
        assert cells[j].boundary.distance(middle) < 1e-6


def test_alignment_known_both_ways():
    # Two half-planes: one straight discontinuity along x = 500.
    rings = square_rings(10, 10)
    labels = [int(column >= 5) for row in range(10) for column in range(10)]
    result = label_boundaries(rings, labels)
    extent = (0, 0, 1000, 1000)
    aligned = alignment_test(
        result.edges, [shapely.LineString([(500, -50), (500, 1050)])], 30, extent, 99
    )
    assert aligned.observed == pytest.approx(1.0)
    assert aligned.p_value <= 0.05
    across = alignment_test(
        result.edges, [shapely.LineString([(-50, 500), (1050, 500)])], 30, extent, 99
    )
    assert across.observed == pytest.approx(0.06)
    assert across.p_value > 0.2
    # A polygon reference counts by its outline.
    district = alignment_test(result.edges, [shapely.box(500, -50, 1100, 1100)], 30, extent, 99)
    assert district.observed == pytest.approx(1.0) and district.p_value <= 0.05
    with pytest.raises(MusError, match="buffer"):
        alignment_test(result.edges, [shapely.box(0, 0, 1, 1)], 0, extent)


def test_not_a_grid_is_refused():
    with pytest.raises(MusError, match="squares or hexagons"):
        label_boundaries(np.zeros((3, 4, 2)), [0, 1, 2])
