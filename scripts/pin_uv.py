"""Write resources/engine/uv.json: the uv release the engine set-up uses, with every wheel's
SHA-256 and size as PyPI publishes them.

The set-up downloads uv's wheel for the user's platform and refuses one whose digest differs
from this file, whatever index served it (a mirror, a proxy, a wheel folder). Run it when moving
to a new uv release: ``python3 scripts/pin_uv.py 0.13.9``. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "resources" / "engine" / "uv.json"
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


def published_wheels(version: str, index: str) -> dict[str, dict]:
    request = urllib.request.Request(f"{index.rstrip('/')}/uv/", headers={"Accept": SIMPLE_JSON})
    with urllib.request.urlopen(request, timeout=60) as answer:
        project = json.load(answer)
    wheels = {}
    for entry in project["files"]:
        name = entry["filename"]
        if name.startswith(f"uv-{version}-") and name.endswith(".whl") and not entry.get("yanked"):
            wheels[name] = {"sha256": entry["hashes"]["sha256"], "size": entry["size"]}
    if not wheels:
        raise SystemExit(f"{index} lists no wheel of uv {version}")
    return dict(sorted(wheels.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("version")
    parser.add_argument("--index", default="https://pypi.org/simple")
    args = parser.parse_args()
    pins = {
        "_about": (
            "The uv release the engine set-up downloads (scripts/pin_uv.py wrote this from "
            "PyPI): a wheel whose SHA-256 differs is refused."
        ),
        "version": args.version,
        "wheels": published_wheels(args.version, args.index),
    }
    TARGET.write_text(json.dumps(pins, indent=1) + "\n", encoding="utf-8")
    print(f"{TARGET}: uv {args.version}, {len(pins['wheels'])} wheels")


if __name__ == "__main__":
    main()
