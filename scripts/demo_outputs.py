"""Where the demo writes, and how it runs an algorithm: shared by the demo and its figures."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(os.environ.get("MUS_DEMO_OUTPUT") or ROOT / "demo_output")
GPKG = OUT / "rome_monti.gpkg"


def run_qgis_process(profile: Path, *args: str) -> str:
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "QGIS_CUSTOM_CONFIG_PATH": str(profile),
        "QGIS_PLUGINPATH": str(ROOT / "build" / "plugins"),
    }
    started = time.monotonic()
    done = subprocess.run(
        ["qgis_process.bin", *args], env=env, capture_output=True, text=True, encoding="utf-8"
    )
    if done.returncode != 0:
        sys.exit(f"qgis_process {' '.join(args[:2])} failed:\n{done.stdout}\n{done.stderr}")
    # What runs, and for how long: a newcomer sees the demo move (it takes minutes).
    step = next((arg for arg in args if arg.startswith("mus:")), " ".join(args[:2]))
    print(f"  qgis_process {step}: {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    return done.stdout


def table(name: str) -> str:
    return f"OUTPUT=ogr:dbname='{GPKG}' table=\"{name}\" (geom)"


def layer(name: str) -> str:
    return f"{GPKG}|layername={name}"
