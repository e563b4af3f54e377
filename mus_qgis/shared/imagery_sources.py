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
    colour: str = "#808080"  # the source on survey maps
    keep_pixels: bool = True  # False: its terms ask that images go once embedded

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
            entry.get("colour", "#808080"),
            bool(entry.get("keep_pixels", True)),
        )
        for index, entry in enumerate(entries)
    }


def service_urls(text: str, names: list[str]) -> dict:
    """Each chosen source's service address from the 'Service URL' text: one address for a
    single source, or ``name=address`` pairs (separated by spaces, commas or semicolons) for
    several; a source not named asks its own service."""
    import re

    text = text.strip()
    tokens = [token for token in re.split(r"[\s,;]+", text) if token]
    urls: dict = {}
    bare = []
    for token in tokens:
        name, sep, address = token.partition("=")
        if sep and name in imagery_source_infos() and "://" not in name:
            urls[name] = address
        else:
            bare.append(token)
    if bare and (urls or len(names) > 1):
        from .errors import MusError

        raise MusError(
            f"The service URL {bare[0]!r} names no source, and {len(names)} sources are asked: "
            "give each its address as name=URL (e.g. 'mapillary=https://… "
            "panoramax=https://…'), or leave it empty for each service's own."
        )
    if bare:  # the one source's address, as given (the engine says if it is none)
        urls[names[0]] = text
    unknown = sorted(set(urls) - set(names))
    if unknown:
        from .errors import MusError

        raise MusError(
            f"The service URL names {', '.join(unknown)}, which is not among the sources "
            f"chosen ({', '.join(names)}): choose it too, or leave its address out."
        )
    return urls
