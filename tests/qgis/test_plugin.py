"""The plugin as QGIS loads it: light start-up, the zip, qgis_process, the Graphical Modeler."""

from __future__ import annotations

import configparser
import gc
import json
import os
import subprocess
import sys
import weakref
import zipfile
from pathlib import Path

import pytest
from qgis.core import (
    QgsApplication,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingParameterFile,
)

from scripts.package import build_zip
from tests.conftest import ROME_OSM, ROOT, SHARED_DATA

HEAVY = ("osmnx", "torch", "open_clip", "geopandas", "networkx", "osmium", "shapely", "pyproj")
HEAVY += ("diffusers", "transformers")


def test_plugin_start_up_imports_nothing_heavy():
    code = (
        "import sys\n"
        "from qgis.core import QgsApplication\n"
        "app = QgsApplication([], False); app.initQgis()\n"
        "import mus_qgis\n"
        "plugin = mus_qgis.classFactory(None)\n"
        "plugin.initProcessing()\n"
        "provider = QgsApplication.processingRegistry().providerById('mus')\n"
        "ids = [a.id() for a in provider.algorithms()]\n"
        "print('ALGS', ids)\n"
        f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules])\n"
        "plugin.unload()\n"
        "print('UNLOADED', QgsApplication.processingRegistry().providerById('mus') is None)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    ).stdout
    algorithms = [
        "classifyclip",
        "compareurbanatlas",
        "downloadweights",
        "dreamstreets",
        "enginestatus",
        "exportfigures",
        "fetchpanoramas",
        "labelboundaries",
        "labelchange",
        "labelclusters",
        "labelperiods",
        "mainstreamimage",
        "pipeline",
        "ranklabels",
        "rerunstudy",
        "resampletogrid",
        "samplestreetcentroids",
        "setupengine",
        "surveyimagery",
        "trainprobe",
    ]
    assert f"ALGS {[f'mus:{name}' for name in algorithms]}" in out
    assert "HEAVY []" in out
    assert "UNLOADED True" in out


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory) -> Path:
    return build_zip(tmp_path_factory.mktemp("dist") / "mus_qgis.zip")


def test_zip_has_the_layout_qgis_expects(plugin_zip):
    with zipfile.ZipFile(plugin_zip) as archive:
        names = set(archive.namelist())
        metadata = archive.read("mus_qgis/metadata.txt").decode()
    assert {"mus_qgis/__init__.py", "mus_qgis/metadata.txt", "mus_qgis/LICENSE"} <= names
    assert "mus_qgis/resources/styles/street_centroids.qml" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert {n.split("/")[0] for n in names} == {"mus_qgis"}
    parser = configparser.ConfigParser()
    parser.read_string(metadata)
    general = parser["general"]
    for key in (
        "name",
        "qgisMinimumVersion",
        "description",
        "about",
        "version",
        "author",
        "email",
        "repository",
        "tracker",
        "tags",
        "icon",
    ):
        assert general.get(key), key
    assert general["qgisMinimumVersion"] == "3.22"
    assert general["hasProcessingProvider"] == "yes"
    assert f"mus_qgis/{general['icon']}" in names


def _qgis_process(profile: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "QGIS_CUSTOM_CONFIG_PATH": str(profile),
    }
    env.pop("QGIS_PLUGINPATH", None)
    return subprocess.run(
        ["qgis_process.bin", *args],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
    )


def test_zip_installed_in_a_fresh_profile_runs_from_qgis_process(plugin_zip, tmp_path):
    profile = tmp_path / "config"
    plugins = profile / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(plugin_zip) as archive:
        archive.extractall(plugins)
    enabled = _qgis_process(profile, "plugins", "enable", "mus_qgis")
    assert enabled.returncode == 0, enabled.stderr
    listed = _qgis_process(profile, "list")
    assert "mus:samplestreetcentroids" in listed.stdout
    assert "mus:classifyclip" in listed.stdout
    assert "mus:fetchpanoramas" in listed.stdout
    output = tmp_path / "pbf.gpkg"
    ran = _qgis_process(
        profile,
        "run",
        "mus:samplestreetcentroids",
        "--",
        f"OSM_FILE={SHARED_DATA / 'osm' / 'rome_castro_pretorio.osm.pbf'}",
        "CLASSES=3,0",
        "MERGE_DISTANCE=20",
        f"OUTPUT={output}",
    )
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    assert "LOCATIONS:" in ran.stdout
    assert output.exists()


