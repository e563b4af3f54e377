"""mus:exportfigures: the study's figures as QGIS layouts, from small real outputs of the
classify, grid and ranking algorithms (tiny random-weight model, real photos)."""

from __future__ import annotations

import json
import re

import pytest
from qgis import processing
from qgis.core import (
    QgsFeature,
    QgsFeatureRequest,
    QgsGeometry,
    QgsLayoutItemLabel,
    QgsPointXY,
    QgsProcessingException,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QImage

from tests.conftest import AREZZO_PHOTOS, TINY_MODEL_CONFIG
from tests.qgis.helpers import RecordingFeedback

ALG = "mus:exportfigures"
DPI = 30  # small files: the tests check pages and sizes, not looks
# Label sets by their index in resources/labels/label_sets.json.
URBAN_ATLAS, PLANNING, ARCHITECTS, PROVINCES = 0, range(2, 7), 7, 8
# Each figure's page in millimetres: A4 landscape, or as wide as five maps side by side and as
# tall as its content (None).
PAGES_MM = {
    "planning_indicators": (2 * 10 + 5 * 76 + 4 * 4, None),
    "land_use": (297, 210),
    "architects": (297, 210),
    "ranking": (297, None),
}
LICENCE = "CC BY-SA 4.0"


def survey_points() -> QgsVectorLayer:
    """Six photo points some 40 m apart, as Fetch panoramas writes them."""
    layer = QgsVectorLayer(
        "Point?crs=EPSG:4326&field=image_paths:string&field=source:string"
        "&field=licence:string&field=bearing:double&field=creator:string",
        "points",
        "memory",
    )
    features = []
    for index, photo in enumerate(AREZZO_PHOTOS[:6]):
        feature = QgsFeature(layer.fields())
        x, y = 11.880 + (index % 3) * 5e-4, 43.467 + (index // 3) * 4e-4
        feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(x, y)))
        feature.setAttributes([str(photo), "mapillary", LICENCE, 0.0, "ana"])
        features.append(feature)
    assert layer.dataProvider().addFeatures(features)[0]
    return layer


@pytest.fixture(scope="session")
def study(mus_provider, tiny_checkpoint, tmp_path_factory):
    """Classified layers (land use, five planning indicators, architects, provinces), the land
    use's grid and a ranking, as files, made by the plugin's own algorithms."""
    folder = tmp_path_factory.mktemp("study")
    model = {
        "MODEL": str(TINY_MODEL_CONFIG),
        "CHECKPOINT": str(tiny_checkpoint),
        "DEVICE": 1,
        "CACHE_FOLDER": str(folder / "cache"),
    }
    points = survey_points()

    def classify(label_set: int, name: str) -> str:
        path = str(folder / f"{name}.gpkg")
        processing.run(
            "mus:classifyclip",
            {"INPUT": points, "LABEL_SET": label_set, **model, "OUTPUT": path},
        )
        return path

    layers = {
        "landuse": classify(URBAN_ATLAS, "landuse"),
        "planning": [classify(index, f"planning_{index}") for index in PLANNING],
        "architects": classify(ARCHITECTS, "architects"),
        "provinces": classify(PROVINCES, "provinces"),
    }
    layers["grid"] = str(folder / "grid.gpkg")
    processing.run(
        "mus:resampletogrid",
        {"INPUT": layers["landuse"], "CELL_SIZE": 50, "LABEL_SET": 1, "OUTPUT": layers["grid"]},
    )
    layers["ranking"] = str(folder / "ranking.csv")
    processing.run(
        "mus:ranklabels",
        {
            "INPUTS": [layers["provinces"], layers["landuse"]],
            "TARGETS": "Arezzo",
            "OUTPUT": layers["ranking"],
        },
    )
    streets = QgsVectorLayer("LineString?crs=EPSG:4326", "streets", "memory")
    line = QgsFeature()
    line.setGeometry(QgsGeometry.fromWkt("LINESTRING(11.879 43.4672, 11.883 43.4672)"))
    assert streets.dataProvider().addFeatures([line])[0]
    layers["streets"] = streets
    return layers


