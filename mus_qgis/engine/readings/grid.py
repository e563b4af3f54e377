"""Classified points resampled to a void-free grid: the most frequent label per cell.

Points are binned with array arithmetic (no spatial join per point), in a projected CRS whose unit
is the metre. A cell belongs to the study area when it overlaps it (shares more than an edge),
so no part of the area is left under no cell. A cell holding points takes their most frequent
label. A cell of the study area without a point (an *empty* cell) takes the label most frequent
among the *observed* cells (cells holding points) nearest to it: those at the smallest distance
between cell centres, however far, so a part of the area that no point reaches (an island, a
detached piece) is labelled too. Filled cells are flagged, with that distance in metres, so the map
has no void while saying where it guessed and how far the guess came from.

Ties, in an observed cell (its points split evenly) and in a filled cell (its nearest observed
cells split evenly), go to the tied label whose points (in that cell, or in those nearest cells)
have the higher total score; a remaining tie goes to the label that comes first in the label set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...shared.defaults import GRID_SHAPES
from ...shared.errors import MusError, StudyAreaError
from ...shared.progress import check_canceled

# More cells than a map can draw or a reader can use; a 1 m grid over a city is refused.
MAX_CELLS = 1_000_000
# Empty cells filled per step: bounds the memory of the nearest-cell search and lets a cancel
# stop it within a fraction of a second.
FILL_CHUNK = 16_384
# Cells of the study area's bounding box tested per step for overlapping the area.
AREA_CHUNK = 131_072
TIE_RULE = (
    "ties go to the tied label whose points have the higher total score, then to the label "
    "that comes first in the label set"
)


@dataclass
class GridResult:
    shape: str
    cell_size: float
    index: object  # int N×2: (column, row) for squares, axial (q, r) for hexagons
    centres: object  # float N×2
    label: object  # int N, index into the label list
    points: object  # int N, points in the cell (0 for filled cells)
    share: object  # float N, the majority's share (NaN for filled cells)
    entropy: object  # float N, bits (NaN for filled cells)
    filled: object  # bool N
    # float N, metres from the cell's centre to the centres of the observed cells its label
    # came from (0 for observed cells)
    fill_distance: object

    def polygon(self, row: int) -> list[tuple[float, float]]:
        """The cell's outline (closed ring) in the grid's CRS."""
        cx, cy = self.centres[row]
        if self.shape == "square":
            h = self.cell_size / 2
            return [
                (cx - h, cy - h),
                (cx + h, cy - h),
                (cx + h, cy + h),
                (cx - h, cy + h),
                (cx - h, cy - h),
            ]
        radius = hex_radius(self.cell_size)
        ring = [
            (
                cx + radius * math.cos(math.radians(60 * k + 30)),
                cy + radius * math.sin(math.radians(60 * k + 30)),
            )
            for k in range(6)
        ]
        return [*ring, ring[0]]


def hex_radius(cell_size: float) -> float:
    """Centre-to-corner radius of the pointy-top hexagon with the area of a cell_size square."""
    return cell_size * math.sqrt(2.0 / (3.0 * math.sqrt(3.0)))


def _square_index(x, y, size: float):
    import numpy as np

    return np.floor(x / size).astype(np.int64), np.floor(y / size).astype(np.int64)


def _square_centres(i, j, size: float):
    return (i + 0.5) * size, (j + 0.5) * size


def _hex_index(x, y, size: float):
    """Axial (q, r) of pointy-top hexagons, by cube rounding."""
    import numpy as np

    radius = hex_radius(size)
    q = (math.sqrt(3) / 3 * x - y / 3) / radius
    r = (2 / 3 * y) / radius
    s = -q - r
    rq, rr, rs = np.round(q), np.round(r), np.round(s)
    dq, dr, ds = np.abs(rq - q), np.abs(rr - r), np.abs(rs - s)
    fix_q = (dq > dr) & (dq > ds)
    fix_r = ~fix_q & (dr > ds)
    rq = np.where(fix_q, -rr - rs, rq)
    rr = np.where(fix_r, -rq - rs, rr)
    return rq.astype(np.int64), rr.astype(np.int64)


def _hex_centres(q, r, size: float):
    radius = hex_radius(size)
    return radius * math.sqrt(3) * (q + r / 2), radius * 1.5 * r


def resample_to_grid(
    x,
    y,
    labels,
    n_labels: int,
    cell_size: float,
    shape: str = "square",
    weights=None,
    area=None,
    fill: bool = True,
    progress=None,
    max_cells: int = MAX_CELLS,
    scores=None,
) -> GridResult:
    """The most frequent label per cell of a square or hexagonal grid, with no void.

    ``x``, ``y``: point coordinates in metres; ``labels``: each point's label index (negative
    for points without a label, which are ignored); ``weights``: optional per-point weights
    (e.g. scores) counted instead of occurrences; ``scores``: per-point scores that break ties
    (default: the weights, else 1 per point; a NaN score counts 1); ``area``: a shapely polygon
    of the study area in the same CRS (default: the points' bounding box).

    Each cell overlapping the study area is in the grid (and each cell holding a point). An
    observed cell takes its points' most frequent label; an empty cell (``fill``) takes the
    label most frequent among the observed cells at the smallest centre-to-centre distance from
    it, and ``fill_distance`` is that distance in metres. In both, ties go to the tied label
    whose points (in the cell, or in those nearest cells) have the higher total score, then to
    the label that comes first in the label set.

    Refused, before any work (:class:`MusError`): a grid of more than ``max_cells`` cells (its
    size in the message); a study area that no labelled point reaches (:class:`StudyAreaError`,
    with the distance to the nearest point). ``progress`` (optional) is asked for a cancel
    between steps of the area test and of the filling.
    """
    import numpy as np

    if shape not in GRID_SHAPES:
        raise ValueError(f"The grid shape must be one of {', '.join(GRID_SHAPES)}, not {shape!r}.")
    if not (cell_size > 0 and math.isfinite(cell_size)):
        raise ValueError(f"The cell size must be a positive number of metres, not {cell_size!r}.")
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    keep = (labels >= 0) & (labels < n_labels) & np.isfinite(x) & np.isfinite(y)
    x, y, labels = x[keep], y[keep], labels[keep]
    weights = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64)[keep]
    weights = np.nan_to_num(weights, nan=0.0)
    scores = weights if scores is None else np.asarray(scores, dtype=np.float64)[keep]
    # A point without a score counts 1 in the tie-break, as with no score field at all (the
    # help says so): a NULL is an unknown score, not the lowest.
    scores = np.nan_to_num(scores, nan=1.0)
    index_of, centres_of = (
        (_square_index, _square_centres) if shape == "square" else (_hex_index, _hex_centres)
    )
    area = _valid_area(area)
    if fill:
        _refuse_huge_grid(area, x, y, cell_size, max_cells)

    a, b = index_of(x, y, cell_size)
    # Occupied cells and their label counts, without a loop over points.
    a0, b0 = (a.min(), b.min()) if len(a) else (0, 0)
    span = (b.max() - b0 + 1) if len(b) else 1
    keys = (a - a0) * span + (b - b0)
    cells, inverse = np.unique(keys, return_inverse=True)
    flat = inverse * n_labels + labels
    size = len(cells) * n_labels
    counts = np.bincount(flat, weights=weights, minlength=size).reshape(len(cells), n_labels)
    tie_scores = np.bincount(flat, weights=scores, minlength=size).reshape(len(cells), n_labels)
    points = np.bincount(inverse, minlength=len(cells))
    majority = _first_best(counts, tie_scores)
    totals = counts.sum(axis=1)
    share = counts.max(axis=1, initial=0.0) / np.where(totals > 0, totals, 1)
    p = counts / np.where(totals > 0, totals, 1)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.nansum(np.where(p > 0, p * np.log2(p), 0.0), axis=1)
    observed_a = (cells // span + a0).astype(np.int64)
    observed_b = (cells % span + b0).astype(np.int64)

    if fill:
        inside_a, inside_b = _cells_inside(
            area, x, y, cell_size, shape, index_of, centres_of, progress
        )
    else:
        inside_a = inside_b = np.zeros(0, dtype=np.int64)
    all_a = np.concatenate([observed_a, inside_a])
    all_b = np.concatenate([observed_b, inside_b])
    # One key per cell, in (a, b) order; observed cells come first so that np.unique's first
    # occurrence of each key says whether the cell is observed.
    key_a0, key_b0 = (all_a.min(), all_b.min()) if len(all_a) else (0, 0)
    key_span = (all_b.max() - key_b0 + 1) if len(all_b) else 1
    all_keys = (all_a - key_a0) * key_span + (all_b - key_b0)
    unique_keys, first = np.unique(all_keys, return_index=True)
    grid_a, grid_b = all_a[first], all_b[first]
    observed_row = np.where(first < len(cells), first, -1)
    observed_mask = observed_row >= 0
    if fill and area is not None and len(cells):
        observed_keys = (observed_a - key_a0) * key_span + (observed_b - key_b0)
        inside_keys = (inside_a - key_a0) * key_span + (inside_b - key_b0)
        if not np.isin(observed_keys, inside_keys).any():
            _refuse_area_without_points(area, x, y)

    label = np.full(len(unique_keys), -1, dtype=np.int64)
    distance = np.zeros(len(unique_keys), dtype=np.float64)
    take = np.where(observed_mask, observed_row, 0)
    if len(cells):
        label[observed_mask] = majority[observed_row[observed_mask]]
    filled = np.zeros(len(unique_keys), dtype=bool)
    if fill and len(cells) and (~observed_mask).any():
        empty = np.flatnonzero(~observed_mask)
        label[empty], distance[empty] = _fill_from_nearest(
            grid_a[empty],
            grid_b[empty],
            observed_a,
            observed_b,
            majority,
            tie_scores,
            shape,
            cell_size,
            progress,
        )
        filled[empty] = True
    elif fill and not len(cells) and len(unique_keys):
        raise MusError("No point has a label: classify the points first.")

    index = np.column_stack([grid_a, grid_b]).astype(np.int64).reshape(-1, 2)
    cx, cy = centres_of(index[:, 0], index[:, 1], cell_size)
    return GridResult(
        shape,
        cell_size,
        index,
        np.column_stack([cx, cy]),
        label,
        np.where(observed_mask, points[take] if len(points) else 0, 0),
        np.where(observed_mask, share[take] if len(share) else np.nan, np.nan),
        np.where(observed_mask, entropy[take] if len(entropy) else np.nan, np.nan),
        filled,
        distance,
    )


def _first_best(primary, secondary):
    """Per row, the column with the highest ``primary``, ties to the higher ``secondary``, then
    to the first column (the label set's order)."""
    import numpy as np

    if not primary.shape[0]:
        return np.zeros(0, dtype=np.int64)
    # Sums of the same scores in another order differ in the last bits: equal within 1e-9.
    best = primary.max(axis=1, keepdims=True)
    tied = primary >= best - 1e-9 * np.abs(best)
    second = np.where(tied, secondary, -np.inf)
    best_second = second.max(axis=1, keepdims=True)
    tied &= second >= best_second - 1e-9 * np.abs(best_second)
    return tied.argmax(axis=1).astype(np.int64)


def _valid_area(area):
    """The study area as a valid polygonal geometry (a self-crossing ring is mended), or None."""
    if area is None:
        return None
    import shapely

    if area.is_empty:
        raise StudyAreaError("The study area is empty: give a layer with at least one polygon.")
    if not area.is_valid:
        area = shapely.make_valid(area)
    polygons = [
        part
        for part in shapely.get_parts(area)
        if part.geom_type in ("Polygon", "MultiPolygon") and part.area > 0
    ]
    if not polygons:
        raise StudyAreaError("The study area has no polygon with an area: give a polygon layer.")
    area = shapely.union_all(polygons)
    shapely.prepare(area)
    return area


def _refuse_huge_grid(area, x, y, size: float, max_cells: int) -> None:
    """Stop before the work when the grid would have more cells than anyone can use or wait for
    (a 1 m grid over a city has hundreds of millions)."""
    bounds = _bounds(area, x, y)
    if bounds is None:
        return
    west, south, east, north = bounds
    cells = ((east - west) / size + 5) * ((north - south) / size + 5)
    if cells > max_cells:
        smallest = size * math.ceil(math.sqrt(cells / max_cells))
        raise MusError(
            f"A {size:g} m grid over this {(east - west) / 1000:.2f} × {(north - south) / 1000:.2f}"
            f" km area would have about {int(cells):,} cells, more than {max_cells:,}: choose a "
            f"cell size of at least {smallest:g} m."
        )


def _refuse_area_without_points(area, x, y) -> None:
    """A study area that no labelled point reaches would be a map guessed from elsewhere."""
    import numpy as np
    import shapely

    gap = (
        shapely.distance(area, shapely.multipoints(np.column_stack([x, y])))
        if len(x)
        else float("nan")
    )
    raise StudyAreaError(
        f"No labelled point falls in the study area: the nearest lies {gap / 1000:.1f} km from "
        "it. Check that the study area and the points show the same place (and that each "
        "layer's CRS is right)."
    )


def _bounds(area, x, y):
    """West, south, east, north of the study area (default: of the points); None for neither."""
    if area is not None:
        return area.bounds
    if len(x):
        return x.min(), y.min(), x.max(), y.max()
    return None


def _cell_polygons(a, b, size, shape, centres_of):
    """The cells' outlines as shapely polygons (vectorised)."""
    import numpy as np
    import shapely

    cx, cy = centres_of(a, b, size)
    if shape == "square":
        h = size / 2
        return shapely.box(cx - h, cy - h, cx + h, cy + h)
    radius = hex_radius(size)
    angles = np.radians(60 * np.arange(7) + 30)
    ring = np.stack(
        [
            cx[:, None] + radius * np.cos(angles)[None, :],
            cy[:, None] + radius * np.sin(angles)[None, :],
        ],
        axis=-1,
    )
    return shapely.polygons(ring)


def _cells_inside(area, x, y, size, shape, index_of, centres_of, progress=None):
    """Cells that overlap the study area (default: the points' bounding box): their interiors
    meet, so a cell that only touches the area along an edge or at a corner is left out."""
    import numpy as np
    import shapely

    bounds = _bounds(area, x, y)
    empty = np.zeros(0, dtype=np.int64)
    if bounds is None:
        return empty, empty
    if area is None:
        area = shapely.box(*bounds)
        if area.area == 0:  # points on one line: the cells holding them are the grid
            return empty, empty
        shapely.prepare(area)
    corners_x = np.array([bounds[0], bounds[2], bounds[0], bounds[2]])
    corners_y = np.array([bounds[1], bounds[1], bounds[3], bounds[3]])
    a, b = index_of(corners_x, corners_y, size)
    a_range = np.arange(a.min() - 2, a.max() + 3)
    b_range = np.arange(b.min() - 2, b.max() + 3)
    grid_a, grid_b = (g.ravel() for g in np.meshgrid(a_range, b_range, indexing="ij"))
    # A cell whose centre is outside can overlap the area only if its centre lies within a
    # corner's reach of it: only those cells are drawn and tested as polygons.
    reach = size / math.sqrt(2) if shape == "square" else hex_radius(size)
    near = area.buffer(reach * 1.001, quad_segs=4)
    shapely.prepare(near)
    keep = np.zeros(len(grid_a), dtype=bool)
    for start in range(0, len(grid_a), AREA_CHUNK):
        if progress is not None:
            check_canceled(progress)
        part = slice(start, start + AREA_CHUNK)
        cx, cy = centres_of(grid_a[part], grid_b[part], size)
        centre_in = shapely.contains_xy(area, cx, cy)
        edge = np.flatnonzero(~centre_in & shapely.contains_xy(near, cx, cy))
        cells = _cell_polygons(grid_a[part][edge], grid_b[part][edge], size, shape, centres_of)
        # In when they share an area, not only an edge or a corner.
        centre_in[edge] = shapely.area(shapely.intersection(area, cells)) > 0
        keep[part] = centre_in
    return grid_a[keep], grid_b[keep]


def _exact_coordinates(a, b, shape):
    """Integer-valued coordinates in which centre distances compare exactly (squared distances
    are integers): squares' own index; for hexagons x = 2q + r, y = r, with d² = dx² + 3·dy²,
    proportional to the true squared distance."""
    if shape == "square":
        return a, b, 1
    return 2 * a + b, b, 3


def _fill_from_nearest(
    empty_a, empty_b, observed_a, observed_b, majority, tie_scores, shape, size, progress
):
    """Labels and distances (metres) of empty cells, from the observed cells nearest to each."""
    import numpy as np
    import shapely

    n_labels = tie_scores.shape[1]
    ox, oy, y_factor = _exact_coordinates(observed_a, observed_b, shape)
    ex, ey, _ = _exact_coordinates(empty_a, empty_b, shape)
    root = math.sqrt(y_factor)
    tree = shapely.STRtree(shapely.points(ox.astype(float), oy * root))
    # Metres per unit of the exact coordinates.
    unit = size if shape == "square" else hex_radius(size) * math.sqrt(3) / 2
    labels = np.empty(len(empty_a), dtype=np.int64)
    distances = np.empty(len(empty_a), dtype=np.float64)
    for start in range(0, len(empty_a), FILL_CHUNK):
        if progress is not None:
            check_canceled(progress)
        part = slice(start, start + FILL_CHUNK)
        cx, cy = ex[part], ey[part]
        probes = shapely.points(cx.astype(float), cy * root)
        (_, _), nearest = tree.query_nearest(probes, all_matches=False, return_distance=True)
        # Every observed cell about as near, then exact integer distances pick the nearest.
        which, hit = tree.query(probes, predicate="dwithin", distance=nearest * (1 + 1e-9) + 1e-6)
        squared = (cx[which] - ox[hit]) ** 2 + y_factor * (cy[which] - oy[hit]) ** 2
        least = np.full(len(cx), np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(least, which, squared)
        at_least = squared == least[which]
        which, hit = which[at_least], hit[at_least]
        votes = np.bincount(which * n_labels + majority[hit], minlength=len(cx) * n_labels).reshape(
            len(cx), n_labels
        )
        scores = np.zeros((len(cx), n_labels))
        # Scores break ties only: summed only over cells whose votes tie.
        top = votes.max(axis=1)
        tied_rows = (votes == top[:, None]).sum(axis=1) > 1
        if tied_rows.any():
            pick = tied_rows[which]
            np.add.at(scores, which[pick], tie_scores[hit[pick]])
        labels[part] = _first_best(votes.astype(np.float64), scores)
        distances[part] = np.sqrt(least.astype(np.float64)) * unit
    return labels, distances
