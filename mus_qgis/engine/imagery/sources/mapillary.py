"""Mapillary API v4 (a free client token; images CC BY-SA 4.0).

Searches a small box round the point, prefers 360° images, and asks for a fresh thumbnail URL
right before each download (they expire). 360° images are equirectangular: the whole panorama is
kept, or views are cut from it at headings relative to the street.
"""

from __future__ import annotations

from pathlib import Path

from ....shared.errors import ServiceError
from .base import (
    Candidate,
    DateWindow,
    FetchPoint,
    ImagerySource,
    ViewPlan,
    bbox_around,
    capture_day,
    distance_m,
)

SEARCH_FIELDS = (
    "id,geometry,captured_at,compass_angle,computed_compass_angle,is_pano,camera_type,creator"
)


class Mapillary(ImagerySource):
    name = "mapillary"
    default_url = "https://graph.mapillary.com"
    assume_panorama = True
    prefers_panoramas = True

    def fetch_cost(self, plan: ViewPlan, is_panorama: bool) -> tuple[int, int, int]:
        images, _, size = super().fetch_cost(plan, is_panorama)
        return images, 1, size  # and one request for a fresh image URL

    def _headers(self) -> dict:
        return {"Authorization": f"OAuth {self.credentials.key}"}

    def candidates(self, point: FetchPoint, radius_m: float, window: DateWindow) -> list[Candidate]:
        box = ",".join(f"{v:.7f}" for v in bbox_around(point.lon, point.lat, radius_m))
        answer = self.http.get_json(
            f"{self.url}/images",
            params={"bbox": box, "fields": SEARCH_FIELDS, "limit": 1000},
            headers=self._headers(),
            transient=_transient,
            credentials_rejected=_refused,
        )
        if "error" in answer:
            error = answer["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise ServiceError(self.http.redact(f"Mapillary: {message}"))
        found = []
        for item in answer.get("data") or []:
            coordinates = (item.get("geometry") or {}).get("coordinates") or []
            if len(coordinates) < 2 or "id" not in item:
                continue  # an item without a place or an id is no candidate
            lon, lat = coordinates[:2]
            captured = capture_day(item.get("captured_at"))
            if distance_m(point.lon, point.lat, lon, lat) > radius_m or not window.contains(
                captured
            ):
                continue
            heading = item.get("computed_compass_angle", item.get("compass_angle"))
            creator = (item.get("creator") or {}).get("username", "")
            found.append(
                Candidate(
                    self.name,
                    str(item["id"]),
                    lon,
                    lat,
                    captured,
                    float(heading) if heading is not None else None,
                    bool(item.get("is_pano")),
                    creator,
                    "CC BY-SA 4.0",
                )
            )
        return found

    def _fresh_url(self, image_id: str, size: int) -> str:
        field = "thumb_2048_url" if size <= 2048 else "thumb_original_url"
        answer = self.http.get_json(
            f"{self.url}/{image_id}",
            params={"fields": field},
            headers=self._headers(),
            transient=_transient,
            credentials_rejected=_refused,
        )
        if field not in answer:
            raise ServiceError(f"Mapillary gave no image URL for image {image_id}")
        return answer[field]

    def download(
        self, candidate: Candidate, point: FetchPoint, plan: ViewPlan, folder: Path
    ) -> tuple[list[Path], list[float]]:
        paths, headings = self.planned_files(candidate, point, plan, folder)
        if all(path.exists() for path in paths):
            return paths, headings
        data = None
        for _ in range(2):  # an expired URL gets one fresh URL
            response = self.http.get(
                self._fresh_url(candidate.image_id, 2048), follow_redirects=True
            )
            if response.status_code == 200:
                data = response.content
                break
            if response.status_code not in (403, 410):
                raise ServiceError(
                    f"image download answered HTTP {response.status_code}", response.status_code
                )
        if data is None:
            raise ServiceError("the image URL kept expiring")
        self.save(data, candidate, plan, paths, headings)
        return paths, headings


def _error_of(response) -> dict:
    """The answer's error object; {} for none (or for an error given as a bare string)."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


def _transient(response) -> bool:
    error = _error_of(response)
    return bool(error.get("is_transient")) or error.get("code") in (4, 17, 32, 613)


def _refused(response) -> bool:
    if response.status_code == 401:
        return True
    if response.status_code != 403:
        return False
    error = _error_of(response)
    return error.get("code") in (190, 102) or error.get("type") == "OAuthException"
