"""Benchmark: sampling street centroids, on the Rome extract and on synthetic grids of growing size.

Prints, from one run on one machine, the time of each stage for the Rome extract and how the whole
run grows with network size (square street grids of about 1k, 10k and 100k edges written as OSM
XML), as ratios to the smallest grid. Results go in BENCHMARKS.md.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mus_qgis.engine.streets import centroids as streets
from mus_qgis.engine.streets.centroids import StudyArea, sample_street_centroids
from mus_qgis.engine.streets.osm_source import graph_from_osm_file

ROME = Path(__file__).resolve().parents[2] / "shared" / "data" / "osm" / "rome_monti_2016.osm"


def grid_osm(path: Path, target_edges: int) -> int:
    """A square grid of residential streets (~80 m blocks) with about target_edges edges."""
    side = max(2, round(math.sqrt(target_edges / 2)) + 1)
    step = 0.001
    with path.open("w", encoding="utf-8") as out:
        out.write('<?xml version="1.0"?>\n<osm version="0.6">\n')
        for i in range(side):
            for j in range(side):
                out.write(
                    f'<node id="{i * side + j + 1}" lat="{45 + i * step}" lon="{7 + j * step}"/>\n'
                )
        way = 1
        for i in range(side):
            row = "".join(f'<nd ref="{i * side + j + 1}"/>' for j in range(side))
            col = "".join(f'<nd ref="{j * side + i + 1}"/>' for j in range(side))
            for refs in (row, col):
                out.write(f'<way id="{way}">{refs}<tag k="highway" v="residential"/></way>\n')
                way += 1
        out.write("</osm>\n")
    return 2 * side * (side - 1)


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    graph, t_read = timed(graph_from_osm_file, ROME)
    selected, t_segments = timed(
        streets._segments, graph, lambda highway: highway in streets.DEFAULT_CLASSES
    )
    crs = selected.estimate_utm_crs()
    points, t_midpoints = timed(streets._midpoints, selected, crs)
    _, t_merge = timed(streets.merge_close_points, points, 20.0, crs)
    result, t_total = timed(sample_street_centroids, StudyArea(osm_file=ROME))
    print(f"Rome extract ({ROME.name}): {result.summary()}")
    print(
        f"  read {t_read:.2f} s, segments {t_segments:.2f} s, midpoints {t_midpoints:.3f} s, "
        f"merge {t_merge:.3f} s; whole run {t_total:.2f} s"
    )
    print("\nSynthetic grids (all residential, 20 m merge):")
    print(f"{'edges':>8} {'segments':>9} {'seconds':>8} {'s per 1k edges':>15} {'time ratio':>11}")
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        for target in (1_000, 10_000, 100_000):
            path = Path(tmp) / f"grid_{target}.osm"
            edges = grid_osm(path, target)
            result, seconds = timed(sample_street_centroids, StudyArea(osm_file=path))
            base = base or seconds
            print(
                f"{edges:>8} {result.segments_selected:>9} {seconds:>8.2f} "
                f"{1000 * seconds / edges:>15.3f} {seconds / base:>11.1f}"
            )


if __name__ == "__main__":
    main()