@pytest.fixture(scope="session")
def exported(study, tmp_path_factory):
    folder = tmp_path_factory.mktemp("figures")
    feedback = RecordingFeedback()
    result = processing.run(
        ALG,
        {
            "PLANNING": study["planning"],
            "LANDUSE": study["landuse"],
            "GRID": study["grid"],
            "ARCHITECTS": study["architects"],
            "RANKING": study["ranking"],
            "STREETS": study["streets"],
            "DPI": DPI,
            "OUTPUT_FOLDER": str(folder),
        },
        feedback=feedback,
    )
    return result, folder, feedback


def pdf_pages(path) -> int:
    """Pages of a PDF: its objects of type Page (an incremental update, as QGIS's
    georeferencing writes, repeats an object under the same number)."""
    objects = re.findall(rb"(\d+) 0 obj(.*?)endobj", path.read_bytes(), re.DOTALL)
    return len({number for number, body in objects if re.search(rb"/Type\s*/Page(?!s)", body)})


def pdf_page_mm(path) -> tuple[float, float]:
    box = re.search(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)", path.read_bytes())
    return float(box[1]) / 72 * 25.4, float(box[2]) / 72 * 25.4


def first_labels(path) -> set[str]:
    layer = QgsVectorLayer(path, "l", "ogr")
    return {f["label_1"] for f in layer.getFeatures() if f["label_1"]}


def test_every_figure_is_written_as_png_and_pdf(exported):
    result, folder, _ = exported
    assert result["FIGURES"] == 4
    for name, (width_mm, height_mm) in PAGES_MM.items():
        png, pdf = folder / f"{name}.png", folder / f"{name}.pdf"
        assert str(png) in result["FILES"].split(";") and str(pdf) in result["FILES"]
        assert pdf_pages(pdf) == 1, name
        page_width, page_height = pdf_page_mm(pdf)
        assert page_width == pytest.approx(width_mm, abs=0.5), name
        if height_mm is not None:
            assert page_height == pytest.approx(height_mm, abs=0.5), name
        else:  # cut to its content: under A4's height, over a title and a map
            assert 100 < page_height < 210, name
        image = QImage(str(png))
        # The page at the DPI asked for (the PDF's points round the millimetres a little).
        assert abs(image.width() - page_width / 25.4 * DPI) <= 1, name
        assert abs(image.height() - page_height / 25.4 * DPI) <= 1, name
        # Something was drawn: not one colour across the page.
        colours = {image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, 40, 3)}
        assert len(colours) > 2, name


def test_legends_list_the_classes_present(study):
    from mus_qgis.processing.figures import (
        FigureInputs,
        landuse_figure,
        legend_texts,
        planning_figure,
    )
    from mus_qgis.shared.labels import builtin_label_set

    layer = QgsVectorLayer(study["landuse"], "land use", "ogr")
    figure = landuse_figure(FigureInputs(landuse=layer, grid=QgsVectorLayer(study["grid"])))
    texts = legend_texts(figure.legends[0])
    codes = {label.text: label.code for label in builtin_label_set("urban_atlas_2018").labels}
    present = first_labels(study["landuse"])
    assert {text for text in texts if "filled" not in text} == {
        f"{codes[label]} {label}" for label in present
    }, texts  # the points' classes and the grid's (which come from the points)
    assert all(text.endswith("(filled)") for text in texts if "filled" in text)
    grid_only = landuse_figure(FigureInputs(grid=QgsVectorLayer(study["grid"])))
    grid_labels = {f["label"] for f in QgsVectorLayer(study["grid"]).getFeatures()}
    shown = {
        text.split(" ", 1)[1].removesuffix(" (filled)")
        for text in legend_texts(grid_only.legends[0])
    }
    assert shown == grid_labels

    planning = [QgsVectorLayer(path, "p", "ogr") for path in study["planning"]]
    figure = planning_figure(FigureInputs(planning=planning))
    assert len(figure.legends) == 5
    for legend, path in zip(figure.legends, study["planning"], strict=True):
        shown = {text.split(" ", 1)[1] for text in legend_texts(legend)}  # "code label"
        assert shown == first_labels(path)


