"""The engine against open_clip itself, on real photos and panoramas, with a tiny real model."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import open_clip
import pytest
import torch
from open_clip.zero_shot_classifier import build_zero_shot_classifier
from PIL import Image

from mus_qgis.engine.clip import embedding
from mus_qgis.engine.clip.classify import classify_locations
from mus_qgis.engine.clip.embedding import Location, embed_locations
from mus_qgis.engine.clip.models import load_model
from mus_qgis.engine.clip.scoring import label_embeddings, score
from mus_qgis.engine.clip.store import EmbeddingStore
from mus_qgis.engine.imagery.panorama import ViewSetting, perspective_views
from mus_qgis.shared.errors import CanceledError
from mus_qgis.shared.labels import builtin_label_set
from tests.conftest import AREZZO_PHOTOS, IMAGES, PANORAMAS


@pytest.fixture(scope="module")
def tiny(tiny_spec):
    return load_model(tiny_spec)


def open_clip_reference(model, images):
    """open_clip's own path: its preprocess transform, then encode_image, normalised."""
    preprocess = open_clip.transform.image_transform_v2(
        open_clip.transform.PreprocessCfg(**model.model.visual.preprocess_cfg), is_train=False
    )
    batch = torch.stack([preprocess(image) for image in images])
    with torch.no_grad():
        return torch.nn.functional.normalize(model.model.encode_image(batch), dim=-1).numpy()


def store_for(tmp_path, model, setting):
    return EmbeddingStore.under(tmp_path, model.identity, setting.key)


def test_checkpoint_loads_through_the_users_path_and_is_reused(tiny, tiny_spec):
    assert tiny.identity.startswith("mus-tiny-vit/file-")
    assert load_model(tiny_spec) is tiny
    assert not tiny.untrained and tiny.image_size == 224


def test_photo_embeddings_and_scores_agree_with_open_clip_zero_shot(tiny):
    label_set = builtin_label_set("urban_atlas_2018")
    locations = [Location((str(p),)) for p in AREZZO_PHOTOS]
    result = embed_locations(locations, tiny, ViewSetting(), fast_decode=False)
    assert result.status == ["ok"] * len(AREZZO_PHOTOS)

    reference = open_clip_reference(tiny, [Image.open(p) for p in AREZZO_PHOTOS])
    np.testing.assert_allclose(result.vectors, reference, atol=2e-5)

    classnames = [label.prompt_text for label in label_set.labels]
    templates = [t.replace("{label}", "{}") for t in label_set.templates]
    weights = build_zero_shot_classifier(
        tiny.model, tiny.tokenizer, classnames, templates, device="cpu"
    ).numpy()
    ours = label_embeddings(tiny, label_set)
    np.testing.assert_allclose(ours, weights.T, atol=2e-5)

    scores = score(result.vectors, ours, label_set, tiny.logit_scale, top_k=3)
    logits = tiny.logit_scale * reference @ weights
    probability = torch.from_numpy(logits).softmax(dim=-1).numpy()
    assert (scores.top_index[:, 0] == logits.argmax(axis=1)).all()
    np.testing.assert_allclose(scores.cosine[:, 0], (reference @ weights).max(axis=1), atol=2e-5)
    np.testing.assert_allclose(scores.probability[:, 0], probability.max(axis=1), atol=1e-4)
    top2 = np.sort(probability, axis=1)[:, -2:]
    np.testing.assert_allclose(scores.margin, top2[:, 1] - top2[:, 0], atol=1e-4)
    assert (np.diff(scores.cosine, axis=1) <= 0).all()


def test_fast_jpeg_decoding_stays_close_to_the_full_decode(tiny):
    locations = [Location((str(p),)) for p in AREZZO_PHOTOS]
    fast = embed_locations(locations, tiny, ViewSetting(), fast_decode=True).vectors
    full = embed_locations(locations, tiny, ViewSetting(), fast_decode=False).vectors
    assert (np.sum(fast * full, axis=1) > 0.99).all()


