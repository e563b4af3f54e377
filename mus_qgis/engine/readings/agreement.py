"""Agreement between predicted and reference classes: confusion matrix, accuracy, kappa, F1."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...shared.sequences import zip_same_length


@dataclass
class Agreement:
    classes: list[str]
    matrix: object  # int C×C: rows reference, columns predicted
    overall_accuracy: float
    kappa: float
    precision: object  # float C (NaN where a class was never predicted)
    recall: object  # float C (NaN where a class never occurs in the reference)
    f1: object  # float C: 2·TP / (2·TP + FP + FN), 0 where a class is never right
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
        for r, p in zip_same_length(reference, predicted)
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
        # The harmonic mean of precision and recall written with counts, so that it is defined
        # (0) where a class occurs but is never right, even if it was never predicted.
        errors = predicted_totals + reference_totals - 2 * diagonal
        f1 = np.where((2 * diagonal + errors) > 0, 2 * diagonal / (2 * diagonal + errors), np.nan)
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


def land_use_code_problem(predicted: Sequence[str], known_codes: set[str]) -> tuple[str, str]:
    """Whether predicted values are land-use codes: ``(error, warning)`` texts, empty when fine.

    An error where no predicted value is a code of ``known_codes`` (e.g. points classified with
    city names: kappa would be 0 and mean nothing); a warning naming the values that are not,
    where only some are."""
    values = [str(value) for value in predicted if value not in (None, "")]
    if not values:
        return (
            "No compared point has a predicted code: classify the points with the Urban Atlas "
            "2018 or CORINE label set (its codes go into code_1), or choose the field that holds "
            "the codes.",
            "",
        )
    unknown = sorted({value for value in values if value not in known_codes})
    examples = ", ".join(repr(value) for value in unknown[:5]) + (", …" if len(unknown) > 5 else "")
    if len(unknown) == len(set(values)):
        return (
            f"The predicted values ({examples}) are not Urban Atlas or CORINE land-use codes, so "
            "the agreement would mean nothing: classify the points with the Urban Atlas 2018 or "
            "CORINE label set (its codes go into code_1), or choose the field that holds the "
            "codes.",
            "",
        )
    if unknown:
        count = sum(value in set(unknown) for value in values)
        return "", (
            f"{count} of {len(values)} compared points have a predicted value that is not an "
            f"Urban Atlas or CORINE land-use code ({examples}): they count as disagreeing."
        )
    return "", ""
