"""The plugin in the real QGIS desktop: its dialogs run the engine's work without crashing QGIS.

The desktop loads Mesa's OpenGL stack (and with it libLLVM); torch's triton brings another LLVM.
When the engine ran inside QGIS's process, CLIP-classify started from its dialog crashed the desktop
within seconds. qgis_process and the offscreen tests load no Mesa, so only a desktop run shows that
the engine now stays out: this test installs the packaged plugin into a fresh profile, starts QGIS
on a virtual X display with a window manager, and lets tests/desktop_session.py drive the
CLIP-classify and Rank labels dialogs as a user does (Run button, results loaded into the project).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from scripts.package import build_zip
from tests.conftest import AREZZO_PHOTOS, ENGINE_PYTHON, ROOT, TINY_MODEL_CONFIG

QGIS_TIMEOUT_S = 150  # the whole desktop session, start to exit
RUN_TIMEOUT_S = 90  # one algorithm, from Run to its layer in the project
SCREEN = "1600x1000x24"
NOT_IN_QGIS = ("torch", "open_clip", "osmnx", "geopandas", "shapely", "pyproj")
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


def _qgis_version_int() -> int:
    from qgis.core import Qgis

    return Qgis.QGIS_VERSION_INT


def _fresh_profile(root: Path, plugin_zip: Path) -> Path:
    """A profiles folder (for --profiles-path) whose default profile has only our plugin added."""
    profile = root / "profiles" / "default"
    plugins = profile / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(plugin_zip) as archive:
        archive.extractall(plugins)
    (profile / "QGIS").mkdir()
    (profile / "QGIS" / "QGIS3.ini").write_text(
        PROFILE_SETTINGS.format(version=_qgis_version_int()), encoding="utf-8"
    )
    (root / "profiles" / "profiles.ini").write_text(
        "[core]\ndefaultProfile=default\n", encoding="utf-8"
    )
    return plugins / "mus_qgis"


def _start_xvfb(log: Path) -> tuple[subprocess.Popen, str]:
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
        _stop(server)
        pytest.fail(f"Xvfb did not start: {log.read_text(errors='replace')[-2000:]}")
    return server, f":{int(number)}"


def _stop(process: subprocess.Popen | None, grace_s: float = 5) -> None:
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead: its parent (QGIS) has gone
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _started_by(session: Path) -> list[int]:
    """Live processes that inherited this test's MUS_DESKTOP_SESSION: QGIS, its engine workers."""
    marker = f"MUS_DESKTOP_SESSION={session}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environment = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker in environment and _alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def _screenshot_x(display: str, target: Path) -> str:
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


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def _session_environment(runtime: Path) -> dict[str, str]:
    """The environment of the desktop session: this one's, less what would change what QGIS is."""
    env = {key: value for key, value in os.environ.items() if key not in NOT_PASSED}
    runtime.mkdir(mode=0o700)
    env.update(MUS_ENGINE_PYTHON=ENGINE_PYTHON, HF_HUB_OFFLINE="1", XDG_RUNTIME_DIR=str(runtime))
    return env


def _start(command: list[str], env: dict, log: Path, **options) -> subprocess.Popen:
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


