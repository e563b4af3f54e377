"""The street inspector, headless: its dock built in code on a real classified layer (the tiny
model over real photos and a panorama), stepping, a point without imagery, the user's label, and
the classified layer's map tip."""

from __future__ import annotations

import pytest
from pytest_qgis.utils import wait_until
from qgis.core import (
    NULL,
    QgsExpression,
    QgsExpressionContext,
    QgsExpressionContextUtils,
    QgsVectorLayer,
)
from qgis.gui import QgsMapMouseEvent
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QEvent, QPoint, Qt
from qgis.PyQt.QtGui import QKeyEvent

from mus_qgis.bridge.layer_settings import classification_settings
from mus_qgis.inspector.correction import LABEL_USER, label_choices, set_user_label
from mus_qgis.inspector.dock import ORDER_LOWEST_MARGIN, InspectorDock
from mus_qgis.inspector.map_tool import InspectorMapTool
from mus_qgis.inspector.point import read_point, step_order
from mus_qgis.processing.classify_clip import style_classified_layer
from mus_qgis.shared.labels import builtin_label_set
from tests.conftest import AREZZO_PHOTOS


@pytest.fixture(scope="session")
def classified(classified_path):
    layer = QgsVectorLayer(classified_path, "classified", "ogr")
    assert layer.isValid()
    yield layer
    sip.delete(layer)  # its GDAL dataset must close before QGIS exits (GDAL is gone then)


@pytest.fixture(scope="session")
def dock(classified):
    dock = InspectorDock()
    dock.set_layer(classified)
    wait_until(lambda: not dock.view_scores.pending(classified.id()), timeout_milliseconds=90_000)
    yield dock
    dock.stop_tasks()
    sip.delete(dock)


def fid_of(layer, pid: int) -> int:
    return next(f.id() for f in layer.getFeatures() if f["pid"] == pid)


def test_the_dock_shows_a_points_views_reading_and_sources(dock, classified):
    assert dock.view_scores.errors == {}
    settings = classification_settings(classified)
    assert settings["cache_folder"].endswith("cache") and settings["image_field"] == "image_paths"
    fid = fid_of(classified, 0)
    dock.show_point(classified, fid)
    feature = classified.getFeature(fid)
    assert "ok" in dock.status.text()
    assert dock.strip.isHidden()  # photos are their own views; the strip is for panoramas
    assert len(dock.view_texts) == 2
    # Escaped messages are read as HTML, so a user sees "view's", not "view&#x27;s".
    labels = [dock.status, *dock.view_texts]
    assert all(label.textFormat() == Qt.TextFormat.RichText for label in labels)
    details = dock.details.toPlainText()
    assert "Pooled reading" in details and feature["label_1"] in details
    assert f"{100 * feature['prob_1']:.0f} %" in details
    for fact in ("2016-05-01", "mapillary", "CC BY-SA 4.0", "ana"):
        assert fact.lower() in details.lower()
    assert "https://www.mapillary.com/app/?pKey=4711" in dock.details.toHtml()
    # Each view's own reading, from the engine: its labels are of the set, and differ by view.
    reading = dock.view_scores.readings[classified.id()][fid]
    assert reading["pooled"]["labels"][0] == feature["label_1"]
    assert reading["pooled"]["probabilities"][0] == pytest.approx(feature["prob_1"], rel=1e-4)
    texts = [label.text() for label in dock.view_texts]
    for view, text in zip(reading["views"], texts, strict=True):
        assert view["status"] == "ok" and view["labels"][0] in text
    assert texts[0] != texts[1]


def test_a_panorama_a_point_without_imagery_and_a_lost_image_say_what_they_are(dock, classified):
    dock.show_point(classified, fid_of(classified, 1))
    assert not dock.strip.isHidden() and dock.strip.pixmap().width() == 460  # whole panorama
    assert "file://" in dock.details.toHtml()  # a local photo links to its file
    assert "Open the photo file" in dock.details.toPlainText()
    dock.show_point(classified, fid_of(classified, 4))
    assert "no imagery (no imagery: none within 50 m)" in dock.status.text()
    assert dock.strip.text() == "no imagery" and not dock.strip.isHidden()
    assert dock.view_texts == []
    dock.show_point(classified, fid_of(classified, 5))
    assert "does not exist" in dock.status.text()
    assert dock.strip.text() == "no image in the cache"
    assert "no stored embedding" in dock.view_texts[0].text()


