"""The engine set-up's errors and the one way it runs a command (uv, pip, a new Python).

Standard library only, Python 3.9+: QGIS's process runs the set-up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time

from . import client
from .client import PLUGIN_PARENT, kill_process_tree, process_options, worker_environment


class SetupError(Exception):
    """The engine environment could not be set up; the previous one (if any) stays in use."""


class SetupCanceledError(SetupError):
    """The user canceled the set-up."""


CANCELED = "The engine set-up was canceled; nothing was changed."


def run_command(
    command: list[str],
    progress,
    what: str,
    relay: bool = True,
    env: dict[str, str] | None = None,
) -> list[str]:
    """Run a command, relaying its lines to ``progress``; stop it on cancel.

    Returns its output lines; a non-zero exit is a :class:`SetupError` ending with the command's
    last lines, where its own explanation is.
    """
    try:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Not QGIS's PYTHONPATH: the installer must see what the worker will see.
            env=env if env is not None else worker_environment(),
            cwd=str(PLUGIN_PARENT),
            # POSIX: a process group of its own, so that a cancel also stops what it started
            # (venv runs ensurepip, uv runs builds); Windows: no console window.
            **process_options(),
        )
    except OSError as exc:
        raise SetupError(f"{what} could not start ({command[0]}: {exc.strerror or exc}).") from None
    lines: list[str] = []

    def read() -> None:
        for raw in process.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip()
            if line:
                lines.append(line)
                if relay and not line.startswith(" "):
                    progress.info(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while process.poll() is None:
            if progress.is_canceled():
                stop_process_tree(process)
                reader.join(timeout=5)
                raise SetupCanceledError(CANCELED)
            time.sleep(0.2)
        reader.join(timeout=5)
    finally:
        process.stdout.close()  # else a ResourceWarning in QGIS's Python log, one per command
    if process.returncode != 0:
        tail = "\n".join(lines[-15:])
        raise SetupError(f"{what} failed (exit code {process.returncode}):\n{tail}")
    return lines


def stop_process_tree(process: subprocess.Popen) -> None:
    """Stop a command and everything it started; wait until they are gone.

    POSIX: the command's process group gets SIGTERM, a chance to clean up, then SIGKILL.
    Windows has no such signal to give: the tree is ended at once (:func:`kill_process_tree`).
    """
    if client.POSIX:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
    kill_process_tree(process)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    if client.POSIX:  # children may outlive the leader for a moment
        for _ in range(50):
            try:
                os.killpg(process.pid, 0)
            except (ProcessLookupError, PermissionError):
                break
            time.sleep(0.1)
