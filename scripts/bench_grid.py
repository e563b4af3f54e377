"""Benchmark: resampling classified points to a 100 m grid, against a per-point spatial join.

Prints, from one run on one machine, for 10k, 100k and 1M points spread over a 10 × 10 km study
area (27 labels, as Urban Atlas): the engine (array binning, then the void fill) and a baseline
that finds each point's cell by a spatial index query (shapely STRtree) and counts in Python,
the way a per-point spatial join works. The baseline runs up to --baseline-max points. Results go
in BENCHMARKS.md.

    python scripts/bench_grid.py [--baseline-max 1000000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mus_qgis.engine.readings.grid import resample_to_grid

SIDE_M = 10_000.0
CELL_M = 100.0
LABELS = 27


def spatial_join(x, y, labels) -> dict:
    import shapely

    edges = np.arange(0.0, SIDE_M, CELL_M)
    cells = [shapely.box(a, b, a + CELL_M, b + CELL_M) for a in edges for b in edges]
    tree = shapely.STRtree(cells)
    counts: dict[int, Counter] = {}
    for px, py, label in zip(x, y, labels, strict=True):
        hits = tree.query(shapely.Point(px, py), predicate="intersects")
        if len(hits):
            counts.setdefault(int(hits[0]), Counter())[int(label)] += 1
    return {cell: counter.most_common(1)[0][0] for cell, counter in counts.items()}


def main() -> None:
    import shapely

    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline-max", type=int, default=1_000_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    area = shapely.box(0, 0, SIDE_M, SIDE_M)
    print(
        f"{SIDE_M / 1000:.0f} × {SIDE_M / 1000:.0f} km, {CELL_M:.0f} m cells "
        f"({int(SIDE_M / CELL_M) ** 2} cells), {LABELS} labels"
    )
    for count in (10_000, 100_000, 1_000_000):
        # Points clustered on a few "streets" so that the void fill has work to do.
        x = rng.uniform(0, SIDE_M, count)
        y = (rng.integers(0, 40, count) * 250.0 + rng.normal(0, 15, count)).clip(0, SIDE_M - 1)
        labels = rng.integers(0, LABELS, count)
        started = time.perf_counter()
        result = resample_to_grid(x, y, labels, LABELS, CELL_M, area=area)
        engine_s = time.perf_counter() - started
        line = (
            f"{count:>9,} points: engine {engine_s:6.2f} s ({len(result.label)} cells, "
            f"{int(result.filled.sum())} filled)"
        )
        if count <= args.baseline_max:
            started = time.perf_counter()
            spatial_join(x, y, labels)
            join_s = time.perf_counter() - started
            line += f"; per-point spatial join {join_s:7.2f} s ({join_s / engine_s:,.0f}×)"
        print(line)


if __name__ == "__main__":
    main()
