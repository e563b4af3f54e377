"""The engine runs beside QGIS: its work, crashes and packages stay out of QGIS's process."""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time

import pytest
from qgis import processing
from qgis.core import QgsProcessingException, QgsProcessingFeedback

from mus_qgis.bridge.client import ENGINE_ONLY_MODULES, POOL
from tests.conftest import AREZZO_PHOTOS, ROME_OSM, ROOT, SHARED_DATA, TINY_MODEL_CONFIG


def _photos_layer(tmp_path):
    """Points where the Arezzo photos were taken (EXIF), with their paths."""
    from qgis.core import QgsExifTools, QgsFeature, QgsGeometry, QgsPointXY, QgsVectorLayer

    layer = QgsVectorLayer("Point?crs=EPSG:4326&field=image_paths:string", "photos", "memory")
    features = []
    for path in AREZZO_PHOTOS:
        where, _ = QgsExifTools.getGeoTag(str(path))
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(where.x(), where.y())))
        feature.setAttributes([str(path)])
        features.append(feature)
    assert layer.dataProvider().addFeatures(features)[0]
    return layer


def _noise_panoramas(folder, count: int, width: int = 1600):
    """Distinct 2:1 images (random noise), so that none is in the embedding store yet."""
    import numpy as np
    from qgis.core import QgsFeature, QgsGeometry, QgsPointXY, QgsVectorLayer
    from qgis.PyQt.QtGui import QImage

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    layer = QgsVectorLayer("Point?crs=EPSG:4326&field=image_paths:string", "noise", "memory")
    features = []
    for i in range(count):
        pixels = rng.integers(0, 255, (width // 2, width, 4), dtype=np.uint8)
        pixels[..., 3] = 255
        image = QImage(pixels.data, width, width // 2, width * 4, QImage.Format.Format_RGB32)
        path = folder / f"pano_{i:03}.jpg"
        assert image.save(str(path), "JPG", 90)
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(12.49 + i * 1e-4, 41.89)))
        feature.setAttributes([str(path)])
        features.append(feature)
    assert layer.dataProvider().addFeatures(features)[0]
    return layer


def _classify(layer, checkpoint, cache, feedback=None, batch_size=4):
    return processing.run(
        "mus:classifyclip",
        {
            "INPUT": layer,
            "LABEL_SET": 0,
            "MODEL": str(TINY_MODEL_CONFIG),
            "CHECKPOINT": str(checkpoint),
            "DEVICE": 1,
            "BATCH_SIZE": batch_size,
            "CACHE_FOLDER": str(cache),
            "OUTPUT": "memory:",
        },
        feedback=feedback,
    )


class LogFeedback(QgsProcessingFeedback):
    def __init__(self, on_progress=None):
        super().__init__()
        self.lines: list[str] = []
        self._on_progress = on_progress

    def pushInfo(self, info):
        self.lines.append(info)
        super().pushInfo(info)

    def setProgress(self, progress):
        super().setProgress(progress)
        if self._on_progress is not None:
            self._on_progress(self, progress)


def test_every_algorithm_runs_without_an_engine_package_in_qgis(
    mus_provider, tmp_path, tiny_checkpoint
):
    """Sample, fetch, classify, grid, rank (layers and store), compare, status: in one process."""
    cache = tmp_path / "cache"
    streets = processing.run(
        "mus:samplestreetcentroids",
        {"OSM_FILE": str(ROME_OSM), "OUTPUT": "memory:"},
    )
    assert streets["LOCATIONS"] == 372
    photos = processing.run(
        "mus:fetchpanoramas",
        {
            "INPUT": _photos_layer(tmp_path),
            "SOURCE": 3,
            "PHOTO_FOLDER": str(SHARED_DATA / "images" / "arezzo"),
            "CACHE_FOLDER": str(cache),
            "OUTPUT": "memory:",
        },
    )
    assert photos["WITH_IMAGERY"] == len(AREZZO_PHOTOS)
    classified = _classify(photos["OUTPUT"], tiny_checkpoint, cache)
    assert classified["CLASSIFIED"] == len(AREZZO_PHOTOS)
    grid = processing.run(
        "mus:resampletogrid",
        {"INPUT": classified["OUTPUT"], "CELL_SIZE": 50, "OUTPUT": "memory:"},
    )
    assert grid["CELLS"] > 0
    ranked = processing.run(
        "mus:ranklabels",
        {
            "INPUTS": [classified["OUTPUT"]],
            "STORED_LABEL_SETS": [0],
            "MODEL": str(TINY_MODEL_CONFIG),
            "CHECKPOINT": str(tiny_checkpoint),
            "DEVICE": 1,
            "CACHE_FOLDER": str(cache),
            "OUTPUT": "memory:",
        },
    )
    assert ranked["OUTPUT"].featureCount() > 27  # the layer's labels, then all 27 classes
    # Narva's polygons lie nowhere near Arezzo: said, not a comparison of nothing.
    with pytest.raises(QgsProcessingException, match=r"None of the \d+ points falls on a polygon"):
        processing.run(
            "mus:compareurbanatlas",
            {
                "INPUT": classified["OUTPUT"],
                "REFERENCE": str(
                    SHARED_DATA / "landcover" / "urban_atlas_sample" / "EE003L1_NARVA_UA2018.gpkg"
                ),
                "OUTPUT": "memory:",
            },
        )
    # (Measuring bf16 takes ViT-B-32 twice: the engine's tests measure the tiny model instead.)
    status = processing.run("mus:enginestatus", {"MEASURE_PRECISION": False})
    assert "Device: CPU" in status["TEXT"] and "open_clip_torch 3.3.0" in status["TEXT"]
    imported = [name for name in ENGINE_ONLY_MODULES if name in sys.modules]
    assert imported == [], f"QGIS's process imported {imported}"


def test_the_worker_stays_warm_between_runs(mus_provider, tmp_path, tiny_checkpoint):
    _classify(_photos_layer(tmp_path), tiny_checkpoint, tmp_path / "cache")
    warm = POOL.idle_pids()
    assert len(warm) == 1
    _classify(_photos_layer(tmp_path), tiny_checkpoint, tmp_path / "cache")
    assert POOL.idle_pids() == warm


@pytest.mark.skipif(sys.platform == "win32", reason="kills the worker with SIGKILL, a POSIX signal")
def test_a_killed_worker_is_an_error_and_the_rerun_reuses_what_it_stored(
    mus_provider, tmp_path, tiny_checkpoint
):
    layer = _noise_panoramas(tmp_path / "noise", 48)
    cache = tmp_path / "cache"
    killed = []

    def kill_midway(feedback, percent):
        if percent >= 30 and not killed and POOL.busy_pids():
            killed.append(POOL.busy_pids()[0])
            os.kill(killed[0], signal.SIGKILL)

    with pytest.raises(QgsProcessingException, match="killed by SIGKILL"):
        _classify(layer, tiny_checkpoint, cache, LogFeedback(kill_midway))
    assert killed
    # QGIS is still here, and the next run starts a new worker and finishes.
    again = LogFeedback()
    result = _classify(layer, tiny_checkpoint, cache, again)
    assert result["CLASSIFIED"] == 48
    summary = next(line for line in again.lines if "locations classified" in line)
    decoded, stored = map(
        int, re.search(r"(\d+) images decoded, (\d+) from the store", summary).groups()
    )
    assert stored > 0 and decoded + stored == 48, summary
    assert killed[0] not in POOL.idle_pids()


def test_cancel_stops_a_long_classification_within_five_seconds(
    mus_provider, tmp_path, tiny_checkpoint
):
    layer = _noise_panoramas(tmp_path / "noise", 120)
    canceled_at = []

    def cancel_early(feedback, percent):
        if percent >= 5 and not canceled_at:
            canceled_at.append(time.monotonic())
            # Cancel from another thread, as the dialog's Cancel button does.
            threading.Thread(target=feedback.cancel).start()

    started = time.monotonic()
    with pytest.raises(QgsProcessingException, match=r"[Cc]ancel"):
        _classify(layer, tiny_checkpoint, tmp_path / "cache", LogFeedback(cancel_early), 2)
    ended = time.monotonic()
    assert canceled_at, "the run finished before it could be canceled"
    assert ended - canceled_at[0] < 5.0, f"stopped {ended - canceled_at[0]:.1f} s after cancel"
    assert canceled_at[0] - started > 0


def test_without_an_engine_every_algorithm_says_how_to_set_it_up(
    mus_provider, tmp_path, monkeypatch
):
    monkeypatch.setenv("MUS_ENGINE_PYTHON", "")
    monkeypatch.setattr(
        "mus_qgis.bridge.engine.default_engine_root", lambda: tmp_path / "no-engine"
    )
    with pytest.raises(QgsProcessingException, match="mus:setupengine"):
        processing.run(
            "mus:samplestreetcentroids", {"OSM_FILE": str(ROME_OSM), "OUTPUT": "memory:"}
        )
    status = processing.run("mus:enginestatus", {})
    assert "not set up" in status["TEXT"]


def test_engine_status_names_the_torch_build_the_device_and_why(mus_provider, monkeypatch):
    # The environment `make install` set up, found as the plugin finds its own managed one.
    monkeypatch.setenv("MUS_ENGINE_PYTHON", "")
    monkeypatch.setattr("mus_qgis.bridge.engine.default_engine_root", lambda: ROOT / ".engine")
    text = processing.run("mus:enginestatus", {"MEASURE_PRECISION": False})["TEXT"]
    assert re.search(r"made \S+ by uv \d+\.\d+\.\d+", text), text
    assert "Built on: /usr/bin/python3, the Python you named" in text  # as make names it
    assert "PyTorch build: PyPI's Linux build (cu130), chosen because you chose PyPI's" in text
    assert "Device: CPU" in text
    # A CUDA build on a machine without an NVIDIA GPU: said, not left for the user to find.
    assert "Note: a CUDA build is installed, but the engine sees no such device" in text


def test_the_menu_repeats_the_choices_of_the_engine_in_use_and_says_why_it_failed():
    from mus_qgis.plugin import first_sentence
    from mus_qgis.processing.setup_engine import repeated_parameters

    made_by_make = {
        "options": {"torch": "default", "base_python": "/usr/bin/python3", "offline": False},
        "torch_index": "",
    }
    assert repeated_parameters(made_by_make) == {"TORCH": 1, "BASE_PYTHON": "/usr/bin/python3"}
    assert repeated_parameters(None) == {"TORCH": 0}  # no engine yet: the automatic choices
    named_build = {"options": {"torch": "cu128"}, "torch_index": "https://x.org/whl/cu128"}
    assert repeated_parameters(named_build) == {"TORCH_INDEX": "https://x.org/whl/cu128"}
    message = (
        "PyTorch's CPU build comes from PyTorch's own index, https://download.pytorch.org/whl/cpu, "
        "which does not answer here ([Errno -2] Name or service not known). Nothing was downloaded."
    )
    assert first_sentence(message) == message.split(". Nothing")[0]
    assert len(first_sentence("word " * 200)) <= 240
