"""Processing algorithm ``mus:enginestatus``."""

from __future__ import annotations

import html
import json
import platform

from qgis.core import (
    Qgis,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFileDestination,
)

from ..bridge.engine import configured_python, engine_root, plugin_cache_dir, run_job
from ..bridge.environment import read_current
from ..shared.resources import plugin_version
from ..shared.schemas.engine import StatusParams, StatusResult
from .base import MusAlgorithm


def _size(count: int) -> str:
    """Decimal units, as the set-up counts its downloads."""
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def status_text(status: dict) -> str:
    """The status as plain text, the way a user pastes it into a bug report."""
    lines = [
        f"mus_qgis {status['plugin_version']} on QGIS {status['qgis_version']} "
        f"({status['platform']})",
        f"Engine Python: {status['engine_python'] or 'none'} ({status['chosen_by']})",
    ]
    environment = status.get("environment")
    if environment:
        lines.append(
            f"Managed environment: {status['engine_root']} (made {environment.get('created')} "
            f"by {environment.get('installer') or 'pip'}, "
            f"{_size(environment.get('size_bytes', 0))})"
        )
        if environment.get("python_source"):
            base = environment.get("base_python", "")
            lines.append(f"Built on: {base}, {environment['python_source']}")
        build = environment.get("torch_label") or environment.get("torch_build")
        lines.append(f"PyTorch build: {build}, chosen because {environment.get('torch_reason')}")
    engine = status.get("engine")
    if not engine:
        lines.append(f"Engine: {status.get('problem', 'not reachable')}")
        return "\n".join(lines)
    device = engine.get("device", {})
    lines.append(f"Python {engine['python_version']} on {engine['platform']}")
    lines.append(f"Device: {device.get('description') or device.get('device')}")
    planned = (environment or {}).get("torch_device")
    if planned in ("cuda", "mps") and device.get("device") == "cpu":
        what = "a CUDA build" if planned == "cuda" else "the Apple GPU build"
        lines.append(
            f"Note: {what} is installed, but the engine sees no such device and runs on the CPU "
            "(a missing or outdated driver, or a machine without that GPU)."
        )
    if device.get("cuda_build"):
        lines.append(f"torch CUDA build: {device['cuda_build']}")
    if engine.get("precision_advice"):
        lines.append(f"Precision: {engine['precision_advice']}")
    packages = ", ".join(f"{k} {v}" for k, v in engine["packages"].items() if v)
    missing = [k for k, v in engine["packages"].items() if not v]
    lines.append(f"Packages: {packages}")
    if missing:
        lines.append(f"Missing: {', '.join(missing)}")
    for name, folder in (engine.get("cache") or {}).items():
        lines.append(f"Cache {name}: {folder['path']} ({_size(folder['bytes'])})")
    return "\n".join(lines)


class EngineStatus(MusAlgorithm):
    """Where the engine runs and on what: what a bug report needs, and "is my GPU used?"."""

    NAME = "enginestatus"
    STUDY_STEP = False
    DISPLAY_NAME = "Engine status"
    SHORT = "What the engine runs on (Python, torch, device) and whether it is whole."
    GROUP = "0 · Engine"
    GROUP_ID = "engine"
    HELP = (
        "Reports the engine Python and how it was chosen, the versions of the engine's "
        "packages, the device it will use (CUDA GPU with its name and memory, or the CPU with "
        "its thread count), and the model cache and embedding store with their sizes. Paste it "
        "into a bug report. It starts the engine if needed; an engine that is not set up is "
        "reported, not an error.\n\n"
        "Precision: whether bf16 is faster than fp32 on this computer (CPUs with AMX run it "
        "several times faster, others far slower), measured once with the default model's "
        "random weights on a few images (seconds to a minute) and remembered in the cache "
        "folder; CLIP-classify's Precision setting (advanced) takes the answer."
    )

    REPORT = "REPORT"
    MEASURE_PRECISION = "MEASURE_PRECISION"

    def initAlgorithm(self, config=None) -> None:
        """Declare the parameters."""
        self.add_parameter(
            QgsProcessingParameterBoolean(
                self.MEASURE_PRECISION,
                self.tr("Measure bf16 against fp32"),
                defaultValue=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterFileDestination(
                self.REPORT, self.tr("Report"), self.tr("HTML files (*.html)"), optional=True
            )
        )
        self.add_output(QgsProcessingOutputString("STATUS", self.tr("Status (JSON)")))
        self.add_output(QgsProcessingOutputString("TEXT", self.tr("Status (text)")))

    def processAlgorithm(self, parameters, context, feedback):
        """Ask the engine what it runs on; say plainly when there is no engine."""
        python, chosen_by = configured_python()
        status = {
            "plugin_version": plugin_version(),
            "qgis_version": Qgis.QGIS_VERSION,
            "platform": platform.platform(),
            "engine_python": python,
            "chosen_by": chosen_by,
            "engine_root": str(engine_root()),
            "environment": read_current(engine_root()),
        }
        if python:
            try:
                measure = self.parameterAsBoolean(parameters, self.MEASURE_PRECISION, context)
                engine = run_job(
                    "status",
                    StatusParams(str(plugin_cache_dir()), measure_precision=measure),
                    feedback,
                    StatusResult,
                )
                status["engine"] = engine.to_dict()  # as the report's JSON shows it
            except Exception as exc:  # a broken engine is what this report is for
                status["problem"] = str(exc)
        else:
            status["problem"] = "not set up: run 'Set up the engine' (mus:setupengine)"
        text = status_text(status)
        for line in text.splitlines():
            feedback.pushInfo(line)
        results = {"STATUS": json.dumps(status, indent=2), "TEXT": text}
        report = self.parameterAsFileOutput(parameters, self.REPORT, context)
        if report:
            with open(report, "w", encoding="utf-8") as out:
                out.write(
                    "<html><head><meta charset='utf-8'><title>mus_qgis engine status</title>"
                    f"</head><body><h1>Engine status</h1><pre>{html.escape(text)}</pre></body>"
                    "</html>"
                )
            results[self.REPORT] = report
        return results
