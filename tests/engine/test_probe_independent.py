"""The probe's folds, cross-validated accuracy and re-scoring, computed a second way.

The probe (``clip/probe.py``) is fitted with torch's L-BFGS; here the same objective, written out
from the module's docstring (summed cross-entropy + regularisation / 2 × (‖W − scale·T‖² + ‖b‖²)),
is minimised with scipy's BFGS and an analytic gradient in NumPy. The folds are read through
sklearn.model_selection (PredefinedSplit, LeaveOneOut, StratifiedKFold) and the accuracies come
from sklearn.metrics. Only the public functions under test are imported from the module.

The embeddings are synthetic, with answers known by construction: unit vectors whose cosines
with orthonormal "text embeddings" are set, so that zero-shot gets every class right but one,
which looks like another label; a fourth label has no example at all.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, special
from sklearn import metrics, model_selection

from mus_qgis.engine.clip.probe import Probe, cross_validate, fit_weights, stratified_folds
from mus_qgis.shared.labels import DEFAULT_TEMPLATES, Label, LabelSet
from tests.engine.helpers import store_vectors

LABELS = LabelSet(
    "independent_streets",
    tuple(Label(text) for text in ("market", "port area", "park", "railway station")),
    DEFAULT_TEMPLATES,
    "Independent streets",
)
LOOKS_LIKE = {2: 1}  # zero-shot sees the parks as port areas
REGULARISATION = 0.3


def text_vectors(dimension: int = 16, labels: int = 4, seed: int = 5):
    rng = np.random.default_rng(seed)
    return np.linalg.qr(rng.normal(size=(dimension, dimension)))[0][:labels].astype(np.float32)


def synthetic(texts, counts, seed: int, noise: float = 0.3):
    """Unit vectors per class: cosine 0.3 with their own label and 0.2 with the others (a class
    in LOOKS_LIKE: 0.3 with that label, 0.25 with its own), plus a direction of their own and
    noise orthogonal to every text vector, so that zero-shot's answer is known exactly."""
    rng = np.random.default_rng(seed)
    texts = np.asarray(texts, np.float64)
    labels = len(texts)
    free = np.linalg.svd(texts)[2][labels:]  # orthonormal, orthogonal to the texts
    vectors, targets = [], []
    for cls, count in enumerate(counts):
        cosines = np.full(labels, 0.2)
        cosines[cls] = 0.3
        if cls in LOOKS_LIKE:
            cosines[LOOKS_LIKE[cls]], cosines[cls] = 0.3, 0.25
        inside = np.linalg.pinv(texts) @ cosines  # exactly those cosines before scaling
        spread = rng.normal(size=(count, len(free) - labels)) @ free[labels:]
        points = inside + 0.6 * free[cls] + noise * spread / math.sqrt(len(free) - labels)
        vectors.append(points / np.linalg.norm(points, axis=1, keepdims=True))
        targets += [cls] * count
    return np.vstack(vectors).astype(np.float32), np.asarray(targets, dtype=np.int64)


def objective(theta, x, targets, anchor, regularisation):
    """The documented loss and its gradient, in NumPy."""
    labels, dimension = anchor.shape
    delta = theta[: labels * dimension].reshape(labels, dimension)
    bias = theta[labels * dimension :]
    logits = x @ (anchor + delta).T + bias
    normaliser = special.logsumexp(logits, axis=1)
    loss = (normaliser - logits[np.arange(len(x)), targets]).sum()
    loss += 0.5 * regularisation * ((delta**2).sum() + (bias**2).sum())
    error = np.exp(logits - normaliser[:, None])
    error[np.arange(len(x)), targets] -= 1.0
    gradient = np.concatenate(
        [(error.T @ x + regularisation * delta).ravel(), error.sum(axis=0) + regularisation * bias]
    )
    return loss, gradient


def reference_fit(vectors, targets, texts, logit_scale, regularisation=REGULARISATION):
    """The probe's weights and biases by scipy's BFGS, from zero-shot (Δ = 0, b = 0)."""
    x = np.asarray(vectors, np.float64)
    anchor = logit_scale * np.asarray(texts, np.float64)
    start = np.zeros(anchor.size + len(anchor))
    found = optimize.minimize(
        objective,
        start,
        args=(x, np.asarray(targets), anchor, regularisation),
        jac=True,
        method="BFGS",
        options={"gtol": 1e-9, "maxiter": 20_000},
    )
    assert np.abs(found.jac).max() < 1e-6, found.message
    delta = found.x[: anchor.size].reshape(anchor.shape)
    return anchor + delta, found.x[anchor.size :]


def gradient_at(weights, bias, vectors, targets, texts, logit_scale):
    anchor = logit_scale * np.asarray(texts, np.float64)
    theta = np.concatenate([(np.asarray(weights, np.float64) - anchor).ravel(), bias])
    return objective(theta, np.asarray(vectors, np.float64), targets, anchor, REGULARISATION)[1]


