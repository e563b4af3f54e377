"""Bad and hostile inputs to mus:classifyclip, headless: a clear QgsProcessingException naming
the parameter or file and what to do, or a per-point clip_status; the counts in the log are the
layer's; nothing stored before is lost; hostile label text never becomes live HTML.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
from contextlib import closing
from html.parser import HTMLParser
from pathlib import Path

import pytest
from qgis import processing
from qgis.core import (
    QgsFeature,
    QgsGeometry,
    QgsPointXY,
    QgsProcessingException,
    QgsVectorLayer,
)

from tests.conftest import AREZZO_PHOTOS, TINY_MODEL_CONFIG
from tests.qgis.helpers import RecordingFeedback as InfoFeedback

ALG = "mus:classifyclip"
PHOTOS = AREZZO_PHOTOS[:3]


def points(paths) -> QgsVectorLayer:
    layer = QgsVectorLayer(
        "Point?crs=EPSG:4326&field=pid:integer&field=image_paths:string", "points", "memory"
    )
    features = []
    for index, path in enumerate(paths):
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(11.88 + index * 1e-4, 43.467)))
        feature.setAttributes([index, str(path)])
        features.append(feature)
    assert layer.dataProvider().addFeatures(features)[0]
    return layer


@pytest.fixture
def photos(tmp_path) -> list[Path]:
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in PHOTOS:
        shutil.copy(photo, folder / photo.name)
    return [folder / photo.name for photo in PHOTOS]


class RecordingFeedback(InfoFeedback):
    """Keeps warnings too (the engine's come as non-fatal errors): the store's reports are."""

    def reportError(self, error, fatalError=False):  # noqa: N803 (the QGIS signature)
        self.lines.append(error)
        super().reportError(error, fatalError)


def classify(parameters, feedback=None):
    return processing.run(ALG, {"OUTPUT": "memory:", **parameters}, feedback=feedback)


def layer_rows(result) -> list:
    layer = result["OUTPUT"]
    if isinstance(layer, str):
        layer = QgsVectorLayer(layer, "out", "ogr")
    return sorted(layer.getFeatures(), key=lambda f: f["pid"])


def logged_count(feedback) -> tuple[int, int]:
    line = next(x for x in feedback.lines if "locations classified" in x)
    ok, total = re.match(r"(\d+) of (\d+) locations classified", line).groups()
    return int(ok), int(total)


def store_path(cache: Path) -> Path:
    (path,) = (cache / "embeddings").rglob("views4-fov90-pitch0.sqlite")
    return path


def overwrite_vector(store: Path, image: Path, value: float) -> None:
    """Overwrite one stored vector in place, as a faulty disk or a hand edit would."""
    key = hashlib.blake2b(image.read_bytes(), digest_size=16).hexdigest()
    with closing(sqlite3.connect(store)) as db, db:
        (blob,) = db.execute("SELECT vector FROM embeddings WHERE key = ?", (key,)).fetchone()
        new = bytes(len(blob)) if value == 0 else b"\x00\x00\xc0\x7f" * (len(blob) // 4)
        assert db.execute("UPDATE embeddings SET vector = ? WHERE key = ?", (new, key)).rowcount


# -- a store that lies; counts that agree ------------------------------------------------------
@pytest.mark.parametrize("value", [0.0, float("nan")], ids=["zeros", "nan"])
def test_a_store_overwritten_in_place_gives_true_scores_and_true_counts(
    mus_provider, tiny_parameters, photos, tmp_path, value
):
    layer = points(photos)
    first = layer_rows(classify({"INPUT": layer, **tiny_parameters}))
    overwrite_vector(store_path(tmp_path / "cache"), photos[1], value)
    feedback = RecordingFeedback()
    result = classify({"INPUT": layer, **tiny_parameters}, feedback)
    rows = layer_rows(result)
    assert [r["clip_status"] for r in rows] == ["ok"] * 3
    assert [r["prob_1"] for r in rows] == pytest.approx([r["prob_1"] for r in first], abs=1e-5)
    assert [r["label_1"] for r in rows] == [r["label_1"] for r in first]
    assert logged_count(feedback) == (result["CLASSIFIED"], 3) == (3, 3)
    assert any("damaged" in line and str(photos[1]) in line for line in feedback.lines)


def test_a_damaged_vector_whose_image_is_gone_fails_its_point_and_the_counts_say_so(
    mus_provider, tiny_parameters, photos, tmp_path
):
    layer = points(photos)
    classify({"INPUT": layer, **tiny_parameters})
    overwrite_vector(store_path(tmp_path / "cache"), photos[1], float("nan"))
    photos[1].unlink()
    feedback = RecordingFeedback()
    result = classify({"INPUT": layer, **tiny_parameters}, feedback)
    rows = layer_rows(result)
    statuses = [r["clip_status"] for r in rows]
    assert statuses[0] == statuses[2] == "ok"
    assert statuses[1].startswith(f"error: the stored embedding of {photos[1]} is damaged")
    ok_in_layer = sum(s == "ok" for s in statuses)
    assert logged_count(feedback) == (result["CLASSIFIED"], 3) == (ok_in_layer, 3) == (2, 3)
    assert result["FAILED"] == 1


def test_a_store_file_that_is_not_a_database_is_a_clear_error(
    mus_provider, tiny_parameters, photos, tmp_path
):
    layer = points(photos)
    classify({"INPUT": layer, **tiny_parameters})
    store = store_path(tmp_path / "cache")
    store.write_bytes(b"garbage" * 1000)
    with pytest.raises(QgsProcessingException) as raised:
        classify({"INPUT": layer, **tiny_parameters})
    assert f"The embedding store {store} is damaged" in str(raised.value)
    assert "Move it aside (or delete it) and run again" in str(raised.value)


# -- settings out of range -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"TOP_K": 0}, "TOP_K (Labels to keep per point (top k)) must be 1 to 10, not 0."),
        ({"TOP_K": -3}, "TOP_K (Labels to keep per point (top k)) must be 1 to 10, not -3."),
        ({"VIEWS": 9}, "VIEWS (Panorama views) must be one of 0 to 4 (0: 4 views of 90°"),
        ({"VIEWS": -1}, "VIEWS (Panorama views) must be one of 0 to 4"),
        (
            {"PITCH": 120},
            "PITCH (View pitch (degrees above the horizon)) must be -90 to 90, not 120.",
        ),
        ({"BATCH_SIZE": 0}, "BATCH_SIZE (Batch size (views)) must be 1 to 4096, not 0."),
    ],
)
def test_settings_out_of_range_name_the_parameter_and_range(
    mus_provider, tiny_parameters, photos, changes, message
):
    with pytest.raises(QgsProcessingException) as raised:
        classify({"INPUT": points(photos), **tiny_parameters, **changes})
    assert message in str(raised.value)


def test_a_cache_folder_that_is_a_file_is_a_clear_error(
    mus_provider, tiny_parameters, photos, tmp_path
):
    blocking = tmp_path / "cache.txt"
    blocking.write_text("notes", encoding="utf-8")
    with pytest.raises(QgsProcessingException) as raised:
        classify({"INPUT": points(photos), **tiny_parameters, "CACHE_FOLDER": str(blocking)})
    assert f"The cache folder {blocking} is a file, not a folder" in str(raised.value)
    assert "CACHE_FOLDER" in str(raised.value)
    assert blocking.read_text(encoding="utf-8") == "notes"


# -- label files ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\n# none\n", "is empty (it holds no label)"),
        (b"Rome\nParis\nROME\n", "repeats 'Rome' (lines 1, 3)"),
        (b"Roma\nK\xf6ln\n", "is not UTF-8 text (line 2:"),
    ],
    ids=["empty", "duplicate", "not UTF-8"],
)
def test_bad_label_files_name_the_file_and_line(
    mus_provider, tiny_parameters, photos, tmp_path, content, message
):
    labels = tmp_path / "my labels.txt"
    labels.write_bytes(content)
    with pytest.raises(QgsProcessingException) as raised:
        classify({"INPUT": points(photos), **tiny_parameters, "LABEL_FILE": str(labels)})
    assert str(labels) in str(raised.value) and message in str(raised.value)


class LiveElements(HTMLParser):
    """Every element and attribute a browser would build from a page."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += [name for name, _ in attrs]


HOSTILE_LABELS = ["<script>alert(1)</script>", "<img src=x onerror=alert(2)>", "piazza"]
HOSTILE_TEMPLATE = "<script>alert(3)</script> a photo of {label} <b onmouseover=alert(4)>"


def test_hostile_label_text_never_becomes_live_html(
    mus_provider, tiny_parameters, photos, tmp_path
):
    labels = tmp_path / "hostile.txt"
    labels.write_text("\n".join(HOSTILE_LABELS), encoding="utf-8")
    output = tmp_path / "classified.gpkg"
    result = classify(
        {
            "INPUT": points(photos),
            **tiny_parameters,
            "LABEL_FILE": str(labels),
            "TEMPLATES": HOSTILE_TEMPLATE,
            "OUTPUT": str(output),
        }
    )
    layer = QgsVectorLayer(str(output), "classified", "ogr")
    assert {f["label_1"] for f in layer.getFeatures()} <= set(HOSTILE_LABELS)  # kept as text
    # The layer's Information panel (QGIS renders the metadata it carries as HTML).
    page = layer.htmlMetadata()
    assert "a photo of {label}" in page
    live = LiveElements(page)
    assert not {"script", "img"} & set(live.tags), live.tags
    assert not [name for name in live.attributes if name.startswith("on")]
    # The settings still read back whole from the keyword (the ranking reads them there).
    (keyword,) = layer.metadata().keywords()["mus_qgis"]
    assert json.loads(keyword)["templates"] == [HOSTILE_TEMPLATE]
    assert json.loads(result["SETTINGS"])["templates"] == [HOSTILE_TEMPLATE]
    # The ranking report written from this layer.
    report = tmp_path / "ranking.html"
    processing.run(
        "mus:ranklabels", {"INPUTS": [layer], "REPORT": str(report), "OUTPUT": "memory:"}
    )
    live = LiveElements(report.read_text(encoding="utf-8"))
    assert not {"script", "img"} & set(live.tags), live.tags
    assert not [name for name in live.attributes if name.startswith("on")]


# -- images ------------------------------------------------------------------------------------
def test_bad_images_cost_their_point_only(mus_provider, tiny_parameters, photos, tmp_path):
    from tests.engine.helpers import png_claiming

    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_claiming(30000, 30000))
    page = tmp_path / "page.jpg"
    page.write_text("<html>rate limited</html>", encoding="utf-8")
    feedback = RecordingFeedback()
    result = classify(
        {"INPUT": points([photos[0], empty, bomb, page, photos[1]]), **tiny_parameters}, feedback
    )
    statuses = [r["clip_status"] for r in layer_rows(result)]
    assert statuses[0] == statuses[4] == "ok"
    assert statuses[1] == f"error: image {empty} is empty (0 bytes)"
    assert statuses[2].startswith(
        f"error: image {bomb} is larger than Pillow's decompression-bomb limit"
    )
    assert statuses[3] == f"error: image {page} is not a readable image (unknown format)"
    assert logged_count(feedback) == (result["CLASSIFIED"], 5) == (2, 5)


