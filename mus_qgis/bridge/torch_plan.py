"""Which PyTorch build the engine gets, from where, and why: decided before anything downloads.

The rules (``resources/engine/torch_builds.json`` holds the figures):

- an NVIDIA GPU (``nvidia-smi``): the newest CUDA build its driver runs; on Linux that may be
  PyPI's own build, which is a CUDA build;
- no NVIDIA GPU on Linux: PyTorch's CPU build from PyTorch's index. Where that index does not
  answer, the set-up stops and says so: PyPI's Linux build is the CUDA build, several GB that a
  machine without an NVIDIA GPU does not need, and is taken only when the user asks for it;
- Windows without an NVIDIA GPU: PyPI's build, which on Windows is the CPU build;
- Apple silicon: PyPI's build, which runs on the Apple GPU (MPS); an Intel Mac has no build of
  the engine's torch release at all, said before anything downloads.

Standard library only, Python 3.9+: QGIS's process runs the set-up.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import lru_cache

from ..shared.resources import resource_path
from .client import process_options
from .machine import Machine
from .setup_commands import SetupError

# The values mus:setupengine stores as an index: append, never reorder.
TORCH_CHOICES = ("auto", "default", "cpu", "cuda")


@dataclass(frozen=True)
class TorchPlan:
    """``build``: "cpu", "cu128", "pypi", "custom", "wheels", ...; ``index_url``: where torch
    comes from ("" for the ordinary package index); ``device``: what it will run on."""

    build: str
    index_url: str
    reason: str
    device: str = "cpu"
    label: str = ""

    def describe(self, torch_version: str) -> str:
        source = self.index_url or "the package index"
        build = self.label or self.build
        return f"PyTorch {torch_version}: {build}, from {source}. Why: {self.reason}."


@dataclass(frozen=True)
class NvidiaGpu:
    name: str
    driver: str


@lru_cache(maxsize=1)
def builds() -> dict:
    return json.loads(resource_path("engine", "torch_builds.json").read_text(encoding="utf-8"))


def pytorch_index() -> str:
    """PyTorch's own index (``MUS_PYTORCH_INDEX`` names a mirror of it)."""
    return (os.environ.get("MUS_PYTORCH_INDEX", "") or builds()["pytorch_index"]).rstrip("/")


