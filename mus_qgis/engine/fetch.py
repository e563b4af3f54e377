"""Fetch street-level imagery for points: find, de-duplicate, download; cached and resumable.

Per point the nearest image within the radius is looked up (lookups are remembered in the cache
folder), points that resolve to the same image share one download, and every file is written
atomically under ``<cache>/imagery/<source>/``; a later run re-uses every file that still decodes
and asks the network only for what is missing. A refused key stops the run at the first call.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from .errors import CanceledError, CredentialsError, MusError
from .http import Http, image_decodes
from .imagery_sources import imagery_sources
from .imagery_sources.base import (
    Candidate,
    Credentials,
    DateWindow,
    FetchPoint,
    ImagerySource,
    ViewPlan,
    distance_m,
)
from .progress import LoggingProgress, Progress

STATUS_OK = "ok"
STATUS_NONE = "no imagery"


@dataclass
class FetchSettings:
    source: str
    radius_m: float = 25.0
    plan: ViewPlan = field(default_factory=ViewPlan)
    window: DateWindow = field(default_factory=DateWindow)
    concurrency: int = 8
    url: str = ""
    location: str = ""  # local photos: a folder or CSV


@dataclass
class FetchOutcome:
    key: int
    status: str = STATUS_NONE
    source: str = ""
    image_id: str = ""
    captured: date | None = None
    distance_m: float | None = None
    paths: list[str] = field(default_factory=list)
    headings: list[float] = field(default_factory=list)
    image_heading: float | None = None
    is_panorama: bool = False
    creator: str = ""
    licence: str = ""
    duplicate_of: int | None = None


def make_source(settings: FetchSettings, http: Http, credentials: Credentials) -> ImagerySource:
    sources = imagery_sources()
    if settings.source not in sources:
        raise MusError(f"Unknown imagery source {settings.source!r}; known: {', '.join(sources)}.")
    return sources[settings.source](http, credentials, settings.url, settings.location)


def fetch_imagery(
    points: list[FetchPoint],
    settings: FetchSettings,
    cache_dir: str | Path,
    credentials: Credentials | None = None,
    progress: Progress | None = None,
    proxies: dict | None = None,
    http: Http | None = None,
) -> list[FetchOutcome]:
    """Imagery for every point; no point is dropped (its status says what happened)."""
    progress = progress or LoggingProgress()
    credentials = credentials or Credentials()
    http = http or Http(secrets=[credentials.key, credentials.secret], proxies=proxies)
    http.progress = progress
    source = make_source(settings, http, credentials)
    root = Path(cache_dir) / "imagery" / source.name
    outcomes = {p.key: FetchOutcome(p.key) for p in points}
    if not points:
        return []
    with _Lookups(root / "lookups.sqlite") as lookups:
        candidates = _find_all(points, settings, source, lookups, outcomes, progress)
    owners = _mark_duplicates(points, candidates, outcomes)
    _download_all(owners, settings, source, root, outcomes, progress, len(points))
    for point in points:
        outcome = outcomes[point.key]
        if outcome.duplicate_of is not None:
            owner = outcomes[outcome.duplicate_of]
            outcome.status = owner.status
            outcome.paths, outcome.headings = list(owner.paths), list(owner.headings)
    return [outcomes[p.key] for p in points]


def _run_concurrently(
    items, work, concurrency: int, progress: Progress, start: float, span: float, total: int
) -> None:
    """Run ``work(item)`` over items with bounded concurrency; a cancel or a refused key stops
    everything at once (finished items stay done)."""
    lock = threading.Lock()
    done = [0]

    def task(item):
        if progress.is_canceled():
            raise CanceledError()
        work(item)
        with lock:
            done[0] += 1
            progress.set_progress(start + span * done[0] / max(total, 1))

    items = list(items)
    if not items:
        return
    # The first item alone: a bad key is found with one request, not a thousand.
    task(items[0])
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = [pool.submit(task, item) for item in items[1:]]
        finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in finished:
            if future.exception() is not None:
                for other in futures:
                    other.cancel()
                raise future.exception()


def _find_all(points, settings, source, lookups, outcomes, progress):
    candidates: dict[int, Candidate | None] = {}

    def find(point: FetchPoint) -> None:
        outcome = outcomes[point.key]
        key = lookups.key(source.name, settings, point)
        cached = lookups.get(key)
        try:
            if cached is not None:
                candidate = cached or None
            else:
                candidate = source.find(point, settings.radius_m, settings.window)
                lookups.put(key, candidate)
        except (CredentialsError, CanceledError):
            raise
        except MusError as exc:
            outcome.status = f"error: {exc}"
            return
        candidates[point.key] = candidate
        if candidate is None:
            outcome.status = STATUS_NONE
            return
        outcome.source, outcome.image_id = candidate.source, candidate.image_id
        outcome.captured, outcome.is_panorama = candidate.captured, candidate.is_panorama
        outcome.image_heading = candidate.heading
        outcome.creator, outcome.licence = candidate.creator, candidate.licence
        outcome.distance_m = round(
            distance_m(point.lon, point.lat, candidate.lon, candidate.lat), 2
        )

    progress.info(f"Looking up {source.title} imagery for {len(points)} points ...")
    _run_concurrently(points, find, settings.concurrency, progress, 0.0, 40.0, len(points))
    return candidates


def _mark_duplicates(points, candidates, outcomes):
    """The first point of each image downloads it; later points on the same image refer to it."""
    owners: dict[str, tuple[FetchPoint, Candidate]] = {}
    for point in points:
        candidate = candidates.get(point.key)
        if candidate is None:
            continue
        if candidate.image_id in owners:
            outcomes[point.key].duplicate_of = owners[candidate.image_id][0].key
        else:
            owners[candidate.image_id] = (point, candidate)
    return list(owners.values())


def _download_all(owners, settings, source, root, outcomes, progress, total_points):
    """Check what the cache holds, then fetch the rest; one task per view where the source
    fetches views one by one, so that every connection stays busy to the end."""
    lock = threading.Lock()
    units: list[tuple] = []
    reused = [0]

    def prepare(item) -> None:
        point, candidate = item
        outcome = outcomes[point.key]
        folder = root / _safe(candidate.image_id)
        try:
            planned, headings = source.planned_files(candidate, point, settings.plan, folder)
        except MusError as exc:
            outcome.status = f"error: {exc}"
            return
        # Leftovers of a killed run; one task owns each image folder, so none is in use.
        for leftover in folder.glob(".*.part"):
            leftover.unlink(missing_ok=True)
        for path in planned:
            # A file that no longer decodes (a crash mid-write elsewhere, a bad disk) goes.
            if path.exists() and source.name != "local" and not image_decodes(path):
                path.unlink()
        outcome.paths, outcome.headings = [str(p) for p in planned], list(headings)
        missing = [(p, h) for p, h in zip(planned, headings, strict=True) if not p.exists()]
        with lock:
            if not missing:
                outcome.status = STATUS_OK
                reused[0] += 1
            elif hasattr(source, "download_view") and len(planned) > 1:
                units.extend((point, candidate, path, heading) for path, heading in missing)
            else:
                units.append((point, candidate, None, None))

    def fetch(unit) -> None:
        point, candidate, path, heading = unit
        outcome = outcomes[point.key]
        folder = root / _safe(candidate.image_id)
        try:
            if path is None:
                paths, headings = source.download(candidate, point, settings.plan, folder)
                outcome.paths, outcome.headings = [str(p) for p in paths], list(headings)
            else:
                source.download_view(candidate, heading, path, settings.plan)
        except (CredentialsError, CanceledError):
            raise
        except MusError as exc:
            with lock:
                if not outcome.status.startswith("error"):
                    outcome.status = f"error: {exc}"

    _run_concurrently(owners, prepare, settings.concurrency, progress, 40.0, 5.0, len(owners))
    _run_concurrently(units, fetch, settings.concurrency, progress, 45.0, 55.0, len(units))
    for point, _candidate in owners:
        outcome = outcomes[point.key]
        if not outcome.status.startswith("error"):
            outcome.status = STATUS_OK
    duplicates = sum(1 for o in outcomes.values() if o.duplicate_of is not None)
    progress.info(
        f"{len(owners)} images: {len(owners) - reused[0]} fetched, {reused[0]} "
        f"already in the cache; {duplicates} points share an image with another point."
    )


def _safe(image_id: str) -> str:
    """A folder name for an image id (ids of local photos are paths)."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in image_id)[-80:]
    return (
        cleaned
        if cleaned == image_id
        else f"{cleaned}-{hashlib.sha1(image_id.encode()).hexdigest()[:8]}"
    )


