"""Street sampling with shapely on the system's GEOS against shapely's PyPI wheel, in one run.

The project builds shapely from source against Debian's GEOS (see requirements.txt); this measures
what that costs. Install the wheel aside first, then alternate the two in fresh processes:

    .venv/bin/pip download --only-binary :all: --no-deps shapely==2.1.2 -d /tmp/shapely_wheel
    .venv/bin/pip install --no-deps --target /tmp/shapely_wheel_site /tmp/shapely_wheel/*.whl
    .venv/bin/python scripts/bench_geos_ab.py /tmp/shapely_wheel_site
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure() -> None:
    """In this process: best-of timings of the Rome extract and a 10k-edge grid."""
    sys.path.insert(0, str(ROOT))
    import shapely

    from mus_qgis.engine.streets.centroids import StudyArea, sample_street_centroids
    from scripts.bench_streets import ROME, grid_osm

    def best(function, repeats):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
        return min(times)

    rome = best(lambda: sample_street_centroids(StudyArea(osm_file=ROME)), 3)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "grid.osm"
        grid_osm(path, 10_000)
        grid = best(lambda: sample_street_centroids(StudyArea(osm_file=path)), 2)
    print(f"{'.'.join(map(str, shapely.geos_version))} {rome:.3f} {grid:.3f}")


def main() -> None:
    if len(sys.argv) == 2 and sys.argv[1] == "--measure":
        measure()
        return
    wheel_site = sys.argv[1]
    runs = {"system GEOS": [], "wheel GEOS": []}
    for _ in range(2):  # alternate, so drift on a shared machine hits both alike
        for variant, extra in (("system GEOS", {}), ("wheel GEOS", {"PYTHONPATH": wheel_site})):
            done = subprocess.run(
                [sys.executable, __file__, "--measure"],
                env={**os.environ, **extra},
                capture_output=True,
                text=True,
                check=True,
            )
            version, rome, grid = done.stdout.split()[-3:]
            runs[variant].append((version, float(rome), float(grid)))
    best = {
        variant: (r[0][0], min(x[1] for x in r), min(x[2] for x in r))
        for variant, r in runs.items()
    }
    system, wheel = best["system GEOS"], best["wheel GEOS"]
    for variant, (version, rome, grid) in best.items():
        print(
            f"{variant:12} (GEOS {version}): Rome extract {rome:.2f} s, 10k-edge grid {grid:.2f} s"
        )
    print(f"system / wheel time: Rome {system[1] / wheel[1]:.2f}, grid {system[2] / wheel[2]:.2f}")


if __name__ == "__main__":
    main()
