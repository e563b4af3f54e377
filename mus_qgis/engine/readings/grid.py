"""Classified points resampled to a void-free grid: the most frequent label per cell.

Points are binned with array arithmetic (no spatial join per point), in a projected CRS whose unit
is the metre. Cells inside the study area without a point take the label most frequent among
their nearest labelled neighbours (a dilation outwards from the observed cells, ring by ring), and
are flagged as filled, so the map has no void while saying where it guessed.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from ..progress import check_canceled

SHAPES = ("square", "hexagon")
# More cells than a map can draw or a reader can use; a 1 m grid over a city is refused.
MAX_CELLS = 1_000_000
_SQUARE_NEIGHBOURS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
_HEX_NEIGHBOURS = [(1, 0), (-1, 0), (0, 1), (0, -1), (1, -1), (-1, 1)]


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
    fill_distance: object  # int N, rings walked to find labelled neighbours (0 when observed)

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
) -> GridResult:
    """The most frequent label per cell of a square or hexagonal grid.

    ``x``, ``y``: point coordinates in metres; ``labels``: each point's label index (negative
    for points without a label, which are ignored); ``weights``: optional per-point weights
    (e.g. scores) instead of counting occurrences; ``area``: a shapely polygon of the study area
    in the same CRS (default: the points' bounding box), whose empty cells are filled.
    Ties go to the label that comes first in the label set. A grid of more than ``max_cells``
    cells is refused before any work, with its size in the message; ``progress`` (optional)
    is asked for a cancel between rings of the filling.
    """
    import numpy as np

    if shape not in SHAPES:
        raise ValueError(f"The grid shape must be one of {', '.join(SHAPES)}, not {shape!r}.")
    if not cell_size > 0:
        raise ValueError("The cell size must be positive.")
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    keep = (labels >= 0) & np.isfinite(x) & np.isfinite(y)
    x, y, labels = x[keep], y[keep], labels[keep]
    weights = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64)[keep]
    index_of, centres_of = (
        (_square_index, _square_centres) if shape == "square" else (_hex_index, _hex_centres)
    )

    a, b = index_of(x, y, cell_size)
    # Occupied cells and their label counts, without a loop over points.
    a0, b0 = (a.min(), b.min()) if len(a) else (0, 0)
    span = (b.max() - b0 + 1) if len(b) else 1
    keys = (a - a0) * span + (b - b0)
    cells, inverse = np.unique(keys, return_inverse=True)
    counts = np.bincount(
        inverse * n_labels + labels, weights=weights, minlength=len(cells) * n_labels
    ).reshape(len(cells), n_labels)
    points = np.bincount(inverse, minlength=len(cells))
    majority = counts.argmax(axis=1)
    totals = counts.sum(axis=1)
    share = counts.max(axis=1) / np.where(totals > 0, totals, 1)
    p = counts / np.where(totals > 0, totals, 1)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.nansum(np.where(p > 0, p * np.log2(p), 0.0), axis=1)
    observed = {(int(k // span + a0), int(k % span + b0)): row for row, k in enumerate(cells)}

    if fill:
        _refuse_huge_grid(area, x, y, cell_size, max_cells)
    inside = _cells_inside(area, x, y, cell_size, shape, index_of, centres_of) if fill else set()
    all_cells = sorted(set(observed) | inside)
    assigned = {cell: int(majority[row]) for cell, row in observed.items()}
    distance = dict.fromkeys(observed, 0)
    if fill:
        _dilate(assigned, distance, inside - set(observed), shape, points, observed, progress)

    index = np.array(all_cells, dtype=np.int64).reshape(-1, 2)
    cx, cy = centres_of(index[:, 0], index[:, 1], cell_size)
    rows = [observed.get(cell) for cell in all_cells]
    observed_mask = np.array([row is not None for row in rows], dtype=bool)
    take = np.array([row if row is not None else 0 for row in rows], dtype=np.int64)
    return GridResult(
        shape,
        cell_size,
        index,
        np.column_stack([cx, cy]),
        np.array([assigned.get(cell, -1) for cell in all_cells], dtype=np.int64),
        np.where(observed_mask, points[take] if len(points) else 0, 0),
        np.where(observed_mask, share[take] if len(share) else np.nan, np.nan),
        np.where(observed_mask, entropy[take] if len(entropy) else np.nan, np.nan),
        ~observed_mask & np.array([cell in assigned for cell in all_cells], dtype=bool),
        np.array([distance.get(cell, -1) for cell in all_cells], dtype=np.int64),
    )


def _refuse_huge_grid(area, x, y, size: float, max_cells: int) -> None:
    """Stop before the work when the grid would have more cells than anyone can use or wait for
    (a 1 m grid over a city has hundreds of millions)."""
    from ..errors import MusError

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


def _bounds(area, x, y):
    """West, south, east, north of the study area (default: of the points); None for neither."""
    if area is not None:
        return area.bounds
    if len(x):
        return x.min(), y.min(), x.max(), y.max()
    return None


def _cells_inside(area, x, y, size, shape, index_of, centres_of) -> set:
    """Cells whose centre lies in the study area (default: the points' bounding box)."""
    import numpy as np

    bounds = _bounds(area, x, y)
    if bounds is None:
        return set()
    corners_x = np.array([bounds[0], bounds[2], bounds[0], bounds[2]])
    corners_y = np.array([bounds[1], bounds[1], bounds[3], bounds[3]])
    a, b = index_of(corners_x, corners_y, size)
    a_range = np.arange(a.min() - 2, a.max() + 3)
    b_range = np.arange(b.min() - 2, b.max() + 3)
    grid_a, grid_b = (g.ravel() for g in np.meshgrid(a_range, b_range, indexing="ij"))
    cx, cy = centres_of(grid_a, grid_b, size)
    if area is None:
        within = (cx >= bounds[0]) & (cx <= bounds[2]) & (cy >= bounds[1]) & (cy <= bounds[3])
    else:
        import shapely

        within = shapely.contains_xy(area, cx, cy)
    return set(zip(grid_a[within].tolist(), grid_b[within].tolist(), strict=True))


def _dilate(
    assigned: dict, distance: dict, empty: set, shape: str, points, observed, progress=None
) -> None:
    """Give empty cells, ring by ring outwards, the label most frequent among their labelled
    neighbours (ties: the neighbour cell with most points, then the earlier label)."""
    offsets = _SQUARE_NEIGHBOURS if shape == "square" else _HEX_NEIGHBOURS
    step = 0
    # Only an empty neighbour of a cell labelled in the last ring can be labelled in the next
    # (one next to an older cell was labelled already): each ring looks at those alone.
    last_ring = set(assigned)
    while empty:
        if progress is not None:
            check_canceled(progress)
        step += 1
        frontier = {}
        candidates = {
            (cell[0] + da, cell[1] + db) for cell in last_ring for da, db in offsets
        } & empty
        for cell in candidates:
            neighbours = [(cell[0] + da, cell[1] + db) for da, db in offsets]
            labelled = [n for n in neighbours if n in assigned]
            if labelled:
                votes = Counter(assigned[n] for n in labelled)
                weight = {}
                for n in labelled:
                    row = observed.get(n)
                    weight[assigned[n]] = weight.get(assigned[n], 0) + (
                        int(points[row]) if row is not None else 0
                    )
                frontier[cell] = min(votes, key=lambda lab: (-votes[lab], -weight[lab], lab))
        if not frontier:
            return  # cells cut off from every labelled cell stay without a label
        for cell, label in frontier.items():
            assigned[cell] = label
            distance[cell] = step
        empty -= frontier.keys()
        last_ring = set(frontier)
