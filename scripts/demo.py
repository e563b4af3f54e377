"""The demo: the whole pipeline headless, as a user would run it with qgis_process.

Runs the packaged plugin (build/plugins, made by `make stage`) through qgis_process and writes
demo_output/rome_monti.gpkg (every layer, styles stored inside), a QGIS project
demo_output/rome_monti.qgz and the HTML reports, then prints what to open.

Offline (these machines) it uses real data from ../shared/data: street centroids of central Rome
from the OpenStreetMap extract; survey points beside the geotagged street photos of Arezzo,
whose images come through the local-photos source; CLIP labels (Urban Atlas 2018 and Italian
provinces); the label grid; the multiscale ranking (provinces from the classified layer, then
European and world capitals over the stored embeddings); the comparison with the Urban Atlas
sample.
With MUS_MAPILLARY_TOKEN or MUS_STREETVIEW_KEY set it studies a real place instead
(MUS_DEMO_PLACE, default Rione Monti, Rome) with that source, keeping the images in
demo_output/imagery; MUS_OVERPASS_URL, MUS_NOMINATIM_URL and MUS_IMAGERY_URL point it at other
servers (a mirror, a local instance). MUS_DEMO_OUTPUT changes the output folder.

The model: $MUS_CLIP_CHECKPOINT (a local weights file for $MUS_CLIP_MODEL), else the pretrained
tag $MUS_CLIP_PRETRAINED when its weights are cached or downloadable, else random weights, and
then the demo says plainly that the labels come from an untrained model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from contextlib import closing
from functools import partial
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# QGIS switches a GeoPackage it writes styles into to SQLite's WAL journal; GDAL 3.10 (QGIS 3.40)
# then fails to read that file's metadata through the read-only "nolock" connection it closes
# afterwards and prints "sqlite3_get_table(...) unable to open database file" (harmless: the file
# is whole). A rollback journal avoids the clash on every release.
os.environ.setdefault("OGR_SQLITE_JOURNAL", "DELETE")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.demo_outputs import GPKG, OUT, layer, run_qgis_process, table  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
OSM_FILE = SHARED / "osm" / "rome_monti_2016.osm"
PHOTOS = SHARED / "images"
SURVEY_FOLDER = PHOTOS / "arezzo"
# The engine's Python (the Makefile sets it): qgis_process sends the algorithms' work there.
ENGINE_PYTHON = os.environ.setdefault(
    "MUS_ENGINE_PYTHON", str(ROOT / ".engine" / "env" / "bin" / "python")
)
# Indices in resources/labels/label_sets.json (append-only, so they stay valid).
URBAN_ATLAS_SET, PROVINCES_SET, EUROPEAN_CAPITALS_SET, WORLD_CAPITALS_SET = 0, 8, 9, 10
# Layer names short enough for a default Layers panel (about 22 characters at a layer's depth);
# the groups say where the data come from.
SPATIAL_LAYERS = {
    "street_centroids": "Street centroids",
    "imagery": "Points with imagery",
    "landuse_labels": "Land use by CLIP",
    "province_labels": "Province by CLIP",
    "label_grid": "Land-use grid by CLIP",
    "urban_atlas_agreement": "Agreement with Urban Atlas",
    "urban_atlas": "Urban Atlas 2018 under the points",
}
# Only with an Urban Atlas that covers the study (MUS_URBAN_ATLAS): the one sample available
# offline covers Narva, and a comparison no point falls in is refused.
COMPARISON_LAYERS = ("urban_atlas_agreement", "urban_atlas")
NETWORK_LAYER = "Street network"


def survey_points(path: Path) -> int:
    """Points 5 m east of each geotagged photo (EXIF GPS), as a survey's sample points would be."""
    from qgis.core import QgsExifTools

    features = []
    for photo in sorted(SURVEY_FOLDER.glob("*.jpg")):
        position, tagged = QgsExifTools.getGeoTag(str(photo))
        if not tagged:
            continue
        lon, lat = position.x(), position.y()
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [lon + 0.00006, lat]},
                "properties": {"name": photo.stem, "bearing": 90.0},
            }
        )
    path.write_text(
        json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8"
    )
    return len(features)


