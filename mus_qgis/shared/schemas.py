"""What crosses the border: a job's parameters and its result, as dataclasses both sides share.

A job declares its schemas (``@job("agreement", params=AgreementParams, result=AgreementResult)``
in its domain's ``jobs.py``); the QGIS side builds the parameters with the same class and reads
the answer with ``from_dict``. Both ends travel as plain JSON (``to_dict``), so the worker's pipe
never carries anything but lists, numbers and strings; a field that one side expects and the
other did not send is named, not a KeyError.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from .errors import MusError


class Schema:
    """``to_dict`` and ``from_dict`` for a dataclass of plain values."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        names = [field.name for field in fields(cls)]
        missing = [name for name in names if name not in data]
        if missing:
            raise MusError(
                f"{cls.__name__} lacks {', '.join(missing)}: the engine and the plugin are of "
                "different versions. Set up the engine again (menu Multimodal Urban Studies ▸ "
                "Set up the engine)."
            )
        return cls(**{name: data[name] for name in names})


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
