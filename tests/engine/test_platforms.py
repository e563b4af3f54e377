"""The Windows and macOS branches, run here with the platform simulated.

What is simulated, and how (each a thin stand-in, named where it is made):
- the platform's decisions: a :class:`Machine` for Windows or macOS handed to the code, and
  ``client.POSIX = False`` for the process handling;
- Windows' process creation: ``subprocess.Popen`` records the options and drops
  ``creationflags``, which POSIX's Popen refuses; everything else starts for real;
- Windows' ``taskkill``: a script on PATH that kills the process it is given;
- Windows' refusal to replace or move a file another program holds open: ``os.replace`` raising
  the PermissionError Windows raises, for the paths a test holds.
The processes, files and folders themselves are real.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mus_qgis.bridge import client, environment
from mus_qgis.bridge.client import EngineCanceledError, Worker
from mus_qgis.bridge.environment import (
    SetupOptions,
    current_python,
    remove_other_environments,
    replace_file,
    setup,
)
from mus_qgis.bridge.machine import (
    Machine,
    default_engine_folder,
    environment_python,
    path_too_long,
)
from mus_qgis.bridge.pythons import system_python_candidates
from mus_qgis.bridge.setup_commands import SetupCanceledError, SetupError, run_command
from tests.recorders import SetupProgress

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="simulates Windows on POSIX")

WINDOWS = Machine("windows", "x86_64", long_paths=False)
WINDOWS_LONG_PATHS = Machine("windows", "x86_64", long_paths=True)
MAC = Machine("darwin", "aarch64")
# How Windows says a file is in use (ERROR_SHARING_VIOLATION).
SHARING_VIOLATION = (13, "The process cannot access the file because it is being used by another")


@pytest.fixture
def windows_processes(monkeypatch, tmp_path):
    """Windows' process creation and taskkill, simulated; returns what was launched."""
    launched: list[tuple[list, dict]] = []
    real_popen = subprocess.Popen

    class WindowsPopen(real_popen):  # stand-in: records, then drops what POSIX refuses
        def __init__(self, args, **options):
            launched.append((list(args) if not isinstance(args, str) else [args], dict(options)))
            options.pop("creationflags", None)
            super().__init__(args, **options)

    taskkill = tmp_path / "bin" / "taskkill"  # stand-in: ends the /PID it is given
    taskkill.parent.mkdir()
    taskkill.write_text(
        '#!/bin/sh\nwhile [ "$1" != "/PID" ]; do shift; done\nkill -KILL "$2"\n',
        encoding="utf-8",
    )
    taskkill.chmod(0o755)
    monkeypatch.setenv("PATH", f"{taskkill.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(subprocess, "Popen", WindowsPopen)
    monkeypatch.setattr(client, "POSIX", False)
    return launched


def test_the_environment_layout_of_each_platform(tmp_path):
    env = tmp_path / "envs" / "engine-1"
    assert environment_python(WINDOWS, env) == env / "Scripts" / "python.exe"
    assert environment_python(MAC, env) == env / "bin" / "python"
    (env / "Scripts").mkdir(parents=True)
    (env / "Scripts" / "python.exe").write_bytes(b"MZ")
    (tmp_path / "current.json").write_text(json.dumps({"env": "envs/engine-1"}), encoding="utf-8")
    assert current_python(tmp_path, WINDOWS) == str(env / "Scripts" / "python.exe")
    assert current_python(tmp_path, MAC) is None  # no bin/python in a Windows environment


def test_windows_keeps_the_engine_out_of_the_roaming_profile(monkeypatch):
    user = "C:/Users/Zoë Müller-Lüdenscheidt"
    profile = Path(f"{user}/AppData/Roaming/QGIS/QGIS3/profiles/default")
    monkeypatch.setenv("LOCALAPPDATA", f"{user}/AppData/Local")
    folder = default_engine_folder(WINDOWS, profile)
    assert folder == Path(f"{user}/AppData/Local/mus_qgis/engine")
    # Short enough for Windows' 260 characters with room for the environment's deepest file.
    env = Path("envs") / "engine-20261206-120000"
    assert path_too_long(WINDOWS, folder / env) == ""
    assert path_too_long(WINDOWS, profile / "mus_qgis" / "engine" / env) != ""
    assert default_engine_folder(MAC, profile) == profile / "mus_qgis" / "engine"


def test_a_folder_too_deep_for_windows_is_refused_before_anything_is_fetched(tmp_path):
    deep = tmp_path / ("Zoë Müller-Lüdenscheidt " * 3) / "OneDrive - Universität Zürich" / "QGIS"
    env_dir = deep / "envs" / "engine-20261206-120000"
    message = path_too_long(WINDOWS, env_dir)
    assert "too deep for this Windows" in message and r"C:\mus_engine" in message
    assert "Enable Win32 long paths" in message
    assert path_too_long(WINDOWS_LONG_PATHS, env_dir) == ""
    assert path_too_long(WINDOWS, Path("C:/mus_engine/envs/engine-20261206-120000")) == ""
    with pytest.raises(SetupError, match="too deep for this Windows"):
        setup(SetupOptions(deep, torch="default"), SetupProgress(), machine=WINDOWS)
    assert not (deep / "tools").exists()  # nothing downloaded, no installer fetched


def test_pythons_a_windows_or_mac_set_up_would_build_on(tmp_path, monkeypatch):
    stub = tmp_path / "Microsoft" / "WindowsApps"
    real = tmp_path / "Python312"
    osgeo = tmp_path / "OSGeo4W" / "apps" / "Python312"
    for folder in (stub, real, osgeo):
        folder.mkdir(parents=True)
    for path in (stub / "python.exe", real / "python.exe", osgeo / "python.exe"):
        path.write_text("#!/bin/sh\necho 3.12\n", encoding="utf-8")
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stub}{os.pathsep}{real}")
    monkeypatch.setattr(sys, "base_prefix", str(osgeo))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "QGIS 3.40" / "bin" / "qgis-bin.exe"))
    found = system_python_candidates(WINDOWS)
    assert found[0] == str(osgeo / "python.exe")  # OSGeo4W's Python, beside QGIS's
    assert str(real / "python.exe") in found
    assert not any("WindowsApps" in path for path in found)  # the Store's stub is no Python
    # macOS: the Python inside QGIS.app is not a base for a virtual environment.
    bundle = "/Applications/QGIS-LTR.app/Contents/MacOS/bin/python3.9"
    monkeypatch.setattr(sys, "executable", bundle)
    assert bundle not in system_python_candidates(MAC)