def model_output_key(model, child_id: str, output_name: str) -> str:
    """The parameter name of a model output: "child:name" on QGIS 3.22 (and for models in the
    older format), a name made from the output's description on 3.40, which its metadata gives."""
    for definition in model.destinationParameterDefinitions():
        metadata = definition.metadata()
        if (metadata.get("_modelChildId"), metadata.get("_modelChildOutputName")) == (
            child_id,
            output_name,
        ):
            return definition.name()
    return f"{child_id}:{output_name}"


def test_runs_inside_a_graphical_model(mus_provider):
    model = QgsProcessingModelAlgorithm("sample rome", "mus tests")
    model.addModelParameter(
        QgsProcessingParameterFile("osm", "OSM file"),
        QgsProcessingModelParameter("osm"),
    )
    child = QgsProcessingModelChildAlgorithm("mus:samplestreetcentroids")
    child.setChildId("sample")
    child.addParameterSources(
        "OSM_FILE", [QgsProcessingModelChildParameterSource.fromModelParameter("osm")]
    )
    child.addParameterSources(
        "MERGE_DISTANCE", [QgsProcessingModelChildParameterSource.fromStaticValue(20)]
    )
    output = QgsProcessingModelOutput("points", "points")
    output.setChildOutputName("OUTPUT")
    child.setModelOutputs({"points": output})
    model.addChildAlgorithm(child)
    context = QgsProcessingContext()
    key = model_output_key(model, "sample", "points")
    results, ok = model.run(
        {"osm": str(ROME_OSM), key: QgsProcessing.TEMPORARY_OUTPUT},
        context,
        QgsProcessingFeedback(),
    )
    assert ok
    layer = context.getMapLayer(results[key])
    assert layer.featureCount() == 372
    assert QgsApplication.processingRegistry().algorithmById("mus:samplestreetcentroids")


def test_a_failed_run_lets_go_of_its_layers(mus_provider, tmp_path):
    """QGIS keeps a QgsProcessingException that a Python algorithm raises, and every frame of the
    run with it (and the frames that called processing.run): the layers in them stayed open until
    the process ended. Once the run has returned, the plugin lets go of them (here asked at once;
    otherwise at the next run or when the provider is unloaded)."""
    from processing import run
    from qgis.core import QgsProcessingException, QgsVectorLayer

    from mus_qgis.processing.base import release_failed_runs
    from tests.qgis.helpers import photo_points

    path = str(tmp_path / "plain.gpkg")
    run("native:savefeatures", {"INPUT": photo_points(tmp_path), "OUTPUT": path})
    layer = QgsVectorLayer(path, "plain", "ogr")
    kept = weakref.ref(layer)
    with pytest.raises(QgsProcessingException, match="carries no CLIP-classify run settings"):
        run("mus:trainprobe", {"INPUT": layer, "OUTPUT": "memory:"})
    del layer
    release_failed_runs()
    gc.collect()
    assert kept() is None, "the failed run's layer is still open"


