"""Helpers shared by the QGIS tests."""

from __future__ import annotations

import os
import subprocess

from qgis.core import QgsProcessingFeedback

from tests.conftest import ENGINE_PYTHON, ROOT


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
