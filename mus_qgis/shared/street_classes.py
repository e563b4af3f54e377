"""The OpenStreetMap street classes offered for sampling (a data file), without heavy imports."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache

from .resources import resource_path

# The largest merge distance sampling takes (here, free of heavy imports, for the QGIS parameter
# too): beyond it a city keeps a handful of points, so a larger value is a slip of the unit.
MAX_MERGE_DISTANCE_M = 10_000.0


@dataclass(frozen=True)
class StreetClass:
    value: str
    description: str
    reference_study: bool


@lru_cache(maxsize=1)
def street_classes() -> tuple[StreetClass, ...]:
    """Every class in ``resources/streets/highway_classes.csv``, in file order.

    Processing stores a multi-select as indices into this order, so new classes are appended.
    """
    with resource_path("streets", "highway_classes.csv").open(encoding="utf-8") as handle:
        return tuple(
            StreetClass(row["value"], row["description"], row["reference_study"] == "yes")
            for row in csv.DictReader(handle)
        )


def reference_study_classes() -> tuple[str, ...]:
    """The classes "CLIP and the City" sampled (primary to pedestrian)."""
    return tuple(c.value for c in street_classes() if c.reference_study)
