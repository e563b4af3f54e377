"""What every imagery source provides: list the images near a point, pick one, download it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

from ....shared.sequences import zip_same_length
from ..http import Http

JPEG_BYTES_PER_PIXEL = 0.15


@dataclass(frozen=True)
class FetchPoint:
    key: int
    lon: float
    lat: float
    bearing: float | None = None


@dataclass(frozen=True)
class Credentials:
    key: str = ""  # Street View key, Mapillary client token
    secret: str = ""  # Street View URL-signing secret

    def __post_init__(self) -> None:
        # Keys are read from files and variables that may end in a line break (a token file saved
        # with Windows line endings): no service key holds whitespace at either end.
        object.__setattr__(self, "key", (self.key or "").strip())
        object.__setattr__(self, "secret", (self.secret or "").strip())

    def __repr__(self) -> str:  # never show a secret, even in a traceback
        key = "***" if self.key else ""
        secret = "***" if self.secret else ""
        return f"Credentials(key={key!r}, secret={secret!r})"


@dataclass(frozen=True)
class ViewPlan:
    """What to save per location: ``count`` views of ``fov``° from the street's bearing, or the
    whole equirectangular panorama where the source has one."""

    count: int = 4
    fov: float = 90.0
    pitch: float = 0.0
    size: int = 640
    whole_panorama: bool = False

    def headings(self, bearing: float | None) -> list[float]:
        start = bearing if bearing is not None else 0.0
        return [round((start + i * 360.0 / self.count) % 360.0, 1) for i in range(self.count)]


@dataclass(frozen=True)
class DateWindow:
    start: date | None = None
    end: date | None = None

    def contains(self, captured: date | None) -> bool:
        if captured is None:
            return self.start is None and self.end is None
        return (self.start is None or captured >= self.start) and (
            self.end is None or captured <= self.end
        )


@dataclass
class Candidate:
    """One image a source offers for a point."""

    source: str
    image_id: str
    lon: float
    lat: float
    captured: date | None = None
    heading: float | None = None  # compass heading of the image's centre
    is_panorama: bool = False
    creator: str = ""
    licence: str = ""
    extra: dict = field(default_factory=dict)


class ImagerySource:
    """Base of the imagery sources. Subclasses set ``name``, ``title`` and implement the two calls.

    ``find`` returns the best image within ``radius_m`` of the point (or None); ``download``
    writes the planned files for a candidate into ``folder`` (atomically) and returns their paths
    and compass headings. Both raise :class:`~..errors.CredentialsError` for a refused key.
    """

    name: ClassVar[str] = ""
    # Title, place in the list, key need and price come from the shared list of sources
    # (resources/imagery/sources.json), which the QGIS side reads too.
    title: ClassVar[str] = ""
    order: ClassVar[int] = 100
    needs_key: ClassVar[bool] = False
    # Published list price per 1,000 image requests (USD), for the cost estimate; None: free.
    price_per_1000: ClassVar[float | None] = None
    default_url: ClassVar[str] = ""
    remote: ClassVar[bool] = True  # asks a service (whose failures in a row stop the asking)

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.name:
            return
        from ....shared.imagery_sources import imagery_source_infos

        info = imagery_source_infos().get(cls.name)
        if info is None:
            raise RuntimeError(
                f"The imagery source {cls.name!r} is not in resources/imagery/sources.json: add "
                "it there (title, needs_key, price_per_1000), at the end of the list."
            )
        cls.title, cls.order = info.title, info.order
        cls.needs_key, cls.price_per_1000 = info.needs_key, info.price_per_1000

    def __init__(
        self,
        http: Http,
        credentials: Credentials | None = None,
        url: str = "",
        location: str = "",
        check_key: bool = True,  # False for an estimate, which asks nothing of the service
    ) -> None:
        self.http = http
        self.credentials = credentials or Credentials()
        self.url = (url or self.default_url).rstrip("/")
        self.location = location  # a folder or CSV, for sources that read local files
        address = urlsplit(self.url)
        if self.remote and (address.scheme not in ("http", "https") or not address.hostname):
            from ....shared.errors import MusError

            raise MusError(
                f"The service URL {self.url!r} is not a web address: it starts with https:// "
                "(or http://) and names a host; leave it empty for the service's own."
            )
        if check_key and self.needs_key and not self.credentials.key:
            from ....shared.errors import CredentialsError

            raise CredentialsError(
                f"{self.title} needs a key or token: give it once in Plugins ▸ Multimodal Urban "
                "Studies ▸ Service keys…, or choose an authentication configuration (headless: "
                "set its environment variable, see the Fetch panoramas help)."
            )

    # Whether the source's own pick takes a 360° image before a nearer flat one.
    prefers_panoramas: ClassVar[bool] = False

    def candidates(self, point: FetchPoint, radius_m: float, window: DateWindow) -> list[Candidate]:
        """Every image the source offers within ``radius_m`` of the point and captured within
        the window, in the order the service gave them (a survey lists them; a pick by date
        chooses among them)."""
        raise NotImplementedError

    def find(self, point: FetchPoint, radius_m: float, window: DateWindow) -> Candidate | None:
        """The source's own pick: the nearest image (the nearest panorama first, for the sources
        that prefer panoramas)."""
        return nearest_candidate(
            point, self.candidates(point, radius_m, window), self.prefers_panoramas
        )

    # Requests per lookup of a point (a search, a metadata call).
    lookup_requests: ClassVar[int] = 1
    # Whether a point's image is assumed 360° before it is looked up (the sources that prefer
    # panoramas), for the bytes an estimate expects.
    assume_panorama: ClassVar[bool] = False

    def fetch_cost(self, plan: ViewPlan, is_panorama: bool) -> tuple[int, int, int]:
        """What fetching one image as planned costs: (image requests, other requests, bytes).
        Bytes are rough: a street-level JPEG holds about 0.15 bytes per pixel."""
        pixels = 2048 * 1024 if is_panorama else 2048 * 1536
        return 1, 0, int(pixels * JPEG_BYTES_PER_PIXEL)

    def why_none(self, point: FetchPoint) -> str:
        """Why ``find`` gave this point nothing, where there is more to say than "no imagery"."""
        return ""

    def download(
        self, candidate: Candidate, point: FetchPoint, plan: ViewPlan, folder: Path
    ) -> tuple[list[Path], list[float]]:
        raise NotImplementedError

    def download_whole(
        self, url: str, candidate: Candidate, point: FetchPoint, plan: ViewPlan, folder: Path
    ) -> tuple[list[Path], list[float]]:
        """Download one image file and save it as planned (whole, or cut into views). For key-less
        downloads only: a CDN or an instance may send the request on to another host."""
        from ....shared.errors import ServiceError

        paths, headings = self.planned_files(candidate, point, plan, folder)
        if all(path.exists() for path in paths):
            return paths, headings
        response = self.http.get(url, follow_redirects=True)
        if response.status_code != 200:
            raise ServiceError(
                f"image download answered HTTP {response.status_code}", response.status_code
            )
        self.save(response.content, candidate, plan, paths, headings)
        return paths, headings

    def planned_files(
        self, candidate: Candidate, point: FetchPoint, plan: ViewPlan, folder: Path
    ) -> tuple[list[Path], list[float]]:
        """The files a download would write, so a cached location needs no request at all."""
        if not candidate.is_panorama:
            return [folder / "image.jpg"], [candidate.heading or 0.0]
        if plan.whole_panorama:
            return [folder / "panorama.jpg"], [candidate.heading or 0.0]
        headings = plan.headings(point.bearing)
        names = [f"h{h:05.1f}_f{plan.fov:g}_p{plan.pitch:g}_{plan.size}.jpg" for h in headings]
        return [folder / name for name in names], headings

    @staticmethod
    def save(
        data: bytes, candidate: Candidate, plan: ViewPlan, paths: list[Path], headings: list[float]
    ) -> None:
        """Write a downloaded image as planned: as it is, or cut into views of a panorama."""
        from ..http import write_atomic

        require_image(data)
        if len(paths) == 1 and (plan.whole_panorama or not candidate.is_panorama):
            write_atomic(paths[0], data)
            return
        for path, view in zip_same_length(paths, cut_views(data, candidate, headings, plan)):
            write_atomic(path, view)


def capture_day(value) -> date | None:
    """The capture date from what services give: milliseconds since 1970 (Mapillary's documented
    form), or ISO text with or without a time ("2019-05-14", "2019-05-14 10:00:00",
    "2019-06-01T10:00:00Z"); None for anything else."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, int | float) or str(value).isdigit():
        try:
            return datetime.fromtimestamp(int(value) / 1000, tz=timezone.utc).date()
        except (OverflowError, OSError, ValueError):
            return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).date()
    except ValueError:
        try:
            return date.fromisoformat(str(value)[:10])
        except ValueError:
            return None


