"""Each point's image from whichever source has one captured nearest a chosen date.

The candidates are the survey's lists (remembered in the cache, or asked now). Per point the
rule is: the image captured nearest the target date; among images as near in time, the nearest
to the point; then the sources' order as given. Without a target date: the nearest panorama,
then the nearest image. Each point's reason says which rule chose its image, over how many
others. The chosen images are then fetched by the ordinary fetch, source by source: cached,
resumable, one download for points that share an image.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

from ...shared.moments import EVERY_YEAR
from ...shared.progress import LoggingProgress, Progress
from .fetch import STATUS_NONE, STATUS_OK, FetchOutcome, FetchSettings, fetch_imagery
from .sources import imagery_sources
from .sources.base import Candidate, FetchPoint, distance_m
from .survey import Listing, SourceAccess, list_candidates


@dataclass(frozen=True)
class Pick:
    candidate: Candidate | None
    reason: str
    status: str = STATUS_OK  # for a point without a pick: why (no imagery, or a source failed)


def pick_image(
    point: FetchPoint, listings: dict[str, Listing], target: date | None, radius_m: float
) -> Pick:
    """The point's image among every source's candidates, and the reason in words."""
    titles = {name: cls.title for name, cls in imagery_sources().items()}
    order = {name: index for index, name in enumerate(listings)}
    pool = [
        (c, distance_m(point.lon, point.lat, c.lon, c.lat))
        for lst in listings.values()
        for c in lst.candidates
    ]
    if not pool:
        failed = [lst for lst in listings.values() if lst.status not in (STATUS_OK, STATUS_NONE)]
        asked = ", ".join(titles[name] for name in listings)
        if failed:
            reason = "; ".join(f"{titles[lst.source]}: {lst.status}" for lst in failed)
            status = failed[0].status if len(failed) == len(listings) else STATUS_NONE
            return Pick(
                None, f"no imagery within {radius_m:g} m from the others ({reason})", status
            )
        return Pick(None, f"no imagery within {radius_m:g} m from {asked}", STATUS_NONE)
    sources = sorted({c.source for c, _ in pool}, key=order.get)
    among = (
        f"{len(pool)} image{'s' if len(pool) > 1 else ''} from "
        f"{', '.join(titles[name] for name in sources)}"
    )
    if target is None:
        best, distance = min(
            pool, key=lambda item: (not item[0].is_panorama, item[1], order[item[0].source])
        )
        kind = "panorama" if best.is_panorama else "image"
        return Pick(best, f"the nearest {kind} ({distance:.1f} m) of {among}")

    def days(candidate: Candidate) -> float:
        return abs((candidate.captured - target).days) if candidate.captured else float("inf")

    best, distance = min(pool, key=lambda item: (days(item[0]), item[1], order[item[0].source]))
    apart = days(best)
    if apart == float("inf"):
        return Pick(best, f"no image has a capture date: the nearest ({distance:.1f} m) of {among}")
    reason = (
        f"captured {best.captured.isoformat()}, {apart:.0f} day{'s' if apart != 1 else ''} from "
        f"{target.isoformat()}: the nearest in time of {among}"
    )
    tied = [d for c, d in pool if c is not best and days(c) == apart]
    if tied:
        reason += (
            f"; {len(tied)} other{'s' if len(tied) > 1 else ''} as near in time but farther "
            f"({distance:.1f} m against {min(tied):.1f} m)"
        )
    return Pick(best, reason)


def fetch_by_date(
    points: list[FetchPoint],
    accesses: list[SourceAccess],
    settings: FetchSettings,
    target: date | None,
    cache_dir: str | Path,
    progress: Progress | None = None,
    proxies: dict | None = None,
    on_estimate=None,
) -> list[FetchOutcome]:
    """Imagery for every point from the sources given, each point's image picked by date.

    ``settings`` gives the radius, window, plan and concurrency (its ``source`` and ``url`` are
    taken from each access). No point is dropped; each outcome's ``reason`` says why its image
    was chosen, or why there is none. The candidates are listed even for an estimate (metadata
    only, as a survey does); each source's estimate of the images goes to ``on_estimate``."""
    progress = progress or LoggingProgress()
    if not points:
        return []
    listings = _listings(points, accesses, settings, cache_dir, progress, proxies)
    picks = [pick_image(p, _of(listings, p), target, settings.radius_m) for p in points]
    return _fetch_picks(
        points, picks, accesses, settings, cache_dir, progress, proxies, on_estimate
    )


