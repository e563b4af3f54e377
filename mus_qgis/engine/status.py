"""The engine on itself: its Python, packages and device (status), and whether it works
(selftest)."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

from ..shared.errors import MusError
from ..shared.folders import folder_size
from ..shared.schemas.engine import (
    SelftestParams,
    SelftestResult,
    StatusParams,
    StatusResult,
    VersionsParams,
    VersionsResult,
)
from .jobs import job

REPORTED_PACKAGES = (
    "torch",
    "torchvision",
    "open_clip_torch",
    "numpy",
    "pillow",
    "osmnx",
    "geopandas",
    "shapely",
    "pyproj",
    "pyogrio",
    "osmium",
    "networkx",
    "pandas",
    "requests",
    "huggingface_hub",
    "diffusers",
    "transformers",
)


def package_versions() -> dict[str, str | None]:
    from importlib import metadata

    versions = {}
    for name in REPORTED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_report() -> dict:
    """The device the engine will use: a CUDA device (name, memory), Apple's MPS, or the CPU."""
    report: dict = {"cpu_count": os.cpu_count()}
    try:
        import torch
    except ImportError as exc:
        report["device"] = "none (torch cannot be imported)"
        report["error"] = str(exc)
        return report
    from .clip.models import resolve_device

    report["torch_threads"] = torch.get_num_threads()
    report["cuda_build"] = torch.version.cuda or ""
    device = resolve_device("auto")
    report["device"] = device
    if device == "cuda":
        properties = torch.cuda.get_device_properties(0)
        report["cuda_devices"] = [
            {
                "name": torch.cuda.get_device_name(i),
                "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1),
            }
            for i in range(torch.cuda.device_count())
        ]
        report["description"] = (
            f"CUDA: {properties.name}, {properties.total_memory / 2**30:.1f} GiB"
        )
    elif device == "mps":
        report["description"] = "Apple GPU (MPS)"
    else:
        report["description"] = f"CPU, {torch.get_num_threads()} threads"
    return report


@job("versions", params=VersionsParams, result=VersionsResult)
def versions(params: VersionsParams, progress) -> VersionsResult:
    """The engine's Python and package versions (from the packages' metadata: nothing imported),
    for a study manifest."""
    return VersionsResult(python_version=platform.python_version(), packages=package_versions())


@job("status", params=StatusParams, result=StatusResult)
def status(params: StatusParams, progress) -> StatusResult:
    """Python, packages, device, and the cache folders with their sizes."""
    from ..shared.resources import plugin_version

    folders, speed, advice = None, None, ""
    if params.cache_dir:
        from .clip.precision_speed import precision_advice, precision_speed

        speed = precision_speed(params.cache_dir, params.measure_precision)
        advice = precision_advice(speed)
        folders = {}
        for name in ("models", "embeddings", "imagery", "osmnx"):
            path = Path(params.cache_dir) / name
            folders[name] = {"path": str(path), "bytes": folder_size(path) if path.is_dir() else 0}
    return StatusResult(
        engine_python=sys.executable,
        python_version=platform.python_version(),
        platform=platform.platform(),
        plugin_version=plugin_version(),
        packages=package_versions(),
        device=device_report(),
        worker_pid=os.getpid(),
        # Which copy of the plugin the worker runs (a profile's, a checkout's): for bug reports.
        plugin_folder=str(Path(__file__).resolve().parents[1]),
        cache=folders,
        precision_speed=speed,
        precision_advice=advice,
    )


TINY_CLIP_CONFIG = {
    # A 2-layer, 64-wide CLIP: enough to run every layer type of the real ones in a fraction of
    # a second, so a set-up can prove that torch and open_clip work without any weights.
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@job("selftest", params=SelftestParams, result=SelftestResult)
def selftest(params: SelftestParams, progress) -> SelftestResult:
    """Import every engine package and run a forward pass of a tiny CLIP: is the engine whole?"""
    import importlib
    import tempfile

    modules = ("numpy", "PIL", "requests", "shapely", "pyproj", "pyogrio", "geopandas")
    modules += ("osmium", "osmnx", "torch", "torchvision", "open_clip")
    for module in modules:
        importlib.import_module(module)
    import open_clip
    import torch

    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "mus-selftest-clip.json"
        config.write_text(json.dumps(TINY_CLIP_CONFIG), encoding="utf-8")
        open_clip.add_model_config(config)
        model = open_clip.create_model("mus-selftest-clip")
    tokenizer = open_clip.get_tokenizer("mus-selftest-clip")
    with torch.no_grad():
        image = model.encode_image(torch.zeros(1, 3, 32, 32))
        text = model.encode_text(tokenizer(["a street"]))
    if image.shape != text.shape:
        raise MusError(f"The test model gave image {tuple(image.shape)}, text {tuple(text.shape)}")
    return SelftestResult(ok=True, packages=package_versions(), device=device_report())
