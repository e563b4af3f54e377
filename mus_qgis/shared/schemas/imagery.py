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

    parts: ClassVar[dict] = {
        "plan": ViewPlanChoice,
        "window": CaptureWindow,
        "credentials": SourceCredentials,
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