@dataclass
class MomentOutcome:
    """One point's image at one moment (a year, or a date asked for)."""

    moment: str  # "2019", or "2019-06-01"; "" for a point with no imagery at any moment
    outcome: FetchOutcome


def fetch_moments(
    points: list[FetchPoint],
    accesses: list[SourceAccess],
    settings: FetchSettings,
    moments: list[str],
    cache_dir: str | Path,
    progress: Progress | None = None,
    proxies: dict | None = None,
    on_estimate=None,
) -> list[MomentOutcome]:
    """The same points at several moments: ``["every year"]`` takes, for each year a point has
    imagery of, the image captured nearest the middle of that year; ISO dates take, for each
    date, the image captured nearest it. A point without imagery keeps one row saying so."""
    progress = progress or LoggingProgress()
    if not points:
        return []
    listings = _listings(points, accesses, settings, cache_dir, progress, proxies)
    every_year = moments == [EVERY_YEAR]
    dates = [] if every_year else [date.fromisoformat(text) for text in moments]
    rows: list[tuple[FetchPoint, str, Pick]] = []
    for point in points:
        mine = _of(listings, point)
        if every_year:
            years = sorted(
                {c.captured.year for lst in mine.values() for c in lst.candidates if c.captured}
            )
            for year in years:
                in_year = {
                    name: replace(
                        lst,
                        candidates=[
                            c for c in lst.candidates if c.captured and c.captured.year == year
                        ],
                    )
                    for name, lst in mine.items()
                }
                pick = pick_image(point, in_year, date(year, 7, 1), settings.radius_m)
                rows.append((point, str(year), pick))
            if not years:
                rows.append((point, "", pick_image(point, mine, None, settings.radius_m)))
        else:
            for day in dates:
                rows.append(
                    (point, day.isoformat(), pick_image(point, mine, day, settings.radius_m))
                )
    # Each (point, moment) is fetched as a point of its own; the same image at two moments of a
    # point is downloaded once.
    stand_ins = [
        FetchPoint(index, point.lon, point.lat, point.bearing)
        for index, (point, _, _) in enumerate(rows)
    ]
    outcomes = _fetch_picks(
        stand_ins,
        [pick for _, _, pick in rows],
        accesses,
        settings,
        cache_dir,
        progress,
        proxies,
        on_estimate,
    )
    result = []
    for (point, moment, _), outcome in zip(rows, outcomes, strict=True):
        if outcome.duplicate_of is not None:
            outcome.duplicate_of = rows[outcome.duplicate_of][0].key
        outcome.key = point.key
        result.append(MomentOutcome(moment, outcome))
    return result


def _listings(points, accesses, settings, cache_dir, progress, proxies):
    return list_candidates(
        points,
        accesses,
        settings.radius_m,
        settings.window,
        cache_dir,
        progress,
        proxies,
        settings.concurrency,
        settings.max_consecutive_failures,
    )


def _of(listings: dict[str, dict[int, Listing]], point: FetchPoint) -> dict[str, Listing]:
    """One point's listing from each source."""
    return {name: by_key[point.key] for name, by_key in listings.items()}


def _fetch_picks(
    points, picks, accesses, settings, cache_dir, progress, proxies, on_estimate
) -> list[FetchOutcome]:
    """Fetch each point's picked image, source by source; the outcomes in the points' order."""
    by_key = {point.key: pick for point, pick in zip(points, picks, strict=True)}
    outcomes: dict[int, FetchOutcome] = {}
    for access in accesses:
        mine = [p for p in points if _source_of(by_key[p.key]) == access.name]
        if not mine:
            continue
        source_settings = replace(
            settings, source=access.name, url=access.url, location=access.location
        )
        for outcome in fetch_imagery(
            mine,
            source_settings,
            cache_dir,
            access.credentials,
            progress,
            proxies,
            on_estimate=on_estimate,
            chosen={p.key: by_key[p.key].candidate for p in mine},
        ):
            outcomes[outcome.key] = outcome
    result = []
    for point in points:
        pick = by_key[point.key]
        outcome = outcomes.get(point.key) or FetchOutcome(point.key, status=pick.status)
        outcome.reason = pick.reason
        result.append(outcome)
    return result


def _source_of(pick: Pick) -> str:
    return pick.candidate.source if pick.candidate is not None else ""