def test_on_windows_the_worker_starts_without_a_console_and_a_stuck_one_is_killed(
    windows_processes,
):
    worker = Worker(sys.executable)
    _args, options = windows_processes[0]
    assert options["creationflags"] == client.CREATE_NO_WINDOW
    assert "start_new_session" not in options  # a POSIX-only option
    assert worker.run("status", {})["worker_pid"] == worker.pid

    os.kill(worker.pid, signal.SIGSTOP)  # stuck, as in a long C call: it cannot hear a cancel
    started = time.monotonic()
    with pytest.raises(EngineCanceledError, match="did not stop within"):
        # Canceled only once it has begun: the cancel reaches a worker that cannot answer.
        worker.run("status", {}, _CancelAfterStart())
    assert time.monotonic() - started < client.CANCEL_GRACE_S + 10
    assert not worker.alive()
    killers = [a for a, _ in windows_processes if Path(a[0]).name == "taskkill"]
    assert killers == [["taskkill", "/T", "/F", "/PID", str(worker.process.pid)]]
    assert all(o.get("creationflags") == client.CREATE_NO_WINDOW for _, o in windows_processes)


class _CancelAfterStart:
    def __init__(self):
        self.asked = 0

    def set_progress(self, percent):
        pass

    def is_canceled(self):
        self.asked += 1
        return self.asked > 1  # not before the job is sent

    def info(self, message):
        pass


def test_on_windows_a_canceled_set_up_step_ends_its_process_tree(windows_processes, tmp_path):
    with pytest.raises(SetupCanceledError):
        run_command([sys.executable, "-c", "import time; time.sleep(60)"], _Cancel(0.5), "A step")
    (_step_args, step_options), *rest = windows_processes
    assert step_options["creationflags"] == client.CREATE_NO_WINDOW
    assert [a[:4] for a, _ in rest] == [["taskkill", "/T", "/F", "/PID"]]


class _Cancel:
    def __init__(self, after_s):
        self.deadline = time.monotonic() + after_s

    def is_canceled(self):
        return time.monotonic() > self.deadline

    def info(self, message):
        pass


