"""The QGIS side of the engine: which Python runs it, and a job run with Processing's feedback.

Every algorithm's heavy work runs in an engine worker, a separate process started from the
engine environment (see ``engine/worker``). This module is the only place the QGIS side talks to
it; it imports the worker client, which is standard library only.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingUtils

from ..shared.errors import MusError
from ..shared.protocol import DEFAULT_IDLE_TIMEOUT_S
from ..shared.schemas import Schema
from . import client
from .environment import (
    SetupOptions,
    current_python,
    read_current,
    requirements_digest,
)
from .machine import default_engine_folder, this_machine

# Provider settings (Processing ▸ Options ▸ Providers ▸ Multimodal Urban Studies).
SETTING_PYTHON = "MUS_ENGINE_PYTHON"
SETTING_FOLDER = "MUS_ENGINE_FOLDER"
SETTING_IDLE_MINUTES = "MUS_ENGINE_IDLE_MINUTES"
SETTING_CHECKPOINT = "MUS_DEFAULT_CHECKPOINT"  # the CLIP checkpoint file dialogs start with
DEFAULT_IDLE_MINUTES = DEFAULT_IDLE_TIMEOUT_S // 60

NOT_SET_UP = (
    "The mus_qgis engine is not set up yet. Run 'Set up the engine' once: in the menu "
    "Plugins ▸ Multimodal Urban Studies ▸ Set up the engine, or the Processing algorithm "
    "mus:setupengine (headless: qgis_process run mus:setupengine). It downloads the engine's "
    "packages (PyTorch, OpenCLIP, osmnx, …) into their own environment, outside QGIS. To use a "
    "Python that already has them, name it in Processing ▸ Options ▸ Providers ▸ Multimodal "
    "Urban Studies ▸ Engine Python."
)


def setting(name: str, default=None):
    """A provider setting, or ``default`` where Processing's settings are not available."""
    try:
        from processing.core.ProcessingConfig import ProcessingConfig
    except ImportError:
        return default
    value = ProcessingConfig.getSetting(name)
    return default if value in (None, "") else value


def default_checkpoint() -> str:
    """The checkpoint file the CLIP dialogs start with ("" : the pretrained tag's download)."""
    return str(setting(SETTING_CHECKPOINT, "") or "").strip()


def set_default_checkpoint(path: str) -> None:
    """Make ``path`` the checkpoint the CLIP dialogs start with ("" : none)."""
    from processing.core.ProcessingConfig import ProcessingConfig

    ProcessingConfig.setSettingValue(SETTING_CHECKPOINT, path)


def default_engine_root() -> Path:
    """Where the managed engine environment lives: the plugin's folder in the QGIS profile
    (on Windows, the user's local application data: see ``default_engine_folder``)."""
    return default_engine_folder(this_machine(), Path(QgsApplication.qgisSettingsDirPath()))


def engine_root() -> Path:
    configured = str(setting(SETTING_FOLDER, "") or "").strip()
    return Path(configured).expanduser() if configured else default_engine_root()


def configured_python() -> tuple[str, str]:
    """The engine Python and where it was chosen; ("", reason) when there is none."""
    configured = str(setting(SETTING_PYTHON, "") or "").strip()
    if configured:
        return configured, "the provider setting 'Engine Python'"
    from_environment = os.environ.get("MUS_ENGINE_PYTHON", "").strip()
    if from_environment:
        return from_environment, "the MUS_ENGINE_PYTHON variable"
    managed = current_python(engine_root())
    if managed:
        return managed, f"the managed environment in {engine_root()}"
    return "", "none is set up"


def engine_python() -> str:
    """The Python that runs the engine, or a QgsProcessingException that says how to set one up."""
    python, chosen_by = configured_python()
    if not python:
        raise QgsProcessingException(NOT_SET_UP)
    if not Path(python).is_file():
        raise QgsProcessingException(
            f"The engine Python {python} (from {chosen_by}) does not exist. {NOT_SET_UP}"
        )
    return python


def idle_timeout_s() -> float:
    try:
        return float(setting(SETTING_IDLE_MINUTES, DEFAULT_IDLE_MINUTES)) * 60
    except (TypeError, ValueError):
        return DEFAULT_IDLE_MINUTES * 60


# The engine's job is most of an algorithm's work, not all of it: reading its answer into the
# output layer and styling it follow. The job's 100 % shows as this much, so that the bar reaches
# 100 % only when the algorithm ends (it stood at 100 % for seconds while features were written).
ENGINE_SHARE = 90.0


class FeedbackProgress:
    """The engine's progress channel over a Processing feedback object: scaled to the job's
    share of the algorithm, and never going back."""

    def __init__(self, feedback, share: float = ENGINE_SHARE) -> None:
        from qgis.core import QgsProcessingFeedback

        self._feedback = feedback or QgsProcessingFeedback()
        self._share = share
        self._shown = 0.0

    def set_progress(self, percent: float) -> None:
        shown = min(max(float(percent), 0.0), 100.0) * self._share / 100.0
        if shown > self._shown:
            self._shown = shown
            self._feedback.setProgress(shown)

    def is_canceled(self) -> bool:
        return self._feedback.isCanceled()

    def info(self, message: str) -> None:
        self._feedback.pushInfo(message)

    def warning(self, message: str) -> None:
        self._feedback.reportError(message, False)

    def error(self, message: str) -> None:
        self._feedback.reportError(message, False)


def warn_if_outdated(feedback) -> None:
    """After a plugin upgrade that changed the engine's pins, say how to bring the engine along."""
    _, chosen_by = configured_python()
    record = read_current(engine_root())
    if not record or not chosen_by.startswith("the managed environment"):
        return
    if record.get("requirements") != requirements_digest(SetupOptions(engine_root())):
        feedback.pushWarning(
            "This version of the plugin pins other engine packages than the engine environment "
            "has: run 'Set up the engine' (mus:setupengine) again to update it."
        )


def run_job(job: str, params: Schema, feedback, result: type[Schema]) -> Schema:
    """Run one engine job in a (warm) worker: its parameters go as plain JSON, its answer comes
    back as the job's ``result`` schema. Any failure is a QgsProcessingException."""
    python = engine_python()
    if feedback is not None:
        warn_if_outdated(feedback)
    try:
        answer = client.POOL.run(
            python, job, params.to_dict(), FeedbackProgress(feedback), idle_timeout_s()
        )
        return result.from_dict(answer)
    except client.EngineJobError as exc:
        if exc.user_error:
            raise QgsProcessingException(str(exc)) from None
        if feedback is not None and exc.details:
            feedback.pushDebugInfo(exc.details)
        raise QgsProcessingException(
            f"The engine failed ({exc.error}): {exc}. The log above has its traceback."
        ) from None
    except (client.EngineError, MusError) as exc:
        raise QgsProcessingException(str(exc)) from None


def job_file(suffix: str) -> str:
    """A new file name in Processing's temporary folder, for a job's input or output."""
    return str(Path(QgsProcessingUtils.tempFolder()) / f"mus-{uuid.uuid4().hex}{suffix}")


def plugin_cache_dir(*parts: str) -> Path:
    """The plugin's cache folder in the QGIS profile (downloads, embeddings); created on demand."""
    folder = Path(QgsApplication.qgisSettingsDirPath()) / "cache" / "mus_qgis"
    folder = folder.joinpath(*parts)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
