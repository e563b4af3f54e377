"""The engine's own schemas: what it runs on (status), and whether it is whole (selftest)."""

from __future__ import annotations

from dataclasses import dataclass

from . import Schema


@dataclass(frozen=True)
class VersionsParams(Schema):
    """No parameters: the engine's Python and package versions, without importing any."""


@dataclass(frozen=True)
class VersionsResult(Schema):
    python_version: str
    packages: dict  # package name -> version; None for a package not installed


@dataclass(frozen=True)
class StatusParams(Schema):
    cache_dir: str = ""  # the plugin's cache folder, reported part by part; empty: none
    # Measure bf16 against fp32 when this computer was not measured before (seconds to a
    # minute, once; remembered in the cache folder).
    measure_precision: bool = False


@dataclass(frozen=True)
class StatusResult(Schema):
    """Python, packages, device, and the cache folders with their sizes: what a bug report needs."""

    engine_python: str  # the worker's Python executable
    python_version: str
    platform: str
    plugin_version: str
    packages: dict  # distribution name: its version, None where it is not installed
    device: dict  # the device the engine will use: device, description, cuda_build, ...
    worker_pid: int
    plugin_folder: str  # which copy of the plugin the worker runs
    cache: dict | None = None  # per cache folder: {"path", "bytes"}; None without a cache_dir
    # bf16 against fp32 on this computer ({} when not measured) and what that means, in words.
    precision_speed: dict | None = None
    precision_advice: str = ""


@dataclass(frozen=True)
class SelftestParams(Schema):
    """The self-test takes nothing."""


@dataclass(frozen=True)
class SelftestResult(Schema):
    """Every engine package imports and a tiny CLIP runs a forward pass."""

    ok: bool
    packages: dict  # as StatusResult's
    device: dict  # as StatusResult's