@pytest.mark.parametrize("logit_scale", [100.0, 14.29])
def test_fitted_weights_are_the_documented_optimum(logit_scale):
    texts = text_vectors()
    vectors, targets = synthetic(texts, [6, 6, 6, 0], seed=1)
    weights, bias = fit_weights(vectors, targets, texts, logit_scale, REGULARISATION)
    # Its gradient vanishes there (it did not at zero-shot), and scipy finds the same optimum.
    at_start = gradient_at(logit_scale * texts, np.zeros(4), vectors, targets, texts, logit_scale)
    at_fit = gradient_at(weights, bias, vectors, targets, texts, logit_scale)
    assert np.abs(at_start).max() > 0.5 and np.abs(at_fit).max() < 1e-3
    ref_weights, ref_bias = reference_fit(vectors, targets, texts, logit_scale)
    np.testing.assert_allclose(weights, ref_weights, rtol=0, atol=1e-3)
    np.testing.assert_allclose(bias, ref_bias, rtol=0, atol=1e-3)
    # The label with no example: its bias only feels the penalty and the other classes' pull.
    assert bias[3] < 0 and ref_bias[3] < 0


def split_tests(fold):
    """Each fold's held-out points, read through sklearn's PredefinedSplit."""
    splits = model_selection.PredefinedSplit(fold).split()
    return sorted(tuple(sorted(test.tolist())) for _, test in splits)


def test_up_to_forty_points_are_left_out_one_at_a_time():
    for count in (2, 17, 40):
        targets = np.arange(count) % 3
        fold = stratified_folds(targets)
        leave_one_out = model_selection.LeaveOneOut().split(np.zeros((count, 1)))
        assert split_tests(fold) == sorted((int(test[0]),) for _, test in leave_one_out)


@pytest.mark.parametrize(
    "sizes", [[30, 20, 11], [40, 20, 3], [50, 1], [21, 20, 0, 5], [8, 9, 10, 11, 12]]
)
@pytest.mark.filterwarnings("ignore:The least populated class:UserWarning")
def test_folds_are_stratified_like_sklearns(sizes):
    targets = np.repeat(np.arange(len(sizes)), sizes)
    targets = np.random.default_rng(3).permutation(targets)  # classes interleaved
    fold = stratified_folds(targets, seed=4)
    present = [s for s in sizes if s]
    folds = max(2, min(5, min(present)))  # the documented count: the smallest class, 2 to 5
    assert model_selection.PredefinedSplit(fold).get_n_splits() == folds
    sklearn_folds = model_selection.StratifiedKFold(folds, shuffle=True, random_state=0)
    theirs = np.empty(len(targets), dtype=int)
    for number, (_, test) in enumerate(sklearn_folds.split(np.zeros(len(targets)), targets)):
        theirs[test] = number
    for cls in np.unique(targets):
        mine = np.bincount(fold[targets == cls], minlength=folds)
        their = np.bincount(theirs[targets == cls], minlength=folds)
        # Each class dealt as evenly as it can be, as sklearn deals it.
        assert sorted(mine.tolist()) == sorted(their.tolist())
    size = np.bincount(fold, minlength=folds)
    assert size.max() - size.min() <= 1  # and the folds the same size
    assert stratified_folds(targets, seed=4).tolist() == fold.tolist()  # seeded


@settings(max_examples=40, deadline=None, database=None)
@given(st.lists(st.integers(1, 30), min_size=2, max_size=5), st.integers(0, 2**31))
def test_property_every_point_held_out_once_in_even_stratified_folds(sizes, seed):
    targets = np.random.default_rng(seed).permutation(np.repeat(np.arange(len(sizes)), sizes))
    fold = stratified_folds(targets, seed=seed)
    assert fold.shape == targets.shape and (fold >= 0).all()
    if len(targets) <= 40:
        assert sorted(fold.tolist()) == list(range(len(targets)))
        return
    folds = max(2, min(5, min(sizes)))
    assert sorted(set(fold.tolist())) == list(range(folds))
    for cls in range(len(sizes)):
        per_fold = np.bincount(fold[targets == cls], minlength=folds)
        assert per_fold.max() - per_fold.min() <= 1
    size = np.bincount(fold, minlength=folds)
    assert size.max() - size.min() <= 1


@pytest.mark.parametrize(
    ("counts", "method"), [([5, 5, 5, 0], "leave-one-out"), ([30, 20, 11, 0], "5-fold stratified")]
)
def test_cross_validation_against_an_independent_refit_per_fold(counts, method):
    texts = text_vectors()
    logit_scale = 100.0
    vectors, targets = synthetic(texts, counts, seed=2)
    result = cross_validate(vectors, targets, texts, logit_scale, REGULARISATION)
    assert result.method == method
    reference = np.full((len(targets), len(texts)), np.nan)
    for train, test in model_selection.PredefinedSplit(result.fold).split():
        weights, bias = reference_fit(vectors[train], targets[train], texts, logit_scale)
        reference[test] = vectors[test].astype(np.float64) @ weights.T + bias
    assert np.isfinite(reference).all()  # every point predicted, by a fit without its fold
    np.testing.assert_allclose(result.logits, reference, rtol=0, atol=2e-3)
    predicted = reference.argmax(axis=1)
    assert result.logits.argmax(axis=1).tolist() == predicted.tolist()
    assert result.probe_accuracy == metrics.accuracy_score(targets, predicted)
    zero_shot = (vectors @ texts.T).argmax(axis=1)
    assert result.zero_shot_accuracy == metrics.accuracy_score(targets, zero_shot)
    # Known by construction: zero-shot misses exactly the parks.
    assert result.zero_shot_accuracy == (counts[0] + counts[1]) / sum(counts)
    assert result.probe_accuracy > result.zero_shot_accuracy


