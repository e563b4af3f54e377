"""Few-shot correction: a probe on stored embeddings, against answers known by construction.

The embeddings are synthetic unit vectors whose cosines with the label set's text embeddings are
set exactly: every class but one sits nearest its own label (zero-shot is right), one sits
nearest another label (zero-shot is wrong for it), and each class has a direction of its own
that a probe can learn. In the pipeline tests they go through the store's API and the tiny
model's real text embeddings; no image exists anywhere.
"""

from __future__ import annotations

import numpy as np
import pytest

from mus_qgis.engine.clip.classify import classify_locations, embedding_cache_dir, store_key
from mus_qgis.engine.clip.embedding import Location
from mus_qgis.engine.clip.models import load_model
from mus_qgis.engine.clip.probe import (
    Probe,
    ProbeError,
    cross_validate,
    fit_weights,
    load_probe,
    stratified_folds,
)
from mus_qgis.engine.clip.scoring import label_embeddings
from mus_qgis.engine.clip.store import EmbeddingStore
from mus_qgis.engine.clip.teach import (
    SCORED_BY_PROBE,
    SCORED_OUT_OF_FOLD,
    classification_of,
    stored_vectors,
    train_and_rescore,
)
from mus_qgis.engine.imagery.panorama import ViewSetting
from mus_qgis.shared.labels import DEFAULT_TEMPLATES, Label, LabelSet, builtin_label_set
from tests.conftest import AREZZO_PHOTOS
from tests.engine.helpers import store_vectors

LABELS = LabelSet(
    "test_streets",
    tuple(Label(text) for text in ("market", "port area", "park", "railway station")),
    DEFAULT_TEMPLATES,
    "Test streets",
)
WRONG = 3  # railway stations look, to zero-shot, like port areas (label 1)
NEAREST = {0: 0, 1: 1, 2: 2, WRONG: 1}


def clusters(text_vectors, per_class: int, seed: int, noise: float = 0.3):
    """Unit vectors per class with set cosines to the labels (own 0.3, others 0.2; the WRONG
    class 0.3 to label 1 and 0.25 to its own) plus a direction of their own and noise, both
    orthogonal to every text embedding so that zero-shot's answer is exactly NEAREST."""
    rng = np.random.default_rng(seed)
    text_vectors = np.asarray(text_vectors, dtype=np.float64)
    labels = len(text_vectors)
    # Directions orthogonal to the text embeddings: one per class, the rest for noise.
    free = np.linalg.svd(text_vectors)[2][labels:]
    vectors, targets = [], []
    for cls in range(labels):
        wanted = np.full(labels, 0.2)
        wanted[NEAREST[cls]] = 0.3
        if cls == WRONG:
            wanted[cls] = 0.25
        inside = np.linalg.pinv(text_vectors) @ wanted  # cosines exactly ``wanted`` before scaling
        noise_part = rng.normal(size=(per_class, len(free) - labels)) @ free[labels:] * noise
        own = free[cls] * 0.6
        points = inside + own + noise_part / np.sqrt(len(free) - labels)
        vectors.append(points / np.linalg.norm(points, axis=1, keepdims=True))
        targets += [cls] * per_class
    return np.vstack(vectors).astype(np.float32), np.asarray(targets)


def accuracy(logits, targets) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == targets))


@pytest.fixture(scope="module")
def orthonormal_texts():
    rng = np.random.default_rng(7)
    return np.linalg.qr(rng.normal(size=(64, 64)))[0][:4].astype(np.float32)


@pytest.mark.parametrize("logit_scale", [100.0, 14.29])
def test_five_corrections_per_class_fix_the_class_zero_shot_gets_wrong(
    orthonormal_texts, logit_scale
):
    texts = orthonormal_texts
    train, train_y = clusters(texts, 5, seed=1)
    test, test_y = clusters(texts, 200, seed=2)
    zero_shot = test @ texts.T
    assert accuracy(zero_shot, test_y) == 0.75  # exactly the WRONG class is missed
    assert accuracy(zero_shot[test_y == WRONG], test_y[test_y == WRONG]) == 0.0
    weights, bias = fit_weights(train, train_y, texts, logit_scale, 0.3)
    probe = test @ weights.T + bias
    assert accuracy(probe, test_y) >= 0.97
    assert accuracy(probe[test_y == WRONG], test_y[test_y == WRONG]) >= 0.95
    validation = cross_validate(train, train_y, texts, logit_scale, 0.3)
    assert validation.method == "leave-one-out"
    assert validation.zero_shot_accuracy == 0.75
    assert validation.probe_accuracy >= 0.9


