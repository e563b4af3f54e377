"""The worker protocol, end to end: a real worker process in the engine's Python."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from mus_qgis.bridge.client import (
    PLUGIN_PARENT,
    EngineCanceledError,
    EngineDiedError,
    EngineJobError,
    Worker,
    WorkerPool,
    worker_environment,
)
from mus_qgis.shared.protocol import decode, encode
from tests.conftest import ROME_OSM


class Recorder:
    def __init__(self, cancel_when=None):
        self.percents: list[float] = []
        self.lines: list[tuple[str, str]] = []
        self._cancel_when = cancel_when
        self.canceled = False

    def set_progress(self, percent):
        self.percents.append(percent)
        if self._cancel_when is not None and self._cancel_when(percent):
            self.canceled = True

    def is_canceled(self):
        return self.canceled

    def info(self, message):
        self.lines.append(("info", message))

    def warning(self, message):
        self.lines.append(("warning", message))


def classify_params(locations, folder) -> dict:
    """The complete params of a classify job (its schema's required fields, all of them)."""
    return {
        "locations": str(locations),
        "label_set": {"builtin": "urban_atlas_2018"},
        "model": {"name": "ViT-B-32", "pretrained": "", "checkpoint": "", "device": "cpu"},
        "view": {},
        "top_k": 3,
        "cache_dir": str(folder / "cache"),
        "batch_size": 4,
        "output": str(folder / "scores.npz"),
    }


def sampling(osm_file, folder, classes) -> dict:
    """The params of a street-sampling job (a real job that reports progress as it goes)."""
    return {
        "osm_file": str(osm_file),
        "classes": classes,
        "merge_distance_m": 20,
        "services": {"cache_dir": str(folder)},
        "output": str(folder / "points.gpkg"),
    }


@pytest.fixture(scope="module")
def worker():
    started = Worker(sys.executable)
    yield started
    started.close()


def test_messages_are_single_json_lines():
    message = {"type": "log", "id": "x", "message": "a\nb ünï"}
    line = encode(message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line) == message
    assert decode(b"not json\n") is None and decode(b"[1, 2]") is None and decode(b"  ") is None


def test_status_reports_python_packages_and_device(worker, tmp_path):
    status = worker.run("status", {"cache_dir": str(tmp_path)})
    assert status["engine_python"] == sys.executable
    assert status["packages"]["open_clip_torch"] and status["packages"]["torch"]
    assert status["device"]["device"] == "cpu"
    assert status["device"]["description"].startswith("CPU, ")
    assert status["cache"]["models"]["bytes"] == 0
    assert status["worker_pid"] == worker.pid


def test_a_bad_input_is_a_user_error_and_the_worker_lives_on(worker, tmp_path):
    with pytest.raises(EngineJobError) as raised:
        worker.run(
            "sample_streets",
            sampling(tmp_path / "missing.osm", tmp_path, ["residential"]),
        )
    assert raised.value.user_error and "missing.osm" in str(raised.value)
    with pytest.raises(EngineJobError) as unknown:
        worker.run("no-such-job", {})
    assert "no job" in str(unknown.value)
    # Parameters that lack what the job's schema requires are a user error naming each field.
    with pytest.raises(EngineJobError) as incomplete:
        worker.run("classify", {})
    assert incomplete.value.user_error
    assert (
        "ClassifyParams lacks locations, label_set, model, view, top_k, cache_dir, batch_size, "
        "output" in str(incomplete.value)
    )
    # An internal fault carries its traceback for the log; the worker still answers afterwards.
    not_json = tmp_path / "locations.json"
    not_json.write_text("these are not locations", encoding="utf-8")
    with pytest.raises(EngineJobError) as fault:
        worker.run("classify", classify_params(not_json, tmp_path))
    assert not fault.value.user_error and "Traceback" in fault.value.details
    assert "JSONDecodeError" in fault.value.details
    assert worker.run("status", {})["worker_pid"] == worker.pid


def test_progress_and_log_lines_arrive_as_the_job_runs(worker, tmp_path):
    recorder = Recorder()
    result = worker.run(
        "sample_streets",
        sampling(
            ROME_OSM, tmp_path, ["primary", "secondary", "tertiary", "residential", "pedestrian"]
        ),
        recorder,
    )
    assert result["locations"] > 0 and (tmp_path / "points.gpkg").is_file()
    assert recorder.percents and recorder.percents == sorted(recorder.percents)
    assert any(level == "info" for level, _ in recorder.lines)


def test_anything_printed_by_a_job_goes_to_stderr_not_into_the_protocol(tmp_path):
    """A library that prints (to sys.stdout or to fd 1) must not garble the protocol."""
    launcher = (
        "import os, sys\n"
        "from mus_qgis.engine import jobs\n"
        "from mus_qgis.engine.worker import server\n"
        "def noisy(params, progress):\n"
        "    print('chatter on stdout', flush=True)\n"
        "    os.write(1, b'raw bytes on fd 1\\n')\n"
        "    return {'ok': True}\n"
        "jobs.JOBS['noisy'] = noisy\n"
        "sys.exit(server.serve(60))\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", launcher],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=PLUGIN_PARENT,
        env=worker_environment(),
    )
    out, err = process.communicate(
        encode({"type": "job", "id": "1", "job": "noisy", "params": {}})
        + encode({"type": "shutdown"}),
        timeout=60,
    )
    messages = [json.loads(line) for line in out.splitlines()]
    assert [m["type"] for m in messages] == ["ready", "result"]
    assert messages[1]["result"] == {"ok": True}
    assert b"chatter on stdout" in err and b"raw bytes on fd 1" in err


