"""Benchmark: opening a point in the street inspector from the cache, and each view's reading.

Run in QGIS's Python (it builds the dock), with the engine Python named by MUS_ENGINE_PYTHON:

    QT_QPA_PLATFORM=offscreen MUS_ENGINE_PYTHON=.engine/env/bin/python \\
        .venv/bin/python scripts/bench_inspector.py

It classifies the Arezzo photos (one point each, and points of two photos) and the two
equirectangular panoramas of the shared data with the tiny random-weight model, then prints, from
one run: the time to open a point in the dock (layer read, images decoded and drawn, text set),
median and worst over the points, for photos and for panoramas, with the images decoded at the
size shown (JPEG scaled decoding, what the dock does) and decoded whole then scaled (the
baseline), and their ratio; and the time of the view_scores engine job (every view of every
point scored from the stores) for the layer and for the same views repeated to 4,157 points.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = ROOT.parent / "shared" / "data" / "images"
REPEATS = 5


def classified_layer(folder: Path):
    from qgis import processing
    from qgis.core import QgsFeature, QgsGeometry, QgsPointXY, QgsVectorLayer

    checkpoint = folder / "tiny.pt"
    subprocess.run(
        [
            os.environ["MUS_ENGINE_PYTHON"],
            str(ROOT / "tests" / "tiny_checkpoint.py"),
            str(checkpoint),
        ],
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    photos = sorted((SHARED / "arezzo").glob("*.jpg"))
    panoramas = sorted((SHARED / "equirectangular").glob("*.jpg"))
    rows = [str(p) for p in photos] + [f"{a};{b}" for a, b in zip(photos, photos[1:])]
    rows += [str(p) for p in panoramas]
    layer = QgsVectorLayer("Point?crs=EPSG:4326&field=image_paths:string", "points", "memory")
    features = []
    for index, paths in enumerate(rows):
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(11.88 + index * 1e-4, 43.46)))
        feature.setAttributes([paths])
        features.append(feature)
    assert layer.dataProvider().addFeatures(features)[0]
    output = folder / "classified.gpkg"
    processing.run(
        "mus:classifyclip",
        {
            "INPUT": layer,
            "MODEL": str(ROOT / "tests" / "assets" / "mus-tiny-vit.json"),
            "CHECKPOINT": str(checkpoint),
            "DEVICE": 1,
            "CACHE_FOLDER": str(folder / "cache"),
            "OUTPUT": str(output),
        },
    )
    return QgsVectorLayer(str(output), "classified", "ogr"), {p for p in map(str, panoramas)}


def _ms(times) -> str:
    return f"{1000 * statistics.median(times):.1f} ms median, {1000 * max(times):.1f} worst"


def open_times(dock, layer, fids, repeats) -> list[float]:
    times = []
    for _ in range(repeats):
        for fid in fids:
            started = time.perf_counter()
            dock.show_point(layer, fid)
            times.append(time.perf_counter() - started)
    return times


def main() -> None:
    from qgis.core import Qgis, QgsApplication
    from qgis.PyQt.QtGui import QPixmap

    # A profile of its own: the thumbnail copies are made and removed there, not in the user's.
    os.environ["QGIS_CUSTOM_CONFIG_PATH"] = tempfile.mkdtemp(prefix="mus-bench-profile-")
    app = QgsApplication([], True)
    app.initQgis()
    sys.path.append(str(Path(app.pkgDataPath()) / "python" / "plugins"))  # Processing
    from processing.core.Processing import Processing

    Processing.initialize()
    from mus_qgis.processing.provider import MusProvider

    provider = MusProvider()  # kept: the registry does not own a Python provider
    assert QgsApplication.processingRegistry().addProvider(provider)
    from mus_qgis.bridge.engine import plugin_cache_dir
    from mus_qgis.inspector import dock as dock_module
    from mus_qgis.inspector.view_scores import run_view_scores, view_scores_job

    with tempfile.TemporaryDirectory() as folder:
        layer, panoramas = classified_layer(Path(folder))
        dock = dock_module.InspectorDock()
        dock.resize(520, 900)
        dock.show()
        features = list(layer.getFeatures())
        kinds = {
            "photo points": [f.id() for f in features if f["image_paths"] not in panoramas],
            "panorama points": [f.id() for f in features if f["image_paths"] in panoramas],
        }
        scaled = dock_module.scaled_image

        def whole_then_scaled(path, width):
            pixmap = QPixmap(path)
            return None if pixmap.isNull() else pixmap.scaledToWidth(width)

        print(f"{len(features)} points; QGIS {Qgis.QGIS_VERSION}; times per opening")
        dock.prefetch.ask = lambda jobs: None  # no background help: each open does its own work
        for kind, fids in kinds.items():
            shutil.rmtree(plugin_cache_dir("thumbnails"), ignore_errors=True)
            first = open_times(dock, layer, fids, 1)
            later = open_times(dock, layer, fids, REPEATS)
            dock_module.scaled_image = whole_then_scaled
            baseline = open_times(dock, layer, fids, REPEATS)
            dock_module.scaled_image = scaled
            print(
                f"{kind:>16}: first open {_ms(first)}; later opens {_ms(later)}; "
                f"decoding each image whole {_ms(baseline)} "
                f"({statistics.median(baseline) / statistics.median(later):.1f}× the later median)"
            )
        for points in (len(features), 4157):
            job = view_scores_job(layer)
            rows = json.loads(Path(job["params"].locations).read_text(encoding="utf-8"))
            rows = (rows * (points // len(rows) + 1))[:points]
            Path(job["params"].locations).write_text(json.dumps(rows), encoding="utf-8")
            job["fids"] = list(range(points))
            started = time.perf_counter()
            run_view_scores(job)
            print(
                f"view_scores job, {points:,} points: {time.perf_counter() - started:.2f} s "
                "(warm worker after the first)"
            )
    app.exitQgis()


if __name__ == "__main__":
    main()