def test_without_corrections_of_a_label_the_probe_stays_near_zero_shot(orthonormal_texts):
    """Strong regularisation keeps the zero-shot weights; few examples move them a little."""
    texts = orthonormal_texts
    train, train_y = clusters(texts, 5, seed=3)
    strong, _ = fit_weights(train, train_y, texts, 100.0, 1e6)
    np.testing.assert_allclose(strong, 100.0 * texts, atol=1e-3)
    weak, _ = fit_weights(train, train_y, texts, 100.0, 0.3)
    assert np.linalg.norm(weak - 100.0 * texts) < 0.2 * np.linalg.norm(100.0 * texts)


def test_cross_validation_never_scores_a_point_with_a_probe_that_saw_it(orthonormal_texts):
    """Random labels on scattered points: a probe that saw a point recalls its label (it can,
    with more dimensions than points), one that did not can only guess. Cross-validation must
    report the guessing, not the recall."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(20, 64))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    targets = np.resize(np.arange(4), 20)
    weights, bias = fit_weights(vectors, targets, orthonormal_texts, 14.29, 0.1)
    assert accuracy(vectors @ weights.T + bias, targets) == 1.0  # it can recall them all
    validation = cross_validate(vectors, targets, orthonormal_texts, 14.29, 0.1)
    assert validation.probe_accuracy < 0.5  # chance is 0.25
    assert np.isfinite(validation.logits).all()


def test_folds_are_stratified_and_each_point_held_out_once():
    targets = np.repeat(np.arange(3), [30, 20, 10])
    fold = stratified_folds(targets)
    assert sorted(np.unique(fold)) == [0, 1, 2, 3, 4]
    for held_out in range(5):
        members = targets[fold == held_out]
        assert np.bincount(members, minlength=3).tolist() == [6, 4, 2]
    assert stratified_folds(targets, seed=0).tolist() == fold.tolist()  # seeded
    assert stratified_folds(np.arange(10) % 2).tolist() == list(range(10))  # few: one each
    # The smallest class sets the count of folds (each fold must be able to hold one).
    uneven = np.repeat(np.arange(2), [50, 3])
    assert len(np.unique(stratified_folds(uneven))) == 3


def test_a_probe_saved_and_reloaded_gives_identical_scores(orthonormal_texts, tmp_path):
    train, train_y = clusters(orthonormal_texts, 5, seed=4)
    test, _ = clusters(orthonormal_texts, 50, seed=5)
    weights, bias = fit_weights(train, train_y, orthonormal_texts, 100.0, 0.3)
    probe = Probe(weights, bias, {"label_set": "test_streets", "labels": LABELS.texts})
    npz, readable = probe.save(tmp_path / "probe")
    assert npz.suffix == ".npz" and readable.suffix == ".json"
    for path in (npz, readable):
        again = load_probe(path)
        before, after = probe.scores(test, LABELS), again.scores(test, LABELS)
        np.testing.assert_array_equal(before.all_probability, after.all_probability)
        np.testing.assert_array_equal(before.top_index, after.top_index)
        assert again.metadata["labels"] == LABELS.texts


def test_a_damaged_or_missing_probe_file_is_refused(orthonormal_texts, tmp_path):
    probe = Probe(np.asarray(orthonormal_texts), np.zeros(4, dtype=np.float32), {})
    npz, _ = probe.save(tmp_path / "probe.npz")
    arrays = dict(np.load(npz))
    arrays["weights"][0, 0] += 1.0
    np.savez(npz, **arrays)
    with pytest.raises(ProbeError, match="damaged"):
        load_probe(npz)
    with pytest.raises(ProbeError, match="does not exist"):
        load_probe(tmp_path / "nothing.npz")
    (tmp_path / "text.npz").write_text("not a probe", encoding="utf-8")
    with pytest.raises(ProbeError, match="cannot be read"):
        load_probe(tmp_path / "text.npz")


# -- the whole correction: store, corrections, probe file, every location re-scored ------------
@pytest.fixture(scope="module")
def tiny(tiny_spec):
    return load_model(tiny_spec)


@pytest.fixture(scope="module")
def corrected_city(tiny, tmp_path_factory):
    """A cache whose store holds 4 × 40 synthetic image embeddings (no image exists), and the
    locations that name them, 5 per class corrected."""
    cache = tmp_path_factory.mktemp("cache")
    setting = ViewSetting()
    texts = label_embeddings(tiny, LABELS)
    vectors, targets = clusters(texts, 40, seed=11)
    paths = store_vectors(cache, tiny.identity, setting, vectors)
    locations = [Location((path,)) for path in paths]
    corrected = np.zeros(len(targets), dtype=bool)
    for cls in range(4):
        corrected[np.flatnonzero(targets == cls)[:5]] = True
    user_labels = [LABELS.texts[t] if c else None for t, c in zip(targets, corrected, strict=True)]
    ids = list(range(len(targets)))
    run = train_and_rescore(locations, user_labels, ids, LABELS, tiny.spec, setting, cache, top_k=2)
    return cache, setting, locations, targets, corrected, user_labels, vectors, run


def test_corrections_teach_the_whole_layer_from_the_store(tiny, corrected_city):
    cache, _, locations, targets, corrected, _, vectors, run = corrected_city
    texts = label_embeddings(tiny, LABELS)
    others = ~corrected
    assert accuracy(vectors[others] @ texts.T, targets[others]) == 0.75
    assert np.mean(run.top_index[others, 0] == targets[others]) >= 0.97
    assert run.report["zero_shot_accuracy"] == 0.75 and run.report["probe_accuracy"] >= 0.9
    assert run.report["points"] == 20 and run.report["method"] == "leave-one-out"
    assert run.status == ["ok"] * len(locations)
    assert run.probability.shape == (160, 2) and np.isfinite(run.margin).all()
    np.testing.assert_allclose(run.margin, run.probability[:, 0] - run.probability[:, 1], 1e-5)
    # Saved next to the store, with what it was trained on.
    assert run.probe_path.parent.parent == next((cache / "embeddings").iterdir())
    meta = load_probe(run.probe_path).metadata
    assert meta["model_identity"] == tiny.identity and meta["labels"] == LABELS.texts
    assert meta["label_set_hash"] == LABELS.content_hash()
    assert meta["view_key"] == "views4-fov90-pitch0" and meta["regularisation"] == 0.3
    assert len(meta["trained_on"]) == 20
    assert meta["trained_on"][0] == {"point": "0", "label": "market", "keys": [f"{0:032x}"]}
    assert run.probe_path.with_suffix(".json").is_file()


def test_no_corrected_point_is_scored_by_the_probe_that_saw_it(tiny, corrected_city):
    cache, setting, locations, _, corrected, *_, run = corrected_city
    probe = load_probe(run.probe_path)
    with EmbeddingStore.under(
        embedding_cache_dir(cache), tiny.identity, store_key(setting)
    ) as store:
        found = stored_vectors(locations, store, setting, 64)
    final = probe.scores(found.vectors, LABELS, 2)
    assert [run.scored_by[i] for i in np.flatnonzero(corrected)] == [SCORED_OUT_OF_FOLD] * 20
    assert {run.scored_by[i] for i in np.flatnonzero(~corrected)} == {SCORED_BY_PROBE}
    # The others: exactly the saved probe's scores (reloaded: identical).
    np.testing.assert_array_equal(run.probability[~corrected], final.probability[~corrected])
    np.testing.assert_array_equal(run.top_index[~corrected], final.top_index[~corrected])
    # The corrected: not the final probe's (that one saw them).
    assert not np.allclose(run.probability[corrected], final.probability[corrected])


def test_too_few_labels_corrected_is_refused(tiny, corrected_city):
    cache, setting, locations, targets, *_ = corrected_city
    one_class = ["park" if t == 2 else None for t in targets]
    with pytest.raises(ProbeError, match=r"at least two labels.*all 'park'"):
        train_and_rescore(locations, one_class, range(160), LABELS, tiny.spec, setting, cache)
    with pytest.raises(ProbeError, match="at least two labels; the layer has 0 point"):
        train_and_rescore(locations, [None] * 160, range(160), LABELS, tiny.spec, setting, cache)


def test_a_label_not_in_the_set_is_named(tiny, corrected_city):
    cache, setting, locations, _, _, user_labels, *_ = corrected_city
    typo = list(user_labels)
    typo[0], typo[1] = "Market", "harbour"
    with pytest.raises(ProbeError) as caught:
        train_and_rescore(locations, typo, range(160), LABELS, tiny.spec, setting, cache)
    message = str(caught.value)
    assert "'Market' (point 0)" in message and "'harbour' (point 1)" in message
    assert "market, port area, park, railway station" in message


def test_corrected_points_without_stored_embeddings_are_left_out_and_said(
    tiny, corrected_city, tmp_path
):
    cache, setting, locations, _, _, user_labels, *_ = corrected_city
    gone = [Location((str(tmp_path / "never_embedded.jpg"),)), Location(())]
    run = train_and_rescore(
        [*gone, *locations],
        ["park", "market", *user_labels],
        ["new-1", "new-2", *range(160)],
        LABELS,
        tiny.spec,
        setting,
        cache,
        probe_path=tmp_path / "probe.npz",
    )
    assert [item["point"] for item in run.report["left_out"]] == ["new-1", "new-2"]
    assert "never embedded with this model" in run.report["left_out"][0]["why"]
    assert run.status[:2] == [
        f"error: image {tmp_path / 'never_embedded.jpg'} was never embedded with this model "
        "and these views (classify it first)",
        "no image",
    ]
    assert run.top_index[:2, 0].tolist() == [-1, -1] and run.scored_by[:2] == ["", ""]
    assert run.report["points"] == 20 and run.report["corrected"] == 22
    assert run.probe_path == tmp_path / "probe.npz"


def test_classify_uses_a_trained_probe_and_refuses_one_made_for_other_labels(
    tiny, corrected_city, tmp_path
):
    cache, setting, *_, run = corrected_city
    probe = load_probe(run.probe_path)
    locations = [Location((str(path),)) for path in AREZZO_PHOTOS[:3]]
    classified = classify_locations(locations, LABELS, tiny.spec, setting, 2, cache, probe=probe)
    expected = probe.scores(classified.embeddings.vectors, LABELS, 2)
    np.testing.assert_array_equal(classified.scores.top_index, expected.top_index)
    assert classified.metadata["probe"]["trained_points"] == 20
    with pytest.raises(ProbeError, match=r"label set .*'urban_atlas_2018'"):
        classify_locations(
            locations,
            builtin_label_set("urban_atlas_2018"),
            tiny.spec,
            setting,
            2,
            cache,
            probe=probe,
        )
    with pytest.raises(ProbeError, match="views"):
        classify_locations(
            locations, LABELS, tiny.spec, ViewSetting(count=6, fov=60.0), 2, cache, probe=probe
        )


def test_the_classification_is_read_back_from_the_layers_run_settings(tmp_path):
    label_set = builtin_label_set("urban_atlas_2018")
    settings = {
        "label_set": "urban_atlas_2018",
        "label_set_hash": label_set.content_hash(),
        "templates": list(label_set.templates),
        "model": "ViT-B-32",
        "pretrained": "laion2b_s34b_b79k",
        "checkpoint": "",
        "views": "views6-fov60-pitch5",
        "jpeg_draft_decode": False,
    }
    found, spec, setting, fast = classification_of(settings)
    assert found.texts == label_set.texts and spec.pretrained == "laion2b_s34b_b79k"
    assert setting == ViewSetting(6, 60.0, 5.0) and fast is False
    assert classification_of({**settings, "views": "centre-crop"})[2].centre_crop
    with pytest.raises(ProbeError, match="give that file again"):
        classification_of({**settings, "checkpoint": "mine.pt"})
    assert (
        classification_of({**settings, "checkpoint": "mine.pt"}, checkpoint="/w/mine.pt")[
            1
        ].checkpoint
        == "/w/mine.pt"
    )
    own = tmp_path / "streets.txt"
    own.write_text("market\npark\n", encoding="utf-8")
    with pytest.raises(ProbeError, match="label file 'streets'"):
        classification_of({**settings, "label_set": "streets"})
    with pytest.raises(ProbeError, match="not the one the layer was classified with"):
        classification_of({**settings, "label_set": "streets"}, label_file=str(own))
    with pytest.raises(ProbeError, match="no CLIP-classify run settings"):
        classification_of({})
