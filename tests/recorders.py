"""Progress channels that remember what they were told (the set-up's and the worker's tests)."""

from __future__ import annotations

import time


class SetupProgress:
    """Lines, warnings and the last percentage; canceled once ``cancel_after_s`` has passed, or
    as soon as a line containing ``cancel_on`` arrives."""

    def __init__(self, cancel_after_s: float | None = None, cancel_on: str = "") -> None:
        self.lines: list[str] = []
        self.warnings: list[str] = []
        self.percent = 0.0
        self._deadline = None if cancel_after_s is None else time.monotonic() + cancel_after_s
        self._cancel_on = cancel_on
        self._canceled = False

    def set_progress(self, percent: float) -> None:
        self.percent = percent

    def is_canceled(self) -> bool:
        if self._deadline is not None and time.monotonic() > self._deadline:
            return True
        return self._canceled

    def info(self, message: str) -> None:
        self.lines.append(message)
        if self._cancel_on and self._cancel_on in message:
            self._canceled = True

    def warning(self, message: str) -> None:
        self.warnings.append(message)
        self.lines.append(message)

    def text(self) -> str:
        return "\n".join(self.lines)
