"""Each view's reading for the street inspector, from the stores a classification filled."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mus_qgis.engine.clip.classify import classify_locations, store_key
from mus_qgis.engine.clip.embedding import Location
from mus_qgis.engine.clip.view_scores import NOT_STORED, score_views, view_setting_from_key
from mus_qgis.engine.imagery.panorama import ViewSetting
from mus_qgis.engine.jobs import registered
from mus_qgis.shared.errors import EmbeddingStoreError, MusError
from mus_qgis.shared.labels import builtin_label_set
from tests.conftest import AREZZO_PHOTOS, PANORAMAS

JOBS = registered()


@pytest.fixture(scope="module")
def classified(tiny_spec, tmp_path_factory):
    """Three locations classified with the tiny model: two photos, a panorama, one image each."""
    cache = tmp_path_factory.mktemp("cache")
    locations = [
        Location((str(AREZZO_PHOTOS[0]), str(AREZZO_PHOTOS[1]))),
        Location((str(PANORAMAS[0]),), 45.0, None),
        Location((str(AREZZO_PHOTOS[2]),)),
    ]
    labels = builtin_label_set("urban_atlas_2018")
    run = classify_locations(locations, labels, tiny_spec, top_k=3, cache_dir=cache)
    return cache, locations, labels, run


def readings(classified, locations=None, **overrides):
    cache, default_locations, labels, run = classified
    arguments = {
        "identity": run.metadata["model_identity"],
        "store_name": store_key(ViewSetting()),
        "cache_dir": cache,
        "logit_scale": run.metadata["logit_scale"],
        "top_k": 3,
        **overrides,
    }
    return score_views(locations or default_locations, labels, **arguments)


def test_pooled_reading_is_the_classification_and_each_view_has_its_own(classified):
    _, _, _, run = classified
    result = readings(classified)
    for row, reading in enumerate(result):
        assert reading["pooled"]["labels"] == run.scores.top_labels(row)
        np.testing.assert_allclose(
            reading["pooled"]["probabilities"], run.scores.probability[row], rtol=1e-4
        )
        assert reading["pooled"]["margin"] == pytest.approx(float(run.scores.margin[row]), 1e-4)
    two_photos = result[0]["views"]
    assert [view["status"] for view in two_photos] == ["ok", "ok"]
    assert [view["path"] for view in two_photos] == [str(p) for p in AREZZO_PHOTOS[:2]]
    # Each view is read alone: its probabilities are its own, not the pooled ones.
    assert two_photos[0]["probabilities"] != two_photos[1]["probabilities"]
    # A location of one image reads the same alone and pooled.
    assert result[2]["views"][0]["labels"] == result[2]["pooled"]["labels"]


def test_an_image_never_embedded_has_a_status_and_the_rest_is_read(classified, tmp_path):
    locations = [Location((str(AREZZO_PHOTOS[0]), str(tmp_path / "never.jpg")))]
    (reading,) = readings(classified, locations)
    assert reading["views"][1] == {"path": str(tmp_path / "never.jpg"), "status": NOT_STORED}
    assert reading["pooled"]["labels"] == reading["views"][0]["labels"]
    (nothing,) = readings(classified, [Location((str(tmp_path / "never.jpg"),))])
    assert nothing["pooled"] is None


def test_a_store_that_is_not_there_is_named_and_not_created(classified, tmp_path):
    with pytest.raises(EmbeddingStoreError, match="another cache folder"):
        readings(classified, cache_dir=tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere" / "embeddings").exists()
    with pytest.raises(EmbeddingStoreError, match="prompt"):
        cache, locations, _, run = classified
        score_views(
            locations,
            builtin_label_set("world_capitals"),
            run.metadata["model_identity"],
            store_key(ViewSetting()),
            cache,
            run.metadata["logit_scale"],
        )


def test_view_settings_read_back_from_their_key():
    for setting in (ViewSetting(), ViewSetting(8, 45.0, -10.0), ViewSetting(centre_crop=True)):
        assert view_setting_from_key(setting.key) == setting
    with pytest.raises(MusError, match="views9"):
        view_setting_from_key("views9")


def test_the_worker_job_writes_the_readings(classified, tmp_path):
    cache, locations, _, run = classified
    rows = [[list(loc.paths), loc.bearing, loc.heading] for loc in locations]
    (tmp_path / "locations.json").write_text(json.dumps(rows), encoding="utf-8")
    params = {
        "locations": str(tmp_path / "locations.json"),
        "label_set": {"builtin": "urban_atlas_2018", "templates": None},
        "model_identity": run.metadata["model_identity"],
        "views": ViewSetting().key,
        "fast_decode": True,
        "cache_dir": str(cache),
        "logit_scale": run.metadata["logit_scale"],
        "output": str(tmp_path / "views.json"),
    }
    assert JOBS["view_scores"](params, None)["count"] == 3
    written = json.loads((tmp_path / "views.json").read_text(encoding="utf-8"))
    assert written == readings(classified)
