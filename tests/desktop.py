"""The real QGIS desktop for tests and screenshots: Xvfb, a window manager and QGIS with the
packaged plugin in a fresh profile, driven by a --code script that reads its settings from a JSON
file named by an environment variable (which also marks every process QGIS starts).

``qgis_desktop`` starts it all and stops it all, whatever happens in between.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.package import build_zip
from tests.conftest import ENGINE_PYTHON

if sys.platform == "win32":  # Xvfb, a window manager, process groups and /proc: X11 on POSIX
    pytest.skip("the desktop tests drive an X11 desktop (Xvfb)", allow_module_level=True)

SCREEN = "1600x1000x24"
SESSION_VARIABLE = "MUS_DESKTOP_SESSION"
# Not passed on: offscreen kills QGIS 3.22's desktop at start (QgsClipboard), and the plugin must
# come from the fresh profile only.
NOT_PASSED = ("QT_QPA_PLATFORM", "QGIS_PLUGINPATH", "PYTHONPATH", "QGIS_CUSTOM_CONFIG_PATH")

# A fresh profile that starts unattended: the plugin enabled, nothing to ask or fetch at start, and
# no question at exit about the unsaved project or its temporary (memory) layer.
PROFILE_SETTINGS = """\
[PythonPlugins]
mus_qgis=true

[migration]
settings=false
firstRunVersionFlag={version}
fileVersion={version}

[qgis]
checkVersion=false
askToSaveProjectChanges=false
askToDeleteLayers=false

[core]
NewsFeed\\httpsfeedqgisorg\\disabled=true

[app]
askToSaveMemoryLayers=false
plugin_installer\\checkOnStart=false
"""


@dataclass
class Desktop:
    qgis: subprocess.Popen
    display: str
    plugin: Path  # the plugin's folder in the fresh profile
    log: Path  # QGIS's output
    session_file: Path


@contextmanager
def qgis_desktop(
    work: Path, script: Path, settings: dict, variable: str = SESSION_VARIABLE
) -> Iterator[Desktop]:
    """QGIS on a virtual screen running ``script``, its settings in ``work``/session.json named
    by ``variable``; everything under ``work``. On leaving: QGIS, the window manager and Xvfb
    stopped, and what QGIS started and left behind (engine workers) killed."""
    plugin = fresh_profile(work / "qgis", build_zip(work / "dist" / "mus_qgis.zip"))
    session_file = work / "session.json"
    session_file.write_text(json.dumps(settings), encoding="utf-8")
    env = session_environment(work / "xdg-runtime")
    xvfb = window_manager = qgis = None
    try:
        xvfb, env["DISPLAY"] = start_xvfb(work / "xvfb.log")
        window_manager = start(["openbox", "--sm-disable"], env, work / "openbox.log")
        command = ["qgis", "--noversioncheck", "--nologo", "--profiles-path", str(work / "qgis")]
        qgis = start(
            [*command, "--code", str(script)],
            # The variable also marks what QGIS starts: its engine workers inherit it.
            {**env, variable: str(session_file)},
            work / "qgis.log",
            cwd=work,
        )
        yield Desktop(qgis, env["DISPLAY"], plugin, work / "qgis.log", session_file)
    finally:
        stop(qgis)
        stop(window_manager)
        stop(xvfb)
        for pid in started_by(session_file, variable):
            os.kill(pid, signal.SIGKILL)


def qgis_version_int() -> int:
    from qgis.core import Qgis

    return Qgis.QGIS_VERSION_INT


def fresh_profile(root: Path, plugin_zip: Path) -> Path:
    """A profiles folder (for --profiles-path) whose default profile has only our plugin added."""
    profile = root / "profiles" / "default"
    plugins = profile / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(plugin_zip) as archive:
        archive.extractall(plugins)
    (profile / "QGIS").mkdir()
    (profile / "QGIS" / "QGIS3.ini").write_text(
        PROFILE_SETTINGS.format(version=qgis_version_int()), encoding="utf-8"
    )
    (root / "profiles" / "profiles.ini").write_text(
        "[core]\ndefaultProfile=default\n", encoding="utf-8"
    )
    return plugins / "mus_qgis"


def start_xvfb(log: Path) -> tuple[subprocess.Popen, str]:
    """Xvfb on a display it picks itself (-displayfd): no clash with another X server."""
    read_end, write_end = os.pipe()
    try:
        with log.open("wb") as errors:
            server = subprocess.Popen(
                ["Xvfb", "-displayfd", str(write_end), "-screen", "0", SCREEN, "-nolisten", "tcp"],
                pass_fds=(write_end,),
                stdout=subprocess.DEVNULL,
                stderr=errors,
                start_new_session=True,
            )
        os.close(write_end)
        number = b""
        deadline = time.monotonic() + 30
        while not number.endswith(b"\n") and time.monotonic() < deadline:
            if select.select([read_end], [], [], 0.5)[0]:
                chunk = os.read(read_end, 16)
                if not chunk:
                    break
                number += chunk
    finally:
        os.close(read_end)
    if not number.strip().isdigit():
        stop(server)
        raise RuntimeError(
            f"Xvfb did not start: {log.read_text(encoding='utf-8', errors='replace')[-2000:]}"
        )
    return server, f":{int(number)}"


def stop(process: subprocess.Popen | None, grace_s: float = 5) -> None:
    """End a process we started, with its process group (it was started in a session of its own)."""
    if process is None or process.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead: its parent (QGIS) has gone
        state = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def started_by(session: Path, variable: str = SESSION_VARIABLE) -> list[int]:
    """Live processes that inherited this session's marker: QGIS, its engine workers."""
    marker = f"{variable}={session}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environment = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker in environment and alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def screenshot_x(display: str, target: Path) -> str:
    """The whole X screen as a PNG, to see what a hung desktop shows.

    ImageMagick's import, not xwd -root: Qt gives QGIS's dialogs another visual than the root
    window's, and xwd -root shows them black.
    """
    try:
        subprocess.run(
            ["import", "-display", display, "-window", "root", str(target)],
            capture_output=True,
            timeout=30,
            check=True,
        )
        return f" (the screen then: {target})"
    except (OSError, subprocess.SubprocessError):
        return ""


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-chars:] if path.exists() else ""


def session_environment(runtime: Path) -> dict[str, str]:
    """The environment of the desktop session: this one's, less what would change what QGIS is."""
    env = {key: value for key, value in os.environ.items() if key not in NOT_PASSED}
    runtime.mkdir(mode=0o700)
    env.update(MUS_ENGINE_PYTHON=ENGINE_PYTHON, HF_HUB_OFFLINE="1", XDG_RUNTIME_DIR=str(runtime))
    return env


def start(command: list[str], env: dict, log: Path, **options) -> subprocess.Popen:
    """Start a program in a session of its own (so that it ends with its children)."""
    with log.open("wb") as output:
        return subprocess.Popen(
            command,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **options,
        )
