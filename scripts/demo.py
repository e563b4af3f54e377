"""The demo: the pipeline headless, as a user would run it with qgis_process.

Runs the packaged plugin (build/plugins, made by `make stage`) through qgis_process on real data
in ../shared/data: street centroids of central Rome from the OpenStreetMap extract, then a
CLIP classification (Urban Atlas 2018 labels) of the geotagged street photos. It stores each
layer's style in the GeoPackage and writes a QGIS project, so both open styled in QGIS.

The model: $MUS_CLIP_CHECKPOINT (a local weights file for $MUS_CLIP_MODEL), else the pretrained
tag $MUS_CLIP_PRETRAINED when its weights are cached or downloadable, else random weights, and
then the demo says plainly that the labels come from an untrained model. Later stages of the
pipeline join this demo as they land.
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
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
OSM_FILE = SHARED / "osm" / "rome_monti_2016.osm"
PHOTO_FOLDERS = [SHARED / "images" / name for name in ("arezzo", "berlin", "portland")]
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


def photo_points(path: Path) -> int:
    """A GeoJSON point layer of the geotagged photos (EXIF GPS), with their paths."""
    from PIL import Image

    features = []
    for folder in PHOTO_FOLDERS:
        for photo in sorted(folder.iterdir()):
            if photo.suffix.lower() not in (".jpg", ".jpeg"):
                continue
            gps = Image.open(photo).getexif().get_ifd(0x8825)
            if 2 not in gps or 4 not in gps:
                continue
            lat = _degrees(gps[2]) * (-1 if gps.get(1) == "S" else 1)
            lon = _degrees(gps[4]) * (-1 if gps.get(3) == "W" else 1)
            features.append(
                {
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [lon, lat]},
                    "properties": {"image_paths": str(photo), "place": folder.name},
                }
            )
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return len(features)


def _degrees(dms) -> float:
    degrees, minutes, seconds = (float(v) for v in dms)
    return degrees + minutes / 60 + seconds / 3600


def model_parameters() -> tuple[list[str], str]:
    """qgis_process parameters for the model, and a plain sentence saying which it is."""
    from mus_qgis.engine.classify import model_cache_dir
    from mus_qgis.engine.cli import default_cache_dir
    from mus_qgis.engine.models import DEFAULT_MODEL, DEFAULT_PRETRAINED, weights_problem

    name = os.environ.get("MUS_CLIP_MODEL", DEFAULT_MODEL)
    checkpoint = os.environ.get("MUS_CLIP_CHECKPOINT", "")
    tag = os.environ.get("MUS_CLIP_PRETRAINED", DEFAULT_PRETRAINED)
    cache = default_cache_dir()
    common = [f"MODEL={name}", f"CACHE_FOLDER={cache}"]
    if checkpoint:
        return [*common, f"CHECKPOINT={checkpoint}"], f"{name} with weights from {checkpoint}"
    problem = weights_problem(name, tag, model_cache_dir(cache)) if tag else "no tag given"
    if not problem:
        return [*common, f"PRETRAINED={tag}"], f"{name} pretrained on {tag}"
    return [*common, "PRETRAINED="], (
        f"{name} with RANDOM, UNTRAINED weights, because no pretrained weights are available "
        f"here ({problem.split(':')[-1].split('.')[0].strip()}). The labels below therefore say "
        "nothing about the photos; set MUS_CLIP_CHECKPOINT to a weights file for real answers."
    )


def style_and_project(gpkg: Path, project_path: Path) -> None:
    from qgis.core import QgsApplication, QgsProject, QgsVectorLayer

    app = QgsApplication([], False)
    app.initQgis()
    from mus_qgis.engine.labels import builtin_label_set
    from mus_qgis.processing.classify_clip import style_classified_layer

    project = QgsProject.instance()
    project.setTitle("mus_qgis demo: central Rome streets and CLIP-classified street photos")
    centroids = QgsVectorLayer(f"{gpkg}|layername=street_centroids", "Street centroids", "ogr")
    photos = QgsVectorLayer(
        f"{gpkg}|layername=photo_labels", "Street photos: Urban Atlas label (CLIP)", "ogr"
    )
    for layer in (centroids, photos):
        if not layer.isValid():
            sys.exit(f"cannot open {layer.source()}")
    centroids.loadNamedStyle(str(ROOT / "resources" / "styles" / "street_centroids.qml"))
    style_classified_layer(photos, builtin_label_set("urban_atlas_2018"))
    # Stored in the GeoPackage as default styles, so the file opens styled on its own too.
    centroids.saveStyleToDatabase("street_centroids", "mus_qgis street centroids", True, "")
    photos.saveStyleToDatabase("photo_labels", "mus_qgis CLIP labels", True, "")
    for layer in (centroids, photos):
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

        points = OUT / "street_photos.geojson"
        count = photo_points(points)
        parameters, model_sentence = model_parameters()
        print(
            f"Classifying {count} geotagged street photos with the Urban Atlas 2018 labels; "
            f"model: {model_sentence}"
        )
        out = run_qgis_process(
            Path(profile),
            "--json",
            "run",
            "mus:classifyclip",
            "--",
            f"INPUT={points}",
            "IMAGE_FIELD=image_paths",
            "LABEL_SET=0",
            "TOP_K=3",
            *parameters,
            f"OUTPUT=ogr:dbname='{gpkg}' table=\"photo_labels\" (geom)",
        )
        classified = json.loads(out[out.index("{") :])["results"]
    project_path = OUT / "rome_monti.qgz"
    style_and_project(gpkg, project_path)
    print(
        f"Street segments found: {results['SEGMENTS_FOUND']}; of the reference study's classes: "
        f"{results['SEGMENTS_SELECTED']}; excluded by class: {results['SEGMENTS_EXCLUDED']}; "
        f"locations after merging points closer than 20 m: {results['LOCATIONS']}."
    )
    print(
        f"Street photos classified: {classified['CLASSIFIED']:.0f}, without a usable image: "
        f"{classified['FAILED']:.0f}. Model: {model_sentence}"
    )
    print(
        "Most frequent first labels: "
        + "; ".join(f"{label} ({count})" for label, count in frequent_labels(gpkg))
    )
    print(f"Open in QGIS: {project_path}  (or the layers alone: {gpkg})")


def frequent_labels(gpkg: Path, count: int = 5) -> list[tuple[str, int]]:
    import sqlite3

    with sqlite3.connect(gpkg) as db:
        return db.execute(
            "SELECT label_1, count(*) FROM photo_labels WHERE label_1 IS NOT NULL "
            "GROUP BY label_1 ORDER BY 2 DESC, 1 LIMIT ?",
            (count,),
        ).fetchall()


if __name__ == "__main__":
    main()