def test_dialogs_run_the_engine_in_the_qgis_desktop(tmp_path, tiny_checkpoint):
    # make install puts these on the machine (scripts/install_system.sh): missing is a failure.
    missing = [tool for tool in ("qgis", "Xvfb", "openbox") if not shutil.which(tool)]
    assert not missing, f"the desktop test needs {missing}: run scripts/install_system.sh"
    plugin = _fresh_profile(tmp_path / "qgis", build_zip(tmp_path / "dist" / "mus_qgis.zip"))
    result = tmp_path / "result.json"
    session = {
        "result": str(result),
        "folder": str(tmp_path),
        "photos": [str(path) for path in AREZZO_PHOTOS],
        "model": str(TINY_MODEL_CONFIG),
        "checkpoint": str(tiny_checkpoint),
        "cache": str(tmp_path / "cache"),
        "classified": str(tmp_path / "classified.gpkg"),
        "ranking": str(tmp_path / "ranking.gpkg"),
        "screenshot": str(tmp_path / "desktop.png"),
        "run_timeout_s": RUN_TIMEOUT_S,
    }
    session_file = tmp_path / "session.json"
    session_file.write_text(json.dumps(session), encoding="utf-8")
    env = _session_environment(tmp_path / "xdg-runtime")
    qgis_log = tmp_path / "qgis.log"
    xvfb = window_manager = qgis = None
    try:
        xvfb, env["DISPLAY"] = _start_xvfb(tmp_path / "xvfb.log")
        window_manager = _start(["openbox", "--sm-disable"], env, tmp_path / "openbox.log")
        started = time.monotonic()
        qgis = _start(
            [
                "qgis",
                "--noversioncheck",
                "--nologo",
                "--profiles-path",
                str(tmp_path / "qgis"),
                "--code",
                str(ROOT / "tests" / "desktop_session.py"),
            ],
            # MUS_DESKTOP_SESSION also marks what QGIS starts: its engine workers inherit it.
            {**env, "MUS_DESKTOP_SESSION": str(session_file)},
            qgis_log,
            cwd=tmp_path,
        )
        try:
            code = qgis.wait(timeout=QGIS_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            screen = _screenshot_x(env["DISPLAY"], tmp_path / "hung.png")
            _stop(qgis)
            pytest.fail(
                f"QGIS did not finish within {QGIS_TIMEOUT_S} s{screen}. What it did: "
                f"{_tail(result, 3000)}\nIts output:\n{_tail(qgis_log)}"
            )
        elapsed = time.monotonic() - started
        assert result.exists(), f"no result from the desktop (exit {code}):\n{_tail(qgis_log)}"
        seen = json.loads(result.read_text(encoding="utf-8"))
        assert code == 0, (
            f"QGIS exited with {code}"
            + (f" ({signal.Signals(-code).name})" if code < 0 else "")
            + f" after {elapsed:.0f} s; steps: {seen['steps']}\nIts output:\n{_tail(qgis_log)}"
        )
        assert seen["errors"] == [], "\n".join(seen["errors"]) + f"\nsteps: {seen['steps']}"
        assert seen["unexpected_dialogs"] == []
        python_errors = [m["message"] for m in seen["messages"] if m["tag"] == "Python error"]
        assert python_errors == []
        # The runs went on in Processing's task thread: the desktop kept answering meanwhile.
        assert max(seen["longest_event_loop_gap_s"].values()) < 5, seen["longest_event_loop_gap_s"]
        # The plugin QGIS ran is the one installed from the zip, enabled by the profile.
        assert seen["plugin"]["active"]
        assert Path(seen["plugin"]["module"]).resolve().parent == plugin.resolve()
        # Both dialogs ran, and their layers are in the project.
        classify, rank = seen["runs"]["classify"], seen["runs"]["rank"]
        assert classify["finished"] is True and rank["finished"] is True
        assert classify["results"]["CLASSIFIED"] == str(len(AREZZO_PHOTOS))
        assert seen["classified"]["features"] == len(AREZZO_PHOTOS)
        assert seen["classified"]["clip_status"] == {"ok": len(AREZZO_PHOTOS)}
        assert seen["ranking"]["features"] == 27  # every Urban Atlas 2018 class, ranked
        loaded = {layer["source"].split("|")[0]: layer for layer in seen["layers"]}
        assert loaded[session["classified"]]["valid"]
        assert loaded[session["classified"]]["features"] == len(AREZZO_PHOTOS)
        assert loaded[session["ranking"]]["features"] == 27
        # The engine stayed out of QGIS's process, which had the desktop's GL stack (libLLVM).
        assert not set(NOT_IN_QGIS) & set(seen["engine_packages_imported"]), seen
        assert seen["libllvm"], "libLLVM was not loaded: not the desktop the old design crashed in"
        assert seen["screenshot_saved"] and Path(session["screenshot"]).stat().st_size > 10_000
        # The warm engine worker ends with QGIS (it runs in a session of its own).
        assert seen["worker_pids"], "no engine worker was left warm after the runs"
        deadline = time.monotonic() + 10
        while _started_by(session_file) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _started_by(session_file) == [], "engine workers outlived QGIS"
    finally:
        _stop(qgis)
        _stop(window_manager)
        _stop(xvfb)
        for pid in _started_by(session_file):  # what this QGIS started and left behind
            os.kill(pid, signal.SIGKILL)