def run_demo(environment: dict) -> subprocess.CompletedProcess:
    from scripts.package import stage

    stage(ROOT / "build" / "plugins")
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        capture_output=True,
        text=True,
        encoding="utf-8",
        # About 20 qgis_process steps, each starting QGIS and the engine's worker: over 10
        # minutes on a fresh 2-core machine running the other suite beside it.
        timeout=1800,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen", **environment},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_demo_writes_a_styled_geopackage_and_project(tmp_path):
    from qgis.core import QgsCategorizedSymbolRenderer, QgsProject, QgsVectorLayer

    from scripts.demo import SPATIAL_LAYERS

    # Its own output and cache: the test neither overwrites the user's demo_output nor fills
    # ~/.cache/mus_qgis, and nothing an earlier run cached makes it pass.
    output = tmp_path / "demo"
    done = run_demo({"MUS_DEMO_OUTPUT": str(output), "MUS_QGIS_CACHE": str(tmp_path / "cache")})
    assert "(9 made this run" in done.stdout  # every dream made afresh, none from a cache
    assert "locations after merging points closer than 20 m: 372" in done.stdout
    assert "Points with imagery: 9, without: 0" in done.stdout
    assert "Street photos classified: 9, without a usable image: 0" in done.stdout
    assert (
        "UNTRAINED" in done.stdout
        or "pretrained on" in done.stdout
        or "weights from" in (done.stdout)
    )
    assert "Among the 110 Italian provinces, Arezzo ranks" in done.stdout
    assert "Among the 44 European capitals, Rome + Vatican City ranks" in done.stdout
    assert "Among the 244 world capitals, Rome + Vatican City ranks" in done.stdout
    # The reading of the city (scripts/demo_readings.py), said with what it does not mean.
    assert "Label clusters (join counts over each photo's 3 nearest)" in done.stdout
    assert "Discontinuities of the land-use grid:" in done.stdout
    assert "Expected period from the Italian architects' years: mean" in done.stdout
    assert "label_user set on 8 points BY THIS SCRIPT" in done.stdout
    assert "Probe trained on 8 corrected points: cross-validated accuracy" in done.stdout
    assert "With random weights these accuracies mean nothing" in done.stdout
    gpkg = output / "rome_monti.gpkg"
    centroids = QgsVectorLayer(f"{gpkg}|layername=street_centroids", "demo", "ogr")
    assert centroids.isValid() and centroids.featureCount() == 372
    photos = QgsVectorLayer(f"{gpkg}|layername=landuse_labels", "photos", "ogr")
    assert all(f["clip_status"] == "ok" and f["label_1"] for f in photos.getFeatures())
    assert "label_set_hash" in photos.metadata().abstract()
    assert "<table>" in (output / "label_ranking.html").read_text(encoding="utf-8")
    # Every step recorded itself in the study manifest, for mus:rerunstudy.
    study = json.loads((output / "mus_study.json").read_text(encoding="utf-8"))
    recorded = [run["algorithm"] for run in study["runs"]]
    for algorithm in ("samplestreetcentroids", "fetchpanoramas", "classifyclip", "ranklabels"):
        assert f"mus:{algorithm}" in recorded
    # No Urban Atlas offline covers Rome: the demo says so instead of an empty comparison.
    assert "Agreement with Urban Atlas: not computed" in done.stdout
    # The dreams, offline: a tiny random pipeline, and the demo says its pictures are noise.
    assert (
        "its pictures are NOISE" in done.stdout and "Dreams: 9 street photos dreamed" in done.stdout
    )
    dreams = QgsVectorLayer(f"{gpkg}|layername=dreams", "dreams", "ogr")
    assert all(f["dream_status"] == "ok" for f in dreams.getFeatures())
    assert "Most mainstream" in (output / "mainstream_image.html").read_text(encoding="utf-8")
    project = QgsProject()
    assert project.read(str(output / "rome_monti.qgz"))
    layers = {layer.name(): layer for layer in project.mapLayers().values()}
    from scripts.demo import (
        BASEMAP,
        COMPARISON_LAYERS,
        IMAGE_GROUP,
        NETWORK_LAYER,
        RANDOM_WEIGHTS,
        READING_GROUP,
        READING_LAYERS,
        SHOWN_READINGS,
        STREET_GROUP,
        group_names,
    )

    expected = {title for name, title in SPATIAL_LAYERS.items() if name not in COMPARISON_LAYERS}
    readings = set(READING_LAYERS.values())
    assert set(layers) == expected | readings | {NETWORK_LAYER, BASEMAP}
    for name, loaded in layers.items():
        assert loaded.isValid(), name
        if name in expected:
            assert isinstance(loaded.renderer(), QgsCategorizedSymbolRenderer), name
    # One coherent study: the basemap's CRS, a group, a bookmark and a map theme per study, the
    # streets under the points, opening on the street images; random weights said up front.
    assert project.crs().authid() == "EPSG:3857"
    names = group_names(None, untrained=True)
    # Where each group's data lie, and that its labels are random, in names that fit the panel.
    assert names == {
        STREET_GROUP: "Rome (Monti): streets",
        IMAGE_GROUP: "Arezzo: RANDOM labels",
        READING_GROUP: "Arezzo: RANDOM readings",
    }
    root = project.layerTreeRoot()
    assert [child.name() for child in root.children()] == [*names.values(), BASEMAP]
    assert all(len(name) <= 27 for name in names.values())
    # It opens on the photos: the streets, in another city, wait for their theme.
    streets, images, readings_group = root.children()[:3]
    assert not streets.isVisible() and images.isVisible() and readings_group.isVisible()
    # Every reading styled, and only the boundaries drawn on opening.
    reading_nodes = readings_group.children()
    assert {node.name(): node.isVisible() for node in reading_nodes} == {
        title: name in SHOWN_READINGS for name, title in READING_LAYERS.items()
    }
    # The land-use labels on their grid; the provinces and the bare imagery points switched off.
    image_nodes = {node.name(): node.isVisible() for node in images.children()}
    assert image_nodes == {
        SPATIAL_LAYERS[name]: name in ("landuse_labels", "label_grid")
        for name in ("imagery", "landuse_labels", "province_labels", "label_grid")
    }
    # Legends folded but the land-use labels', so the layers' names fit the panel.
    expanded = [node.name() for node in root.findLayers() if node.isExpanded()]
    assert expanded == [SPATIAL_LAYERS["landuse_labels"]]
    lines = READING_LAYERS["label_boundaries"]  # one dark line, wider where stronger
    assert all(layers[title].renderer().type() != "singleSymbol" for title in readings - {lines})
    assert [node.name() for node in streets.children()][-1] == NETWORK_LAYER
    bookmarks = {b.name(): b.extent() for b in project.bookmarkManager().bookmarks()}
    assert set(bookmarks) == set(names.values())
    themes = project.mapThemeCollection()
    assert set(themes.mapThemes()) == set(names.values())
    # One study area per theme: the streets' theme shows no image, the images' theme no street;
    # the readings' theme one reading.
    shown = {
        name: {layer.name() for layer in themes.mapThemeVisibleLayers(name)} - {BASEMAP}
        for name in names.values()
    }
    assert not shown[names[STREET_GROUP]] & shown[names[IMAGE_GROUP]]
    assert shown[names[READING_GROUP]] == {READING_LAYERS[name] for name in SHOWN_READINGS}
    opening = project.viewSettings().defaultViewExtent()
    assert opening.crs().authid() == "EPSG:3857" and opening == bookmarks[names[IMAGE_GROUP]]
    street_extent = bookmarks[names[STREET_GROUP]]
    assert not street_extent.intersects(opening)  # Rome and Arezzo: two areas, two themes
    assert RANDOM_WEIGHTS in project.title()
    grid = layers[SPATIAL_LAYERS["label_grid"]]
    from mus_qgis.processing.resample_to_grid import GRID_CATEGORY

    assert grid.renderer().classAttribute() == GRID_CATEGORY and grid.featureCount() > 9
    assert layers[SPATIAL_LAYERS["landuse_labels"]].renderer().classAttribute() == "label_1"


