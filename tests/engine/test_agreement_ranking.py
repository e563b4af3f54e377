"""Agreement metrics against a hand-computed matrix and an independent reference; rankings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mus_qgis.engine.readings.agreement import agreement
from mus_qgis.engine.readings.ranking import rank_labels


def test_hand_computed_confusion_matrix():
    reference = ["A", "A", "A", "B", "B", "C", "C", "C", "C", None]
    predicted = ["A", "A", "B", "B", "C", "C", "C", "C", "A", "A"]
    result = agreement(reference, predicted)
    assert result.classes == ["A", "B", "C"]
    assert result.matrix.tolist() == [[2, 1, 0], [0, 1, 1], [1, 0, 3]]
    assert result.total == 9
    assert result.overall_accuracy == pytest.approx(6 / 9)
    # Expected agreement: (3·3 + 2·2 + 4·4) / 81 = 29/81.
    expected = 29 / 81
    assert result.kappa == pytest.approx((6 / 9 - expected) / (1 - expected))
    assert result.precision.tolist() == pytest.approx([2 / 3, 1 / 2, 3 / 4])
    assert result.recall.tolist() == pytest.approx([2 / 3, 1 / 2, 3 / 4])
    assert result.f1.tolist() == pytest.approx([2 / 3, 1 / 2, 3 / 4])
    assert result.support.tolist() == [3, 2, 4]


def reference_metrics(truth, guess, classes):
    """Textbook definitions, one class at a time, without matrices."""
    n = len(truth)
    accuracy = sum(t == g for t, g in zip(truth, guess, strict=True)) / n
    chance = sum((truth.count(c) / n) * (guess.count(c) / n) for c in classes)
    rows = {}
    for c in classes:
        tp = sum(t == c and g == c for t, g in zip(truth, guess, strict=True))
        fp = sum(t != c and g == c for t, g in zip(truth, guess, strict=True))
        fn = sum(t == c and g != c for t, g in zip(truth, guess, strict=True))
        p = tp / (tp + fp) if tp + fp else math.nan
        r = tp / (tp + fn) if tp + fn else math.nan
        f = (
            2 * p * r / (p + r)
            if (p + r) and not math.isnan(p + r)
            else (math.nan if math.isnan(p) or math.isnan(r) else 0.0)
        )
        rows[c] = (p, r, f)
    return accuracy, (accuracy - chance) / (1 - chance), rows


def test_random_data_against_textbook_definitions():
    rng = np.random.default_rng(9)
    classes = [f"c{i}" for i in range(6)]
    truth = [classes[i] for i in rng.integers(0, 6, 2000)]
    guess = [t if rng.random() < 0.4 else classes[rng.integers(0, 6)] for t in truth]
    result = agreement(truth, guess, classes)
    accuracy, kappa, rows = reference_metrics(truth, guess, classes)
    assert result.overall_accuracy == pytest.approx(accuracy)
    assert result.kappa == pytest.approx(kappa)
    for i, c in enumerate(classes):
        assert (result.precision[i], result.recall[i], result.f1[i]) == pytest.approx(rows[c])


def test_a_class_never_predicted_has_no_precision():
    result = agreement(["A", "B"], ["A", "A"], ["A", "B"])
    assert math.isnan(result.precision[1]) and result.recall[1] == 0.0


def test_ranking_by_first_places_with_targets_and_groups():
    labels = ["Rome", "Paris", "Vatican City", "Berlin"]
    first = [0, 1, 1, 2, 2, 2, 1, -1]
    probabilities = np.array([[0.4, 0.3, 0.2, 0.1]] * 8)
    ranked = rank_labels(labels, first, probabilities, targets=["Rome"])
    assert [(r.label, r.first_places, r.rank) for r in ranked] == [
        ("Paris", 3, 1),
        ("Vatican City", 3, 2),
        ("Rome", 1, 3),
        ("Berlin", 0, 4),
    ]
    assert ranked[2].target and ranked[0].share == pytest.approx(3 / 7)
    grouped = rank_labels(
        labels, first, probabilities, groups={"Rome + Vatican City": ["Rome", "Vatican City"]}
    )
    assert (grouped[0].label, grouped[0].first_places, grouped[0].rank) == (
        "Rome + Vatican City",
        4,
        1,
    )
    assert grouped[0].mean_probability == pytest.approx(0.6)
    assert "Rome" not in [r.label for r in grouped]
    with pytest.raises(ValueError, match="Not in the label set: 'Roma'"):
        rank_labels(labels, first, targets=["Roma"])
