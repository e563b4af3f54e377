"""KartaView (formerly OpenStreetCam): open street-level photos, no key needed for reading."""

from __future__ import annotations

from pathlib import Path

from ....shared.errors import ServiceError
from .base import (
    Candidate,
    DateWindow,
    FetchPoint,
    ImagerySource,
    ViewPlan,
    capture_day,
    distance_m,
)

NO_RESULTS = 601


class KartaView(ImagerySource):
    name = "kartaview"
    default_url = "https://api.openstreetcam.org/2.0"

    def candidates(self, point: FetchPoint, radius_m: float, window: DateWindow) -> list[Candidate]:
        answer = self.http.get_json(
            f"{self.url}/photo/",
            params={
                "lat": f"{point.lat:.7f}",
                "lng": f"{point.lon:.7f}",
                "radius": round(radius_m),
                "join": "sequence",
                "itemsPerPage": 50,
                "page": 1,
            },
        )
        status = answer.get("status") or {}
        if status.get("apiCode") == NO_RESULTS:
            return []
        if status.get("apiCode") not in (None, 600, "600"):
            raise ServiceError(
                f"KartaView answered {status.get('apiCode')}: {status.get('apiMessage', '')}"
            )
        found = []
        for item in (answer.get("result") or {}).get("data") or []:
            lon, lat = float(item["lng"]), float(item["lat"])
            captured = capture_day(item.get("shotDate"))
            if (
                distance_m(point.lon, point.lat, lon, lat) > radius_m
                or not window.contains(captured)
                or not item.get("fileurlProc")
            ):
                continue
            heading = item.get("heading")
            sequence = item.get("sequence") or {}
            found.append(
                Candidate(
                    self.name,
                    str(item["id"]),
                    lon,
                    lat,
                    captured,
                    float(heading) if heading not in (None, "") else None,
                    str(item.get("projectionType") or "").upper() == "SPHERE",
                    str(sequence.get("userId") or item.get("userId") or ""),
                    "KartaView terms (CC BY-SA 4.0)",
                    {"url": item["fileurlProc"]},
                )
            )
        return found

    def download(
        self, candidate: Candidate, point: FetchPoint, plan: ViewPlan, folder: Path
    ) -> tuple[list[Path], list[float]]:
        return self.download_whole(candidate.extra["url"], candidate, point, plan, folder)