def nearest_candidate(
    point: FetchPoint, candidates: list[Candidate], panoramas_first: bool = False
) -> Candidate | None:
    """The nearest candidate (panoramas before flat images if asked); the first of equals."""

    def rank(candidate: Candidate) -> tuple[bool, float]:
        distance = distance_m(point.lon, point.lat, candidate.lon, candidate.lat)
        return (panoramas_first and not candidate.is_panorama, distance)

    return min(candidates, key=rank, default=None)


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlmb = phi2 - phi1, math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * 6371008.8 * math.asin(math.sqrt(a))


def bbox_around(lon: float, lat: float, radius_m: float) -> tuple[float, float, float, float]:
    dlat = radius_m / 111_320.0
    dlon = radius_m / (111_320.0 * max(math.cos(math.radians(lat)), 1e-6))
    return lon - dlon, lat - dlat, lon + dlon, lat + dlat


def cut_views(image_bytes: bytes, candidate: Candidate, headings: list[float], plan: ViewPlan):
    """Perspective views (JPEG bytes) at compass headings from an equirectangular panorama."""
    import io

    import numpy as np
    import torch
    from PIL import Image

    from ..panorama import perspective_views

    rgb = np.array(Image.open(io.BytesIO(image_bytes)).convert("RGB"))
    centre = candidate.heading or 0.0
    yaws = [(h - centre) % 360.0 for h in headings]
    views = perspective_views(torch.from_numpy(rgb), yaws, plan.pitch, plan.fov, plan.size)
    out = []
    for view in views:
        buffer = io.BytesIO()
        Image.fromarray(view.permute(1, 2, 0).numpy()).save(buffer, "JPEG", quality=92)
        out.append(buffer.getvalue())
    return out


def require_image(data: bytes, content_type: str = "") -> None:
    """Stop a download whose answer is not a whole image (an empty body, an HTML page served as
    the image, a truncated file, a decompression bomb) before anything is written."""
    from ....shared.errors import ServiceError
    from ..http import image_decodes

    if not data:
        raise ServiceError("the service answered with an empty body instead of an image")
    if not image_decodes(data):
        kind = f", {content_type}" if content_type else ""
        raise ServiceError(f"the service's answer is not a whole image ({len(data)} bytes{kind})")


def is_placeholder(image_bytes: bytes) -> bool:
    """A flat grey "no imagery" picture (some services send one instead of an error)."""
    import io

    import numpy as np
    from PIL import Image

    if len(image_bytes) > 32_768:
        return False  # a flat picture compresses to a few kilobytes; real imagery does not
    try:
        with Image.open(io.BytesIO(image_bytes)) as image:
            image.draft("L", (64, 64))
            values = np.asarray(image.convert("L"), dtype=np.float32)
    except Exception:
        return False
    return float(values.std()) < 2.0
