"""Screenshots of what a QGIS user sees: the demo project, the Processing toolbox, each
algorithm's dialog and the pipeline model in the Graphical Modeler; then the demo's HTML reports
as a browser shows them (headless Chromium, when installed: `apt-get install chromium`).

Runs the real QGIS desktop on a virtual screen (Xvfb, openbox) with the packaged plugin in a fresh
profile, as the desktop tests do (tests/desktop.py), and drives it with
scripts/screenshots_session.py.
Run `make demo` first (the project it opens), then, with QGIS's Python:

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ALGORITHMS = (
    "mus:setupengine",
    "mus:downloadweights",
    "mus:enginestatus",
    "mus:samplestreetcentroids",
    "mus:surveyimagery",
    "mus:fetchpanoramas",
    "mus:classifyclip",
    "mus:resampletogrid",
    "mus:ranklabels",
    "mus:compareurbanatlas",
    "mus:labelclusters",
    "mus:labelboundaries",
    "mus:labelperiods",
    "mus:labelchange",
    "mus:exportfigures",
    "mus:trainprobe",
    "mus:dreamstreets",
    "mus:mainstreamimage",
    "mus:rerunstudy",
)
SHARED = ROOT.parent / "shared" / "data"


def first_map_walk(work: Path, demo_output: Path) -> list[dict]:
    """The steps from streets to a grid, as a new user fills in each dialog: streets of Monti from
    an OpenStreetMap file; then, with no key and no network, the demo's own photos (Arezzo) at
    the survey points `make demo` wrote beside them; CLIP with random weights (Getting started's
    trial: no weights are downloaded here); the grid of its labels."""

    def gpkg(name: str) -> str:
        return str(work / f"{name}.gpkg")

    return [
        {
            "name": "1_sample",
            "algorithm": "mus:samplestreetcentroids",
            "parameters": {
                "OSM_FILE": str(SHARED / "osm" / "rome_monti_2016.osm"),
                "OUTPUT": gpkg("street_centroids"),
            },
        },
        {
            "name": "2_fetch",
            "algorithm": "mus:fetchpanoramas",
            "parameters": {
                "INPUT": str(demo_output / "survey_points.geojson"),
                "SOURCE": 3,
                "PHOTO_FOLDER": str(SHARED / "images"),
                "RADIUS": 15,
                "OUTPUT": gpkg("points_with_imagery"),
            },
        },
        {
            "name": "3_classify",
            "algorithm": "mus:classifyclip",
            "parameters": {"PRETRAINED": "", "OUTPUT": gpkg("land_use_by_clip")},
            "from_earlier": {"INPUT": "2_fetch"},
        },
        {
            "name": "4_grid",
            "algorithm": "mus:resampletogrid",
            "parameters": {"CELL_SIZE": 50, "LABEL_SET": 1, "OUTPUT": gpkg("land_use_grid")},
            "from_earlier": {"INPUT": "3_classify"},
        },
    ]


TIMEOUT_S = 420
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def report_screenshots(reports: list[Path], folder: Path) -> list[str]:
    """Each report as a reader's browser draws it (full width, first screenful and more)."""
    browser = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if browser is None:
        print("No Chromium here: the reports were not shot (apt-get install chromium)")
        return []
    saved = []
    for report in reports:
        shot = folder / f"report_{report.stem}.png"
        command = [
            browser,
            "--headless=new",
            "--no-sandbox",  # root on a build machine; the page is our own file
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1100,1300",
            f"--screenshot={shot}",
            report.resolve().as_uri(),
        ]
        subprocess.run(command, capture_output=True, timeout=120, check=False)
        if shot.is_file():
            saved.append(str(shot))
        else:
            print(f"{browser} made no screenshot of {report}", file=sys.stderr)
    return saved


def main() -> int:
    from tests.desktop import qgis_desktop

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--project", type=Path, default=ROOT / "demo_output" / "rome_monti.qgz")
    args = parser.parse_args()
    if not args.project.is_file():
        sys.exit(f"{args.project} is missing: run `make demo` first")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mus_screenshots_") as work:
        work = Path(work)
        result = work / "result.json"
        settings = {
            "result": str(result),
            "folder": str(args.out.resolve()),
            "project": str(args.project.resolve()),
            "algorithms": list(ALGORITHMS),
            "walk": first_map_walk(work, args.project.parent),
        }
        script = ROOT / "scripts" / "screenshots_session.py"
        with qgis_desktop(work, script, settings, variable="MUS_SCREENSHOTS") as desktop:
            try:
                desktop.qgis.wait(timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                print(f"QGIS did not finish within {TIMEOUT_S} s", file=sys.stderr)
        seen = json.loads(result.read_text(encoding="utf-8")) if result.exists() else {}
        reports = sorted(args.project.parent.glob("*.html"))
        for path in [*seen.get("saved", []), *report_screenshots(reports, args.out)]:
            print(path)
        for step in seen.get("walked", []):
            print(f"walk step {step['step']}: {step['features']} features on the map")
        if "project" in seen:
            print(f"demo project on opening: {seen['project']}")
        for error in seen.get("errors", ["no result from the desktop"]):
            print(error, file=sys.stderr)
        return 0 if seen and not seen.get("errors") else 1


if __name__ == "__main__":
    sys.exit(main())
