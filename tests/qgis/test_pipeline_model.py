"""The shipped pipeline model: listed by the provider, runs study area → grid headless."""

from __future__ import annotations

import csv

from qgis import processing
from qgis.core import QgsApplication, QgsProcessing, QgsProcessingContext, QgsProcessingFeedback

from tests.conftest import IMAGES, TINY_MODEL_CONFIG

ALG = "mus:pipeline"


def streets_through_the_photos(write_osm):
    """A small OSM file whose residential streets pass the Arezzo photos' positions."""
    with (IMAGES / "image_index.csv").open(encoding="utf-8") as handle:
        spots = [
            (float(r["lon"]), float(r["lat"]))
            for r in csv.DictReader(handle)
            if "arezzo" in r["path"]
        ]
    nodes, ways = {}, []
    for index, (lon, lat) in enumerate(spots):
        west, east = 2 * index + 1, 2 * index + 2
        nodes[west] = (lon - 0.0004, lat)
        nodes[east] = (lon + 0.0004, lat)
        ways.append((100 + index, [west, east], {"highway": "residential"}))
    return write_osm(nodes, ways)


def test_pipeline_model_is_listed_and_runs_end_to_end(
    mus_provider, write_osm, tmp_path, tiny_checkpoint, tiny_diffusion
):
    algorithm = QgsApplication.processingRegistry().algorithmById(ALG)
    assert algorithm is not None and algorithm.group() == "5 · Pipeline"
    context = QgsProcessingContext()
    result = processing.run(
        ALG,
        {
            "osm_file": str(streets_through_the_photos(write_osm)),
            "source": 3,
            "photo_folder": str(IMAGES),
            "radius": 60,
            "label_set": 0,
            "model": str(TINY_MODEL_CONFIG),
            "pretrained": "",
            "checkpoint": str(tiny_checkpoint),
            "cell_size": 100,
            # The optional dream steps, ticked, with the tiny random pipeline at its smallest.
            "dream": True,
            "mainstream": True,
            "dream_model": str(tiny_diffusion),
            "dream_size": 64,
            "city": "Arezzo",
            "classify:Classified points": QgsProcessing.TEMPORARY_OUTPUT,
            "grid:Label grid": QgsProcessing.TEMPORARY_OUTPUT,
            "dream:Dreamed points": QgsProcessing.TEMPORARY_OUTPUT,
            "mainstream:Mainstream points": QgsProcessing.TEMPORARY_OUTPUT,
            "mainstream:Mainstream report": str(tmp_path / "mainstream.html"),
            "survey:Imagery survey report": str(tmp_path / "survey.html"),
        },
        context=context,
        feedback=QgsProcessingFeedback(),
    )
    points, grid = result["classify:Classified points"], result["grid:Label grid"]
    statuses = [f["clip_status"] for f in points.getFeatures()]
    assert statuses and statuses.count("ok") >= 5
    assert all(f["fetch_status"] in ("ok", "no imagery") for f in points.getFeatures())
    cells = list(grid.getFeatures())
    assert cells and all(f["label"] for f in cells)
    dreams = result["dream:Dreamed points"]
    dreamed = [f for f in dreams.getFeatures() if f["dream_status"] == "ok"]
    assert len(dreamed) == statuses.count("ok")
    assert all(f["dream_prompt"] == "a street in Arezzo" for f in dreamed)
    mainstream = result["mainstream:Mainstream points"]
    assert sorted(f["ms_rank"] for f in mainstream.getFeatures() if f["ms_rank"]) == list(
        range(1, statuses.count("ok") + 1)
    )
    assert "a street in Arezzo" in (tmp_path / "mainstream.html").read_text(encoding="utf-8")
    # The survey beside the fetch: the points it found no imagery for, the fetch found none.
    survey = (tmp_path / "survey.html").read_text(encoding="utf-8")
    gaps = sum(1 for f in points.getFeatures() if f["fetch_status"] == "no imagery")
    assert f"{gaps} points have imagery from none" in survey
    assert "<td>Local geotagged photos</td>" in survey


