"""The imagery sources as both sides know them: name, title, whether a key is needed, price.

The list is data (``resources/imagery/sources.json``), in the order the dialogs offer it; the
engine's source classes (``engine/imagery/sources/``) take their title, order, key need and price
from it, so the fetch dialog can list the sources without importing the engine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

from .resources import resource_path


@dataclass(frozen=True)
class SourceInfo:
    name: str
    title: str
    needs_key: bool = False
    price_per_1000: float | None = None  # USD per 1,000 image requests; None: free
    order: int = 0  # 1 for the first in the list

    @property
    def option(self) -> str:
        """The source's entry in a dialog's list, saying when it needs a key."""
        return f"{self.title} (needs a key)" if self.needs_key else self.title


@lru_cache(maxsize=1)
def imagery_source_infos() -> dict:
    """Every source by name, in the dialogs' order."""
    with open(resource_path("imagery", "sources.json"), encoding="utf-8") as handle:
        entries = json.load(handle)["sources"]
    return {
        entry["name"]: SourceInfo(
            entry["name"],
            entry["title"],
            bool(entry.get("needs_key")),
            entry.get("price_per_1000"),
            index + 1,
        )
        for index, entry in enumerate(entries)
    }
