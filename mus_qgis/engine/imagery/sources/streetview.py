"""Google Street View Static API (official endpoints only; a key with billing).

The free metadata call comes first (does imagery exist, its pano id, date and copyright), then one
image per heading, at most 640×640, with ``return_error_code=true`` so that missing imagery is an
error code rather than a grey picture. URLs are signed when a signing secret is given. Google's
terms restrict caching of images: the cache folder is the user's to keep or clear.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import date
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from ....shared.errors import CredentialsError, ServiceError
from ..http import write_atomic
from .base import (
    JPEG_BYTES_PER_PIXEL,
    Candidate,
    DateWindow,
    FetchPoint,
    ImagerySource,
    ViewPlan,
    distance_m,
)

MAX_SIZE = 640
_TRANSIENT = {"OVER_QUERY_LIMIT", "UNKNOWN_ERROR"}


class StreetView(ImagerySource):
    name = "streetview"

    def fetch_cost(self, plan: ViewPlan, is_panorama: bool) -> tuple[int, int, int]:
        size = min(plan.size, MAX_SIZE)
        return plan.count, 0, int(plan.count * size * size * JPEG_BYTES_PER_PIXEL)

    default_url = "https://maps.googleapis.com/maps/api/streetview"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._signing_key = b""
        if self.credentials.secret:
            try:  # once, here: a bad secret would otherwise cost every point the same error
                self._signing_key = base64.urlsafe_b64decode(
                    self.credentials.secret.encode("ascii")
                )
            except ValueError:  # binascii.Error and a non-ASCII text alike; the value unshown
                raise CredentialsError(
                    "The Street View URL-signing secret is not the base64 text Google gives "
                    "(Google Cloud console ▸ Credentials ▸ URL signing secret): check the "
                    "password field of the authentication configuration."
                ) from None

    def _signed(self, path_url: str, params: dict) -> str:
        params = {**params, "key": self.credentials.key}
        url = f"{path_url}?{urlencode(params)}"
        if self._signing_key:
            parts = urlsplit(url)
            secret = self._signing_key
            digest = hmac.new(secret, f"{parts.path}?{parts.query}".encode(), hashlib.sha1)
            url += "&signature=" + base64.urlsafe_b64encode(digest.digest()).decode()
        return url

    def candidates(self, point: FetchPoint, radius_m: float, window: DateWindow) -> list[Candidate]:
        """The one panorama Street View's metadata names for a place (its newest): the official
        API offers no older capture, so Street View gives a study one moment per place."""
        found = self._nearest(point, radius_m, window)
        return [found] if found is not None else []

    def _nearest(self, point: FetchPoint, radius_m: float, window: DateWindow) -> Candidate | None:
        url = self._signed(
            f"{self.url}/metadata",
            {
                "location": f"{point.lat:.7f},{point.lon:.7f}",
                "radius": round(radius_m),
                "source": "outdoor",
            },
        )
        answer = self.http.get_json(
            url, transient=_transient_metadata, credentials_rejected=_refused
        )
        status = answer.get("status", "")
        if status in ("ZERO_RESULTS", "NOT_FOUND"):
            return None
        if status == "REQUEST_DENIED":
            raise CredentialsError(
                self.http.redact(
                    f"Street View refused the key: {answer.get('error_message', status)}"
                )
            )
        if status != "OK":
            raise ServiceError(
                self.http.redact(
                    f"Street View metadata answered {status}: {answer.get('error_message', '')}"
                )
            )
        if not answer.get("pano_id"):
            raise ServiceError("Street View metadata said OK but named no panorama (no pano_id)")
        location = answer.get("location") or {}
        lat, lon = float(location.get("lat", point.lat)), float(location.get("lng", point.lon))
        if distance_m(point.lon, point.lat, lon, lat) > radius_m:
            return None
        captured = _month(answer.get("date", ""))
        if not window.contains(captured):
            return None
        return Candidate(
            self.name,
            str(answer["pano_id"]),
            lon,
            lat,
            captured,
            None,
            True,
            answer.get("copyright", "").replace("©", "").strip(),
            "Google Maps Platform terms",
        )

    def planned_files(self, candidate, point, plan, folder):
        if plan.whole_panorama:
            raise ServiceError(
                "The Street View Static API gives views, not whole panoramas: "
                "choose a number of views instead."
            )
        return super().planned_files(candidate, point, plan, folder)

    def download(
        self, candidate: Candidate, point: FetchPoint, plan: ViewPlan, folder: Path
    ) -> tuple[list[Path], list[float]]:
        paths, headings = self.planned_files(candidate, point, plan, folder)
        for path, heading in zip(paths, headings):
            if not path.exists():
                self.download_view(candidate, heading, path, plan)
        return paths, headings

    def download_view(
        self, candidate: Candidate, heading: float, path: Path, plan: ViewPlan
    ) -> None:
        """One view; the fetcher calls this per view so that views download in parallel."""
        from .base import is_placeholder, require_image

        size = min(plan.size, MAX_SIZE)
        url = self._signed(
            self.url,
            {
                "size": f"{size}x{size}",
                "pano": candidate.image_id,
                "heading": f"{heading:g}",
                "fov": f"{min(plan.fov, 120):g}",
                "pitch": f"{plan.pitch:g}",
                "return_error_code": "true",
            },
        )
        response = self.http.get(url, credentials_rejected=_refused)
        if response.status_code == 404:
            raise ServiceError("no imagery for this panorama any more", 404)
        if response.status_code != 200 or not response.headers.get("Content-Type", "").startswith(
            "image/"
        ):
            raise ServiceError(
                self.http.redact(f"Street View image request answered HTTP {response.status_code}"),
                response.status_code,
            )
        require_image(response.content, response.headers.get("Content-Type", ""))
        if is_placeholder(response.content):
            raise ServiceError("Street View sent a grey placeholder instead of imagery")
        write_atomic(path, response.content)


def _transient_metadata(response) -> bool:
    try:
        return response.json().get("status") in _TRANSIENT
    except ValueError:
        return False


def _refused(response) -> bool:
    return response.status_code in (401, 403)


def _month(text: str) -> date | None:
    try:
        year, month = text.split("-")[:2]
        return date(int(year), int(month), 1)
    except (ValueError, AttributeError):
        return None
