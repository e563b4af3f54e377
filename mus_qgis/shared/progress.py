"""A small progress and cancel channel between the engine and whoever runs it."""

from __future__ import annotations

import logging
from typing import Protocol

from .errors import CanceledError

log = logging.getLogger("mus_qgis")


class Progress(Protocol):
    """What the engine needs from a caller to report progress and learn about a cancel."""

    def set_progress(self, percent: float) -> None: ...

    def is_canceled(self) -> bool: ...

    def info(self, message: str) -> None: ...


class LoggingProgress:
    """Progress for the command line and tests: messages go to the ``mus_qgis`` logger."""

    def __init__(self) -> None:
        self.percent = 0.0
        self.messages: list[str] = []

    def set_progress(self, percent: float) -> None:
        self.percent = percent

    def is_canceled(self) -> bool:
        return False

    def info(self, message: str) -> None:
        self.messages.append(message)
        log.info(message)

    def warning(self, message: str) -> None:
        self.messages.append(message)
        log.warning(message)


def warn(progress, message: str) -> None:
    """A warning through ``progress`` (as an info line where the caller has no warnings)."""
    (getattr(progress, "warning", None) or progress.info)(message)


def check_canceled(progress: Progress) -> None:
    """Raise :class:`CanceledError` if the caller asked to stop."""
    if progress.is_canceled():
        raise CanceledError()
