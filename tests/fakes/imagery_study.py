"""A small study area served unevenly by several fake imagery services, from several years:
the survey's and the fetch by date's tests (engine and QGIS alike) read it, and work out what
each should find from the images themselves."""

from __future__ import annotations

import math
from datetime import date

from mus_qgis.engine.imagery.sources.base import Credentials, FetchPoint
from mus_qgis.engine.imagery.survey import SourceAccess
from tests.fakes.imagery_services import GOOD_KEY, GOOD_TOKEN, FakeImage

LON0, LAT0 = 11.88, 43.466
RADIUS = 25.0


def offset(lon: float, lat: float, east_m: float, north_m: float) -> tuple[float, float]:
    return (
        lon + east_m / (111_320.0 * math.cos(math.radians(lat))),
        lat + north_m / 111_320.0,
    )


def study_world() -> tuple[list[FetchPoint], list[FakeImage]]:
    """Six points 60 m apart and one far from all imagery. Every point has Mapillary images
    from 2016 (flat, 4 m away) and 2022 (360°, 8 m away); the even points a Panoramax panorama
    from 2019 (6 m); points 0 and 1 a Street View panorama from 2021 (3 m); no KartaView."""
    points, images = [], []
    for i in range(6):
        lon, lat = offset(LON0, LAT0, 60.0 * i, 0.0)
        points.append(FetchPoint(i, lon, lat, 90.0))
        # (service, id, metres east and north of the point, capture date, 360°)
        here = [
            ("mapillary", f"mly-{i}-2016", 4.0, 0.0, "2016-04-10", False),
            ("mapillary", f"mly-{i}-2022", -8.0, 0.0, "2022-09-01", True),
        ]
        if i % 2 == 0:
            here.append(("panoramax", f"pnx-{i}-2019", 6.0, 0.0, "2019-06-20", True))
        if i < 2:
            here.append(("streetview", f"sv-{i}", 0.0, 3.0, "2021-03-01", True))
        for service, image_id, east, north, captured, pano in here:
            images.append(
                FakeImage(
                    image_id,
                    *offset(lon, lat, east, north),
                    captured=captured,
                    is_pano=pano,
                    creator=f"{service}_mapper_{i}",
                    services=(service,),
                )
            )
    points.append(FetchPoint(900, *offset(LON0, LAT0, 0.0, 3000.0), None))
    return points, images


def accesses(fake, *names) -> list[SourceAccess]:
    """The engine's access to each named fake service, with the keys the fakes accept."""
    made = {
        "streetview": SourceAccess("streetview", Credentials(GOOD_KEY), fake.streetview_url),
        "mapillary": SourceAccess("mapillary", Credentials(GOOD_TOKEN), fake.mapillary_url),
        "kartaview": SourceAccess("kartaview", url=fake.kartaview_url),
        "panoramax": SourceAccess("panoramax", url=fake.panoramax_url),
    }
    return [made[name] for name in names]


def served_within(images, service, point, radius=RADIUS):
    """What the fake serves a point, worked out here from the images themselves."""
    out = []
    for image in images:
        dy = (image.lat - point.lat) * 111_320.0
        dx = (image.lon - point.lon) * 111_320.0 * math.cos(math.radians(point.lat))
        if service in image.services and math.hypot(dx, dy) <= radius:
            out.append(image)
    return out


ALL = ("streetview", "mapillary", "kartaview", "panoramax")


def expected_pick(point, images, services, target, window=None):
    """The rule, worked out here from the fake's images: nearest in time, then in distance."""
    best = None
    for rank, service in enumerate(services):
        for image in served_within(images, service, point):
            captured = date.fromisoformat(image.captured)
            if service == "streetview":
                captured = captured.replace(day=1)
            if window is not None and not window.contains(captured):
                continue
            dy = (image.lat - point.lat) * 111_320.0
            dx = (image.lon - point.lon) * 111_320.0 * math.cos(math.radians(point.lat))
            key = (abs((captured - target).days), math.hypot(dx, dy), rank)
            if best is None or key < best[0]:
                best = (key, image)
    return best[1] if best else None
