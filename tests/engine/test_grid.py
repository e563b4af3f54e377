"""Grid resampling against hand-computed cases and a brute-force reference."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import shapely

from mus_qgis.engine.readings.grid import hex_radius, resample_to_grid


def by_index(result):
    return {tuple(idx): row for row, idx in enumerate(result.index.tolist())}


def test_hand_computed_square_cells_and_a_filled_void():
    x = [10, 20, 30, 150]
    y = [10, 20, 30, 50]
    labels = [0, 0, 1, 2]
    area = shapely.box(0, 0, 300, 100)
    result = resample_to_grid(x, y, labels, 3, 100.0, area=area)
    cells = by_index(result)
    assert set(cells) == {(0, 0), (1, 0), (2, 0)}
    first, second, void = cells[(0, 0)], cells[(1, 0)], cells[(2, 0)]
    assert result.label[first] == 0 and result.points[first] == 3
    assert result.share[first] == pytest.approx(2 / 3)
    assert result.entropy[first] == pytest.approx(
        -(2 / 3) * math.log2(2 / 3) - (1 / 3) * math.log2(1 / 3)
    )
    assert result.label[second] == 2 and result.entropy[second] == 0.0
    assert result.filled[void] and result.label[void] == 2 and result.points[void] == 0
    assert result.fill_distance[void] == 100.0 and math.isnan(result.share[void])
    assert not result.filled[first]
    assert result.polygon(first)[:3] == [(0.0, 0.0), (100.0, 0.0), (100.0, 100.0)]


def test_weights_change_the_majority_and_ties_go_to_the_first_label():
    x, y, labels = [5, 6, 7], [5, 6, 7], [0, 1, 1]
    counted = resample_to_grid(x, y, labels, 2, 100.0, fill=False)
    weighted = resample_to_grid(x, y, labels, 2, 100.0, weights=[0.9, 0.2, 0.2], fill=False)
    assert counted.label.tolist() == [1] and weighted.label.tolist() == [0]
    tie = resample_to_grid([5, 6], [5, 6], [1, 0], 2, 100.0, fill=False)
    assert tie.label.tolist() == [0]


def test_a_point_without_a_score_counts_one_in_the_tie_break_as_the_help_says():
    # One point each: label 1's score 0.6, label 0's unknown (NULL). Counted 1, label 0 wins;
    # counted 0 (as the code once did), label 1 would.
    x, y = [5, 6], [5, 6]
    tie = resample_to_grid(x, y, [0, 1], 2, 100.0, fill=False, scores=[float("nan"), 0.6])
    assert tie.label.tolist() == [0]
    # And against a score above 1 (a weight, not a probability), the known score wins.
    assert resample_to_grid(
        x, y, [0, 1], 2, 100.0, fill=False, scores=[float("nan"), 1.5]
    ).label.tolist() == [1]


def brute_force_squares(x, y, labels, size):
    cells = {}
    for px, py, lab in zip(x, y, labels, strict=True):
        cells.setdefault((math.floor(px / size), math.floor(py / size)), []).append(lab)
    reference = {}
    for cell, members in cells.items():
        counts = Counter(members)
        best = min(counts, key=lambda lab: (-counts[lab], lab))
        reference[cell] = (best, len(members), counts[best] / len(members))
    return reference


def test_square_binning_matches_a_brute_force_reference():
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-500, 1500, 5000), rng.uniform(200, 1200, 5000)
    labels = rng.integers(0, 5, 5000)
    result = resample_to_grid(x, y, labels, 5, 100.0, fill=False)
    reference = brute_force_squares(x, y, labels, 100.0)
    cells = by_index(result)
    assert set(cells) == set(reference)
    for cell, (label, count, share) in reference.items():
        row = cells[cell]
        assert (result.label[row], result.points[row]) == (label, count)
        assert result.share[row] == pytest.approx(share)


def test_hexagon_binning_puts_each_point_in_the_nearest_centre():
    rng = np.random.default_rng(4)
    x, y = rng.uniform(0, 1000, 3000), rng.uniform(0, 1000, 3000)
    labels = rng.integers(0, 3, 3000)
    size = 100.0
    result = resample_to_grid(x, y, labels, 3, size, shape="hexagon", fill=False)
    centres = result.centres
    # Brute force: every point to its nearest hexagon centre among all occupied cells' centres
    # and their neighbours (a point belongs to the hexagon whose centre is nearest).
    radius = hex_radius(size)
    r_max = int(1000 / (radius * 1.5)) + 3
    q_range = range(-r_max, int(1000 / (radius * math.sqrt(3))) + 4)
    r_range = range(-3, r_max + 1)
    all_centres = np.array(
        [
            (radius * math.sqrt(3) * (q + r / 2), radius * 1.5 * r, q, r)
            for q in q_range
            for r in r_range
        ]
    )
    members = Counter()
    for px, py in zip(x, y, strict=True):
        nearest = np.argmin((all_centres[:, 0] - px) ** 2 + (all_centres[:, 1] - py) ** 2)
        members[(int(all_centres[nearest, 2]), int(all_centres[nearest, 3]))] += 1
    cells = by_index(result)
    assert {cell: int(result.points[row]) for cell, row in cells.items()} == dict(members)
    # Equal-area hexagons: area of the outline equals the square's.
    ring = shapely.Polygon(result.polygon(0))
    assert ring.area == pytest.approx(size * size)
    assert shapely.Point(*centres[0]).within(ring)


@pytest.mark.parametrize("shape", ["square", "hexagon"])
def test_every_cell_inside_the_study_area_gets_a_label(shape):
    rng = np.random.default_rng(5)
    area = shapely.Point(500, 500).buffer(480)
    x, y = rng.uniform(200, 400, 30), rng.uniform(200, 400, 30)
    labels = rng.integers(0, 4, 30)
    result = resample_to_grid(x, y, labels, 4, 50.0, shape=shape, area=area)
    assert (result.label >= 0).all()
    assert result.filled.sum() == (result.points == 0).sum() > 0
    outlines = shapely.polygons([result.polygon(row) for row in range(len(result.label))])
    assert (shapely.area(shapely.intersection(area, outlines)) > 0).all()
    # Fill distance (metres between centres) grows outwards from the observed cells.
    far = result.fill_distance[result.filled]
    step = 50.0 if shape == "square" else hex_radius(50.0) * math.sqrt(3)
    assert far.min() == pytest.approx(step) and far.max() > 3 * step


def test_points_without_a_label_are_ignored_and_bad_settings_refused():
    result = resample_to_grid([1, 2], [1, 2], [-1, 0], 1, 10.0, fill=False)
    assert result.points.tolist() == [1]
    with pytest.raises(ValueError, match="shape"):
        resample_to_grid([1], [1], [0], 1, 10.0, shape="triangle")
    with pytest.raises(ValueError, match="positive"):
        resample_to_grid([1], [1], [0], 1, 0.0)
