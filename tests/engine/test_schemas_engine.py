"""The engine's own schemas: status and selftest take and give them, as plain JSON; the set-up
reads the self-test's report with them."""

from __future__ import annotations

import json
import os
import sys

import pytest

from mus_qgis.engine.jobs import registered
from mus_qgis.shared.schemas.engine import (
    SelftestParams,
    SelftestResult,
    StatusParams,
    StatusResult,
    VersionsParams,
    VersionsResult,
)

PACKAGES = {"torch": "2.5.1", "open_clip_torch": "3.3.0", "osmium": None}
DEVICE = {
    "cpu_count": 16,
    "torch_threads": 8,
    "cuda_build": "12.4",
    "device": "cuda",
    "cuda_devices": [{"name": "NVIDIA H100", "memory_gib": 79.1}],
    "description": "CUDA: NVIDIA H100, 79.1 GiB",
}


def carried(schema):
    """As the worker's protocol carries it."""
    return json.loads(json.dumps(schema.to_dict()))


@pytest.mark.parametrize(
    ("name", "params", "result"),
    [
        ("status", StatusParams, StatusResult),
        ("selftest", SelftestParams, SelftestResult),
        ("versions", VersionsParams, VersionsResult),
    ],
)
def test_the_engine_jobs_declare_their_schemas(name, params, result):
    run = registered()[name]
    assert (run.params, run.result) == (params, result)


def test_a_status_and_a_selftest_survive_the_pipe():
    status = StatusResult(
        engine_python="/engine/envs/engine-1/bin/python",
        python_version="3.11.7",
        platform="Linux-6.1-x86_64-with-glibc2.36",
        plugin_version="1.4.0",
        packages=PACKAGES,
        device=DEVICE,
        worker_pid=4711,
        plugin_folder="/profile/python/plugins/mus_qgis",
        cache={"models": {"path": "/cache/models", "bytes": 1_234_567}},
    )
    assert StatusResult.from_dict(carried(status)) == status
    assert StatusParams.from_dict(carried(StatusParams("/cache"))).cache_dir == "/cache"
    selftest = SelftestResult(ok=True, packages=PACKAGES, device=DEVICE)
    assert SelftestResult.from_dict(carried(selftest)) == selftest
    assert SelftestParams.from_dict({}) == SelftestParams()


def test_the_status_job_reports_the_worker_and_its_caches(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "weights.bin").write_bytes(b"\0" * 1000)
    answer = registered()["status"](StatusParams(str(tmp_path)).to_dict(), None)
    status = StatusResult.from_dict(json.loads(json.dumps(answer)))
    assert status.engine_python == sys.executable and status.worker_pid == os.getpid()
    assert status.packages["torch"] and status.device["device"] == "cpu"
    assert status.cache["models"] == {"path": str(tmp_path / "models"), "bytes": 1000}
    assert status.cache["imagery"]["bytes"] == 0
    bare = StatusResult.from_dict(registered()["status"]({}, None))
    assert bare.cache is None and bare.plugin_version == status.plugin_version


def test_the_selftest_job_and_its_command_line_give_what_the_set_up_reads(capsys, monkeypatch):
    from mus_qgis.bridge import environment
    from mus_qgis.engine.cli import main

    answer = registered()["selftest"]({}, None)
    report = SelftestResult.from_dict(json.loads(json.dumps(answer)))
    assert report.ok and report.packages["open_clip_torch"] and report.device["device"] == "cpu"
    # The set-up runs the command line in the new environment and reads its last JSON line.
    assert main(["selftest"]) == 0
    lines = capsys.readouterr().out.splitlines()
    monkeypatch.setattr(environment, "run_command", lambda *args, **kwargs: lines)
    verified = environment.verify(sys.executable)
    assert isinstance(verified, SelftestResult) and verified.packages == report.packages


def test_the_set_up_reads_the_selftest_report_past_other_lines(monkeypatch):
    from mus_qgis.bridge import environment
    from mus_qgis.bridge.setup_commands import SetupError

    report = SelftestResult(ok=True, packages=PACKAGES, device=DEVICE)
    lines = ["UserWarning: something", json.dumps(report.to_dict()), "[1, 2]", '{"step": 3}']
    monkeypatch.setattr(environment, "run_command", lambda *args, **kwargs: lines)
    assert environment.verify("python") == report
    lines[1] = json.dumps({**report.to_dict(), "ok": False})
    with pytest.raises(SetupError, match="said nothing readable"):
        environment.verify("python")


def test_the_versions_job_names_the_packages_without_importing_them():
    import sys

    imported = "torch" in sys.modules
    answer = VersionsResult.from_dict(carried_dict(registered()["versions"]({}, None)))
    assert answer.python_version.count(".") == 2
    assert answer.packages["numpy"] and "torch" in answer.packages
    assert ("torch" in sys.modules) == imported  # asked of the metadata, not imported


def carried_dict(value: dict) -> dict:
    return json.loads(json.dumps(value))
