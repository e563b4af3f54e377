"""What imagery each source has near each study point, known before anything is fetched.

Every source asked lists the images within the radius of each point, from its metadata only (no
image is downloaded). The lists are remembered in the cache folder, so a fetch by date after a
survey asks no service again. A source whose key is missing or refused, or which stops answering,
costs its own rows a status; the other sources' rows are complete.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

from ...shared.errors import CanceledError, CredentialsError, LocalPhotosError, MusError
from ...shared.folders import writable_folder
from ...shared.progress import LoggingProgress, Progress, warn
from .fetch import STATUS_NONE, STATUS_NOT_TRIED, STATUS_OK, describe_failure
from .http import Http
from .lookup_cache import LookupCache, list_key
from .sources import imagery_sources
from .sources.base import (
    Candidate,
    Credentials,
    DateWindow,
    FetchPoint,
    ImagerySource,
    distance_m,
    nearest_candidate,
)


@dataclass(frozen=True)
class SourceAccess:
    """A source to ask and how: its key, its service URL (empty: its own), local photos' place."""

    name: str
    credentials: Credentials = field(default_factory=Credentials)
    url: str = ""
    location: str = ""


@dataclass
class Listing:
    """One source's images near one point (within the window), or why there is no list."""

    source: str
    key: int
    status: str = STATUS_OK
    candidates: list[Candidate] = field(default_factory=list)
    cached: bool = False  # the list came from the cache: no request was made


def list_candidates(
    points: list[FetchPoint],
    accesses: list[SourceAccess],
    radius_m: float,
    window: DateWindow,
    cache_dir: str | Path,
    progress: Progress | None = None,
    proxies: dict | None = None,
    concurrency: int = 8,
    max_consecutive_failures: int = 5,
    http: Http | None = None,
) -> dict[str, dict[int, Listing]]:
    """Each source's candidates for each point: ``{source: {point key: Listing}}``.

    Lists are asked for every capture date and remembered; the window is applied afterwards, so
    a second survey or a fetch with another window asks nothing again."""
    progress = progress or LoggingProgress()
    root = writable_folder(Path(cache_dir).expanduser().absolute(), "cache folder") / "imagery"
    secrets = [s for a in accesses for s in (a.credentials.key, a.credentials.secret) if s]
    http = http or Http(secrets=secrets, proxies=proxies)
    http.progress = progress
    known = imagery_sources()
    result: dict[str, dict[int, Listing]] = {}
    try:
        for number, access in enumerate(accesses):
            if access.name not in known:
                raise MusError(
                    f"Unknown imagery source {access.name!r}; known: {', '.join(known)}."
                )
            if progress.is_canceled():
                raise CanceledError()
            progress.info(
                f"Listing {known[access.name].title} imagery for {len(points)} points ..."
            )
            result[access.name] = _SourceListing(
                known[access.name],
                access,
                http,
                root,
                radius_m,
                window,
                progress,
                concurrency,
                max_consecutive_failures,
            ).run(points, (number, len(accesses)))
    finally:
        http.close()
    return result


class _SourceListing:
    """One source's lists for every point, on a bounded pool, stopping after failures in a row."""

    def __init__(
        self, cls, access, http, root, radius_m, window, progress, concurrency, max_failures
    ) -> None:
        self.cls, self.access, self.http, self.root = cls, access, http, root
        self.radius_m, self.window, self.progress = radius_m, window, progress
        self.concurrency, self.max_failures = max(1, concurrency), max_failures
        self.failures_in_a_row = 0
        self.stopped = ""
        self.lock = threading.Lock()

    def run(self, points: list[FetchPoint], place: tuple[int, int]) -> dict[int, Listing]:
        listings = {p.key: Listing(self.cls.name, p.key) for p in points}
        try:
            source = self.cls(
                self.http, self.access.credentials, self.access.url, self.access.location
            )
        except (CredentialsError, MusError) as exc:
            # This source cannot be asked at all (no key, a bad URL): its rows say why.
            for listing in listings.values():
                listing.status = f"{STATUS_NOT_TRIED}: {exc}"
            warn(self.progress, f"{self.cls.title}: {exc}")
            return listings
        done = 0
        cache_path = self.root / source.name / "lookups.sqlite"
        with (
            LookupCache(cache_path) as cache,
            ThreadPoolExecutor(max_workers=self.concurrency) as pool,
        ):
            # The first point alone: a refused key is found with one request, not a thousand.
            try:
                for batch in (points[:1], points[1:]):
                    for _ in pool.map(
                        lambda p: self._list(source, cache, p, listings[p.key]), batch
                    ):
                        done += 1
                        if self.progress.is_canceled():
                            raise CanceledError()
                        number, count = place
                        self.progress.set_progress(100.0 * (number + done / len(points)) / count)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)  # the lists asked are kept
                raise
        return listings

    def _list(self, source: ImagerySource, cache: LookupCache, point, listing: Listing) -> None:
        key = list_key(
            source.name, source.url if source.remote else source.location, point, self.radius_m
        )
        try:
            found = cache.get_list(key) if source.remote else None
            if found is not None:
                listing.cached = True
            elif self.stopped:
                listing.status = f"{STATUS_NOT_TRIED}: {self.stopped}"
                return
            else:
                found = source.candidates(point, self.radius_m, DateWindow())
                if source.remote:
                    cache.put_list(key, found)
                with self.lock:
                    self.failures_in_a_row = 0
        except (CredentialsError, CanceledError, LocalPhotosError):
            raise
        except Exception as exc:  # an odd answer costs this point's row, never the survey
            listing.status = describe_failure(exc, self.http.redact)
            with self.lock:
                self.failures_in_a_row += 1
                if (
                    source.remote
                    and self.max_failures > 0
                    and self.failures_in_a_row >= self.max_failures
                    and not self.stopped
                ):
                    self.stopped = (
                        f"{source.title} failed {self.failures_in_a_row} times in a row (last: "
                        f"{listing.status.removeprefix('error: ')})"
                    )
                    warn(self.progress, f"{self.stopped}: the survey stops asking it.")
            return
        listing.candidates = [c for c in found if self.window.contains(c.captured)]
        if not listing.candidates:
            listing.status = STATUS_NONE


