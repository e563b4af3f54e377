"""The readings' schemas: rank, grid, agreement, clusters, boundaries, periods."""

from __future__ import annotations

from dataclasses import dataclass

from . import Schema


@dataclass(frozen=True)
class AgreementParams(Schema):
    pairs: str  # a JSON file: {"reference": [codes], "predicted": [codes], "classes": optional}


@dataclass(frozen=True)
class AgreementResult(Schema):
    """Agreement of predicted with reference classes."""

    classes: list  # class codes, in the order of the rows and columns
    matrix: list  # C×C counts: rows reference, columns predicted
    overall_accuracy: float
    kappa: float  # Cohen's
    precision: list  # per class; NaN where a class was never predicted
    recall: list  # per class; NaN where a class never occurs in the reference
    f1: list  # per class: 2·TP / (2·TP + FP + FN), 0 where a class is never right
    support: list  # reference count per class

    @property
    def total(self) -> int:
        return sum(sum(row) for row in self.matrix)