class _Lookups:
    """Remembers each point's lookup, so a resumed run asks the service only for new points."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # Commits without fsync: a lookup lost to a power cut is simply asked again.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS lookups (key TEXT PRIMARY KEY, value TEXT)")
        self._lock = threading.Lock()

    def __enter__(self) -> _Lookups:
        return self

    def __exit__(self, *exc) -> None:
        self._db.close()

    @staticmethod
    def key(source: str, settings: FetchSettings, point: FetchPoint) -> str:
        window = settings.window
        return json.dumps(
            [
                source,
                settings.url,
                settings.location,
                round(point.lon, 6),
                round(point.lat, 6),
                settings.radius_m,
                str(window.start),
                str(window.end),
            ]
        )

    def get(self, key: str):
        """The remembered candidate, {} for "nothing there", None when never looked up."""
        with self._lock:
            row = self._db.execute("SELECT value FROM lookups WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        value = json.loads(row[0])
        if not value:
            return {}
        captured = value.pop("captured")
        return Candidate(**value, captured=date.fromisoformat(captured) if captured else None)

    def put(self, key: str, candidate: Candidate | None) -> None:
        value = (
            {}
            if candidate is None
            else {
                **candidate.__dict__,
                "captured": candidate.captured.isoformat() if candidate.captured else None,
            }
        )
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO lookups VALUES (?, ?)", (key, json.dumps(value))
            )