def test_panorama_embedding_pools_its_views(tiny):
    panorama = PANORAMAS[0]
    setting = ViewSetting(count=4, fov=90.0)
    result = embed_locations([Location((str(panorama),))], tiny, setting, fast_decode=False)
    rgb = torch.from_numpy(np.array(Image.open(panorama).convert("RGB")))
    views = perspective_views(rgb, setting.yaws(), 0.0, 90.0, 224)
    per_view = tiny.encode_images(views)
    pooled = torch.nn.functional.normalize(per_view.mean(0), dim=0).numpy()
    np.testing.assert_allclose(result.vectors[0], pooled, atol=1e-5)


def test_centre_crop_is_open_clips_own_view_of_a_panorama(tiny):
    panorama = PANORAMAS[0]
    result = embed_locations(
        [Location((str(panorama),))], tiny, ViewSetting(centre_crop=True), fast_decode=False
    )
    np.testing.assert_allclose(
        result.vectors[0], open_clip_reference(tiny, [Image.open(panorama)])[0], atol=2e-5
    )


def test_views_follow_the_street_when_the_panorama_heading_is_known(tiny):
    panorama = str(PANORAMAS[0])
    setting = ViewSetting(count=1, fov=90.0)
    along = embed_locations(
        [Location((panorama,), bearing=100.0, heading=10.0)], tiny, setting, fast_decode=False
    ).vectors[0]
    rgb = torch.from_numpy(np.array(Image.open(panorama).convert("RGB")))
    expected = tiny.encode_images(perspective_views(rgb, [90.0], 0.0, 90.0, 224))[0].numpy()
    np.testing.assert_allclose(along, expected, atol=1e-5)
    unaligned = embed_locations(
        [Location((panorama,), bearing=100.0)], tiny, setting, fast_decode=False
    ).vectors[0]
    centre = tiny.encode_images(perspective_views(rgb, [0.0], 0.0, 90.0, 224))[0].numpy()
    np.testing.assert_allclose(unaligned, centre, atol=1e-5)


def test_a_location_with_several_images_gets_their_mean(tiny):
    pair = [str(p) for p in AREZZO_PHOTOS[:2]]
    result = embed_locations(
        [Location(tuple(pair)), Location((pair[0],)), Location((pair[1],))], tiny, ViewSetting()
    )
    mean = result.vectors[1] + result.vectors[2]
    np.testing.assert_allclose(result.vectors[0], mean / np.linalg.norm(mean), atol=1e-6)
    assert result.images_used == [2, 1, 1]


def test_stored_embeddings_are_never_decoded_again(tiny, tmp_path):
    setting = ViewSetting()
    images = tmp_path / "images"
    images.mkdir()
    for source in [*AREZZO_PHOTOS[:3], PANORAMAS[0]]:
        shutil.copy(source, images / source.name)
    paths = sorted(str(p) for p in images.iterdir())
    locations = [Location((p,), bearing=45.0) for p in paths]
    with store_for(tmp_path / "store", tiny, setting) as store:
        first = embed_locations(locations, tiny, setting, store)
    assert first.counts["decoded"] == 4

    # Same files: known from the store without even reading them.
    with store_for(tmp_path / "store", tiny, setting) as store:
        second = embed_locations(locations, tiny, setting, store)
        assert len(store) == 4
    assert second.counts["decoded"] == 0 and second.counts["known without reading"] == 4
    np.testing.assert_array_equal(first.vectors, second.vectors)

    # The same picture under another name is read (to hash it) but not decoded.
    copy = images / "copy_of_first.jpg"
    shutil.copy(paths[0], copy)
    with store_for(tmp_path / "store", tiny, setting) as store:
        third = embed_locations([Location((str(copy),))], tiny, setting, store)
    assert third.counts["decoded"] == 0 and third.counts["cached"] == 1
    np.testing.assert_array_equal(third.vectors[0], first.vectors[0])

    # With the images gone (scored on another machine), the store still answers.
    shutil.rmtree(images)
    with store_for(tmp_path / "store", tiny, setting) as store:
        fourth = embed_locations(locations, tiny, setting, store)
    assert fourth.status == ["ok"] * 4
    np.testing.assert_array_equal(first.vectors, fourth.vectors)


