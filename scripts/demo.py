"""The demo: sample street centroids of central Rome headless, as a user would with qgis_process.

Runs the packaged plugin (build/plugins, made by `make stage`) through qgis_process on the real
OpenStreetMap extract in ../shared/data, then stores the layer's style in the GeoPackage and writes
a QGIS project, so both open styled in QGIS. Later stages of the pipeline join this demo as they
land.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
OSM_FILE = ROOT.parent / "shared" / "data" / "osm" / "rome_monti_2016.osm"
OUT = ROOT / "demo_output"
SITE = (
    Path(sys.prefix)
    / "lib"
    / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    / "site-packages"
)


def run_qgis_process(profile: Path, *args: str) -> str:
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "QGIS_CUSTOM_CONFIG_PATH": str(profile),
        "QGIS_PLUGINPATH": str(ROOT / "build" / "plugins"),
        "PYTHONPATH": str(SITE),
    }
    done = subprocess.run(["qgis_process.bin", *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"qgis_process {' '.join(args[:2])} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def style_and_project(gpkg: Path, project_path: Path) -> None:
    from qgis.core import QgsApplication, QgsProject, QgsVectorLayer

    app = QgsApplication([], False)
    app.initQgis()
    layer = QgsVectorLayer(f"{gpkg}|layername=street_centroids", "Street centroids", "ogr")
    if not layer.isValid():
        sys.exit(f"cannot open {gpkg}")
    qml = ROOT / "resources" / "styles" / "street_centroids.qml"
    layer.loadNamedStyle(str(qml))
    # Stored in the GeoPackage as the default style, so the file opens styled on its own too.
    layer.saveStyleToDatabase("street_centroids", "mus_qgis street centroids", True, "")
    project = QgsProject.instance()
    project.setTitle("mus_qgis demo: street centroids of central Rome")
    project.addMapLayer(layer)
    project.write(str(project_path))
    app.exitQgis()


def main() -> None:
    OUT.mkdir(exist_ok=True)
    gpkg = OUT / "rome_monti.gpkg"
    gpkg.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="mus_demo_profile_") as profile:
        run_qgis_process(Path(profile), "plugins", "enable", "mus_qgis")
        print(f"Sampling street centroids of {OSM_FILE.name} with qgis_process ...")
        out = run_qgis_process(
            Path(profile),
            "--json",
            "run",
            "mus:samplestreetcentroids",
            "--",
            f"OSM_FILE={OSM_FILE}",
            "MERGE_DISTANCE=20",
            f"OUTPUT=ogr:dbname='{gpkg}' table=\"street_centroids\" (geom)",
        )
    results = json.loads(out[out.index("{") :])["results"]
    project_path = OUT / "rome_monti.qgz"
    style_and_project(gpkg, project_path)
    print(
        f"Street segments found: {results['SEGMENTS_FOUND']}; of the reference study's classes: "
        f"{results['SEGMENTS_SELECTED']}; excluded by class: {results['SEGMENTS_EXCLUDED']}; "
        f"locations after merging points closer than 20 m: {results['LOCATIONS']}."
    )
    print(f"Open in QGIS: {project_path}  (or the layer alone: {gpkg})")


if __name__ == "__main__":
    main()
