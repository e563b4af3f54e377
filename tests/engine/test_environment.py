"""The engine set-up, for real: uv and a standalone CPython fetched from a stand-in server, the
engine's wheels through uv, a self-test, an atomic switch; and what it does when the server is gone.

The set-up runs the way QGIS runs it: in a process whose executable is not a Python (a copy of
this machine's Python named ``qgis``), with a PATH whose only Python is older than 3.11. The
engine's own packages come from the package index `make install` used, through the uv cache it
filled (uv keys its cache by index): nothing large is downloaded twice.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mus_qgis.bridge.environment import (
    SetupError,
    SetupOptions,
    current_python,
    download_size,
    read_current,
    resolve,
    setup,
    uv_environment,
    uv_sources,
    verify,
)
from mus_qgis.bridge.machine import Machine, this_machine
from mus_qgis.bridge.pythons import download_failure, find_base_python
from mus_qgis.bridge.setup_commands import run_command
from mus_qgis.bridge.torch_plan import plan_torch
from mus_qgis.bridge.uv_tool import ensure_uv
from tests.conftest import ROOT
from tests.fakes.setup_services import tiny_wheel
from tests.recorders import SetupProgress

# A QGIS's process as the set-up meets it: the progress it reports, one JSON line each.
DRIVER = """
import json, sys
from mus_qgis.bridge.environment import SetupError, SetupOptions, setup

class Progress:
    def __init__(self, cancel_on):
        self.cancel_on, self.canceled = cancel_on, False
    def set_progress(self, percent):
        pass
    def is_canceled(self):
        return self.canceled
    def info(self, message):
        print(json.dumps({"info": message}), flush=True)
        if self.cancel_on and self.cancel_on in message:
            self.canceled = True
    def warning(self, message):
        print(json.dumps({"warning": message}), flush=True)

options = json.loads(sys.argv[1])
progress = Progress(options.pop("cancel_on", ""))
try:
    record = setup(SetupOptions(**options), progress)
except SetupError as exc:
    print(json.dumps({"error": str(exc), "type": type(exc).__name__}), flush=True)
    sys.exit(3)