def nvidia_gpus() -> list[NvidiaGpu]:
    """NVIDIA GPUs and their driver, as ``nvidia-smi`` reports them (none without the tool)."""
    tool = shutil.which("nvidia-smi")
    if not tool:
        return []
    try:
        out = subprocess.run(
            [tool, "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=15,
            check=False,
            **process_options(),
        )
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.stdout.splitlines():
        name, _, driver = line.rpartition(",")
        if name.strip() and driver.strip():
            gpus.append(NvidiaGpu(name.strip(), driver.strip()))
    return gpus


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.strip().split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def cuda_build_for(driver: str, system: str) -> dict | None:
    """The newest CUDA build a driver runs on this system (None: the driver is too old)."""
    for build in builds()["cuda_builds"]:
        minimum = build["min_driver"].get(system)
        if minimum and _version(driver) >= _version(minimum):
            return build
    return None


def index_answers(url: str, timeout_s: float = 10.0) -> str:
    """ "" when a package index answers for torch, else why not (a closed network, a proxy)."""
    try:
        request = urllib.request.Request(f"{url.rstrip('/')}/torch/", headers={"Accept": "*/*"})
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            return "" if answer.status == 200 else f"it answered {answer.status}"
    except urllib.error.HTTPError as exc:
        return f"it answered {exc.code} {exc.reason}"
    except (OSError, urllib.error.URLError, ValueError) as exc:
        return str(getattr(exc, "reason", None) or exc)


def plan_torch(
    choice: str,
    machine: Machine,
    torch_version: str,
    torch_index: str = "",
    offline: bool = False,
    gpus: list[NvidiaGpu] | None = None,
    probe=index_answers,
) -> TorchPlan:
    """The build to install on ``machine``. ``gpus`` and ``probe`` default to this machine's
    ``nvidia-smi`` and a real request; the tests hand in others."""
    if torch_index:
        return TorchPlan("custom", torch_index, "the PyTorch index named in the set-up", "auto")
    if offline:
        return TorchPlan("wheels", "", "offline: the torch wheel in the folder of wheels", "auto")
    if machine.system == "darwin":
        return _plan_mac(choice, machine, torch_version)
    choice = choice if choice else "auto"
    if choice == "default":
        return _pypi_plan(machine, "you chose PyPI's build")
    if choice not in ("auto", "cpu", "cuda"):  # an explicit build name: cu128, rocm6.4, xpu
        device = "cuda" if choice.startswith("cu") else "auto"
        return TorchPlan(choice, f"{pytorch_index()}/{choice}", "the build you chose", device)
    if gpus is None:
        gpus = nvidia_gpus() if choice in ("auto", "cuda") else []
    if choice == "cuda" or (choice == "auto" and gpus):
        return _cuda_plan(choice, machine, gpus, probe)
    if machine.windows:
        why = "no NVIDIA GPU found; PyPI's Windows build is the CPU build"
        return TorchPlan("pypi", "", why, "cpu", "CPU build")
    return _cpu_plan(choice, probe)


def _plan_mac(choice: str, machine: Machine, torch_version: str) -> TorchPlan:
    if machine.native_arch != "aarch64":
        last = builds()["last_intel_mac_release"]
        raise SetupError(
            f"PyTorch publishes no build of torch {torch_version} for Intel Macs (the last was "
            f"{last}), and the engine needs {torch_version}. Nothing was downloaded. Run the "
            "engine on another machine (a Linux or Windows computer, or a Mac with Apple "
            "silicon) and use its Python here through Processing ▸ Options ▸ Providers ▸ "
            "Multimodal Urban Studies ▸ Engine Python, or compute the embeddings there with the "
            "engine's command line."
        )
    why = "Apple silicon: PyPI's macOS build, which runs on the Apple GPU (MPS)"
    if choice == "cuda":
        why = "Macs have no CUDA; " + why
    if machine.translated:
        why += "; the engine runs natively on arm64 although QGIS runs under Rosetta"
    return TorchPlan("pypi", "", why, "mps", "macOS build (MPS)")


def _pypi_plan(machine: Machine, why: str) -> TorchPlan:
    if machine.system == "linux" and machine.arch == "x86_64":
        cuda = builds()["pypi_linux"]
        return TorchPlan(
            "pypi",
            "",
            f"{why}; on Linux that is the CUDA build ({cuda}), which also runs on the CPU",
            "cuda",
            f"PyPI's Linux build ({cuda})",
        )
    return TorchPlan("pypi", "", why, "cpu", "PyPI's build")


def _cuda_plan(choice: str, machine: Machine, gpus: list[NvidiaGpu], probe) -> TorchPlan:
    if not gpus:  # asked for without a GPU to see: the newest build, said plainly
        build = builds()["cuda_builds"][0]
        why = "the CUDA build you chose (no NVIDIA GPU is visible here: it will run on the CPU)"
        return _cuda_source(machine, build, why)
    gpu = gpus[0]
    build = cuda_build_for(gpu.driver, machine.system)
    if build is None:
        oldest = builds()["cuda_builds"][-1]
        minimum = oldest["min_driver"].get(machine.system, "?")
        if choice == "cuda":
            raise SetupError(
                f"The NVIDIA driver {gpu.driver} of the {gpu.name} is older than the oldest CUDA "
                f"build of PyTorch the engine can use (CUDA {oldest['cuda']} needs driver "
                f"{minimum} or newer). Update the driver (nvidia.com/drivers), then set up "
                "again; or choose the CPU build."
            )
        why = (
            f"the NVIDIA driver {gpu.driver} of the {gpu.name} is older than CUDA "
            f"{oldest['cuda']} needs ({minimum}): the CPU build; update the driver to use the GPU"
        )
        return _cpu_plan("auto", probe, why)
    why = f"{gpu.name} with driver {gpu.driver}: CUDA {build['cuda']} is the newest it runs"
    return _cuda_source(machine, build, why)


def _cuda_source(machine: Machine, build: dict, why: str) -> TorchPlan:
    label = f"CUDA {build['cuda']} build ({build['build']})"
    pypi_has_it = machine.system == "linux" and machine.arch == "x86_64"
    if pypi_has_it and build["build"] == builds()["pypi_linux"]:
        return TorchPlan("pypi", "", f"{why}; PyPI's Linux build is that build", "cuda", label)
    return TorchPlan(build["build"], f"{pytorch_index()}/{build['build']}", why, "cuda", label)


def _cpu_plan(choice: str, probe, why: str = "") -> TorchPlan:
    index = f"{pytorch_index()}/cpu"
    why = why or (
        "no NVIDIA GPU found: the CPU build, a fraction of the CUDA build's download"
        if choice == "auto"
        else "the CPU build you chose"
    )
    problem = probe(index)
    if problem:
        raise SetupError(
            f"PyTorch's CPU build comes from PyTorch's own index, {index}, which does not answer "
            f"here ({problem}). Nothing was downloaded. The set-up does not fall back on PyPI's "
            "Linux build on its own: that is the CUDA build, about 3.3 GB to download and 6 GB "
            "on disk, which a machine without an NVIDIA GPU does not need. What to do: let QGIS "
            "reach download.pytorch.org (behind a proxy, set HTTPS_PROXY); or take the CUDA "
            "build anyway (it runs on the CPU too): Processing Toolbox ▸ Multimodal Urban "
            'Studies ▸ 0 · Engine ▸ Set up the engine, PyTorch build "PyPI\'s build" '
            "(qgis_process: TORCH=1; command line: --torch default); or, offline, give a folder "
            "of wheels."
        )
    return TorchPlan("cpu", index, why, "cpu", "CPU build")