def model_parameters() -> tuple[list[str], str]:
    """qgis_process parameters for the model, and a plain sentence saying which it is."""
    from mus_qgis.engine.cli import default_cache_dir
    from mus_qgis.engine.clip.models import DEFAULT_MODEL, DEFAULT_PRETRAINED

    name = os.environ.get("MUS_CLIP_MODEL", DEFAULT_MODEL)
    checkpoint = os.environ.get("MUS_CLIP_CHECKPOINT", "")
    tag = os.environ.get("MUS_CLIP_PRETRAINED", DEFAULT_PRETRAINED)
    cache = default_cache_dir()
    common = [f"MODEL={name}", f"CACHE_FOLDER={cache}"]
    if checkpoint:
        return [*common, f"CHECKPOINT={checkpoint}"], f"{name} with weights from {checkpoint}"
    problem = weights_problem(name, tag, cache) if tag else "no tag given"
    if not problem:
        return [*common, f"PRETRAINED={tag}"], f"{name} pretrained on {tag}"
    return [*common, "PRETRAINED="], (
        f"{name} with RANDOM, UNTRAINED weights, because no pretrained weights are available "
        f"here ({problem.split(':')[-1].split('.')[0].strip()}). The labels below therefore say "
        "nothing about the photos; set MUS_CLIP_CHECKPOINT to a weights file for real answers."
    )