def test_a_probes_scores_are_the_softmax_of_its_logits():
    rng = np.random.default_rng(6)
    texts = text_vectors()
    vectors, _ = synthetic(texts, [4, 4, 4, 4], seed=7)
    vectors[5] = np.nan  # a point without an embedding
    weights = (100 * texts + rng.normal(0, 3, texts.shape)).astype(np.float32)
    bias = rng.normal(0, 1, 4).astype(np.float32)
    scores = Probe(weights, bias).scores(vectors, LABELS, top_k=2)
    logits = vectors.astype(np.float64) @ weights.T.astype(np.float64) + bias
    probability = special.softmax(logits, axis=1)
    good = np.isfinite(logits).all(axis=1)
    order = np.argsort(-logits[good], axis=1)[:, :2]
    assert scores.top_index[good].tolist() == order.tolist()
    assert scores.top_index[5].tolist() == [-1, -1] and np.isnan(scores.probability[5]).all()
    np.testing.assert_allclose(
        scores.probability[good], np.take_along_axis(probability[good], order, axis=1), atol=1e-5
    )
    np.testing.assert_allclose(scores.all_probability[good], probability[good], atol=1e-5)
    ranked = np.sort(probability[good], axis=1)
    np.testing.assert_allclose(scores.margin[good], ranked[:, -1] - ranked[:, -2], atol=1e-5)
    np.testing.assert_allclose(
        scores.cosine[good], np.take_along_axis(logits[good], order, axis=1), rtol=1e-5
    )


@pytest.mark.slow  # the tiny model and its checkpoint: shared with test_probe.py in a full run
def test_a_layer_is_rescored_by_the_final_probe_and_its_corrections_out_of_fold(
    tiny_spec, tmp_path
):
    """The whole correction through the store and the tiny model: every point not corrected
    takes the softmax of the probe fitted on all corrections; a corrected point takes the
    softmax of the probe fitted without it (leave-one-out: 15 corrections)."""
    from mus_qgis.engine.clip.embedding import Location
    from mus_qgis.engine.clip.models import load_model
    from mus_qgis.engine.clip.scoring import label_embeddings
    from mus_qgis.engine.clip.teach import train_and_rescore
    from mus_qgis.engine.imagery.panorama import ViewSetting

    model = load_model(tiny_spec)
    texts = label_embeddings(model, LABELS)
    vectors, targets = synthetic(texts, [20, 20, 20, 20], seed=8)
    setting = ViewSetting()
    paths = store_vectors(tmp_path, model.identity, setting, vectors)
    corrected = np.zeros(len(targets), dtype=bool)
    for cls in range(3):  # the railway stations: never corrected
        corrected[np.flatnonzero(targets == cls)[:5]] = True
    user_labels = [LABELS.texts[t] if c else None for t, c in zip(targets, corrected, strict=True)]
    run = train_and_rescore(
        [Location((path,)) for path in paths],
        user_labels,
        list(range(len(paths))),
        LABELS,
        tiny_spec,
        setting,
        tmp_path,
        top_k=2,
        probe_path=tmp_path / "probe.npz",
    )
    scale = float(model.logit_scale)
    rows = np.flatnonzero(corrected)
    x, y = vectors[rows], targets[rows]
    out_of_fold = np.empty((len(rows), len(texts)))
    for train, test in model_selection.LeaveOneOut().split(x):
        weights, bias = reference_fit(x[train], y[train], texts, scale)
        out_of_fold[test] = x[test].astype(np.float64) @ weights.T + bias
    weights, bias = reference_fit(x, y, texts, scale)
    expected = vectors.astype(np.float64) @ weights.T + bias
    expected[rows] = out_of_fold
    probability = special.softmax(expected, axis=1)
    order = np.argsort(-expected, axis=1)[:, :2]
    assert run.top_index.tolist() == order.tolist()
    np.testing.assert_allclose(
        run.probability, np.take_along_axis(probability, order, axis=1), atol=1e-4
    )
    assert run.report["method"] == "leave-one-out" and run.report["points"] == 15
    predicted = out_of_fold.argmax(axis=1)
    assert run.report["probe_accuracy"] == metrics.accuracy_score(y, predicted)
    zero_shot = (x @ np.asarray(texts).T).argmax(axis=1)
    assert run.report["zero_shot_accuracy"] == metrics.accuracy_score(y, zero_shot) == 10 / 15
