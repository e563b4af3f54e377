"""A store made elsewhere (Arrow shards, as a Ray cluster writes them) scores locations in
QGIS without their images: mus:classifyclip and mus:ranklabels."""

from __future__ import annotations

import shutil

from qgis import processing
from qgis.core import QgsFeature, QgsGeometry, QgsPointXY, QgsVectorLayer

from tests.conftest import AREZZO_PHOTOS, PANORAMAS, TINY_MODEL_CONFIG
from tests.qgis.helpers import engine_python

# The engine's side, in its own Python: embed with the single-process engine, then store the
# vectors and the path table only as shards, the way embed --ray leaves a cluster's store.
MAKE_SHARDS = """
import sys
from mus_qgis.engine.clip.classify import embedding_cache_dir, store_key
from mus_qgis.engine.clip.embedding import Location, embed_locations, _file_record
from mus_qgis.engine.clip.models import ModelSpec, load_model
from mus_qgis.engine.clip.store import EmbeddingStore
from mus_qgis.engine.clip.views import prepare_image
from mus_qgis.engine.imagery.panorama import ViewSetting

config, checkpoint, cache, *paths = sys.argv[1:]
model = load_model(ModelSpec(config, "", checkpoint, "cpu"))
setting = ViewSetting()
result = embed_locations([Location((p,)) for p in paths], model, setting)
store = EmbeddingStore.under(embedding_cache_dir(cache), model.identity, store_key(setting))
facts = [prepare_image(p, setting, model.preprocess, set()).facts for p in paths]
views = [setting.count if f.kind == "panorama" else 1 for f in facts]
rows = [(keys[0], row, n) for keys, row, n in zip(result.keys, result.vectors, views)]
store.shards.write(rows, [_file_record(p, f) for p, f in zip(paths, facts)])
store.close()
store.path.unlink()  # the shards alone, to show they are all that needs to travel
"""


def test_a_cluster_store_scores_points_whose_images_are_not_here(
    mus_provider, tmp_path, tiny_checkpoint
):
    images = tmp_path / "on_the_cluster"
    images.mkdir()
    paths = [shutil.copy(p, images) for p in [*AREZZO_PHOTOS[:4], PANORAMAS[0]]]
    cache = tmp_path / "cache"
    engine_python(
        ["-c", MAKE_SHARDS, *map(str, [TINY_MODEL_CONFIG, tiny_checkpoint, cache, *paths])]
    )
    assert list(cache.rglob("part-*.arrow")) and not list(cache.rglob("*.sqlite"))
    shutil.rmtree(images)  # the images stay on the cluster

    layer = QgsVectorLayer("Point?crs=EPSG:4326&field=image_paths:string", "points", "memory")
    features = []
    for index, path in enumerate(paths):
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(11.88 + index * 1e-4, 43.467)))
        feature.setAttributes([str(path)])
        features.append(feature)
    assert layer.dataProvider().addFeatures(features)[0]
    model = {
        "MODEL": str(TINY_MODEL_CONFIG),
        "CHECKPOINT": str(tiny_checkpoint),
        "DEVICE": 1,
        "CACHE_FOLDER": str(cache),
    }
    result = processing.run(
        "mus:classifyclip",
        {"INPUT": layer, "LABEL_SET": 0, "TOP_K": 1, **model, "OUTPUT": "memory:"},
    )
    assert result["CLASSIFIED"] == len(paths) and result["FAILED"] == 0
    classified = list(result["OUTPUT"].getFeatures())
    assert all(feature["label_1"] for feature in classified)

    ranked = processing.run(
        "mus:ranklabels", {"STORED_LABEL_SETS": [9], **model, "OUTPUT": "memory:"}
    )
    rows = list(ranked["OUTPUT"].getFeatures())
    assert {f["label_set"] for f in rows} == {f"european_capitals (all {len(paths)} stored images)"}
    assert sum(f["first_places"] for f in rows) == len(paths)