def test_architects_most_frequent_in_black_and_a_bar_per_architect(study):
    from collections import Counter

    from mus_qgis.processing.figures import FigureInputs, architects_figure, legend_texts

    layer = QgsVectorLayer(study["architects"], "architects", "ogr")
    counts = Counter(f["label_1"] for f in layer.getFeatures())
    top = max(sorted(counts), key=lambda name: counts[name])
    figure = architects_figure(FigureInputs(architects=layer))
    texts = legend_texts(figure.legends[0])
    assert texts[0] == f"{top} ({counts[top]})"
    renderer = figure.project.mapLayersByName("Most probable architect")[0].renderer()
    assert renderer.categories()[0].symbol().color().name() == "#000000"
    labels = [i.text() for i in figure.layout.items() if isinstance(i, QgsLayoutItemLabel)]
    for name, count in counts.items():  # one bar per architect, with its count
        assert name in labels and any(text.startswith(f"{count} (") for text in labels)


def test_targets_in_black_and_attribution(exported, study):
    from mus_qgis.processing.figures import FigureInputs, ranking_figure

    figure = ranking_figure(
        FigureInputs(
            ranking=QgsVectorLayer(study["ranking"], "ranking", "ogr"),
            landuse=QgsVectorLayer(study["landuse"], "land use", "ogr"),
            streets=study["streets"],
        )
    )
    labels = [i.text() for i in figure.layout.items() if isinstance(i, QgsLayoutItemLabel)]
    assert any("Arezzo" in text and text.endswith("Arezzo") for text in labels)
    # The imagery credited as its licence asks: source, creators, licence and its page.
    credit = re.compile(rf"Mapillary: \d+ images by ana, {LICENCE} \(https://creativecommons")
    assert any(credit.search(text) and "OpenStreetMap" in text for text in labels)
    assert not any("RANDOM WEIGHTS" in text for text in labels)  # a weights file was given


def test_random_weights_are_said_under_the_title(study):
    from mus_qgis.processing.figures import FigureInputs, landuse_figure

    layer = QgsVectorLayer(study["landuse"], "land use", "ogr").materialize(QgsFeatureRequest())
    settings = {"label_set": "urban_atlas_2018", "model": "ViT-B-32", "untrained": True}
    layer.setCustomProperty("mus_qgis/classification", json.dumps(settings))
    figure = landuse_figure(FigureInputs(landuse=layer))
    labels = [i.text() for i in figure.layout.items() if isinstance(i, QgsLayoutItemLabel)]
    assert any(text.startswith("RANDOM WEIGHTS") for text in labels)
    assert any("random (untrained) weights" in text for text in labels)


def test_a_figure_without_its_layers_is_skipped_and_said(study, tmp_path):
    feedback = RecordingFeedback()
    result = processing.run(
        ALG,
        {"RANKING": study["ranking"], "DPI": DPI, "OUTPUT_FOLDER": str(tmp_path / "new")},
        feedback=feedback,
    )
    assert result["FIGURES"] == 1 and (tmp_path / "new" / "ranking.png").exists()
    assert "Figure 'architects' skipped: no architects layer was given." in feedback.lines
    assert not (tmp_path / "new" / "architects.png").exists()
    unclassified = QgsVectorLayer("Point?crs=EPSG:4326&field=name:string", "bare", "memory")
    feedback = RecordingFeedback()
    processing.run(
        ALG,
        {"ARCHITECTS": unclassified, "DPI": DPI, "OUTPUT_FOLDER": str(tmp_path)},
        feedback=feedback,
    )
    assert any("bare has no label_1 field" in line for line in feedback.lines)


def test_nothing_to_draw_is_refused(mus_provider, tmp_path):
    with pytest.raises(QgsProcessingException, match="Nothing to draw"):
        processing.run(ALG, {"OUTPUT_FOLDER": str(tmp_path)})