def test_demo_online_studies_a_place_through_its_services(tmp_path, tiny_checkpoint):
    """The demo's online path (place name, Overpass, Mapillary) against fakes of those servers."""
    import re

    from qgis.core import QgsProject, QgsVectorLayer

    from tests.conftest import TINY_MODEL_CONFIG
    from tests.fakes.imagery_services import GOOD_TOKEN, FakeImageryServices, grid_images
    from tests.fakes.osm_services import KNOWN_PLACE, FakeOsmServices

    osm = FakeOsmServices().start()
    output = tmp_path / "demo"
    # 15 × 15 panoramas 40 m apart over part of Monti: some street points have one, some not.
    with FakeImageryServices(grid_images(225, lon0=12.490, lat0=41.890)) as imagery:
        try:
            done = run_demo(
                {
                    "MUS_MAPILLARY_TOKEN": GOOD_TOKEN,
                    "MUS_DEMO_PLACE": KNOWN_PLACE,
                    "MUS_OVERPASS_URL": osm.overpass_url,
                    "MUS_NOMINATIM_URL": osm.nominatim_url,
                    "MUS_IMAGERY_URL": imagery.mapillary_url,
                    "MUS_CLIP_MODEL": str(TINY_MODEL_CONFIG),
                    "MUS_CLIP_CHECKPOINT": str(tiny_checkpoint),
                    "MUS_QGIS_CACHE": str(tmp_path / "cache"),
                    "MUS_DEMO_OUTPUT": str(output),
                }
            )
        finally:
            osm.stop()
        downloaded = set(imagery.downloads)
    assert "Fetching imagery from Mapillary" in done.stdout
    assert "Dreams: skipped online" in done.stdout
    assert "locations after merging points closer than 20 m: 372" in done.stdout
    with_imagery, without = map(
        int, re.search(r"with imagery: (\d+), without: (\d+)", done.stdout).groups()
    )
    assert with_imagery > 0 and without > 0 and with_imagery + without == 372
    assert {path for _, path, _ in osm.requests} >= {"/api/interpreter", "/nominatim/search"}
    gpkg = output / "rome_monti.gpkg"
    fetched = QgsVectorLayer(f"{gpkg}|layername=imagery", "imagery", "ogr")
    paths = [
        p for f in fetched.getFeatures() if f["image_paths"] for p in f["image_paths"].split(";")
    ]
    assert paths and all(Path(p).is_file() and str(output / "imagery") in p for p in paths)
    image_ids = {f["image_id"] for f in fetched.getFeatures() if f["image_id"]}
    assert image_ids == {image_id for image_id, _ in downloaded}
    assert "weights from" in done.stdout
    project = QgsProject()
    assert project.read(str(output / "rome_monti.qgz"))
    assert all(layer.isValid() for layer in project.mapLayers().values())
    # The token is a secret: not in what the demo printed nor in anything it wrote.
    assert GOOD_TOKEN not in done.stdout + done.stderr
    for written in output.rglob("*"):
        if written.is_file() and written.suffix in {".gpkg", ".qgz", ".html", ".csv", ".json"}:
            assert GOOD_TOKEN.encode() not in written.read_bytes(), written


