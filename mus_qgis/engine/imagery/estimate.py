"""What a fetch will ask of a service before it asks anything: requests, bytes and, for a paid
service, money. Logged before every fetch; the whole answer of an "estimate only" run.

Points already looked up (the cache remembers every lookup) are counted exactly: their image is
known, and so is whether its files are already in the cache. Points not looked up yet are counted
as if each found an image of its own (an upper bound: points that share an image, or find none,
cost less).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from .cache_paths import image_folder_name
from .lookup_cache import pick_key
from .sources.base import FetchPoint, ImagerySource


@dataclass
class FetchEstimate:
    source: str
    points: int
    lookups_cached: int = 0
    lookup_requests: int = 0
    images_cached: int = 0
    images_to_fetch: int = 0
    image_requests: int = 0
    other_requests: int = 0
    bytes_expected: int = 0
    price_per_1000: float = 0.0  # per 1,000 image requests; 0: free
    cost: float = 0.0

    @property
    def requests(self) -> int:
        return self.lookup_requests + self.image_requests + self.other_requests

    def message(self) -> str:
        text = (
            f"Estimate for {self.points} points from {self.source}: at most {self.requests:,} "
            f"requests ({self.lookup_requests:,} lookups, {self.image_requests:,} image "
            f"requests, {self.other_requests:,} other), about {_size(self.bytes_expected)} to "
            f"download; {self.lookups_cached:,} points already looked up and "
            f"{self.images_cached:,} images already in the cache."
        )
        if self.price_per_1000:
            text += (
                f" At USD {self.price_per_1000:g} per 1,000 images this run costs up to "
                f"USD {self.cost:,.2f} (before any free monthly allowance)."
            )
        return text

    def as_dict(self) -> dict:
        return {**asdict(self), "requests": self.requests, "message": self.message()}


def estimate_fetch(
    points: list[FetchPoint],
    settings,
    source: ImagerySource,
    root: Path,
    lookups,
    price_per_1000: float | None = None,
) -> FetchEstimate:
    """Count what fetching ``points`` with ``settings`` will ask of ``source``; ``lookups`` is the
    run's lookup cache, ``root`` the source's cache folder."""
    # A price set by the user is a paid source's rate: a free source stays free.
    price = source.price_per_1000
    if price is not None and price_per_1000 is not None:
        price = price_per_1000
    estimate = FetchEstimate(source.title, len(points), price_per_1000=price or 0.0)
    images: dict[str, tuple] = {}
    for point in points:
        candidate = lookups.get(pick_key(source.name, settings, point))
        if candidate is None:  # never looked up: a lookup, and an image of its own
            estimate.lookup_requests += source.lookup_requests
            images[f"?{point.key}"] = (None, point, source.assume_panorama)
            continue
        estimate.lookups_cached += 1
        if candidate and candidate.image_id not in images:
            images[candidate.image_id] = (candidate, point, candidate.is_panorama)
    for candidate, point, is_panorama in images.values():
        if candidate is not None and _all_cached(source, candidate, point, settings, root):
            estimate.images_cached += 1
            continue
        image_requests, other_requests, size = source.fetch_cost(settings.plan, is_panorama)
        estimate.images_to_fetch += 1
        estimate.image_requests += image_requests
        estimate.other_requests += other_requests
        estimate.bytes_expected += size
    estimate.cost = estimate.image_requests * estimate.price_per_1000 / 1000.0
    return estimate


def _all_cached(source, candidate, point, settings, root) -> bool:
    try:
        planned, _ = source.planned_files(
            candidate, point, settings.plan, root / image_folder_name(candidate.image_id)
        )
    except Exception:
        return False  # a plan the source cannot make is no cached image
    return all(path.exists() for path in planned)


def _size(count: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:,.0f} {unit}" if unit == "bytes" else f"{count:,.1f} {unit}"
        count /= 1000
    return ""
