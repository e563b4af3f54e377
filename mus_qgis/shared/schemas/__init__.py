"""What crosses the border: each job's parameters and result, as dataclasses both sides share.

A job declares its schemas in its domain's ``jobs.py`` (``@job("agreement",
params=AgreementParams, result=AgreementResult)``); the QGIS side builds the parameters with the
same class and gets the answer back as the result class (``run_job("agreement",
AgreementParams(...), feedback, AgreementResult)``). Both travel as plain JSON (``to_dict``), so
the worker's pipe carries nothing but lists, numbers and strings. The schemas live in one module
per domain (``streets``, ``imagery``, ``clip``, ``readings``, ``dreams``, ``engine``), held to the
QGIS side's rules: Python 3.9, standard library only.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import ClassVar

from ..errors import MusError

VERSION_ADVICE = (
    "the engine and the plugin are of different versions. Set up the engine again (menu "
    "Multimodal Urban Studies ▸ Set up the engine)."
)


class Schema:
    """``to_dict`` and ``from_dict`` for a dataclass of plain values.

    ``parts`` names the fields that hold another schema (or a list of them), so that
    ``from_dict`` rebuilds those too. A field with a default may be left out of the dict; a
    field without one may not, and a key the class does not know is refused: both mean the two
    sides disagree on the contract, which is worth saying plainly rather than as a KeyError
    later.
    """

    parts: ClassVar[dict] = {}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise MusError(f"{cls.__name__} expected a dict, got {type(data).__name__}.")
        known = {field.name: field for field in fields(cls)}
        required = [name for name, field in known.items() if _has_no_default(field)]
        missing = [name for name in required if name not in data]
        if missing:
            raise MusError(f"{cls.__name__} lacks {', '.join(missing)}: {VERSION_ADVICE}")
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise MusError(
                f"{cls.__name__} has no field {', '.join(unknown)} (it has "
                f"{', '.join(known)}): {VERSION_ADVICE}"
            )
        values = {}
        for name, value in data.items():
            part = cls.parts.get(name)
            if part is not None and value is not None:
                if isinstance(value, list):
                    value = [part.from_dict(item) for item in value]
                else:
                    value = part.from_dict(value)
            values[name] = value
        return cls(**values)


def _has_no_default(field) -> bool:
    from dataclasses import MISSING

    return field.default is MISSING and field.default_factory is MISSING
