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
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import AREZZO_PHOTOS, ROOT, TINY_MODEL_CONFIG
from tests.desktop import qgis_desktop, screenshot_x, started_by, stop, tail

QGIS_TIMEOUT_S = 150  # the whole desktop session, start to exit
RUN_TIMEOUT_S = 90  # one algorithm, from Run to its layer in the project
NOT_IN_QGIS = ("torch", "open_clip", "osmnx", "geopandas", "shapely", "pyproj")


def test_dialogs_run_the_engine_in_the_qgis_desktop(tmp_path, tiny_checkpoint):
    # make install puts these on the machine (scripts/install_system.sh): missing is a failure.
    missing = [tool for tool in ("qgis", "Xvfb", "openbox") if not shutil.which(tool)]
    assert not missing, f"the desktop test needs {missing}: run scripts/install_system.sh"
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
    started = time.monotonic()
    with qgis_desktop(tmp_path, ROOT / "tests" / "desktop_session.py", session) as desktop:
        qgis, qgis_log, session_file = desktop.qgis, desktop.log, desktop.session_file
        try:
            code = qgis.wait(timeout=QGIS_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            screen = screenshot_x(desktop.display, tmp_path / "hung.png")
            stop(qgis)
            pytest.fail(
                f"QGIS did not finish within {QGIS_TIMEOUT_S} s{screen}. What it did: "
                f"{tail(result, 3000)}\nIts output:\n{tail(qgis_log)}"
            )
        elapsed = time.monotonic() - started
        assert result.exists(), f"no result from the desktop (exit {code}):\n{tail(qgis_log)}"
        seen = json.loads(result.read_text(encoding="utf-8"))
        assert code == 0, (
            f"QGIS exited with {code}"
            + (f" ({signal.Signals(-code).name})" if code < 0 else "")
            + f" after {elapsed:.0f} s; steps: {seen['steps']}\nIts output:\n{tail(qgis_log)}"
        )
        assert seen["errors"] == [], "\n".join(seen["errors"]) + f"\nsteps: {seen['steps']}"
        assert seen["unexpected_dialogs"] == []
        # The first start said where to begin: the engine first.
        assert any(text.startswith("Now: uses ") for text in seen["getting_started"])
        assert any(
            "Every algorithm's heavy work runs in an engine" in t for t in seen["getting_started"]
        )
        python_errors = [m["message"] for m in seen["messages"] if m["tag"] == "Python error"]
        assert python_errors == []
        # The runs went on in Processing's task thread: the desktop kept answering meanwhile.
        assert max(seen["longest_event_loop_gap_s"].values()) < 5, seen["longest_event_loop_gap_s"]
        # The plugin QGIS ran is the one installed from the zip, enabled by the profile.
        assert seen["plugin"]["active"]
        assert Path(seen["plugin"]["module"]).resolve().parent == desktop.plugin.resolve()
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
        while started_by(session_file) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert started_by(session_file) == [], "engine workers outlived QGIS"
