"""The engine environment's set-up, for real: a venv, wheels, a self-test, an atomic switch."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from mus_qgis.engine.worker.environment import (
    SetupCanceledError,
    SetupError,
    SetupOptions,
    current_python,
    find_base_python,
    index_answers,
    plan_torch,
    read_current,
    setup,
)


class Progress:
    def __init__(self, cancel_after_s: float | None = None):
        self.lines: list[str] = []
        self.percent = 0.0
        self._deadline = None if cancel_after_s is None else time.monotonic() + cancel_after_s

    def set_progress(self, percent):
        self.percent = percent

    def is_canceled(self):
        return self._deadline is not None and time.monotonic() > self._deadline

    def info(self, message):
        self.lines.append(message)


def test_torch_plans_follow_the_options(tmp_path):
    assert plan_torch(SetupOptions(tmp_path, torch_index="http://127.0.0.1:9/x")).index_url
    assert plan_torch(SetupOptions(tmp_path, offline=True)).build == "default"
    assert plan_torch(SetupOptions(tmp_path, torch="default")).index_url == ""
    # No NVIDIA GPU here, and PyTorch's index cannot be reached: the default build, said why.
    automatic = plan_torch(SetupOptions(tmp_path))
    assert automatic.build in ("cpu", "default") and automatic.reason


def test_an_index_that_refuses_does_not_answer():
    started = time.monotonic()
    assert not index_answers("http://127.0.0.1:9/whl/cpu", timeout_s=2)
    assert time.monotonic() - started < 5


@pytest.mark.slow
def test_real_set_up_into_an_empty_folder_then_idempotent_and_atomic(tmp_path):
    root = tmp_path / "engine"
    first = setup(SetupOptions(root), Progress())
    python = current_python(root)
    assert python and first["python"] == python and not first["unchanged"]
    assert first["packages"]["torch"] == "2.14.1"
    assert first["packages"]["open_clip_torch"] == "3.3.0"
    assert (root / "env" / "bin" / "python").exists()
    # The environment is whole and isolated: it imports the engine's packages, not QGIS.
    out = subprocess.run(
        [python, "-c", "import osmnx, open_clip, shapely; import qgis"],
        capture_output=True,
        text=True,
    )
    assert "No module named 'qgis'" in out.stderr
    record = read_current(root)
    # Once more: nothing changed, so nothing is installed; only the self-test runs.
    started = time.monotonic()
    again = setup(SetupOptions(root), Progress())
    assert again["unchanged"] and again["env"] == record["env"]
    assert time.monotonic() - started < 120
    # A set-up that fails, or is canceled, leaves the environment in use as it was.
    with pytest.raises(SetupError):
        setup(SetupOptions(root, force=True, base_python=str(tmp_path / "no-python")), Progress())
    with pytest.raises(SetupCanceledError):
        setup(SetupOptions(root, force=True), Progress(cancel_after_s=3))
    assert read_current(root) == record
    assert [p.name for p in (root / "envs").iterdir()] == [record["env"].split("/")[-1]]
    assert json.loads((root / "current.json").read_text())["python"] == python


def test_one_set_up_at_a_time_and_a_stale_lock_is_taken_over(tmp_path):
    root = tmp_path / "engine"
    root.mkdir()
    lock = root / ".setup.lock"
    lock.write_text(str(os.getpid()))  # a set-up of this very process is running
    with pytest.raises(SetupError, match="Another set-up"):
        setup(SetupOptions(root, base_python=str(tmp_path / "no-python")), Progress())
    # A lock left by a set-up that was killed (no such process) is taken over: the set-up gets
    # as far as its base Python, which does not exist here.
    lock.write_text("2147483646")
    with pytest.raises(SetupError, match="does not exist"):
        setup(SetupOptions(root, base_python=str(tmp_path / "no-python")), Progress())
    assert not lock.exists()


def test_a_base_python_too_old_for_the_pins_is_refused(tmp_path):
    old = tmp_path / "python3.9"
    old.write_text("#!/bin/sh\necho 3.9\n")
    old.chmod(0o755)
    with pytest.raises(SetupError, match=r"3\.9.*3\.11\+"):
        find_base_python(str(old))
