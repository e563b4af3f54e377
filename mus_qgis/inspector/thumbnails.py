"""Small copies of the images the inspector shows, kept in the plugin's cache folder.

A 4096 × 2048 panorama takes several hundred milliseconds to decode; its 460 px copy a few. The
first look at an image makes its copy (or the background task does, for the next points in the
inspector's order); every later look reads the copy. A copy is named by the image's path, size
and modification time, so a changed image gets a new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os

from qgis.core import QgsApplication, QgsTask
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QImage, QImageReader

from ..bridge.engine import plugin_cache_dir

QUALITY = 85


def _copy_path(path: str, width: int) -> str | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    name = f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}|{width}"
    digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()
    return str(plugin_cache_dir("thumbnails", digest[:2]) / f"{digest}.jpg")


def decoded(path: str, width: int) -> QImage:
    """The image at ``width`` px (no wider than it is); a null QImage when it cannot be read."""
    reader = QImageReader(path)
    reader.setAutoTransform(True)
    size = reader.size()
    if size.isValid() and size.width() > width:
        reader.setScaledSize(QSize(width, max(1, round(size.height() * width / size.width()))))
    return reader.read()


def thumbnail(path: str, width: int) -> QImage:
    """The image at ``width`` px, from its stored copy, made when missing (any thread)."""
    copy = _copy_path(path, width)
    if copy is None:
        return QImage()
    if os.path.exists(copy):
        image = QImage(copy)
        if not image.isNull():
            return image
    image = decoded(path, width)
    if not image.isNull():
        image.save(copy + ".part", "JPG", QUALITY)
        # Another copy may have won the race, or the cache be read-only: the image is shown.
        with contextlib.suppress(OSError):
            os.replace(copy + ".part", copy)
    return image


class Prefetch:
    """Makes the copies of the next points' images in the background (one task at a time)."""

    def __init__(self) -> None:
        self._task: QgsTask | None = None

    def ask(self, jobs: list[tuple[str, int]]) -> None:
        if self._task is not None or not jobs:
            return

        def work(task):
            for path, width in jobs:
                if task.isCanceled():
                    return None
                thumbnail(path, width)
            return None

        def finished(exception, result=None):
            self._task = None

        self._task = QgsTask.fromFunction(
            "Street inspector: images of the next points", work, on_finished=finished
        )
        QgsApplication.taskManager().addTask(self._task)

    def stop(self) -> None:
        """Cancel the task and wait for it (a task left running when QGIS closes crashes it)."""
        stop_task(self._task)
        self._task = None


def stop_task(task, timeout_ms: int = 30_000) -> None:
    from qgis.PyQt import sip

    if task is not None and not sip.isdeleted(task):
        task.cancel()
        task.waitForFinished(timeout_ms)
