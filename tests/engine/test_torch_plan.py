"""Which PyTorch build the set-up chooses, on every platform (simulated where it is not this one),
and that it says why before anything downloads."""

from __future__ import annotations

import os
import sys

import pytest

from mus_qgis.bridge.machine import Machine
from mus_qgis.bridge.setup_commands import SetupError
from mus_qgis.bridge.torch_plan import (
    NvidiaGpu,
    builds,
    cuda_build_for,
    nvidia_gpus,
    plan_torch,
)

LINUX = Machine("linux", "x86_64", "glibc", (2, 36))
LINUX_ARM = Machine("linux", "aarch64", "glibc", (2, 36))
WINDOWS = Machine("windows", "x86_64")
APPLE_SILICON = Machine("darwin", "aarch64")
INTEL_MAC = Machine("darwin", "x86_64")
ROSETTA = Machine("darwin", "x86_64", translated=True)
H100 = NvidiaGpu("NVIDIA H100 80GB HBM3", "575.51.03")


def answers(_url):
    return ""


def refuses(_url):
    return "[Errno -2] Name or service not known"


def plan(choice="auto", machine=LINUX, gpus=(), probe=answers, **options):
    return plan_torch(choice, machine, "2.14.1", gpus=list(gpus), probe=probe, **options)


def test_without_an_nvidia_gpu_linux_gets_the_cpu_build_from_pytorchs_index():
    chosen = plan()
    assert chosen.build == "cpu" and chosen.device == "cpu"
    assert chosen.index_url.endswith("/whl/cpu")
    assert "no NVIDIA GPU" in chosen.reason
    assert "CPU build" in chosen.describe("2.14.1")


def test_an_unreachable_cpu_index_stops_before_any_download_instead_of_taking_cuda():
    with pytest.raises(SetupError) as refused:
        plan(probe=refuses)
    message = str(refused.value)
    assert "download.pytorch.org" in message and "Name or service not known" in message
    assert "CUDA build" in message and "3.3 GB" in message  # what the silent fallback would cost
    assert "PyPI's build" in message and "HTTPS_PROXY" in message  # what to do
    assert "0 · Engine ▸ Set up the engine" in message and "TORCH=1" in message  # where
    assert "Nothing was downloaded" in message


def test_pypis_build_is_taken_only_when_asked_and_then_named_for_what_it_is():
    chosen = plan("default", probe=refuses)
    assert chosen.build == "pypi" and chosen.index_url == ""
    assert "CUDA build (cu130)" in chosen.reason and "also runs on the CPU" in chosen.reason


def test_windows_without_a_gpu_takes_pypis_build_which_there_is_the_cpu_build():
    chosen = plan(machine=WINDOWS, probe=refuses)  # PyTorch's index is not even asked
    assert (chosen.build, chosen.index_url, chosen.device) == ("pypi", "", "cpu")


@pytest.mark.parametrize(
    ("machine", "driver", "build", "from_pypi"),
    [
        (LINUX, "575.51.03", "cu128", False),
        (LINUX, "580.82.07", "cu130", True),  # PyPI's Linux wheel is the CUDA 13.0 build
        (WINDOWS, "581.42", "cu130", False),  # PyPI's Windows wheel is CPU-only
        (WINDOWS, "566.36", "cu126", False),
        (LINUX_ARM, "580.82.07", "cu130", False),  # PyPI's aarch64 wheel is another build
    ],
)
def test_an_nvidia_gpu_gets_the_newest_cuda_build_its_driver_runs(
    machine, driver, build, from_pypi
):
    chosen = plan(machine=machine, gpus=[NvidiaGpu("NVIDIA RTX A4000", driver)])
    assert chosen.device == "cuda"
    assert build in chosen.label
    if from_pypi:
        assert chosen.build == "pypi" and chosen.index_url == ""
    else:
        assert chosen.build == build and chosen.index_url.endswith(f"/whl/{build}")
    assert "RTX A4000" in chosen.reason and driver in chosen.reason


def test_a_driver_too_old_for_every_cuda_build_falls_back_to_the_cpu_with_the_reason():
    old = NvidiaGpu("Quadro P2000", "535.183.01")
    chosen = plan(gpus=[old])
    assert chosen.build == "cpu"
    assert "535.183.01" in chosen.reason and "update the driver" in chosen.reason
    with pytest.raises(SetupError, match=r"older than the oldest CUDA build.*Update the driver"):
        plan("cuda", gpus=[old])


def test_cuda_asked_for_without_a_gpu_is_honoured_and_said_plainly():
    chosen = plan("cuda")
    assert chosen.device == "cuda" and "no NVIDIA GPU is visible" in chosen.reason


def test_apple_silicon_gets_pypis_build_on_the_apple_gpu_and_an_intel_mac_is_told_at_once():
    chosen = plan(machine=APPLE_SILICON, probe=refuses)
    assert (chosen.build, chosen.device) == ("pypi", "mps")
    assert "MPS" in chosen.reason
    assert "Rosetta" in plan(machine=ROSETTA).reason  # the engine runs natively on arm64
    assert plan(machine=ROSETTA).device == "mps"
    with pytest.raises(SetupError, match=r"no build of torch 2\.14\.1 for Intel Macs.*2\.2\.2"):
        plan(machine=INTEL_MAC)


def test_a_named_index_an_explicit_build_and_offline_wheels_are_followed():
    assert plan(torch_index="http://127.0.0.1:9/mine").index_url == "http://127.0.0.1:9/mine"
    rocm = plan("rocm6.4")
    assert rocm.build == "rocm6.4" and rocm.index_url.endswith("/whl/rocm6.4")
    assert plan(offline=True, probe=refuses).build == "wheels"


def test_the_driver_table_is_ordered_newest_first_and_thresholds_hold():
    table = builds()["cuda_builds"]
    cudas = [tuple(map(int, b["cuda"].split("."))) for b in table]
    assert cudas == sorted(cudas, reverse=True)
    for build in table:
        for system in ("linux", "windows"):
            minimum = build["min_driver"][system]
            assert cuda_build_for(minimum, system)["cuda"] >= build["cuda"]
    assert cuda_build_for("470.1", "linux") is None


@pytest.mark.skipif(sys.platform == "win32", reason="the stand-in nvidia-smi is a shell script")
def test_nvidia_smi_is_read_for_each_gpu_and_its_driver(tmp_path, monkeypatch):
    tool = tmp_path / "nvidia-smi"
    tool.write_text(
        "#!/bin/sh\n"
        'case "$*" in *--query-gpu=name,driver_version*) '
        "printf 'NVIDIA H100 80GB HBM3, 575.51.03\\nNVIDIA L4, 575.51.03\\n';; esac\n",
        encoding="utf-8",
    )
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert nvidia_gpus() == [H100, NvidiaGpu("NVIDIA L4", "575.51.03")]
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert nvidia_gpus() == []  # no driver tool: no NVIDIA GPU