def weights_problem(name: str, tag: str, cache: Path) -> str:
    """Why the pretrained weights cannot be had here, as the engine (in its Python) sees it."""
    code = (
        "import sys; from mus_qgis.engine.clip.classify import model_cache_dir; "
        "from mus_qgis.engine.clip.models import weights_problem; "
        "print(weights_problem(sys.argv[1], sys.argv[2], model_cache_dir(sys.argv[3])))"
    )
    done = subprocess.run(
        [ENGINE_PYTHON, "-c", code, name, tag, str(cache)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if done.returncode != 0:
        sys.exit(f"The engine cannot be run ({ENGINE_PYTHON}): {done.stderr[-2000:]}")
    return done.stdout.strip()


def online_source() -> tuple[list[str], str] | None:
    """Fetch parameters for a real source when a key is in the environment."""
    imagery_url = os.environ.get("MUS_IMAGERY_URL", "")
    url = [f"SERVICE_URL={imagery_url}"] if imagery_url else []
    if os.environ.get("MUS_MAPILLARY_TOKEN"):
        return ["SOURCE=1", *url], "Mapillary"
    if os.environ.get("MUS_STREETVIEW_KEY"):
        return ["SOURCE=0", *url], "Google Street View"
    return None


def service_urls() -> list[str]:
    """Sampling parameters for other Overpass / Nominatim servers (a mirror, a local instance)."""
    urls = {"OVERPASS_URL": "MUS_OVERPASS_URL", "NOMINATIM_URL": "MUS_NOMINATIM_URL"}
    return [f"{name}={os.environ[var]}" for name, var in urls.items() if os.environ.get(var)]


def run_pipeline(profile: Path) -> dict:
    """Every algorithm, in order; returns each one's results."""

    def step(algorithm: str, *parameters: str) -> dict:
        out = run_qgis_process(profile, "--json", "run", algorithm, "--", *parameters)
        return json.loads(out[out.index("{") :])["results"]

    results = {}
    online = online_source()
    place = os.environ.get("MUS_DEMO_PLACE", "Rione Monti, Rome, Italy")  # see demo_place()
    print(f"1. Sampling street centroids ({place if online else OSM_FILE.name}) ...")
    results["sample"] = step(
        "mus:samplestreetcentroids",
        *([f"PLACE={place}", *service_urls()] if online else [f"OSM_FILE={OSM_FILE}"]),
        "MERGE_DISTANCE=20",
        table("street_centroids"),
    )
    if online:
        # The images are kept beside the results: the project's image_paths point at them.
        points = layer("street_centroids")
        fetch = [*online[0], "RADIUS=25", f"CACHE_FOLDER={OUT / 'imagery'}"]
        print(f"2. Fetching imagery from {online[1]} ...")
    else:
        points = str(OUT / "survey_points.geojson")
        count = survey_points(Path(points))
        fetch = ["SOURCE=3", f"PHOTO_FOLDER={PHOTOS}", "RADIUS=15"]
        print(
            f"2. Fetching imagery for {count} survey points from the local geotagged photos "
            "(no key or network here) ..."
        )
    results["fetch"] = step("mus:fetchpanoramas", f"INPUT={points}", *fetch, table("imagery"))
    parameters, results["model"] = model_parameters()
    results["model_parameters"] = parameters
    print(f"3. CLIP-classifying the images; model: {results['model']}")
    results["landuse"] = step(
        "mus:classifyclip",
        f"INPUT={layer('imagery')}",
        f"LABEL_SET={URBAN_ATLAS_SET}",
        *parameters,
        table("landuse_labels"),
    )
    results["provinces"] = step(
        "mus:classifyclip",
        f"INPUT={layer('imagery')}",
        f"LABEL_SET={PROVINCES_SET}",
        *parameters,
        table("province_labels"),
    )
    print("4. Reading the results: grid, ranking, agreement with Urban Atlas ...")
    results["grid"] = step(
        "mus:resampletogrid",
        f"INPUT={layer('landuse_labels')}",
        f"CELL_SIZE={100 if online else 50}",
        f"LABEL_SET={URBAN_ATLAS_SET + 1}",
        table("label_grid"),
    )
    # The study's multiscale reading: provinces from the classified layer, then European and
    # world capitals over the stored image embeddings, with no image read again.
    results["ranking"] = step(
        "mus:ranklabels",
        f"INPUTS={layer('province_labels')}",
        f"INPUTS={layer('landuse_labels')}",
        f"STORED_LABEL_SETS={EUROPEAN_CAPITALS_SET},{WORLD_CAPITALS_SET}",
        "TARGETS=Arezzo, Roma, Rome",
        "GROUPS=Rome + Vatican City = Rome; Vatican City",
        *parameters,
        f"OUTPUT={OUT / 'label_ranking.csv'}",
        f"REPORT={OUT / 'label_ranking.html'}",
    )
    from scripts import demo_probe

    results["probe"] = demo_probe.teach(step, GPKG, "landuse_labels", parameters, OUT)
    from scripts.demo_dreams import dream_steps

    results["dreams"] = dream_steps(
        step, layer, table, parameters, OUT, ENGINE_PYTHON, online is not None
    )
    reference = os.environ.get("MUS_URBAN_ATLAS", "")
    if not reference:
        results["compare"] = None
        return results
    results["compare"] = step(
        "mus:compareurbanatlas",
        f"INPUT={layer('landuse_labels')}",
        f"REFERENCE={reference}",
        table("urban_atlas_agreement"),
        f"REFERENCE_OUTPUT=ogr:dbname='{GPKG}' table=\"urban_atlas\" (geom)",
        f"REPORT={OUT / 'urban_atlas_agreement.html'}",
    )
    return results


IMAGE_LAYERS = ("imagery", "landuse_labels", "province_labels", "label_grid", *COMPARISON_LAYERS)
RANDOM_WEIGHTS = "RANDOM WEIGHTS: the labels mean nothing"
# The readings of the images (scripts/demo_readings.py, demo_probe.py, demo_dreams.py), in a group
# of their own, switched off but the boundaries: each is one click away, none hides the labels.
# Each group is one study area, with its own map theme and bookmark. Its name says where (a
# default Layers panel shows about 27 characters of a group's name, so names stay short).
STREET_GROUP = "{streets}: streets"
IMAGE_GROUP = "{images}: images, labels"
READING_GROUP = "{images}: readings"
# With random weights the group names say so, in place of words that fit no longer.
UNTRAINED_GROUPS = {
    IMAGE_GROUP: "{images}: RANDOM labels",
    READING_GROUP: "{images}: RANDOM readings",
}
OFFLINE_PLACES = {"streets": "Rome (Monti)", "images": "Arezzo"}  # the OSM file; the photos


def group_names(online_place: str | None, untrained: bool) -> dict[str, str]:
    """Each group's name in the project: the streets' area and the images' (offline, the Monti
    extract and the Arezzo photos; online, both the place the demo was given)."""
    places = {"streets": online_place, "images": online_place} if online_place else OFFLINE_PLACES
    names = {}
    for group in (STREET_GROUP, IMAGE_GROUP, READING_GROUP):
        shown = UNTRAINED_GROUPS.get(group, group) if untrained else group
        names[group] = shown.format(**places)
    return names


def demo_place() -> str:
    """The place the online demo studies, as its group names say it ("Rione Monti")."""
    return os.environ.get("MUS_DEMO_PLACE", "Rione Monti, Rome, Italy").split(",")[0].strip()


READING_LAYERS = {
    "label_boundaries": "Land-use boundaries",
    "label_clusters": "Clusters by label",
    "architect_periods": "Period by CLIP",
    "probe_labels": "Land use by the probe",
    "dreams": "Dreamed streets",
    "mainstream_image": "Mainstream image score",
}
SHOWN_READINGS = ("label_boundaries",)
# The labels on their grid; the provinces and the bare imagery points one click away, not on top.
SHOWN_IMAGE_LAYERS = ("landuse_labels", "label_grid", "urban_atlas_agreement")
BASEMAP = "OpenStreetMap (draws when online)"
BASEMAP_SOURCE = "type=xyz&url=https://tile.openstreetmap.org/{z}/{x}/{y}.png&zmax=19&zmin=0"
PROJECT_CRS = "EPSG:3857"  # the basemap's own: tiles drawn as they come, crisp


def street_network(online: bool):
    """The OpenStreetMap extract's streets as context lines under the points (offline only:
    online, the streets came from Overpass and no file holds them). Read with the standard
    library: GDAL's OSM driver stumbles on the extract's repeated ids."""
    import xml.etree.ElementTree as ET

    from qgis.core import (
        QgsFeature,
        QgsGeometry,
        QgsPointXY,
        QgsProject,
        QgsVectorFileWriter,
        QgsVectorLayer,
    )

    from mus_qgis.bridge.qgis_enums import make_field

    if online:
        return None
    tree = ET.parse(OSM_FILE)
    nodes = {
        n.get("id"): QgsPointXY(float(n.get("lon")), float(n.get("lat"))) for n in tree.iter("node")
    }
    lines = QgsVectorLayer("LineString?crs=EPSG:4326", "street_network", "memory")
    provider = lines.dataProvider()
    if not provider.addAttributes([make_field("highway", "string"), make_field("name", "string")]):
        sys.exit("cannot make the street network layer")
    lines.updateFields()
    features = []
    for way in tree.iter("way"):
        tags = {t.get("k"): t.get("v") for t in way.iter("tag")}
        points = [nodes[r.get("ref")] for r in way.iter("nd") if r.get("ref") in nodes]
        if "highway" not in tags or len(points) < 2:
            continue
        feature = QgsFeature(lines.fields())
        feature.setGeometry(QgsGeometry.fromPolylineXY(points))
        feature.setAttributes([tags["highway"], tags.get("name")])
        features.append(feature)
    if not provider.addFeatures(features)[0]:
        sys.exit(f"cannot read the streets of {OSM_FILE}")
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = "street_network"
    options.actionOnExistingFile = QgsVectorFileWriter.ActionOnExistingFile.CreateOrOverwriteLayer
    error = QgsVectorFileWriter.writeAsVectorFormatV3(
        lines, str(GPKG), QgsProject.instance().transformContext(), options
    )[0]
    if error != QgsVectorFileWriter.WriterError.NoError:
        sys.exit(f"cannot write the street network into {GPKG}: {error}")
    return QgsVectorLayer(layer("street_network"), NETWORK_LAYER, "ogr")


def style_and_project(project_path: Path, compared: bool, online: bool) -> None:
    """The demo as a QGIS project: one group per study (streets; street images and readings),
    a map theme and a spatial bookmark for each, the streets under the points, an OpenStreetMap
    basemap, the project in the basemap's CRS, opening on the street images. A layer with nothing
    in it is left out (and said); random weights are named wherever a reader looks."""
    from qgis.core import (
        QgsApplication,
        QgsBookmark,
        QgsCoordinateReferenceSystem,
        QgsCoordinateTransform,
        QgsLineSymbol,
        QgsMapThemeCollection,
        QgsProject,
        QgsRasterLayer,
        QgsRectangle,
        QgsReferencedRectangle,
        QgsSingleSymbolRenderer,
        QgsVectorLayer,
    )

    app = QgsApplication([], False)
    app.initQgis()
    from mus_qgis.bridge.layer_settings import classification_settings
    from mus_qgis.processing.classify_clip import style_classified_layer
    from mus_qgis.processing.compare_urban_atlas import style_reference_layer
    from mus_qgis.processing.fetch_panoramas import style_fetch_layer
    from mus_qgis.processing.resample_to_grid import style_grid_layer
    from mus_qgis.processing.sample_street_centroids import style_street_centroids
    from mus_qgis.shared.labels import builtin_label_set

    urban_atlas = builtin_label_set("urban_atlas_2018")
    provinces = builtin_label_set("italian_provinces")
    project = QgsProject.instance()
    crs = QgsCoordinateReferenceSystem(PROJECT_CRS)
    project.setCrs(crs)
    labels = QgsVectorLayer(layer("landuse_labels"), "labels", "ogr")
    untrained = bool(classification_settings(labels).get("untrained"))
    del labels  # its connection would hold the GeoPackage while styles are written into it
    warning = f" — {RANDOM_WEIGHTS}" if untrained else ""
    project.setTitle(f"mus_qgis demo: streets, street images, CLIP labels{warning}")
    root = project.layerTreeRoot()
    names = group_names(demo_place() if online else None, untrained)
    groups = {group: root.addGroup(name) for group, name in names.items()}
    members: dict[str, list] = {STREET_GROUP: [], IMAGE_GROUP: [], READING_GROUP: []}
    for name, title in SPATIAL_LAYERS.items():
        if name in COMPARISON_LAYERS and not compared:
            continue
        vector = QgsVectorLayer(layer(name), title, "ogr")
        if not vector.isValid():
            sys.exit(f"cannot open {layer(name)}")
        if vector.featureCount() == 0:
            print(f"Left out of the project: '{title}' has no feature.")
            continue
        if name == "street_centroids":
            style_street_centroids(vector)
        elif name == "imagery":
            style_fetch_layer(vector)
        elif name in ("landuse_labels", "urban_atlas_agreement"):
            style_classified_layer(vector, urban_atlas)
        elif name == "province_labels":
            style_classified_layer(vector, provinces)
        elif name == "label_grid":
            codes = [label.code for label in urban_atlas.labels]
            style_grid_layer(vector, urban_atlas.texts, urban_atlas.colours(), codes)
        elif name == "urban_atlas":
            field = next(f.name() for f in vector.fields() if f.name().lower() == "code_2018")
            style_reference_layer(vector, urban_atlas, field)
        # Stored in the GeoPackage as default styles, so the file opens styled on its own too.
        vector.saveStyleToDatabase(name, f"mus_qgis demo: {title}", True, "")
        if project.addMapLayer(vector, False) is None:
            sys.exit(f"cannot add {layer(name)} to the project")
        group = IMAGE_GROUP if name in IMAGE_LAYERS else STREET_GROUP
        node = groups[group].addLayer(vector)
        node.setItemVisibilityChecked(group == STREET_GROUP or name in SHOWN_IMAGE_LAYERS)
        members[group].append(vector)
    for name, title in READING_LAYERS.items():
        vector = QgsVectorLayer(layer(name), title, "ogr")
        if not vector.isValid() or vector.featureCount() == 0:
            print(f"Left out of the project: '{title}' ({name}) was not made or has no feature.")
            continue
        style_reading_layer(name, vector, urban_atlas)
        vector.saveStyleToDatabase(name, f"mus_qgis demo: {title}", True, "")
        if project.addMapLayer(vector, False) is None:
            sys.exit(f"cannot add {layer(name)} to the project")
        node = groups[READING_GROUP].addLayer(vector)
        node.setItemVisibilityChecked(name in SHOWN_READINGS)
        members[READING_GROUP].append(vector)
    if not members[READING_GROUP]:
        root.removeChildNode(groups.pop(READING_GROUP))
        del members[READING_GROUP]
    network = street_network(online)
    if network is not None and network.featureCount():
        symbol = QgsLineSymbol.createSimple({"color": "#9a9a9a", "width": "0.3"})
        network.setRenderer(QgsSingleSymbolRenderer(symbol))
        network.saveStyleToDatabase("street_network", "mus_qgis demo: street network", True, "")
        if project.addMapLayer(network, False) is None:
            sys.exit("cannot add the street network to the project")
        groups[STREET_GROUP].addLayer(network)  # last in the group: drawn under the points
        members[STREET_GROUP].append(network)
    basemap = QgsRasterLayer(BASEMAP_SOURCE, BASEMAP, "wms")
    if project.addMapLayer(basemap, False) is None:
        sys.exit("cannot add the basemap to the project")
    root.addLayer(basemap).setExpanded(False)
    for node in groups.values():
        for child in node.findLayers():  # legends folded: the layers' names fit the panel
            child.setExpanded(child.layer().name() == SPATIAL_LAYERS["landuse_labels"])
    if not online:  # the streets lie in another city than the images the project opens on
        groups[STREET_GROUP].setItemVisibilityChecked(False)
    themes = project.mapThemeCollection()
    # What each theme shows is what the project opens with: one reading at a time.
    shown_names = {READING_LAYERS[name] for name in SHOWN_READINGS} | {
        SPATIAL_LAYERS[name] for name in SHOWN_IMAGE_LAYERS
    }
    for group, layers in members.items():
        extent = QgsRectangle()
        extent.setMinimal()
        for member in layers:
            transform = QgsCoordinateTransform(member.crs(), crs, project.transformContext())
            extent.combineExtentWith(transform.transformBoundingBox(member.extent()))
        extent.scale(1.15)
        bookmark = QgsBookmark()
        bookmark.setName(names[group])
        bookmark.setExtent(QgsReferencedRectangle(extent, crs))
        if not project.bookmarkManager().addBookmark(bookmark)[1]:
            sys.exit(f"cannot add the bookmark {group}")
        record = QgsMapThemeCollection.MapThemeRecord()
        shown = [m for m in layers if group == STREET_GROUP or m.name() in shown_names]
        record.setLayerRecords(
            [QgsMapThemeCollection.MapThemeLayerRecord(m) for m in (*shown, basemap)]
        )
        themes.insert(names[group], record)
        if group == IMAGE_GROUP:  # the project opens on the street images and their readings
            project.viewSettings().setDefaultViewExtent(QgsReferencedRectangle(extent, crs))
    if not project.write(str(project_path)):
        sys.exit(f"cannot write {project_path}: {project.error()}")
    app.exitQgis()


def style_reading_layer(name: str, vector, urban_atlas) -> None:
    """Each reading in the style its algorithm gives it when QGIS loads its output (qgis_process
    loads nothing, so the demo applies it)."""
    from mus_qgis.bridge.layer_settings import classification_settings
    from mus_qgis.processing.classify_clip import style_classified_layer
    from mus_qgis.processing.dream_streets import style_dream_layer
    from mus_qgis.processing.label_boundaries import style_boundary_layer
    from mus_qgis.processing.label_clusters import label_colours, style_cluster_layer
    from mus_qgis.processing.label_periods import period_breaks, style_period_layer
    from mus_qgis.processing.mainstream_image import style_mainstream_layer

    if name == "label_boundaries":
        style_boundary_layer(vector)
    elif name == "label_clusters":
        present = {value for value in vector.uniqueValues(vector.fields().lookupField("label_1"))}
        names = [text for text in urban_atlas.texts if text in present]
        style_cluster_layer(vector, names, label_colours(names), kind="point")
    elif name == "architect_periods":
        values = (f["year"] for f in vector.getFeatures())
        years = [float(v) for v in values if isinstance(v, (int, float))]  # not NULL
        if len(years) < 2:
            return
        style_period_layer(vector, period_breaks(years))
    elif name == "probe_labels":
        settings = classification_settings(vector)
        style_classified_layer(vector, urban_atlas, settings, field="probe_label_1")
    elif name == "dreams":
        style_dream_layer(vector)
    elif name == "mainstream_image":
        style_mainstream_layer(vector)


EARLIER_RESULTS = (
    "label_ranking.csv",
    "label_ranking.html",
    "urban_atlas_agreement.html",
    "label_clusters.html",
    "label_clusters.csv",
    "probe.html",
    "mainstream_image.html",
    "mus_study.json",  # each step records itself again
)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    # What an earlier run left: a report of a step this run skips must not pass for this run's.
    for earlier in (GPKG, *(OUT / name for name in EARLIER_RESULTS)):
        earlier.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="mus_demo_profile_") as profile:
        run_qgis_process(Path(profile), "plugins", "enable", "mus_qgis")
        results = run_pipeline(Path(profile))
        from scripts.demo_readings import print_readings, run_readings

        readings = run_readings(partial(run_qgis_process, Path(profile)), GPKG, OUT, results)
    project_path = OUT / "rome_monti.qgz"
    style_and_project(project_path, results["compare"] is not None, bool(online_source()))
    sample, fetch = results["sample"], results["fetch"]
    landuse, compare = results["landuse"], results["compare"]
    print(
        f"Street segments found: {sample['SEGMENTS_FOUND']}; of the reference study's classes: "
        f"{sample['SEGMENTS_SELECTED']}; excluded by class: {sample['SEGMENTS_EXCLUDED']}; "
        f"squares drawn as polygons: {sample['AREAS_SAMPLED']}; "
        f"locations after merging points closer than 20 m: {sample['LOCATIONS']}."
    )
    print(
        f"Points with imagery: {fetch['WITH_IMAGERY']:.0f}, without: "
        f"{fetch['WITHOUT_IMAGERY']:.0f}."
    )
    print(
        f"Street photos classified: {landuse['CLASSIFIED']:.0f}, without a usable image: "
        f"{landuse['FAILED']:.0f}. Model: {results['model']}"
    )
    print(
        "Most frequent first labels: "
        + "; ".join(f"{label} ({count})" for label, count in frequent_labels(GPKG))
    )
    print(f"Grid cells: {results['grid']['CELLS']:.0f} ({results['grid']['FILLED']:.0f} filled).")
    for row in target_ranks(OUT / "label_ranking.csv"):
        print(
            f"Among the {row['of']} {row['scale']}, {row['label']} ranks {row['rank']} "
            f"({float(row['share']):.0%} of first places)."
        )
    from scripts import demo_probe

    print(demo_probe.summary(results["probe"]))
    if compare is not None:
        print(
            f"Agreement with Urban Atlas over {int(compare['COMPARED'])} points: overall "
            f"accuracy {compare['OVERALL_ACCURACY']:.3f}, kappa {compare['KAPPA']:.3f}."
        )
    else:
        print(
            "Agreement with Urban Atlas: not computed. The Urban Atlas sample available offline "
            "covers Narva, not the study; set MUS_URBAN_ATLAS to your city's Urban Atlas 2018 "
            "GeoPackage (copernicus.eu) for the comparison."
        )
    print_readings(readings, OUT, "RANDOM" in results["model"])
    from scripts.demo_dreams import print_dreams

    print_dreams(results["dreams"], OUT)
    print(f"Open in QGIS: {project_path}  (or the layers alone: {GPKG})")
    from scripts.demo_inspector import print_inspector_note

    print_inspector_note(GPKG, "landuse_labels", SPATIAL_LAYERS["landuse_labels"], project_path)
    # Every report this run wrote (an earlier run's were removed at the start).
    reports = sorted(OUT.glob("*.html"))
    print(f"Reports: {', '.join(str(report) for report in reports)}")
    from scripts.demo_figures import export_figures

    untrained = json.loads(landuse["SETTINGS"]).get("untrained", False)
    export_figures(results["model_parameters"], untrained, bool(online_source()))


def target_ranks(path: Path) -> list[dict]:
    """The target rows of the ranking, each with its scale ('Italian provinces' ...) and size."""
    import csv
    from collections import Counter

    scales = {
        "italian_provinces": "Italian provinces",
        "european_capitals": "European capitals",
        "world_capitals": "world capitals",
    }
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    sizes = Counter(row["label_set"] for row in rows)
    wanted = []
    for row in rows:
        scale = scales.get(row["label_set"].split(" (")[0])
        if scale and row["target"] == "1":
            wanted.append({**row, "scale": scale, "of": sizes[row["label_set"]]})
    return wanted


def frequent_labels(gpkg: Path, count: int = 5) -> list[tuple[str, int]]:
    import sqlite3

    with closing(sqlite3.connect(gpkg)) as db, db:
        return db.execute(
            "SELECT label_1, count(*) FROM landuse_labels WHERE label_1 IS NOT NULL "
            "GROUP BY label_1 ORDER BY 2 DESC, 1 LIMIT ?",
            (count,),
        ).fetchall()


if __name__ == "__main__":
    main()
