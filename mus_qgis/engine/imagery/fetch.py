"""Fetch street-level imagery for points: find, de-duplicate, download; cached and resumable.

Per point the nearest image within the radius is looked up (lookups are remembered in the cache
folder), points that resolve to the same image share one download, and every file is written
atomically under ``<cache>/imagery/<source>/``; a later run re-uses every file that still decodes
and asks the network only for what is missing. A refused key stops the run at the first call.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from ...shared.errors import CanceledError, CredentialsError, LocalPhotosError, MusError
from ...shared.folders import refuse_a_file, writable_folder
from ...shared.progress import LoggingProgress, Progress, warn
from .cache_paths import image_folder_name
from .estimate import FetchEstimate, estimate_fetch
from .http import Http, image_decodes
from .lookup_cache import LookupCache, pick_key
from .sources import imagery_sources
from .sources.base import (
    Candidate,
    Credentials,
    DateWindow,
    FetchPoint,
    ImagerySource,
    ViewPlan,
    distance_m,
)

STATUS_OK = "ok"
STATUS_NONE = "no imagery"
STATUS_NOT_TRIED = "not tried"


@dataclass
class FetchSettings:
    source: str
    radius_m: float = 25.0
    plan: ViewPlan = field(default_factory=ViewPlan)
    window: DateWindow = field(default_factory=DateWindow)
    concurrency: int = 8
    url: str = ""
    location: str = ""  # local photos: a folder or CSV
    # After this many failed requests in a row the run stops asking the service (a dead service
    # would otherwise cost every point its full retries); the rest is "not tried", resumable.
    max_consecutive_failures: int = 5
    # Count requests, bytes and cost, log them and ask nothing (every point "not tried").
    estimate_only: bool = False
    price_per_1000: float | None = None  # per 1,000 images of a paid source; None: its list price


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
    reason: str = ""  # why this image: the rule that chose it, among how many


def make_source(settings: FetchSettings, http: Http, credentials: Credentials) -> ImagerySource:
    sources = imagery_sources()
    if settings.source not in sources:
        raise MusError(f"Unknown imagery source {settings.source!r}; known: {', '.join(sources)}.")
    return sources[settings.source](
        http, credentials, settings.url, settings.location, check_key=not settings.estimate_only
    )


def fetch_imagery(
    points: list[FetchPoint],
    settings: FetchSettings,
    cache_dir: str | Path,
    credentials: Credentials | None = None,
    progress: Progress | None = None,
    proxies: dict | None = None,
    http: Http | None = None,
    on_estimate: Callable[[FetchEstimate], None] | None = None,
    chosen: dict[int, Candidate | None] | None = None,
) -> list[FetchOutcome]:
    """Imagery for every point; no point is dropped (its status says what happened).

    Before the first request the run's estimate (requests, bytes, cost) is logged and handed to
    ``on_estimate``; with ``settings.estimate_only`` that is all the run does. ``chosen`` gives
    each point's image, picked beforehand (by date, across sources): the source is then asked
    for those images only, and looks nothing up."""
    progress = progress or LoggingProgress()
    credentials = credentials or Credentials()
    http = http or Http(secrets=[credentials.key, credentials.secret], proxies=proxies)
    http.progress = progress
    source = make_source(settings, http, credentials)
    cache_dir = Path(cache_dir).expanduser().absolute()
    # An estimate writes nothing: its cache folder need only not be a file.
    check = refuse_a_file if settings.estimate_only else writable_folder
    root = check(cache_dir, "cache folder") / "imagery" / source.name
    outcomes = {p.key: FetchOutcome(p.key) for p in points}
    if not points:
        return []
    try:
        with LookupCache(root / "lookups.sqlite", settings.estimate_only) as lookups:
            known = lookups if chosen is None else _ChosenPicks(chosen, source, settings, points)
            estimate = estimate_fetch(
                points, settings, source, root, known, settings.price_per_1000
            )
            progress.info(estimate.message())
            if on_estimate is not None:
                on_estimate(estimate)
            if settings.estimate_only:
                for outcome in outcomes.values():
                    outcome.status = f"{STATUS_NOT_TRIED}: estimate only"
                return [outcomes[p.key] for p in points]
            _Pipeline(points, settings, source, root, lookups, outcomes, progress, chosen).run()
    finally:
        http.close()
    for outcome in outcomes.values():
        _keep_written_files(outcome)
    for point in points:
        outcome = outcomes[point.key]
        if outcome.duplicate_of is not None:
            owner = outcomes[outcome.duplicate_of]
            outcome.status = owner.status
            outcome.paths, outcome.headings = list(owner.paths), list(owner.headings)
    return [outcomes[p.key] for p in points]


class _Pipeline:
    """Lookups and downloads in one bounded pool, downloads first as soon as they are known.

    An image belongs to the first point, in input order, that resolves to it (its bearing aims
    the views), so the files a run writes do not depend on which answer came back first: a
    resumed run plans the same files and finds them in the cache.
    """

    def __init__(
        self, points, settings, source, root, lookups, outcomes, progress, chosen=None
    ) -> None:
        self.points, self.settings, self.source, self.root = points, settings, source, root
        self.lookups, self.outcomes, self.progress = lookups, outcomes, progress
        self.chosen = chosen
        self.candidates: list[Candidate | None] = [None] * len(points)
        self.found = [False] * len(points)
        self.prefix = 0  # every point before this one is looked up and assigned
        self.owners: dict[str, int] = {}
        self.ready: deque = deque()
        self.done = {"find": 0, "prepare": 0, "fetch": 0}
        self.reused = 0
        self.failures_in_a_row = 0
        self.failures_logged = 0
        self.stopped_asking = ""  # why the run stopped asking the service, once it has
        self.lock = threading.Lock()

    def run(self) -> None:
        count = len(self.points)
        self.progress.info(f"Looking up {self.source.title} imagery for {count} points ...")
        # The first lookup alone: a refused key is found with one request, not a thousand.
        self._finished(("find", 0), self._find(0))
        next_lookup = 1
        in_flight: dict = {}
        with ThreadPoolExecutor(max_workers=max(1, self.settings.concurrency)) as pool:
            try:
                while in_flight or self.ready or next_lookup < count:
                    if self.progress.is_canceled():
                        raise CanceledError()
                    while len(in_flight) < self.settings.concurrency:
                        if self.ready:
                            task = self.ready.popleft()
                        elif next_lookup < count:
                            task, next_lookup = ("find", next_lookup), next_lookup + 1
                        else:
                            break
                        in_flight[pool.submit(self._work, task)] = task
                    finished, _ = wait(in_flight, timeout=0.5, return_when=FIRST_COMPLETED)
                    for future in finished:
                        self._finished(in_flight.pop(future), future.result())
            except BaseException:
                for future in in_flight:
                    future.cancel()
                raise
        owners = len(self.owners)
        shared = sum(1 for o in self.outcomes.values() if o.duplicate_of is not None)
        self.progress.info(
            f"{owners} images: {owners - self.reused} fetched, {self.reused} "
            f"already in the cache; {shared} points share an image with another "
            "point."
        )

    def _work(self, task):
        kind = task[0]
        if kind == "find":
            return self._find(task[1])
        if kind == "prepare":
            return self._prepare(task[1])
        return self._fetch(*task[1:])

    def _failed(self, outcome: FetchOutcome, exc: BaseException) -> None:
        """Record a point's failure; enough failures in a row and the service is not asked again."""
        status = describe_failure(exc, self.source.http.redact)
        if not outcome.status.startswith("error"):
            outcome.status = status
        with self.lock:
            self.failures_in_a_row += 1
            if self.failures_logged < 5:
                self.failures_logged += 1
                warn(self.progress, f"Point {outcome.key}: {status}")
            limit = self.settings.max_consecutive_failures if self.source.remote else 0
            if limit > 0 and self.failures_in_a_row >= limit and not self.stopped_asking:
                self.stopped_asking = (
                    f"{self.source.title} failed {self.failures_in_a_row} times in a row "
                    f"(last: {status.removeprefix('error: ')})"
                )
                warn(
                    self.progress,
                    f"{self.stopped_asking}: the run stops asking it. The points not reached are "
                    f"marked '{STATUS_NOT_TRIED}'; run again later to fetch them (everything "
                    "fetched so far is kept).",
                )

    def _succeeded(self) -> None:
        with self.lock:
            self.failures_in_a_row = 0

    def _not_tried(self, outcome: FetchOutcome) -> bool:
        if not self.stopped_asking:
            return False
        if not outcome.status.startswith("error"):
            outcome.status = f"{STATUS_NOT_TRIED}: {self.stopped_asking}"
        return True

    def _finished(self, task, result) -> None:
        kind = task[0]
        self.done["fetch" if kind in ("view", "whole") else kind] += 1
        if kind == "find":
            self.found[task[1]] = True
            self._assign_owners()
        elif kind == "prepare":
            self.ready.extend(result)
            # Runs on the scheduling thread only, so the count needs no lock.
            outcome = self.outcomes[self.points[task[1]].key]
            self.reused += not result and outcome.status == STATUS_OK
        count = len(self.points)
        owners = max(len(self.owners), 1)
        self.progress.set_progress(
            40.0 * self.done["find"] / count
            + 60.0 * self.done["prepare"] / owners * self.prefix / count
        )

    def _assign_owners(self) -> None:
        while self.prefix < len(self.points) and self.found[self.prefix]:
            index = self.prefix
            candidate = self.candidates[index]
            if candidate is not None:
                owner = self.owners.get(candidate.image_id)
                if owner is None:
                    self.owners[candidate.image_id] = index
                    self.ready.appendleft(("prepare", index))
                else:
                    self.outcomes[self.points[index].key].duplicate_of = self.points[owner].key
            self.prefix += 1

    def _find(self, index: int) -> None:
        point = self.points[index]
        outcome = self.outcomes[point.key]
        key = pick_key(self.source.name, self.settings, point)
        if self.chosen is not None:  # picked beforehand: nothing to look up
            self.candidates[index] = candidate = self.chosen.get(point.key)
            if candidate is not None:
                self._describe(point, outcome, candidate)
            else:
                outcome.status = STATUS_NONE
            return
        try:
            # Local photos are indexed afresh each run: a remembered lookup would hide a photo
            # added or mended since, and the reason a point has none.
            cached = self.lookups.get(key) if self.source.remote else None
            if cached is not None:
                candidate = cached or None
            elif self._not_tried(outcome):
                return
            else:
                candidate = self.source.find(point, self.settings.radius_m, self.settings.window)
                if self.source.remote:
                    self.lookups.put(key, candidate)
                self._succeeded()
        except (CredentialsError, CanceledError, LocalPhotosError):  # they stop the whole run
            raise
        except Exception as exc:  # an odd answer costs this point, never the run
            self._failed(outcome, exc)
            return
        self.candidates[index] = candidate
        if candidate is None:
            why = self.source.why_none(point)
            outcome.status = f"{STATUS_NONE}: {why}" if why else STATUS_NONE
            return
        self._describe(point, outcome, candidate)
        kind = "panorama" if candidate.is_panorama and self.source.prefers_panoramas else "image"
        outcome.reason = (
            f"the nearest {kind} of {self.source.title} within {self.settings.radius_m:g} m"
        )

    @staticmethod
    def _describe(point: FetchPoint, outcome: FetchOutcome, candidate: Candidate) -> None:
        outcome.source, outcome.image_id = candidate.source, candidate.image_id
        outcome.captured, outcome.is_panorama = candidate.captured, candidate.is_panorama
        outcome.image_heading = candidate.heading
        outcome.creator, outcome.licence = candidate.creator, candidate.licence
        outcome.distance_m = round(
            distance_m(point.lon, point.lat, candidate.lon, candidate.lat), 2
        )

    def _prepare(self, index: int) -> list[tuple]:
        """What the cache already holds for an image, and the fetch tasks for the rest."""
        point, candidate = self.points[index], self.candidates[index]
        outcome = self.outcomes[point.key]
        folder = self.root / image_folder_name(candidate.image_id)
        try:
            planned, headings = self.source.planned_files(
                candidate, point, self.settings.plan, folder
            )
        except Exception as exc:
            outcome.status = describe_failure(exc, self.source.http.redact)
            return []
        try:
            # Leftovers of a killed run; one task owns each image folder, so none is in use.
            for leftover in folder.glob(".*.part"):
                leftover.unlink(missing_ok=True)
            for path in planned:
                # A file that no longer decodes (a crash mid-write elsewhere, a bad disk) goes.
                if path.exists() and self.source.name != "local" and not image_decodes(path):
                    path.unlink()
        except OSError as exc:  # one image folder that cannot be changed costs its point only
            outcome.status = describe_failure(
                MusError(f"the cached image folder {folder} cannot be used ({exc.strerror})"),
                self.source.http.redact,
            )
            return []
        outcome.paths, outcome.headings = [str(p) for p in planned], list(headings)
        missing = [(p, h) for p, h in zip(planned, headings, strict=True) if not p.exists()]
        if not missing:
            outcome.status = STATUS_OK
            return []
        outcome.status = STATUS_OK  # until a fetch task says otherwise
        if hasattr(self.source, "download_view") and len(planned) > 1:
            return [("view", index, path, heading) for path, heading in missing]
        return [("whole", index, None, None)]

    def _fetch(self, index: int, path, heading) -> None:
        point, candidate = self.points[index], self.candidates[index]
        outcome = self.outcomes[point.key]
        folder = self.root / image_folder_name(candidate.image_id)
        if self._not_tried(outcome):
            return
        try:
            if path is None:
                paths, headings = self.source.download(candidate, point, self.settings.plan, folder)
                outcome.paths, outcome.headings = [str(p) for p in paths], list(headings)
            else:
                self.source.download_view(candidate, heading, path, self.settings.plan)
            self._succeeded()
        except (CredentialsError, CanceledError):
            raise
        except Exception as exc:  # an odd answer costs this image, never the run
            self._failed(outcome, exc)