def test_readme_qgis_process_commands_name_real_parameters(mus_provider):
    """Every `qgis_process run mus:… -- NAME=value` in the README names a real parameter."""
    import re
    import shlex

    readme = (ROOT / "README.md").read_text(encoding="utf-8").replace("\\\n", " ")
    # A command runs to the end of its inline code span or code block (or the next command).
    pieces = re.split(r"qgis_process(?:\.bin)? run (mus:\w+) -- ", readme)[1:]
    commands = [(pieces[i], pieces[i + 1].split("`")[0]) for i in range(0, len(pieces), 2)]
    assert {algorithm for algorithm, _ in commands} >= {
        "mus:samplestreetcentroids",
        "mus:fetchpanoramas",
        "mus:classifyclip",
        "mus:resampletogrid",
        "mus:ranklabels",
        "mus:compareurbanatlas",
        "mus:exportfigures",
        "mus:pipeline",
    }
    for algorithm_id, arguments in commands:
        registered = QgsApplication.processingRegistry().algorithmById(algorithm_id)
        assert registered is not None, algorithm_id
        # A fresh instance, as qgis_process makes: a model's outputs are parameters only then.
        algorithm = registered.create()
        known = {definition.name() for definition in algorithm.parameterDefinitions()}
        named = {word.split("=", 1)[0] for word in shlex.split(arguments, comments=True)}
        assert named <= known, (algorithm_id, named - known)


def test_every_picture_the_readme_shows_is_in_the_repository():
    """The README's pictures are files git keeps (scripts/screenshots.py makes them)."""
    import re
    import subprocess

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", readme)
    assert len(pictures) >= 5
    tracked = set(
        subprocess.run(
            ["git", "ls-files", "docs/screenshots"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            encoding="utf-8",
        ).stdout.split()
    )
    assert set(pictures) <= tracked, set(pictures) - tracked
