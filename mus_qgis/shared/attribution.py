"""Who the imagery behind a report or figure belongs to, as its licences ask to be credited.

Fetch panoramas records each image's source, creator and licence; every layer made from it
carries them on. A report or figure that reads such a layer credits each source with its
licence (and the licence's page), names the creators (CC BY and CC BY-SA require it), says the
images were adapted (cut into views and classified), and that adaptations of share-alike imagery
fall under the same licence. The licences' facts are data (resources/imagery/licences.json).
Plain Python: QGIS's process and the engine both use it.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from functools import lru_cache

from .resources import resource_path

# Creators named per source and licence before the rest are counted (the layer names them all).
CREATORS_SHOWN = 12


@dataclass(frozen=True)
class Credit:
    """One image's source, licence and creator, as the layer records them."""

    source: str  # the source's name (mapillary, panoramax, ...) or title
    licence: str
    creator: str = ""


@dataclass(frozen=True)
class LicenceFacts:
    name: str
    url: str = ""
    share_alike: bool = False
    notice: str = ""


@lru_cache(maxsize=1)
def _licences() -> list[dict]:
    with open(resource_path("imagery", "licences.json"), encoding="utf-8") as handle:
        return json.load(handle)["licences"]


def licence_facts(licence: str) -> LicenceFacts:
    """What is known of a licence from the text a layer holds ("CC BY-SA 4.0", "etalab-2.0
    (panoramax.ign.fr)"); a licence not in the list is named as it is, with no page."""
    for entry in _licences():
        if entry["match"].lower() in (licence or "").lower():
            return LicenceFacts(
                entry["name"],
                entry.get("url", ""),
                bool(entry.get("share_alike")),
                entry.get("notice", ""),
            )
    return LicenceFacts(licence or "licence not recorded")


@dataclass(frozen=True)
class SourceCredit:
    """One source under one licence: its creators, and what the licence asks."""

    source: str  # the source's title
    licence: str  # the licence as recorded (may name the instance that serves it)
    facts: LicenceFacts
    creators: tuple[str, ...]
    images: int


def grouped_credits(credits: list[Credit]) -> list[SourceCredit]:
    """The credits by source and licence, creators in alphabetical order, most images first."""
    from .imagery_sources import imagery_source_infos

    titles = {name: info.title for name, info in imagery_source_infos().items()}
    groups: dict[tuple[str, str], tuple[set, int]] = {}
    for credit in credits:
        if not credit.source:
            continue
        key = (titles.get(credit.source, credit.source), credit.licence or "")
        creators, images = groups.get(key, (set(), 0))
        if credit.creator:
            creators.add(credit.creator)
        groups[key] = (creators, images + 1)
    out = [
        SourceCredit(source, licence, licence_facts(licence), tuple(sorted(creators)), images)
        for (source, licence), (creators, images) in groups.items()
    ]
    return sorted(out, key=lambda c: (-c.images, c.source, c.licence))


def _creators_words(creators: tuple[str, ...]) -> str:
    shown = ", ".join(creators[:CREATORS_SHOWN])
    rest = len(creators) - CREATORS_SHOWN
    return shown + (f" and {rest} more (the layer's creator field names each)" if rest > 0 else "")


def attribution_lines(credits: list[Credit]) -> list[str]:
    """The attribution as lines of plain text, one per source and licence, then one on the
    adaptation; [] when the layers record no imagery source."""
    groups = grouped_credits(credits)
    lines = []
    for group in groups:
        words = f"{group.source}: {group.images} image{'s' if group.images != 1 else ''}"
        if group.creators:
            words += f" by {_creators_words(group.creators)}"
        licence = group.facts.name
        if group.licence and group.licence != licence and licence_facts(group.licence).url:
            licence = group.licence  # keeps the instance a Panoramax licence names
        words += f", {licence}"
        if group.facts.url:
            words += f" ({group.facts.url})"
        if group.facts.notice:
            words += f"; {group.facts.notice}"
        lines.append(words + ".")
    if groups:
        adapted = "Images were cut into views and read by CLIP; what is shown is derived from them"
        if any(group.facts.share_alike for group in groups):
            adapted += (
                ", and what derives from share-alike (BY-SA) imagery is shared under the same "
                "licence"
            )
        lines.append(adapted + ".")
    return lines


def attribution_html(credits: list[Credit]) -> str:
    """The attribution block of a report; "" when the layers record no imagery source."""
    lines = attribution_lines(credits)
    if not lines:
        return ""
    return (
        "<div class='attribution'><h2>Imagery</h2>"
        + "".join(f"<p>{html.escape(line)}</p>" for line in lines)
        + "</div>"
    )