def test_unicode_and_spaces_in_every_path_just_work(mus_provider, tiny_checkpoint, tmp_path):
    base = tmp_path / "città ünï 東京 spazio"
    folder = base / "foto di strada"
    folder.mkdir(parents=True)
    images = []
    for photo in PHOTOS[:2]:
        images.append(folder / f"piazza è {photo.name}")
        shutil.copy(photo, images[-1])
    labels = base / "etichette città.txt"
    labels.write_text("una piazza\nuna chiesa\n", encoding="utf-8")
    output = base / "classificati ñ.gpkg"
    result = classify(
        {
            "INPUT": points(images),
            "MODEL": str(TINY_MODEL_CONFIG),
            "CHECKPOINT": str(tiny_checkpoint),
            "DEVICE": 1,
            "CACHE_FOLDER": str(base / "cache ñ"),
            "LABEL_FILE": str(labels),
            "OUTPUT": str(output),
        }
    )
    assert [r["clip_status"] for r in layer_rows(result)] == ["ok", "ok"]


# -- JPEG draft-mode decoding is a recorded, switchable setting --------------------------------
def test_full_resolution_decode_is_switchable_and_recorded(
    mus_provider, tiny_parameters, photos, tmp_path
):
    layer = points(photos[:1])
    fast = classify({"INPUT": layer, **tiny_parameters})
    full = classify({"INPUT": layer, **tiny_parameters, "FULL_DECODE": True})
    assert json.loads(fast["SETTINGS"])["jpeg_draft_decode"] is True
    assert json.loads(full["SETTINGS"])["jpeg_draft_decode"] is False
    stores = sorted(p.name for p in (tmp_path / "cache").rglob("views4-*.sqlite"))
    assert stores == ["views4-fov90-pitch0-full-decode.sqlite", "views4-fov90-pitch0.sqlite"]
    assert layer_rows(fast)[0]["score_1"] != layer_rows(full)[0]["score_1"]
