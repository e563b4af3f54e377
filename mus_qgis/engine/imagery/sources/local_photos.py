"""The user's own geotagged photos: a folder (EXIF GPS) or a CSV of lon, lat, path.

Equirectangular panoramas are recognised by their 2:1 shape or their GPano XMP tag. Nothing is
copied: the output points at the photos where they are.
"""

from __future__ import annotations

import csv
import math
import threading
from datetime import date, datetime
from pathlib import Path

from ...errors import MusError
from ..panorama import is_equirectangular, xmp_heading
from .base import Candidate, DateWindow, FetchPoint, ImagerySource, ViewPlan, distance_m

SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp"}
_GPS_IFD = 0x8825
_EXIF_IFD = 0x8769


class LocalPhotos(ImagerySource):
    name = "local"
    title = "Local geotagged photos"
    order = 4
    remote = False
    lookup_requests = 0

    def fetch_cost(self, plan: ViewPlan, is_panorama: bool) -> tuple[int, int, int]:
        return 0, 0, 0  # read where they are

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._index: list[Candidate] | None = None
        self._lock = threading.Lock()

    def index(self) -> list[Candidate]:
        with self._lock:
            if self._index is None:
                if not self.location:
                    raise MusError("Local photos need a folder of geotagged images or a CSV.")
                self._index = _read_index(Path(self.location))
            return self._index

    def find(self, point: FetchPoint, radius_m: float, window: DateWindow) -> Candidate | None:
        best = None
        # A coarse degree filter first: the index can hold many thousands of photos.
        dlat = radius_m / 111_000.0 * 1.5
        dlon = dlat / max(math.cos(math.radians(point.lat)), 1e-6)
        for photo in self.index():
            if abs(photo.lat - point.lat) > dlat or abs(photo.lon - point.lon) > dlon:
                continue
            distance = distance_m(point.lon, point.lat, photo.lon, photo.lat)
            if (
                distance <= radius_m
                and window.contains(photo.captured)
                and (best is None or (not photo.is_panorama, distance) < best[0])
            ):
                best = ((not photo.is_panorama, distance), photo)
        return best[1] if best else None

    def planned_files(self, candidate, point, plan, folder):
        return [Path(candidate.extra["path"])], [candidate.heading or 0.0]

    def download(
        self, candidate: Candidate, point: FetchPoint, plan: ViewPlan, folder: Path
    ) -> tuple[list[Path], list[float]]:
        return self.planned_files(candidate, point, plan, folder)


def _read_index(location: Path) -> list[Candidate]:
    if not location.exists():
        raise MusError(f"The local photo location {location} does not exist.")
    if location.is_file():
        return _read_csv(location)
    photos = []
    for path in sorted(location.rglob("*")):
        if path.suffix.lower() in SUFFIXES:
            candidate = _read_photo(path)
            if candidate is not None:
                photos.append(candidate)
    return photos


def _read_csv(path: Path) -> list[Candidate]:
    photos = []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = csv.DictReader(handle)
        names = {name.lower().strip(): name for name in rows.fieldnames or []}
        lon_name = names.get("lon") or names.get("longitude") or names.get("x")
        lat_name = names.get("lat") or names.get("latitude") or names.get("y")
        path_name = names.get("path") or names.get("file") or names.get("image")
        if not (lon_name and lat_name and path_name):
            raise MusError(f"{path} needs columns lon, lat and path.")
        for row in rows:
            try:
                lon, lat = float(row[lon_name]), float(row[lat_name])
            except (TypeError, ValueError):
                continue
            image = Path(row[path_name])
            image = image if image.is_absolute() else path.parent / image
            candidate = _read_photo(image, (lon, lat))
            if candidate is not None:
                photos.append(candidate)
    return photos


def _read_photo(path: Path, position: tuple[float, float] | None = None) -> Candidate | None:
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
            exif = image.getexif()
            head = path.open("rb").read(1 << 16)
    except Exception:
        return None  # unreadable files are not offered; the classifier reports bad images
    gps = exif.get_ifd(_GPS_IFD)
    if position is None:
        position = gps_position(gps)
        if position is None:
            return None
    panorama = is_equirectangular(width, height, head)
    heading = xmp_heading(head) if panorama else None
    if heading is None and 17 in gps:
        heading = float(gps[17])
    captured = _exif_date(exif.get_ifd(_EXIF_IFD).get(36867) or exif.get(306))
    return Candidate(
        "local",
        str(path),
        position[0],
        position[1],
        captured,
        heading,
        panorama,
        str(exif.get(315) or ""),
        "",
        {"path": str(path)},
    )


def gps_position(gps) -> tuple[float, float] | None:
    """(lon, lat) from an EXIF GPS IFD, or None when it has no usable position."""
    try:
        lat = _degrees(gps[2]) * (-1 if gps.get(1) in ("S", b"S") else 1)
        lon = _degrees(gps[4]) * (-1 if gps.get(3) in ("W", b"W") else 1)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return lon, lat


def _degrees(dms) -> float:
    degrees, minutes, seconds = (float(v) for v in dms)
    return degrees + minutes / 60.0 + seconds / 3600.0


def _exif_date(text) -> date | None:
    try:
        return datetime.strptime(str(text).strip(), "%Y:%m:%d %H:%M:%S").date()
    except ValueError:
        return None
