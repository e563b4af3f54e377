"""Benchmark: the engine set-up, the earlier path (venv + pip) against the new one (uv), in one run.

Each path builds the whole engine (requirements.txt, PyPI's torch build: what the earlier
set-up chose on a machine without an NVIDIA GPU whose network does not reach PyTorch's CPU
index) from PyPI into an empty folder, with an empty cache, on a Python this machine has:

  earlier  python3 -m venv; pip install torch torchvision (constrained by the pins); pip
           install -r requirements.txt  (pip's own configuration ignored, no pip cache: every
           wheel from PyPI, as on a user's machine);
  new      mus_qgis's set-up: uv fetched from PyPI and checked, the lock resolved and sized,
           uv installs it, the self-test;
  again    the new path once more with ``force``, uv's cache now warm (a second engine folder,
           or a rebuild after a failed set-up).

For each: wall time, the bytes this machine received meanwhile (/proc/net/dev, all interfaces
but lo: other traffic counts too, so read it as "about"), and for the new path the size its lock
announced before downloading. Linux only (it reads /proc/net/dev).

    /usr/bin/python3 scripts/bench_setup.py [--python /usr/bin/python3] [--keep]

Results go in BENCHMARKS.md. It downloads about 3.3 GB twice: run it on a fast network.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mus_qgis.bridge.environment import SetupOptions, megabytes, setup  # noqa: E402
from mus_qgis.shared.resources import ENGINE_REQUIREMENTS  # noqa: E402


class Quiet:
    def __init__(self):
        self.lines = []

    def set_progress(self, percent):
        pass

    def is_canceled(self):
        return False

    def info(self, message):
        self.lines.append(message)

    def warning(self, message):
        self.lines.append(message)


def received_bytes() -> int:
    total = 0
    with open("/proc/net/dev", encoding="utf-8") as table:
        for line in table.readlines()[2:]:
            name, counters = line.split(":", 1)
            if name.strip() != "lo":
                total += int(counters.split()[0])
    return total


def measured(what: str, action) -> dict:
    before, started = received_bytes(), time.perf_counter()
    details = action() or {}
    seconds, received = time.perf_counter() - started, received_bytes() - before
    print(f"{what:8s} {seconds:7.1f} s   received {megabytes(received):>8s}   {details}")
    return {"seconds": seconds, "received": received, **details}


def earlier_path(python: str, folder: Path) -> dict:
    """The plugin's set-up before 1.0: a venv, then pip from PyPI (no cache, no local config)."""
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_CACHE_DIR": "1"}
    for name in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT"):
        env.pop(name, None)
    venv = folder / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, env=env)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    pip += ["--only-binary=:all:", "--progress-bar", "off", "-q"]
    pins = [line for line in ENGINE_REQUIREMENTS.read_text(encoding="utf-8").splitlines()]
    torch = [p for p in pins if p.startswith(("torch==", "torchvision=="))]
    subprocess.run([*pip, *torch, "-c", str(ENGINE_REQUIREMENTS)], check=True, env=env)
    subprocess.run([*pip, "-r", str(ENGINE_REQUIREMENTS)], check=True, env=env)
    return {}


def new_path(python: str, folder: Path, force: bool = False) -> dict:
    progress = Quiet()
    record = setup(
        SetupOptions(
            folder / "engine",
            base_python=python,
            torch="default",
            cache_dir=str(folder / "uv-cache"),
            force=force,
        ),
        progress,
    )
    return {"announced": megabytes(record.get("download_bytes") or 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="/usr/bin/python3", help="the base Python")
    parser.add_argument("--keep", action="store_true", help="keep the folders it made")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="mus-bench-setup-"))
    try:
        earlier = measured("earlier", lambda: earlier_path(args.python, folder / "pip"))
        new = measured("new", lambda: new_path(args.python, folder / "uv"))
        again = measured("again", lambda: new_path(args.python, folder / "uv", force=True))
        print(
            f"new / earlier: time {new['seconds'] / earlier['seconds']:.2f}, "
            f"received {new['received'] / max(1, earlier['received']):.2f}; "
            f"again / earlier: time {again['seconds'] / earlier['seconds']:.2f}"
        )
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
