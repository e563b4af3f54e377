"""Panoramax: the federated, open street-level imagery commons (no key needed for reading).

Its API is a STAC API: ``/search`` takes a bounding box (and a date range) and answers picture
items, each with ``hd``/``sd``/``thumb`` image assets and perspective-imagery metadata
(``pers:interior_orientation.field_of_view`` is 360 for an equirectangular panorama;
``view:azimuth`` is the heading of the picture's centre). The default URL is the meta-catalogue,
which searches every instance; a single instance's API works the same. Each instance sets its own
licence (etalab-2.0, CC BY-SA 4.0, ...): the item's, with the instance that serves it, goes into
the layer.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from ....shared.errors import ServiceError
from .base import (
    JPEG_BYTES_PER_PIXEL,
    Candidate,
    DateWindow,
    FetchPoint,
    ImagerySource,
    ViewPlan,
    bbox_around,
    capture_day,
    distance_m,
)

SEARCH_LIMIT = 100


class Panoramax(ImagerySource):
    name = "panoramax"
    default_url = "https://api.panoramax.xyz/api"
    assume_panorama = True
    prefers_panoramas = True

    def fetch_cost(self, plan: ViewPlan, is_panorama: bool) -> tuple[int, int, int]:
        # A panorama comes whole at full definition (typically 5760 × 2880) to cut views from.
        pixels = 5760 * 2880 if is_panorama else 2048 * 1536
        return 1, 0, int(pixels * JPEG_BYTES_PER_PIXEL)

    def candidates(self, point: FetchPoint, radius_m: float, window: DateWindow) -> list[Candidate]:
        params = {
            "bbox": ",".join(f"{v:.7f}" for v in bbox_around(point.lon, point.lat, radius_m)),
            "limit": SEARCH_LIMIT,
        }
        if window.start or window.end:
            start = f"{window.start.isoformat()}T00:00:00Z" if window.start else ".."
            end = f"{window.end.isoformat()}T23:59:59Z" if window.end else ".."
            params["datetime"] = f"{start}/{end}"
        answer = self.http.get_json(f"{self.url}/search", params=params)
        if not isinstance(answer, dict) or not isinstance(answer.get("features"), list):
            raise ServiceError(self.http.redact(f"Panoramax: {_problem(answer)}"))
        found = []
        for item in answer["features"]:
            if not isinstance(item, dict):
                continue
            coordinates = (item.get("geometry") or {}).get("coordinates") or []
            if len(coordinates) < 2 or not item.get("id") or not _image_hrefs(item):
                continue  # no place, no id or no image: no candidate
            lon, lat = float(coordinates[0]), float(coordinates[1])
            properties = item.get("properties") or {}
            captured = capture_day(properties.get("datetime"))
            distance = distance_m(point.lon, point.lat, lon, lat)
            if distance > radius_m or not window.contains(captured):
                continue
            heading = properties.get("view:azimuth")
            found.append(
                Candidate(
                    self.name,
                    str(item["id"]),
                    lon,
                    lat,
                    captured,
                    float(heading) if isinstance(heading, int | float) else None,
                    _is_panorama(properties),
                    str(properties.get("geovisio:producer") or _producer(item)),
                    _licence(item, properties),
                    _image_hrefs(item),
                )
            )
        return found

    def download(
        self, candidate: Candidate, point: FetchPoint, plan: ViewPlan, folder: Path
    ) -> tuple[list[Path], list[float]]:
        # Views are cut from the full panorama; a flat picture at the planned size needs only
        # the 2048-pixel "sd" rendition when it is there. The meta-catalogue's pictures live on
        # their instances, which may send the request on to their storage (no key is sent).
        wanted = ("hd", "sd") if candidate.is_panorama or plan.size > 2048 else ("sd", "hd")
        url = next(candidate.extra[name] for name in wanted if candidate.extra.get(name))
        return self.download_whole(url, candidate, point, plan, folder)


def _image_hrefs(item: dict) -> dict[str, str]:
    """The picture's full ("hd") and 2048-pixel ("sd") renditions that the item offers."""
    assets = item.get("assets")
    if not isinstance(assets, dict):
        return {}
    hrefs = {}
    for name in ("hd", "sd"):
        asset = assets.get(name)
        if isinstance(asset, dict) and asset.get("href"):
            hrefs[name] = str(asset["href"])
    return hrefs


def _is_panorama(properties: dict) -> bool:
    orientation = properties.get("pers:interior_orientation") or {}
    field_of_view = orientation.get("field_of_view") if isinstance(orientation, dict) else None
    return isinstance(field_of_view, int | float) and field_of_view >= 360


def _producer(item: dict) -> str:
    for provider in item.get("providers") or []:
        if isinstance(provider, dict) and "producer" in (provider.get("roles") or []):
            return str(provider.get("name") or "")
    return ""


def _licence(item: dict, properties: dict) -> str:
    """The item's licence, with the instance that serves the picture (licences differ by
    instance)."""
    licence = str(properties.get("license") or "")
    for link in item.get("links") or []:
        if isinstance(link, dict) and link.get("rel") == "license":
            licence = licence or str(link.get("title") or link.get("href") or "")
    href = next(iter(_image_hrefs(item).values()), "")
    instance = urlsplit(href).hostname or ""
    licence = licence or "see the instance's terms"
    return f"{licence} ({instance})" if instance else licence


def _problem(answer) -> str:
    """What a STAC error answer says ({"code", "description"}, {"message"} or {"detail"})."""
    if isinstance(answer, dict):
        for key in ("description", "message", "detail", "error"):
            if answer.get(key):
                return str(answer[key])[:200]
    return f"an answer that is not a picture search result ({str(answer)[:100]})"