@dataclass
class SurveyRow:
    """One point and one source: what a fetch from that source would find, and what else is
    there (how many images, of which years)."""

    key: int
    source: str
    status: str
    images: int = 0
    panoramas: int = 0
    image_id: str = ""  # the image a fetch from this source alone would take
    distance_m: float | None = None
    captured: str | None = None
    is_panorama: bool = False
    creator: str = ""
    licence: str = ""
    first_date: str | None = None
    last_date: str | None = None
    years: list[int] = field(default_factory=list)
    cached: bool = False


def survey_rows(
    points: list[FetchPoint], listings: dict[str, dict[int, Listing]]
) -> list[SurveyRow]:
    """A row per point and source, in the points' order, then the sources'."""
    known = imagery_sources()
    rows = []
    for point in points:
        for name, by_key in listings.items():
            listing = by_key[point.key]
            found = listing.candidates
            pick = nearest_candidate(point, found, known[name].prefers_panoramas)
            dates = sorted(c.captured for c in found if c.captured)
            row = SurveyRow(point.key, name, listing.status, cached=listing.cached)
            row.images, row.panoramas = len(found), sum(c.is_panorama for c in found)
            if pick is not None:
                row.image_id, row.is_panorama = pick.image_id, pick.is_panorama
                row.distance_m = round(distance_m(point.lon, point.lat, pick.lon, pick.lat), 2)
                row.captured = pick.captured.isoformat() if pick.captured else None
                row.creator, row.licence = pick.creator, pick.licence
            if dates:
                row.first_date, row.last_date = dates[0].isoformat(), dates[-1].isoformat()
                row.years = sorted({day.year for day in dates})
            rows.append(row)
    return rows


@dataclass
class SourceCoverage:
    """A source's coverage of the study: points with imagery, per year, and what it cost."""

    source: str
    title: str
    points: int
    covered: int
    panorama_points: int
    median_distance_m: float | None
    per_year: dict[int, int]  # year -> points with at least one image of that year
    not_asked: int  # points the source could not be asked about (no key, stopped, errors)
    requests: int  # lists asked of the service (cached lists cost none)


def coverage(rows: list[SurveyRow], lookup_requests: dict[str, int]) -> list[SourceCoverage]:
    """Per source: how many points it covers, how near, from which years."""
    known = imagery_sources()
    by_source: dict[str, list[SurveyRow]] = defaultdict(list)
    for row in rows:
        by_source[row.source].append(row)
    out = []
    for name, group in by_source.items():
        covered = [r for r in group if r.images]
        years: Counter = Counter(year for r in covered for year in r.years)
        distances = [r.distance_m for r in covered if r.distance_m is not None]
        asked = [r for r in group if not r.cached and r.status in (STATUS_OK, STATUS_NONE)]
        out.append(
            SourceCoverage(
                name,
                known[name].title,
                len(group),
                len(covered),
                sum(1 for r in covered if r.is_panorama),
                round(median(distances), 1) if distances else None,
                dict(sorted(years.items())),
                sum(1 for r in group if r.status not in (STATUS_OK, STATUS_NONE)),
                len(asked) * lookup_requests.get(name, 1),
            )
        )
    return out


def gaps(points: list[FetchPoint], rows: list[SurveyRow]) -> list[int]:
    """The points no source asked has imagery for (in the window), in the points' order."""
    covered = {row.key for row in rows if row.images}
    return [point.key for point in points if point.key not in covered]
