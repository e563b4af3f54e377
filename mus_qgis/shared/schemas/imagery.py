"""The imagery's schemas: street-level images looked up and downloaded for points."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from . import Schema


@dataclass(frozen=True)
class ViewPlanChoice(Schema):
    """The engine's ``ViewPlan``: ``count`` views of ``fov`` degrees from the street's bearing,
    or the whole equirectangular panorama where the source has one."""

    count: int = 4
    fov: float = 90.0  # degrees
    pitch: float = 0.0  # degrees
    size: int = 640  # pixels, each side of a view
    whole_panorama: bool = False


@dataclass(frozen=True)
class CaptureWindow(Schema):
    """The engine's ``DateWindow``: the capture dates an image may have, ISO (``2019-05-01``);
    None: no bound."""

    start: str | None = None
    end: str | None = None


@dataclass(frozen=True)
class SourceCredentials(Schema):
    """The engine's ``Credentials``. Secrets: they travel through the worker's pipe only, and
    neither is shown by ``repr`` (so not in a log or a traceback either)."""

    key: str = field(default="", repr=False)  # Street View key, Mapillary client token
    secret: str = field(default="", repr=False)  # Street View URL-signing secret


@dataclass(frozen=True)
class SourceAccessChoice(Schema):
    """The engine's ``SourceAccess``: a source to ask, its key, its URL, local photos' place."""

    name: str
    url: str = ""  # empty: the service's own
    location: str = ""  # local photos: a folder or a CSV
    credentials: SourceCredentials = field(default_factory=SourceCredentials)

    parts: ClassVar[dict] = {"credentials": SourceCredentials}


@dataclass(frozen=True)
class FetchImageryParams(Schema):
    """Points to find imagery for, the source to ask and what to save of each image."""

    points: str  # a JSON file: [[key, lon, lat, bearing or null], ...] in EPSG:4326
    source: str  # an imagery source's name: streetview, mapillary, kartaview, panoramax, local
    radius_m: float  # search radius around each point
    plan: ViewPlanChoice
    concurrency: int  # requests at once
    cache_dir: str
    output: str  # the JSON file the outcomes go to, one per point
    window: CaptureWindow = field(default_factory=CaptureWindow)
    url: str = ""  # the service's URL; empty: the source's own
    location: str = ""  # local photos: a folder of geotagged images or a CSV of lon, lat, path
    estimate_only: bool = False  # count requests, bytes and cost; fetch nothing
    price_per_1000: float | None = None  # USD per 1,000 images of a paid source; None: its own
    credentials: SourceCredentials = field(default_factory=SourceCredentials)
    # requests' mapping {"http": url, "https": url}; a proxy URL may hold a password.
    proxies: dict | None = field(default=None, repr=False)
    # Several sources, or a target date: each point's image is picked across the sources, the
    # nearest in time to the target date, then the nearest (``source``, ``url``, ``location``
    # and ``credentials`` above are then those of the first).
    sources: list[SourceAccessChoice] = field(default_factory=list)
    target_date: str | None = None  # ISO; None: the nearest panorama, then the nearest image
    # The same points at several moments: ["every year"], or ISO dates; one row per point and
    # moment (each row's "moment" says which). Empty: one image per point.
    moments: list[str] = field(default_factory=list)

    parts: ClassVar[dict] = {
        "plan": ViewPlanChoice,
        "window": CaptureWindow,
        "credentials": SourceCredentials,
        "sources": SourceAccessChoice,
    }


@dataclass(frozen=True)
class ImageryEstimate(Schema):
    """What a fetch asks of a service at most, counted before its first request (the engine's
    ``FetchEstimate.as_dict()``)."""

    source: str
    points: int
    lookups_cached: int  # points whose lookup the cache remembers
    lookup_requests: int
    images_cached: int
    images_to_fetch: int
    image_requests: int
    other_requests: int
    bytes_expected: int
    price_per_1000: float  # USD per 1,000 image requests; 0: free
    cost: float  # USD, at most
    requests: int  # lookups, images and others together
    message: str  # the estimate as the log says it


@dataclass(frozen=True)
class FetchImageryResult(Schema):
    output: str  # the JSON file of outcomes, one per point
    count: int  # outcomes written
    estimate: ImageryEstimate | None = None  # None: no point to estimate for

    parts: ClassVar[dict] = {"estimate": ImageryEstimate}


@dataclass(frozen=True)
class SurveyImageryParams(Schema):
    """Points to survey, and the sources to ask what imagery they hold near each."""

    points: str  # a JSON file: [[key, lon, lat, bearing or null], ...] in EPSG:4326
    sources: list[SourceAccessChoice]
    radius_m: float
    cache_dir: str
    output: str  # the JSON file the rows go to, one per point and source
    window: CaptureWindow = field(default_factory=CaptureWindow)
    concurrency: int = 8
    proxies: dict | None = field(default=None, repr=False)
    report: str = ""  # an HTML file for the report; empty: none

    parts: ClassVar[dict] = {"sources": SourceAccessChoice, "window": CaptureWindow}


@dataclass(frozen=True)
class SourceCoverageSummary(Schema):
    """The engine's ``SourceCoverage``: one source's coverage of the study."""

    source: str
    title: str
    points: int
    covered: int  # points with at least one image in the window
    panorama_points: int  # points whose pick is a panorama
    median_distance_m: float | None
    per_year: dict  # "year" -> points with at least one image of that year
    not_asked: int  # points the source could not answer for (no key, stopped, errors)
    requests: int  # lists asked of the service (cached ones cost none)


@dataclass(frozen=True)
class SurveyImageryResult(Schema):
    output: str  # the JSON file of rows
    points: int
    gaps: list[int]  # keys of the points no source has imagery for
    coverage: list[SourceCoverageSummary]
    seconds: float  # how long the survey took

    parts: ClassVar[dict] = {"coverage": SourceCoverageSummary}