@pytest.fixture
def held_open(monkeypatch):
    """Windows' refusal to replace or move what another program holds open, for ``held``."""
    held: dict[Path, int] = {}  # path -> refusals left (-1: until let go)
    real_replace = os.replace

    def replace(source, target):
        for path in (Path(source), Path(target)):
            left = held.get(path)
            if left:
                held[path] = left - 1 if left > 0 else -1
                raise PermissionError(*SHARING_VIOLATION)
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    return held


def test_a_file_held_open_for_a_moment_is_replaced_once_let_go(tmp_path, held_open):
    target = tmp_path / "current.json"
    target.write_text("old", encoding="utf-8")
    staged = tmp_path / "staged"
    staged.write_text("new", encoding="utf-8")
    held_open[target] = 3  # a virus scanner reading it: three refusals, then it lets go
    replace_file(staged, target)
    assert target.read_text(encoding="utf-8") == "new"


def test_a_record_held_open_for_good_leaves_the_previous_engine_in_use(tmp_path, held_open):
    root = tmp_path / "engine"
    root.mkdir()
    (root / "current.json").write_text('{"env": "envs/old"}', encoding="utf-8")
    held_open[root / "current.json"] = -1
    with pytest.raises(SetupError, match=r"held open by another program.*previous one stays"):
        environment._switch(root, {"env": "envs/new"})
    assert (root / "current.json").read_text(encoding="utf-8") == '{"env": "envs/old"}'
    assert [p.name for p in root.iterdir()] == ["current.json"]  # no staged copy left behind


def test_an_old_environment_a_program_still_runs_from_is_kept_whole(tmp_path, held_open):
    envs = tmp_path / "envs"
    for name in ("engine-1", "engine-2", "engine-3"):
        (envs / name / "Lib").mkdir(parents=True)
        (envs / name / "Lib" / "module.py").write_text("x = 1", encoding="utf-8")
    held_open[envs / "engine-1"] = -1  # a second QGIS's worker runs from it
    progress = SetupProgress()
    remove_other_environments(tmp_path, "envs/engine-3", set(), progress)
    assert sorted(p.name for p in envs.iterdir()) == ["engine-1", "engine-3"]
    assert (envs / "engine-1" / "Lib" / "module.py").exists()  # whole, not half-removed
    assert "a program still uses it" in progress.text()


def test_the_worker_runs_from_a_plugin_folder_with_spaces_and_accents(tmp_path, monkeypatch):
    plugins = tmp_path / "Zoë Müller" / "OneDrive - Universität" / "QGIS3 profiles" / "python"
    plugins.mkdir(parents=True)
    shutil.copytree(
        client.PLUGIN_PARENT / "mus_qgis",
        plugins / "mus_qgis",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copytree(client.PLUGIN_PARENT / "resources", plugins / "resources")
    shutil.copy2(client.PLUGIN_PARENT / "metadata.txt", plugins / "metadata.txt")
    monkeypatch.setattr(client, "PLUGIN_PARENT", plugins)
    worker = Worker(sys.executable)
    try:
        status = worker.run("status", {"cache_dir": str(tmp_path / "Caché")})
    finally:
        worker.close()
    assert status["cache"]["models"]["path"].endswith(str(Path("Caché") / "models"))
    # The worker ran the copy under the accented path, not the checkout.
    assert status["plugin_folder"] == str(plugins / "mus_qgis")


def test_a_windows_set_up_lock_is_trusted_by_its_age(tmp_path, monkeypatch):
    monkeypatch.setattr(client, "POSIX", False)  # no os.kill(pid, 0) on Windows: it would kill
    root = tmp_path / "engine"
    root.mkdir()
    lock = root / ".setup.lock"
    lock.write_text("4242", encoding="utf-8")
    with pytest.raises(SetupError, match="Another set-up"):
        setup(SetupOptions(root, base_python=str(tmp_path / "none")), SetupProgress())
    old = time.time() - 4 * 3600
    os.utime(lock, (old, old))  # left by a set-up that died hours ago: taken over
    with pytest.raises(SetupError, match="does not exist"):
        setup(
            SetupOptions(root, base_python=str(tmp_path / "none"), torch="default"),
            SetupProgress(),
        )
