"""Helpers shared by the QGIS tests."""

from __future__ import annotations

import os
import subprocess

from qgis.core import (
    QgsApplication,
    QgsAuthMethodConfig,
    QgsFeature,
    QgsGeometry,
    QgsPointXY,
    QgsProcessingFeedback,
    QgsVectorLayer,
)

from tests.conftest import AREZZO_PHOTOS, ENGINE_PYTHON, PANORAMAS, ROOT


def engine_python(arguments: list[str]) -> str:
    """The engine's Python on ``arguments`` (its stdout), as users run it; it must succeed."""
    done = subprocess.run(
        [ENGINE_PYTHON, *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


class RecordingFeedback(QgsProcessingFeedback):
    """Feedback that keeps the log lines and errors, so tests can read what the user would."""

    def __init__(self):
        super().__init__()
        self.lines: list[str] = []
        self.errors: list[str] = []

    def pushInfo(self, info):
        self.lines.append(info)
        super().pushInfo(info)

    def pushWarning(self, warning):
        self.lines.append(warning)
        super().pushWarning(warning)

    def pushDebugInfo(self, info):
        self.lines.append(info)
        super().pushDebugInfo(info)

    def reportError(self, error, fatalError=False):  # noqa: N803 (QGIS names it so)
        self.errors.append(error)
        super().reportError(error, fatalError)


def photo_points(tmp_path) -> QgsVectorLayer:
    """Points as the fetch algorithm writes them: image paths, bearing, one missing image."""
    layer = QgsVectorLayer(
        "Point?crs=EPSG:4326&field=pid:integer&field=image_paths:string"
        "&field=bearing:double&field=status:string",
        "points",
        "memory",
    )
    rows = [(str(p), 10.0 * i) for i, p in enumerate(AREZZO_PHOTOS[:4])]
    rows.append((f"{AREZZO_PHOTOS[4]};{AREZZO_PHOTOS[5]}", 0.0))
    rows.append((str(PANORAMAS[0]), 45.0))
    rows.append((str(tmp_path / "gone.jpg"), 0.0))
    rows.append((None, None))
    features = []
    for index, (paths, bearing) in enumerate(rows):
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(11.88 + index * 1e-4, 43.467)))
        feature.setAttributes([index, paths, bearing, "fetched"])
        features.append(feature)
    assert layer.dataProvider().addFeatures(features)[0]
    return layer


def point_layer(coordinates, bearing=90.0, with_empty=False) -> QgsVectorLayer:
    layer = QgsVectorLayer(
        "Point?crs=EPSG:4326&field=name:string&field=bearing:double", "pts", "memory"
    )
    features = []
    for index, (lon, lat) in enumerate(coordinates):
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(lon, lat)))
        feature.setAttributes([f"p{index}", bearing])
        features.append(feature)
    if with_empty:
        feature = QgsFeature(layer.fields())
        feature.setAttributes(["no geometry", None])
        features.append(feature)
    assert layer.dataProvider().addFeatures(features)[0]
    return layer


def auth_config(key: str, secret: str = "") -> str:
    manager = QgsApplication.authManager()
    if not manager.masterPasswordIsSet():
        assert manager.setMasterPassword("mus-test-master", True)
    config = QgsAuthMethodConfig("Basic")
    config.setName(f"test {key[:4]}")
    config.setConfig("username", key)
    config.setConfig("password", secret)
    assert manager.storeAuthenticationConfig(config)[0]
    return config.id()
