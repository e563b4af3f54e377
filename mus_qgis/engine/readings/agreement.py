"""Agreement between predicted and reference classes: confusion matrix, accuracy, kappa, F1."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class Agreement:
    classes: list[str]
    matrix: object  # int C×C: rows reference, columns predicted
    overall_accuracy: float
    kappa: float
    precision: object  # float C (NaN where a class was never predicted)
    recall: object  # float C (NaN where a class never occurs in the reference)
    f1: object  # float C
    support: object  # int C: reference count per class

    @property
    def total(self) -> int:
        return int(self.matrix.sum())


def agreement(
    reference: Sequence, predicted: Sequence, classes: Sequence[str] | None = None
) -> Agreement:
    """Compare paired class values (pairs where either is missing are left out)."""
    import numpy as np

    pairs = [
        (str(r), str(p))
        for r, p in zip(reference, predicted, strict=True)
        if r not in (None, "") and p not in (None, "")
    ]
    if classes is None:
        classes = sorted({c for pair in pairs for c in pair})
    position = {name: i for i, name in enumerate(classes)}
    size = len(classes)
    matrix = np.zeros((size, size), dtype=np.int64)
    for truth, guess in pairs:
        if truth in position and guess in position:
            matrix[position[truth], position[guess]] += 1
    total = matrix.sum()
    diagonal = np.diag(matrix).astype(np.float64)
    predicted_totals = matrix.sum(axis=0).astype(np.float64)
    reference_totals = matrix.sum(axis=1).astype(np.float64)
    observed = diagonal.sum() / total if total else float("nan")
    expected = (predicted_totals * reference_totals).sum() / total**2 if total else float("nan")
    kappa = (observed - expected) / (1 - expected) if total and expected < 1 else float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted_totals > 0, diagonal / predicted_totals, np.nan)
        recall = np.where(reference_totals > 0, diagonal / reference_totals, np.nan)
        f1 = np.where(
            (precision + recall) > 0,
            2 * precision * recall / (precision + recall),
            np.where(np.isnan(precision) | np.isnan(recall), np.nan, 0.0),
        )
    return Agreement(
        list(classes),
        matrix,
        float(observed),
        float(kappa),
        precision,
        recall,
        f1,
        reference_totals.astype(np.int64),
    )