def _keep_written_files(outcome: FetchOutcome) -> None:
    """List only the files that are there: a view that failed is no image to classify."""
    if outcome.duplicate_of is not None or not outcome.paths:
        return
    kept = [
        (p, h) for p, h in zip(outcome.paths, outcome.headings, strict=False) if Path(p).exists()
    ]
    if len(kept) == len(outcome.paths):
        return
    missing = f"{len(outcome.paths) - len(kept)} of {len(outcome.paths)} files missing"
    if outcome.status == STATUS_OK:
        outcome.status = f"error: {missing}"
    elif outcome.status.startswith("error: ") and len(outcome.paths) > 1:
        outcome.status = (
            f"error: {missing} (first failure: {outcome.status.removeprefix('error: ')})"
        )
    outcome.paths = [p for p, _ in kept]
    outcome.headings = [h for _, h in kept]


def describe_failure(exc: BaseException, redact) -> str:
    """A per-point status for a failure: the project's own errors say what happened; anything
    else is an answer the code did not expect, named with its type (never a secret)."""
    if isinstance(exc, MusError):
        return f"error: {redact(str(exc))}"
    return f"error: unexpected answer ({type(exc).__name__}: {redact(str(exc))[:200]})"


class _ChosenPicks:
    """Answers an estimate's lookups with the images picked beforehand (all known, none asked)."""

    def __init__(self, chosen, source, settings, points) -> None:
        self._picks = {
            pick_key(source.name, settings, point): chosen.get(point.key) or {} for point in points
        }

    def get(self, key: str):
        return self._picks.get(key)
