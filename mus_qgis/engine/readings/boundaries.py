"""Discontinuities of a label grid: edges between neighbouring cells whose labels differ.

Two cells of a square or hexagonal grid (as *Resample labels to a grid* makes) are neighbours
when they share an edge; neighbours are found with libpysal's distance band over the cell
centres (the centre spacing, whatever the grid's orientation of rows). An edge between cells of
different majority labels is a discontinuity, with a *strength*: how different the two cells'
label shares are, as half the sum of absolute differences of their shares (the total variation
distance: 0 for the same mixture, 1 for no label in common). Edges are dissolved, per pair of
labels, into connected boundary lines.

Against a reference boundary layer (e.g. Rome's Rioni), the share of discontinuity length lying
within a buffer of the reference boundaries is compared with the shares given by the same
reference moved at random (rotated about the grid's centre by any angle and shifted by up to half
the grid's extent each way): the p-value is the fraction of moved references that do at least as
well (plus one, over permutations plus one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...shared.errors import MusError


@dataclass
class Boundaries:
    pairs: object  # int E×2: the two cells of each discontinuity edge (row indices)
    edges: list  # shapely LineString per edge
    strength: object  # float E
    lines: list  # dissolved: dicts with geometry, labels (a, b), length_m, strength, edges
    total_length: float
    neighbour_pairs: int  # all pairs of neighbouring cells


@dataclass
class Alignment:
    observed: float  # share of discontinuity length within the buffer
    expected: float  # mean share over the moved references
    p_value: float
    permutations: int
    buffer_m: float


def grid_geometry(rings):
    """Shape, cell size (side of the square of the cell's area), centres and the spacing of
    neighbouring centres, from the cells' closed rings (N×R×2, R = 5 squares, 7 hexagons)."""
    import numpy as np

    rings = np.asarray(rings, dtype=float)
    if rings.ndim != 3 or rings.shape[1] not in (5, 7) or len(rings) < 2:
        raise MusError(
            "The grid layer's cells are not squares or hexagons as 'Resample labels to a grid' "
            "makes them (4 or 6 corners each, at least two cells): give such a grid."
        )
    shape = "square" if rings.shape[1] == 5 else "hexagon"
    corners = rings[:, :-1, :]
    centres = corners.mean(axis=1)
    x, y = corners[..., 0], corners[..., 1]
    area = 0.5 * np.abs((x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y).sum(axis=1))
    size = float(np.sqrt(np.median(area)))
    if shape == "square":
        spacing, edge_length = size, size
    else:
        radius = size * math.sqrt(2.0 / (3.0 * math.sqrt(3.0)))
        spacing, edge_length = radius * math.sqrt(3.0), radius
    return shape, size, centres, spacing, edge_length


def shares_from_points(rings, x, y, point_labels, labels, n_labels: int):
    """N×L label shares per cell, counted from the labelled points inside each; a cell with no
    point (a filled cell) is wholly its own label."""
    import numpy as np
    import shapely

    cells = shapely.polygons(np.asarray(rings, dtype=float))
    point_labels = np.asarray(point_labels, dtype=np.int64)
    keep = (point_labels >= 0) & (point_labels < n_labels)
    points = shapely.points(np.asarray(x, float)[keep], np.asarray(y, float)[keep])
    point_index, cell_index = shapely.STRtree(cells).query(points, predicate="intersects")
    # A point on an edge between cells counts in the one up and to the right, as the grid's
    # binning (floor of the coordinate over the cell size) put it.
    centres = np.asarray(rings, dtype=float)[:, :-1, :].mean(axis=1)
    order = np.lexsort((-(centres[cell_index, 0] + centres[cell_index, 1]), point_index))
    point_index, cell_index = point_index[order], cell_index[order]
    point_index, first = np.unique(point_index, return_index=True)
    cell_index = cell_index[first]
    counts = np.zeros((len(cells), n_labels))
    np.add.at(counts, (cell_index, point_labels[keep][point_index]), 1.0)
    totals = counts.sum(axis=1)
    labels = np.asarray(labels, dtype=np.int64)
    empty = (totals == 0) & (labels >= 0)
    counts[np.flatnonzero(empty), labels[empty]] = 1.0
    return counts / np.where(counts.sum(axis=1) > 0, counts.sum(axis=1), 1.0)[:, None]


def label_boundaries(rings, labels, shares=None, majority_share=None) -> Boundaries:
    """Discontinuity edges and dissolved boundary lines of a label grid.

    ``labels``: each cell's label index (negative: none, no edge); ``shares``: optional N×L
    label shares per cell (e.g. counted from the classified points); without them a cell is
    its majority label with ``majority_share`` (NaN or absent: 1) and an unknown remainder common
    to both cells, so the strength is the larger of the two majority shares.
    """
    import numpy as np
    import shapely

    from .clusters import spatial_weights

    _, _, centres, spacing, edge_length = grid_geometry(rings)
    labels = np.asarray(labels, dtype=np.int64)
    w = spatial_weights(centres[:, 0], centres[:, 1], "distance", distance_m=spacing * 1.01)
    pairs = np.array(
        [(i, j) for i, neighbours in w.neighbors.items() for j in neighbours if i < j],
        dtype=np.int64,
    ).reshape(-1, 2)
    neighbour_pairs = len(pairs)
    a, b = labels[pairs[:, 0]], labels[pairs[:, 1]]
    differ = (a >= 0) & (b >= 0) & (a != b)
    pairs = pairs[differ]
    if shares is not None:
        shares = np.asarray(shares, dtype=float)
        strength = 0.5 * np.abs(shares[pairs[:, 0]] - shares[pairs[:, 1]]).sum(axis=1)
    else:
        share = (
            np.ones(len(labels))
            if majority_share is None
            else np.nan_to_num(np.asarray(majority_share, float), nan=1.0)
        )
        strength = np.maximum(share[pairs[:, 0]], share[pairs[:, 1]])
    # The shared edge: the perpendicular bisector of the two centres, one edge long.
    first, second = centres[pairs[:, 0]], centres[pairs[:, 1]]
    middle = (first + second) / 2
    along = (second - first) / np.linalg.norm(second - first, axis=1)[:, None]
    across = np.column_stack([-along[:, 1], along[:, 0]]) * edge_length / 2
    ends = _join_corners(np.stack([middle - across, middle + across], axis=1), edge_length)
    edges = list(shapely.linestrings(ends))
    lines = _dissolve(edges, middle, labels[pairs], strength, edge_length) if len(edges) else []
    return Boundaries(
        pairs,
        edges,
        strength,
        lines,
        float(len(edges) * edge_length),
        neighbour_pairs,
    )


def _join_corners(ends, edge_length: float):
    """Edge ends (E×2×2) that meet at one corner made the same point, bit for bit.

    Each edge is built from its own two cells' centres, so the ends of the edges meeting at a
    hexagon's corner (an irrational number) differ in their last bits. Left so, the union of
    the edges is noded at every such near-miss and breaks into pieces a hundred-billionth of a
    metre long, each a line of its own with no edge on it (a third of a city's hexagon lines).
    Corners are an edge apart, the near-misses far below a millionth of that: each end takes
    the coordinates of the first end within that distance."""
    import numpy as np
    from scipy.spatial import cKDTree

    flat = ends.reshape(-1, 2)
    if not len(flat):
        return ends
    # At most four edges meet at a corner (squares), three for hexagons; an index past the end
    # stands for no neighbour, and each end finds itself.
    _, near = cKDTree(flat).query(
        flat, k=min(8, len(flat)), distance_upper_bound=edge_length * 1e-6
    )
    first = np.asarray(near).reshape(len(flat), -1).min(axis=1)
    return flat[first].reshape(ends.shape)


def _dissolve(edges, middles, label_pairs, strength, edge_length) -> list[dict]:
    """Per unordered label pair, connected boundary lines with their length and mean strength."""
    import numpy as np
    import shapely

    ordered = np.sort(label_pairs, axis=1)
    lines = []
    for a, b in sorted({tuple(p) for p in ordered.tolist()}):
        mine = np.flatnonzero((ordered[:, 0] == a) & (ordered[:, 1] == b))
        merged = shapely.line_merge(shapely.union_all([edges[i] for i in mine]))
        pieces = list(shapely.get_parts(merged))
        tree = shapely.STRtree(pieces)
        midpoints = shapely.points(middles[mine])
        edge_index, piece_index = tree.query(
            midpoints, predicate="dwithin", distance=edge_length * 1e-6
        )
        for piece_number, piece in enumerate(pieces):
            on_piece = np.unique(edge_index[piece_index == piece_number])
            lines.append(
                {
                    "geometry": piece,
                    "labels": (int(a), int(b)),
                    "length_m": float(piece.length),
                    "strength": float(strength[mine[on_piece]].mean()) if len(on_piece) else 0.0,
                    "edges": len(on_piece),
                }
            )
    return lines


def alignment_test(
    discontinuities,
    reference,
    buffer_m: float,
    extent,
    permutations: int = 999,
    seed: int = 0,
    progress=None,
) -> Alignment:
    """Share of discontinuity length (``discontinuities``: straight edges, as
    :func:`label_boundaries` gives them) within ``buffer_m`` of the ``reference`` lines or
    polygon outlines, against the shares of the reference rotated about the centre of ``extent``
    (x0, y0, x1, y1) and shifted by up to half its size each way, at random.
    """
    import numpy as np
    import shapely
    from shapely import affinity

    from ...shared.progress import check_canceled

    if not (buffer_m > 0 and math.isfinite(buffer_m)):
        raise MusError(f"The buffer must be a positive number of metres, not {buffer_m}.")
    if permutations < 9:
        raise MusError(f"Give at least 9 random placements (999 is usual), not {permutations}.")
    segments = np.array([np.asarray(line.coords)[[0, -1]] for line in discontinuities], float)
    lengths = np.linalg.norm(segments[:, 1] - segments[:, 0], axis=1)
    total = lengths.sum()
    if total == 0:
        raise MusError("The grid has no discontinuity: every pair of neighbours agrees.")
    reference = shapely.union_all([shapely.boundary(g) if g.area > 0 else g for g in reference])
    if reference.is_empty:
        raise MusError("The reference boundary layer has no line or polygon.")
    zone = reference.buffer(buffer_m)
    lines = shapely.linestrings(segments)
    tree = shapely.STRtree(lines)

    def covered(area) -> float:
        near = tree.query(area, predicate="intersects")
        return float(shapely.length(shapely.intersection(lines[near], area)).sum())

    observed = covered(zone) / total
    x0, y0, x1, y1 = extent
    centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2
    rng = np.random.default_rng(seed)
    angles = np.radians(rng.uniform(0, 360, permutations))
    shifts = rng.uniform(-0.5, 0.5, (permutations, 2)) * [x1 - x0, y1 - y0]
    null = np.empty(permutations)
    for i in range(permutations):
        if progress is not None and i % 100 == 0:
            check_canceled(progress)
        # Rotate about the extent's centre, then shift: one affine map of the buffered zone.
        cos, sin = math.cos(angles[i]), math.sin(angles[i])
        dx = centre_x - cos * centre_x + sin * centre_y + shifts[i, 0]
        dy = centre_y - sin * centre_x - cos * centre_y + shifts[i, 1]
        moved = affinity.affine_transform(zone, [cos, -sin, sin, cos, dx, dy])
        null[i] = covered(moved) / total
    p_value = (1 + int((null >= observed - 1e-12).sum())) / (permutations + 1)
    return Alignment(float(observed), float(null.mean()), p_value, permutations, buffer_m)
