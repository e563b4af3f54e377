"""Benchmark: the spatial statistics of the readings, and how their time grows.

Prints, from one run on one machine: label clusters (join counts for two labels, local join
counts, Moran's I; 8 nearest neighbours, 99 permutations) for 250, 1,000 and 4,000 points with
the time per point relative to 250; the discontinuities of a 100 × 100 square grid; the
alignment test with 999 random placements of a reference. Results go in BENCHMARKS.md.

    python scripts/bench_readings.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mus_qgis.engine.readings.boundaries import alignment_test, label_boundaries
from mus_qgis.engine.readings.clusters import label_clusters


def timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def main() -> None:
    rng = np.random.default_rng(0)
    # PySAL compiles its permutation kernels (numba) on first use: not timed.
    label_clusters(*rng.uniform(0, 100, (2, 50)), rng.integers(0, 2, 50), 2, rng.random(50))
    base = None
    print("points | label clusters s | s per 1k points | ratio to 250 (per point)")
    for n in (250, 1000, 4000):
        x, y = rng.uniform(0, 5000, n), rng.uniform(0, 5000, n)
        labels = (x + rng.normal(0, 800, n) > 2500).astype(int)
        scores = x / 5000 + rng.normal(0, 0.2, n)
        seconds, _ = timed(
            lambda x=x, y=y, labels=labels, scores=scores: label_clusters(
                x, y, labels, 2, scores, kind="knn", k=8, permutations=99
            )
        )
        per_point = seconds / n
        base = base or per_point
        print(f"{n:,} | {seconds:.2f} | {1000 * per_point:.2f} | {per_point / base:.2f}")
    side, size = 100, 100.0
    columns, rows = np.meshgrid(np.arange(side), np.arange(side))
    rings = np.stack(
        [
            np.column_stack([columns.ravel() + dx, rows.ravel() + dy]) * size
            for dx, dy in ((0, 0), (1, 0), (1, 1), (0, 1), (0, 0))
        ],
        axis=1,
    )
    grid_labels = ((columns + rng.integers(-3, 4, columns.shape)) // 25).ravel()
    seconds, result = timed(lambda: label_boundaries(rings, grid_labels))
    print(
        f"boundaries of a {side} × {side} grid: {seconds:.2f} s, {len(result.edges):,} edges, "
        f"{len(result.lines):,} lines"
    )
    import shapely

    reference = [shapely.LineString([(2500, -100), (2500, 10_100)])]
    seconds, aligned = timed(
        lambda: alignment_test(result.edges, reference, 50, (0, 0, 10_000, 10_000), 999)
    )
    print(f"alignment test, 999 placements: {seconds:.2f} s (p = {aligned.p_value:.3f})")


if __name__ == "__main__":
    main()