def test_a_changed_file_is_read_again(tiny, tmp_path):
    setting = ViewSetting()
    path = tmp_path / "photo.jpg"
    shutil.copy(AREZZO_PHOTOS[0], path)
    with store_for(tmp_path / "store", tiny, setting) as store:
        before = embed_locations([Location((str(path),))], tiny, setting, store).vectors[0]
        shutil.copy(AREZZO_PHOTOS[1], path)
        result = embed_locations([Location((str(path),))], tiny, setting, store)
    assert result.counts["decoded"] == 1
    assert not np.allclose(before, result.vectors[0])


def test_a_store_of_another_model_or_view_setting_is_refused(tiny, tmp_path):
    from mus_qgis.shared.errors import EmbeddingStoreError

    EmbeddingStore(tmp_path / "s.sqlite", tiny.identity, "views4-fov90-pitch0").close()
    with pytest.raises(EmbeddingStoreError, match="not 'centre-crop'"):
        EmbeddingStore(tmp_path / "s.sqlite", tiny.identity, "centre-crop")


def write_bad_images(folder):
    """Every kind of bad or unusual image file, and what the engine should say of each."""
    folder.mkdir()
    photo = AREZZO_PHOTOS[0].read_bytes()
    (folder / "truncated.jpg").write_bytes(photo[: len(photo) // 3])
    (folder / "garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 20)
    (folder / "text.jpg").write_text("not an image at all", encoding="utf-8")
    (folder / "empty.jpg").write_bytes(b"")
    Image.new("1", (20000, 20000)).save(folder / "bomb.png")
    source = Image.open(AREZZO_PHOTOS[1])
    source.convert("L").save(folder / "grey.jpg")
    source.convert("CMYK").save(folder / "cmyk.jpg")
    rgba = source.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "alpha.png")
    grey16 = Image.fromarray(np.asarray(source.convert("L"), dtype=np.uint16) * 257)
    grey16.save(folder / "grey16.png")
    source.convert("P").save(folder / "palette.gif")
    return {
        "truncated.jpg": "truncated or corrupt",
        "garbage.jpg": "not a readable image",
        "text.jpg": "not a readable image",
        "empty.jpg": "is empty (0 bytes)",
        "bomb.png": "larger than Pillow's decompression-bomb limit",
        "missing.jpg": "does not exist",
        "grey.jpg": "ok",
        "cmyk.jpg": "ok",
        "alpha.png": "ok",
        "grey16.png": "ok",
        "palette.gif": "ok",
    }


def test_bad_images_get_a_status_and_the_rest_completes(tiny, tmp_path):
    expected = write_bad_images(tmp_path / "bad")
    names = [*list(expected), "good"]
    locations = [Location((str(tmp_path / "bad" / n),)) for n in expected]
    locations.append(Location((str(AREZZO_PHOTOS[2]),)))
    run = classify_locations(
        locations,
        builtin_label_set("european_capitals"),
        tiny.spec,
        cache_dir=tmp_path / "cache",
        top_k=2,
    )
    for name, status, labels in zip(
        names,
        run.embeddings.status,
        (run.scores.top_labels(i) for i in range(len(names))),
        strict=True,
    ):
        want = expected.get(name, "ok")
        assert want in status, (name, status)
        assert want == "ok" or status.startswith(f"error: image {tmp_path / 'bad' / name} ")
        assert (labels[0] is None) == (want != "ok"), name
    assert np.isnan(run.scores.margin[0]) and not np.isnan(run.scores.margin[-1])


def test_a_cancel_keeps_finished_batches_and_the_next_run_completes(tiny, tmp_path):
    setting = ViewSetting()
    paths = [str(p) for p in AREZZO_PHOTOS]

    class CancelAfter:
        def __init__(self, checks):
            self.checks = checks

        def set_progress(self, percent):
            pass

        def info(self, message):
            pass

        def is_canceled(self):
            self.checks -= 1
            return self.checks < 0

    with store_for(tmp_path, tiny, setting) as store, pytest.raises(CanceledError):
        embed_locations(
            [Location((p,)) for p in paths],
            tiny,
            setting,
            store,
            CancelAfter(6),
            batch_size=2,
            workers=2,
        )
    with store_for(tmp_path, tiny, setting) as store:
        kept = len(store)
        assert 2 <= kept < len(paths)
        again = embed_locations([Location((p,)) for p in paths], tiny, setting, store)
    assert again.status == ["ok"] * len(paths)
    assert again.counts["decoded"] == len(paths) - kept


def test_rescoring_from_the_store_needs_no_image(tiny, tmp_path):
    paths = [str(p) for p in (*AREZZO_PHOTOS, *(IMAGES / "berlin").glob("*.jpg"))]
    locations = [Location((p,)) for p in paths]
    first = classify_locations(
        locations, builtin_label_set("urban_atlas_2018"), tiny.spec, cache_dir=tmp_path
    )
    second = classify_locations(
        locations, builtin_label_set("world_capitals"), tiny.spec, cache_dir=tmp_path
    )
    assert second.embeddings.counts["decoded"] == 0
    np.testing.assert_array_equal(first.embeddings.vectors, second.embeddings.vectors)
    assert second.metadata["label_set"] == "world_capitals"
    assert second.metadata["model_identity"] == tiny.identity
    assert second.metadata["views"] == "views4-fov90-pitch0"


class SlowBatches:
    """The tiny model, its batches held for 0.6 s each, and where it says it runs."""

    def __init__(self, model, device: str) -> None:
        self._model, self.device, self.batches = model, device, []

    def __getattr__(self, name):
        return getattr(self._model, name)

    def encode_images(self, pixels):
        started = time.monotonic()
        features = self._model.encode_images(pixels)
        time.sleep(0.6)
        self.batches.append((started, time.monotonic()))
        return features


@pytest.mark.parametrize(("device", "decoding_waits"), [("cpu", True), ("cuda", False)])
def test_decoding_waits_while_the_model_runs_on_the_cpu(
    tiny, monkeypatch, tmp_path, device, decoding_waits
):
    # On the CPU the model's threads take every core: a decoding thread beside them stalls
    # them, so new images start only between batches. On a GPU the two overlap.
    starts, lock = [], threading.Lock()
    prepare = embedding.prepare_image

    def recorded(*args, **kwargs):
        with lock:
            starts.append(time.monotonic())
        time.sleep(0.2)  # a big panorama's decoding
        return prepare(*args, **kwargs)

    monkeypatch.setattr(embedding, "prepare_image", recorded)
    model = SlowBatches(tiny, device)
    # 16 files of one photo, each with its own trailing bytes (so its own embedding).
    data = AREZZO_PHOTOS[0].read_bytes()
    locations = []
    for index in range(16):
        copy = tmp_path / f"photo_{index}.jpg"
        copy.write_bytes(data + bytes(index + 1))
        locations.append(Location((str(copy),)))
    result = embed_locations(locations, model, ViewSetting(), batch_size=4, workers=4)
    assert result.status == ["ok"] * 16 and len(starts) == 16
    # A decode that passed the gate just before a batch began may start a moment later (a busy
    # machine may hold its thread back); with no gate, decodes start all through each batch.
    during = [t for t in starts if any(a + 0.15 < t < b for a, b in model.batches)]
    assert len(model.batches) == 4
    assert (not during) if decoding_waits else len(during) >= 3