def test_pipeline_model_runs_from_qgis_process(write_osm, tmp_path, tiny_checkpoint):
    import json
    import os
    import subprocess
    import sys

    from scripts.package import stage
    from tests.conftest import ROOT

    plugins = tmp_path / "plugins"
    stage(plugins)
    site = f"{sys.prefix}/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "QGIS_PLUGINPATH": str(plugins),
        "QGIS_CUSTOM_CONFIG_PATH": str(tmp_path / "profile"),
        "PYTHONPATH": site,
    }

    def qgis_process(*args):
        done = subprocess.run(
            ["qgis_process.bin", *args],
            env=env,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=300,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done.stdout

    qgis_process("plugins", "enable", "mus_qgis")
    out = qgis_process(
        "--json",
        "run",
        ALG,
        "--",
        f"osm_file={streets_through_the_photos(write_osm)}",
        "source=3",
        f"photo_folder={IMAGES}",
        "radius=60",
        "label_set=0",
        f"model={TINY_MODEL_CONFIG}",
        "pretrained=",
        f"checkpoint={tiny_checkpoint}",
        "cell_size=100",
        f"classify:Classified points={tmp_path / 'points.gpkg'}",
        f"grid:Label grid={tmp_path / 'grid.gpkg'}",
    )
    results = json.loads(out[out.index("{") :])["results"]
    assert results["grid:Label grid"].startswith(str(tmp_path / "grid.gpkg"))
    from qgis.core import QgsVectorLayer

    grid = QgsVectorLayer(str(tmp_path / "grid.gpkg"), "grid", "ogr")
    assert grid.isValid() and grid.featureCount() > 0


def test_the_model_offers_every_imagery_source_in_the_providers_order(mus_provider):
    """Built from the registry: a source added since the model was built would be missing."""
    from mus_qgis.engine.imagery.sources import imagery_sources

    algorithm = QgsApplication.processingRegistry().algorithmById(ALG).create()
    source = algorithm.parameterDefinition("source")
    assert source.options() == [cls.title for cls in imagery_sources().values()]


def test_the_model_validates_and_reads_left_to_right_in_the_modeler(mus_provider):
    """As the Graphical Modeler shows it: valid, no component on another, stages in order."""
    from qgis.core import QgsProcessingModelAlgorithm

    from tests.conftest import ROOT

    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(ROOT / "resources" / "models" / "mus_pipeline.model3"))
    assert model.validate() == (True, [])
    # Left to right, and top to bottom within a column.
    children = sorted(
        model.childAlgorithms().values(), key=lambda c: (c.position().x(), c.position().y())
    )
    ids = [c.childId() for c in children]
    assert ids == [
        "sample", "fetch", "survey", "classify", "grid", "branch", "dream", "mainstream"
    ]  # fmt: skip
    assert [c.description() for c in children] == [
        "1 · Sample street centroids",
        "2 · Fetch panoramas",
        "2 · Survey imagery",
        "3 · CLIP-classify street images",
        "4 · Resample labels to a grid",
        "5 · Dreams only when their box is ticked",
        "6 · Dream the streets",
        "6 · Mainstream image of a city",
    ]
    # The survey asks the same sources as the fetch, for the points the sample made.
    survey = model.childAlgorithm("survey").parameterSources()
    assert survey["SOURCES"][0].parameterName() == "source"
    assert survey["INPUT"][0].outputChildId() == "sample"
    fetch = model.childAlgorithm("fetch").parameterSources()
    assert fetch["TARGET_DATE"][0].parameterName() == "target_date"
    # The dream steps hang on the branch's condition of the same name: unticked, skipped.
    for child_id in ("dream", "mainstream"):
        (dependency,) = model.childAlgorithm(child_id).dependencies()
        assert (dependency.childId, dependency.conditionalBranch) == ("branch", child_id)
    conditions = model.childAlgorithm("branch").configuration()["conditions"]
    assert {(c["name"], c["expression"]) for c in conditions} == {
        ("dream", "@dream"),
        ("mainstream", "@mainstream"),
    }
    assert not model.parameterDefinition("dream").defaultValue()
    assert not model.parameterDefinition("mainstream").defaultValue()
    components = [*model.childAlgorithms().values(), *model.parameterComponents().values()]
    components += [o for c in model.childAlgorithms().values() for o in c.modelOutputs().values()]
    places = [(c.position().x(), c.position().y()) for c in components]
    assert len(set(places)) == len(places) == 8 + 17 + 6
    names = [d.name() for d in model.parameterDefinitions() if not d.isDestination()]
    # In the order a user fills them in.
    assert names[:4] == ["osm_file", "place", "source", "target_date"]
    descriptions = [d.description() for d in model.parameterDefinitions()]
    assert descriptions[0] == "Study area: a local OpenStreetMap file"


def test_the_plugin_opens_the_pipeline_in_the_modeler_without_risking_its_copy(
    mus_provider, qgis_iface, monkeypatch
):
    from qgis.PyQt.QtCore import QSize

    from mus_qgis import classFactory

    # pytest-qgis's stand-in iface lacks the default argument QGIS's own iconSize has.
    monkeypatch.setattr(qgis_iface, "iconSize", lambda docked=False: QSize(24, 24))
    plugin = classFactory(qgis_iface)
    dialog = plugin.edit_pipeline_model()
    try:
        model = dialog.model()
        assert len(model.childAlgorithms()) == 8 and model.validate() == (True, [])
        assert model.sourceFilePath() == ""  # Save asks where: the shipped file stays as it is
    finally:
        dialog.setDirty(False)
        dialog.close()


def test_in_the_modeler_no_box_covers_another_and_every_name_fits_its_box(mus_provider):
    """As the Modeler draws the model: each component a box of its size around its position,
    the name wrapped inside it (a name taller than its box is cut there)."""
    from qgis.core import QgsProcessingModelAlgorithm
    from qgis.PyQt.QtCore import QRectF, Qt
    from qgis.PyQt.QtGui import QFont, QFontMetricsF

    from tests.conftest import ROOT

    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(ROOT / "resources" / "models" / "mus_pipeline.model3"))
    children = list(model.childAlgorithms().values())
    boxes = [(c.description(), c) for c in children]
    boxes += [
        (model.parameterDefinition(n).description(), c)
        for n, c in model.parameterComponents().items()
    ]
    boxes += [(o.name(), o) for c in children for o in c.modelOutputs().values()]
    assert len(boxes) == 8 + 17 + 6

    def rect(component) -> QRectF:
        size, centre = component.size(), component.position()
        return QRectF(
            centre.x() - size.width() / 2,
            centre.y() - size.height() / 2,
            size.width(),
            size.height(),
        )

    for i, (name, component) in enumerate(boxes):
        for other_name, other in boxes[i + 1 :]:
            assert not rect(component).intersects(rect(other)), (name, other_name)
    font = QFont()
    font.setPixelSize(12)  # about the Modeler's text, at its default zoom
    metrics = QFontMetricsF(font)
    for name, component in boxes:
        # Room for the name: the box less its icon and the buttons at its right.
        room = QRectF(0, 0, component.size().width() - 60, 1000)
        needed = metrics.boundingRect(room, int(Qt.TextFlag.TextWordWrap), name).height()
        assert needed <= component.size().height(), f"{name!r} does not fit its box"