def test_stepping_follows_the_lowest_margin_or_a_chosen_field(dock, classified):
    margins = {f.id(): f["margin"] for f in classified.getFeatures()}
    order = step_order(classified)
    known = [fid for fid in order if margins[fid] not in (None, NULL)]
    assert [margins[fid] for fid in known] == sorted(margins[fid] for fid in known)
    assert order[len(known) :] == sorted(set(margins) - set(known))  # no margin: last
    dock.order_box.setCurrentIndex(dock.order_box.findText(ORDER_LOWEST_MARGIN))
    dock.point = None
    assert dock.step(1) == order[0]
    tool = InspectorMapTool(None, dock)
    for key, expected in ((Qt.Key.Key_N, order[1]), (Qt.Key.Key_Space, order[2])):
        tool.keyPressEvent(QKeyEvent(QEvent.Type.KeyPress, key, Qt.KeyboardModifier.NoModifier))
        assert dock.point.fid == expected
    tool.keyPressEvent(
        QKeyEvent(QEvent.Type.KeyPress, Qt.Key.Key_P, Qt.KeyboardModifier.NoModifier)
    )
    assert dock.point.fid == order[1]
    dock.order_box.setCurrentIndex(dock.order_box.findText("pid ↓"))
    dock.show_point(classified, fid_of(classified, 5))
    assert dock.step(1) == fid_of(classified, 4)
    assert dock.position.text() == "2 / 6"


def test_a_click_on_the_map_shows_the_nearest_point(dock, classified, qgis_canvas):
    qgis_canvas.setLayers([classified])
    qgis_canvas.setDestinationCrs(classified.crs())
    qgis_canvas.setExtent(classified.extent().buffered(0.002))
    qgis_canvas.refresh()
    tool = InspectorMapTool(qgis_canvas, dock)
    target = classified.getFeature(fid_of(classified, 2)).geometry().asPoint()
    pixel = qgis_canvas.getCoordinateTransform().transform(target)
    near = QPoint(round(pixel.x()) + 2, round(pixel.y()) + 1)
    tool.canvasReleaseEvent(
        QgsMapMouseEvent(
            qgis_canvas,
            QEvent.Type.MouseButtonRelease,
            near,
            Qt.MouseButton.LeftButton,
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
        )
    )
    assert dock.point.fid == fid_of(classified, 2)


def test_the_users_label_is_one_undoable_edit_with_the_label_sets_classes(classified_path):
    layer = QgsVectorLayer(classified_path, "to correct", "ogr")
    offered = label_choices(layer)
    assert offered == builtin_label_set("urban_atlas_2018").texts
    fid = fid_of(layer, 2)
    assert LABEL_USER not in layer.fields().names()
    set_user_label(layer, fid, "Port areas")
    assert layer.isEditable() and layer.getFeature(fid)[LABEL_USER] == "Port areas"
    assert read_point(layer, fid).label_user == "Port areas"
    set_user_label(layer, fid, "Sports and leisure facilities")
    layer.undoStack().undo()
    assert layer.getFeature(fid)[LABEL_USER] == "Port areas"
    layer.undoStack().undo()  # the first edit added the field too: both go
    assert LABEL_USER not in layer.fields().names()
    layer.undoStack().redo()
    assert layer.getFeature(fid)[LABEL_USER] == "Port areas"
    set_user_label(layer, fid, None)
    assert layer.getFeature(fid)[LABEL_USER] in (None, NULL)
    assert layer.rollBack()


def test_the_map_tip_shows_the_first_view_and_label(classified_path):
    layer = QgsVectorLayer(classified_path, "tips", "ogr")
    settings = classification_settings(layer)
    style_classified_layer(layer, builtin_label_set(settings["label_set"]), settings)
    context = QgsExpressionContext(QgsExpressionContextUtils.globalProjectLayerScopes(layer))
    feature = layer.getFeature(fid_of(layer, 0))
    context.setFeature(feature)
    tip = QgsExpression.replaceExpressionText(layer.mapTipTemplate(), context)
    assert f'<img src="file://{AREZZO_PHOTOS[0]}"' in tip
    assert f"<b>{feature['label_1']}</b>" in tip and f"{100 * feature['prob_1']:.0f} %" in tip
    context.setFeature(layer.getFeature(fid_of(layer, 4)))
    tip = QgsExpression.replaceExpressionText(layer.mapTipTemplate(), context)
    assert "<img" not in tip and "no label" in tip and "no image" in tip


def test_a_layer_removed_from_the_project_leaves_the_dock_empty(classified_path):
    from qgis.core import QgsProject

    layer = QgsVectorLayer(classified_path, "removed", "ogr")
    assert QgsProject.instance().addMapLayer(layer) is not None
    dock = InspectorDock()
    dock.show_point(layer, fid_of(layer, 0))
    wait_until(lambda: not dock.view_scores.pending(layer.id()), timeout_milliseconds=60_000)
    dock.stop_tasks()
    QgsProject.instance().removeMapLayer(layer.id())
    assert dock.layer is None and dock.point is None and dock.view_texts == []
    assert "removed" in dock.status.text() and dock.step(1) is None
    sip.delete(dock)


def test_a_links_words_say_where_it_leads():
    from mus_qgis.inspector.point import InspectedPoint

    on_service = InspectedPoint(1, "ok", ["/cache/a.jpg"], source="mapillary", image_id="123")
    assert on_service.link_text == "Open the image on Mapillary"
    assert on_service.link.startswith("https://www.mapillary.com/")
    photo = InspectedPoint(2, "ok", ["/photos/b.jpg"], source="local")
    assert photo.link_text == "Open the photo file" and photo.link == "file:///photos/b.jpg"