print(json.dumps({"record": record}), flush=True)
"""


@pytest.fixture(scope="module")
def as_qgis(tmp_path_factory):
    """Runs the set-up in a process like QGIS's: its executable is not named python, and its
    PATH holds one Python, 3.9 (as on macOS with Xcode's, or Ubuntu 22.04's 3.10)."""
    folder = tmp_path_factory.mktemp("QGIS 3.34")
    qgis = folder / "bin" / "qgis"
    qgis.parent.mkdir()
    shutil.copy2(os.path.realpath(sys.executable), qgis)
    old = folder / "old python"
    old.mkdir()
    (old / "python3").write_text("#!/bin/sh\necho 3.9\n", encoding="utf-8")
    (old / "python3").chmod(0o755)

    def run(options: dict, **environment) -> tuple[int, list[dict]]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PYTHON"))}
        env.update(PATH=str(old), PYTHONPATH=str(ROOT), **environment)
        done = subprocess.run(
            [str(qgis), "-c", DRIVER, json.dumps(options)],
            capture_output=True,
            text=True,
            encoding="utf-8",
            env=env,
            cwd=str(folder),
            timeout=900,
        )
        messages = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        assert messages, done.stderr
        return done.returncode, messages

    return run


def said(messages: list[dict], key: str = "info") -> str:
    return "\n".join(m[key] for m in messages if key in m)


def the(messages: list[dict], key: str):
    return next(m[key] for m in messages if key in m)


@pytest.mark.slow
def test_from_nothing_but_a_server_to_a_working_engine_and_back_when_it_is_gone(
    tmp_path, as_qgis, setup_services, shared_uv_cache
):
    # A user folder with a space and non-ASCII letters, synced by OneDrive, as on Windows.
    root = tmp_path / "Zoë Müller" / "OneDrive - Universität Zürich" / "engine"
    python_version = ".".join(platform.python_version().split(".")[:2])
    options = {
        "root": str(root),
        "torch": "default",  # these machines reach PyPI but not PyTorch's CPU index
        "wheel_folder": setup_services.find_links_url,
        "cache_dir": shared_uv_cache,
        "python_version": python_version,
    }
    server = {"UV_PYTHON_DOWNLOADS_JSON_URL": setup_services.python_downloads_url}

    code, messages = as_qgis(options, **server)
    assert code == 0, messages
    record = the(messages, "record")
    text = said(messages)
    # What came from the stand-in server: uv's wheel, then the standalone Python.
    assert any(p.startswith("/find-links/uv-") for p in setup_services.served)
    assert any(p.startswith("/python/cpython-") for p in setup_services.served)
    assert record["python_source"].startswith(f"standalone CPython {python_version}")
    assert Path(record["base_python"]).is_relative_to(root / "python")
    assert record["python"] == current_python(root) and Path(record["python"]).is_relative_to(root)
    # The build and the download's size were said before anything was installed.
    assert text.index("PyTorch 2.14.1") < text.index("Download: at most") < text.index("Installing")
    assert record["download_bytes"] > 1e9 and record["download_packages"] > 50
    base_prefix = subprocess.run(
        [record["python"], "-c", "import sys, open_clip, osmnx; print(sys.base_prefix)"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=True,
    ).stdout.strip()
    assert Path(base_prefix).resolve().is_relative_to((root / "python").resolve())

    # Again, unchanged: only the self-test runs, nothing is fetched.
    served = len(setup_services.served)
    code, messages = as_qgis(options, **server)
    assert code == 0 and the(messages, "record")["unchanged"]
    assert len(setup_services.served) == served

    # Canceled half-way through the install: nothing changes.
    code, messages = as_qgis({**options, "force": True, "cancel_on": "Installing"}, **server)
    assert code == 3 and the(messages, "type") == "SetupCanceledError"
    assert read_current(root) == record_without_extras(record)

    # A second engine folder that has uv already, but no Python yet.
    other = tmp_path / "other engine"
    shutil.copytree(root / "tools", other / "tools", symlinks=True)

    # The server goes; a plugin upgrade that pins another uv finds none in the engine folder.
    setup_services.stop()
    shutil.rmtree(root / "tools")
    dead = {**options, "force": True, "index_url": setup_services.index_url}
    code, messages = as_qgis(dead, **server)
    message = the(messages, "error")
    assert code == 3 and "could not download uv" in message and "What to do" in message
    assert read_current(root) == record_without_extras(record)  # the engine in use is untouched
    assert verify(current_python(root)).ok
    assert [p.name for p in (root / "envs").iterdir()] == [Path(record["env"]).name]

    # The other folder, with the server gone: no standalone Python, and this machine's Pythons
    # are hidden (its PATH holds only 3.9), so it says so and what to do.
    code, messages = as_qgis({**dead, "root": str(other)}, **server)
    message = the(messages, "error")
    assert code == 3 and "No Python 3.11+ could be had" in message
    assert "found only " in message and "old python/python3 (3.9)" in message
    assert "install Python 3.11+" in message and "Python to build on" in message
    assert not (other / "current.json").exists()
    assert list((other / "envs").iterdir()) == []


def record_without_extras(record: dict) -> dict:
    """The record as current.json keeps it (the set-up's answer adds the device and 'unchanged')."""
    return {k: v for k, v in record.items() if k not in ("unchanged", "device")}


def test_a_plan_only_set_up_says_build_and_size_and_installs_nothing(
    tmp_path, setup_services, shared_uv_cache
):
    progress = SetupProgress()
    record = setup(
        SetupOptions(
            tmp_path / "engine",
            base_python=os.path.realpath(sys.executable),
            torch="default",
            wheel_folder=setup_services.find_links_url,
            cache_dir=shared_uv_cache,
            plan_only=True,
        ),
        progress,
    )
    assert record["plan_only"] and record["download_bytes"] > 1e9
    assert "PyPI's Linux build (cu130)" in progress.text()
    assert "Download: at most" in progress.text() and "torch" in progress.text()
    assert read_current(tmp_path / "engine") is None
    assert list((tmp_path / "engine" / "envs").iterdir()) == []


def test_one_set_up_at_a_time_and_a_stale_lock_is_taken_over(tmp_path):
    root = tmp_path / "engine"
    root.mkdir()
    lock = root / ".setup.lock"
    lock.write_text(str(os.getpid()), encoding="utf-8")  # a set-up of this very process runs
    with pytest.raises(SetupError, match="Another set-up"):
        setup(SetupOptions(root, base_python=str(tmp_path / "no-python")), SetupProgress())
    # A lock left by a set-up that was killed (no such process) is taken over: the set-up gets
    # as far as its base Python, which does not exist here.
    lock.write_text("2147483646", encoding="utf-8")
    with pytest.raises(SetupError, match="does not exist"):
        setup(
            SetupOptions(root, base_python=str(tmp_path / "no-python"), torch="default"),
            SetupProgress(),
        )
    assert not lock.exists()


def test_a_base_python_too_old_for_the_pins_is_refused(tmp_path):
    old = tmp_path / "python3.9"
    old.write_text("#!/bin/sh\necho 3.9\n", encoding="utf-8")
    old.chmod(0o755)
    with pytest.raises(SetupError, match=r"3\.9.*3\.11\+"):
        find_base_python(str(old))


def test_the_cpu_build_comes_from_pytorchs_index_sized_before_it_downloads(
    tmp_path, setup_services, monkeypatch
):
    """PyTorch's index (here a stand-in) holds torch's "+cpu" builds, without sizes in its pages;
    the package index holds plain builds of the same versions. The CPU build wins, its size is
    asked of the server and announced, and exactly that is installed."""
    wheels = {
        "cpu": [tiny_wheel("torch", "2.14.1+cpu", 300_000)],
        "pypi": [tiny_wheel("torch", "2.14.1", 1_200_000)],
    }
    wheels["cpu"].append(tiny_wheel("torchvision", "0.29.1+cpu", 50_000, ("torch==2.14.1",)))
    wheels["pypi"].append(tiny_wheel("torchvision", "0.29.1", 90_000, ("torch==2.14.1",)))
    for where, files in wheels.items():
        for name, data in files:
            setup_services.add(name.split("-")[0], name, data, pytorch=where == "cpu")
    monkeypatch.setenv("MUS_PYTORCH_INDEX", setup_services.pytorch_url)
    plan = plan_torch("auto", Machine("linux", "x86_64", "glibc", (2, 36)), "2.14.1", gpus=[])
    assert plan.build == "cpu" and plan.index_url == f"{setup_services.pytorch_url}/cpu"

    root = tmp_path / "engine"
    options = SetupOptions(root, index_url=setup_services.index_url, cache_dir=str(tmp_path / "c"))
    progress = SetupProgress()
    uv = ensure_uv(root, this_machine(), progress, wheel_folder=setup_services.find_links_url)
    env = uv_environment(root, options)
    venv = tmp_path / "env"
    base = os.path.realpath(sys.executable)
    run_command([str(uv), "venv", str(venv), "--python", base], progress, "venv", env=env)
    python = venv / "bin" / "python"
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("torch==2.14.1\ntorchvision==0.29.1\n", encoding="utf-8")
    sources = uv_sources(options, plan)
    lock, pins = resolve(uv, python, [str(requirements)], sources, tmp_path, progress, env)

    size = download_size(python, lock, progress, env)
    assert size["bytes"] == sum(len(data) for _name, data in wheels["cpu"])
    assert size["packages"] == 2 and size["unknown"] == []
    assert {f"/pytorch-files/{name}" for name, _ in wheels["cpu"]} <= set(setup_services.heads)
    run_command(
        [str(uv), "pip", "install", "--python", str(python), "-r", str(pins), *sources],
        progress,
        "install",
        env=env,
    )
    installed = subprocess.run(
        [str(python), "-c", "from importlib import metadata as m; print(m.version('torch'))"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=True,
    )
    assert installed.stdout.strip() == "2.14.1+cpu"


def test_offline_the_wheel_folder_alone_serves_uv_and_the_packages(
    tmp_path, setup_services, real_uv_wheel
):
    """A machine without a network: uv's wheel and the packages' wheels copied into a folder."""
    folder = tmp_path / "wheels for the offline machine"
    folder.mkdir()
    (folder / real_uv_wheel.name).write_bytes(real_uv_wheel.read_bytes())
    for name, data in (tiny_wheel("mus-tiny", "1.0", 10_000), tiny_wheel("mus-tinier", "2.0")):
        (folder / name).write_bytes(data)
    setup_services.stop()  # nothing answers
    root = tmp_path / "engine"
    options = SetupOptions(root, wheel_folder=str(folder), offline=True, cache_dir=str(tmp_path))
    progress = SetupProgress()
    uv = ensure_uv(root, this_machine(), progress, wheel_folder=str(folder), offline=True)
    env = uv_environment(root, options)
    venv = tmp_path / "env"
    base = os.path.realpath(sys.executable)
    run_command([str(uv), "venv", str(venv), "--python", base], progress, "venv", env=env)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("mus-tiny==1.0\nmus-tinier==2.0\n", encoding="utf-8")
    sources = uv_sources(options, plan_torch("auto", this_machine(), "2.14.1", offline=True))
    assert sources[-2:] == ["--no-index", "--offline"] and str(folder) in sources
    python = venv / "bin" / "python"
    lock, pins = resolve(uv, python, [str(requirements)], sources, tmp_path, progress, env)
    assert download_size(python, lock, progress, env)["bytes"] > 10_000  # sized from the files
    run_command(
        [str(uv), "pip", "install", "--python", str(python), "-r", str(pins), *sources],
        progress,
        "install",
        env=env,
    )
    assert subprocess.run([str(python), "-c", "import mus_tiny, mus_tinier"]).returncode == 0


def test_a_failed_python_download_is_told_by_its_host_and_cause():
    said_by_uv = (
        "Downloading a standalone Python failed (exit code 1):\n"
        "error: Failed to install cpython-3.12.16-linux-x86_64-gnu\n"
        "  cause: Failed to download `https://github.com/astral-sh/python-build-standalone/"
        "releases/download/20261110/cpython-3.12.16%2B20261110-x86_64-unknown-linux-gnu-"
        "install_only_stripped.tar.gz`\n"
        "  cause: failed to lookup address information: Name or service not known"
    )
    assert download_failure(said_by_uv) == (
        "github.com did not serve it: failed to lookup address information: Name or service not "
        "known"
    )


def test_uv_writes_only_into_the_engine_folder_and_trusts_the_systems_certificates(tmp_path):
    env = uv_environment(tmp_path, SetupOptions(tmp_path))
    assert env["UV_PYTHON_INSTALL_DIR"] == str(tmp_path / "python")
    assert (env["UV_PYTHON_INSTALL_BIN"], env["UV_PYTHON_INSTALL_REGISTRY"]) == ("0", "0")
    assert env["UV_NO_CONFIG"] == "1"
    # Behind a proxy that inspects TLS (this build machine's network is one), uv's built-in
    # authorities fail where the system's, which QGIS uses, succeed.
    assert env["UV_SYSTEM_CERTS"] == "1"