@pytest.mark.skipif(sys.platform == "win32", reason="kills the worker with SIGKILL, a POSIX signal")
def test_a_killed_worker_is_reported_with_its_signal(tmp_path):
    doomed = Worker(sys.executable)
    threading.Timer(0.5, os.kill, (doomed.pid, signal.SIGKILL)).start()
    with pytest.raises(EngineDiedError, match="killed by SIGKILL"):
        # A job long enough to be running when the kill comes.
        doomed.run(
            "sample_streets",
            sampling(
                ROME_OSM, tmp_path, ["residential", "footway", "service", "steps", "pedestrian"]
            ),
        )
    assert not doomed.alive()


def test_the_worker_exits_when_its_client_goes_away_or_it_idles():
    idle = Worker(sys.executable, idle_timeout_s=0.5)
    deadline = time.monotonic() + 20
    while idle.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not idle.alive()
    orphan = Worker(sys.executable)
    orphan.process.stdin.close()  # what QGIS's death looks like from the worker
    orphan.process.wait(timeout=20)
    assert orphan.process.returncode == 0


def test_a_canceled_job_stops_and_its_worker_stays_warm(tmp_path):
    pool = WorkerPool()
    recorder = Recorder(cancel_when=lambda percent: True)
    with pytest.raises(EngineCanceledError):
        pool.run(
            sys.executable,
            "sample_streets",
            sampling(ROME_OSM, tmp_path, ["residential"]),
            recorder,
        )
    assert pool.busy_pids() == []
    (warm,) = pool.idle_pids()
    assert pool.run(sys.executable, "status", {})["worker_pid"] == warm
    pool.shutdown()
    assert pool.idle_pids() == []


def test_two_algorithms_at_once_each_get_a_worker(tmp_path):
    pool = WorkerPool()
    results, errors = {}, []

    def run(name):
        try:
            folder = tmp_path / name
            folder.mkdir()
            results[name] = pool.run(
                sys.executable, "sample_streets", sampling(ROME_OSM, folder, ["residential"])
            )
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and results["a"]["locations"] == results["b"]["locations"] > 0
    assert pool.busy_pids() == [] and len(pool.idle_pids()) == 1  # one kept warm, one closed
    pool.shutdown()


def test_a_worker_about_to_idle_out_is_not_given_a_job():
    pool = WorkerPool()
    # An idle timeout of 30.5 s leaves 0.5 s before the 30 s safety margin is reached.
    first = pool.run(sys.executable, "status", {}, idle_timeout_s=30.5)["worker_pid"]
    assert pool.run(sys.executable, "status", {}, idle_timeout_s=30.5)["worker_pid"] == first
    time.sleep(1.0)
    assert pool.run(sys.executable, "status", {}, idle_timeout_s=30.5)["worker_pid"] != first
    pool.shutdown()


def test_a_closed_or_killed_worker_leaves_no_pipe_open():
    """An open pipe is a ResourceWarning printed at the end of every qgis_process run."""
    for end in ("close", "kill"):
        worker = Worker(sys.executable)
        getattr(worker, end)()
        pipes = (worker.process.stdin, worker.process.stdout, worker.process.stderr)
        assert all(pipe.closed for pipe in pipes), end
