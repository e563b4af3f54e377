"""The user's own geotagged photos: a folder (EXIF GPS) or a CSV of lon, lat, path.

Equirectangular panoramas are recognised by their 2:1 shape or their GPano XMP tag. Nothing is
copied: the output points at the photos where they are.

A photo that cannot be used (no GPS position, an empty or damaged file, one too large to decode
safely under Pillow's limit) is never offered; the run logs how many were set aside for each reason,
and a point whose only photos nearby were unusable says so in its status. A photo without a GPS
position belongs to no point: a point with no photo near it says that the folder holds such photos,
and what places them (a CSV). A folder or CSV that cannot be read at all (a CSV that is not UTF-8,
or without its columns) stops the run with a :class:`LocalPhotosError`.
"""

from __future__ import annotations

import csv
import io
import math
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from ....shared.errors import LocalPhotosError
from ....shared.progress import LoggingProgress, warn
from ..http import DECODE_DAMAGED, DECODE_MISSING, DECODE_TOO_LARGE, decode_problem
from ..panorama import is_equirectangular, xmp_heading
from .base import Candidate, DateWindow, FetchPoint, ImagerySource, ViewPlan, distance_m

SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp"}
_GPS_IFD = 0x8825
_EXIF_IFD = 0x8769

NO_GPS = "no GPS position in its EXIF"
EMPTY = "empty file (0 bytes)"
TRUNCATED = DECODE_DAMAGED
TOO_LARGE = DECODE_TOO_LARGE
NOT_AN_IMAGE = "not an image Pillow can read"
MISSING = DECODE_MISSING
PLACE_BY_CSV = (
    "place such photos with a CSV of lon, lat, path (given instead of the folder), or use photos "
    "taken with GPS on"
)


@dataclass(frozen=True)
class UnusablePhoto:
    """A photo set aside, why, and where it stands when that is known (a CSV row says)."""

    path: str
    reason: str
    lon: float | None = None
    lat: float | None = None


class _Unusable(Exception):  # noqa: N818 (a verdict carried out of the reader, not an error)
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LocalPhotos(ImagerySource):
    name = "local"
    remote = False
    prefers_panoramas = True
    lookup_requests = 0

    def fetch_cost(self, plan: ViewPlan, is_panorama: bool) -> tuple[int, int, int]:
        return 0, 0, 0  # read where they are

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._index: list[Candidate] | None = None
        self.unusable: list[UnusablePhoto] = []
        self._decodes: dict[str, str] = {}  # path -> "" (decodes) or why not
        self._why_none: dict[int, str] = {}
        self._no_gps = 0  # photos of the folder that have no GPS position, so no place
        self._lock = threading.Lock()

    def index(self) -> list[Candidate]:
        with self._lock:
            if self._index is None:
                if not self.location:
                    raise LocalPhotosError(
                        "Local photos need a folder of geotagged images or a CSV."
                    )
                self._index, self.unusable = _read_index(Path(self.location))
                self._no_gps = sum(1 for photo in self.unusable if photo.reason == NO_GPS)
                self._report_unusable()
            return self._index

    def _report_unusable(self) -> None:
        if not self.unusable:
            return
        progress = self.http.progress or LoggingProgress()
        counts = Counter(photo.reason for photo in self.unusable)
        total = len(self._index or []) + len(self.unusable)
        reasons = "; ".join(f"{reason}: {count}" for reason, count in counts.most_common())
        warn(
            progress,
            f"Local photos: {len(self.unusable)} of {total} photos in {self.location} cannot be "
            f"used and are left out ({reasons}). First: {self.unusable[0].path}"
            + (f". Photos without a GPS position: {PLACE_BY_CSV}." if self._no_gps else ""),
        )

    def _nearby(self, point: FetchPoint, radius_m: float, window: DateWindow) -> list[Candidate]:
        """The photos within the radius and window, panoramas first, then the nearest."""
        nearby = []
        # A coarse degree filter first: the index can hold many thousands of photos.
        dlat = radius_m / 111_000.0 * 1.5
        dlon = dlat / max(math.cos(math.radians(point.lat)), 1e-6)
        for photo in self.index():
            if abs(photo.lat - point.lat) > dlat or abs(photo.lon - point.lon) > dlon:
                continue
            distance = distance_m(point.lon, point.lat, photo.lon, photo.lat)
            if distance <= radius_m and window.contains(photo.captured):
                nearby.append(((not photo.is_panorama, distance), photo))
        return [photo for _, photo in sorted(nearby, key=lambda item: item[0])]

    def candidates(self, point: FetchPoint, radius_m: float, window: DateWindow) -> list[Candidate]:
        """The photos within the radius and window that decode."""
        return [
            photo
            for photo in self._nearby(point, radius_m, window)
            if not self._decode_failure(photo.extra["path"])
        ]

    def find(self, point: FetchPoint, radius_m: float, window: DateWindow) -> Candidate | None:
        """The nearest photo that decodes (panoramas first); where none does, the point's status
        says why (photos unusable, or photos of the folder without a position)."""
        nearby = self._nearby(point, radius_m, window)
        unusable = Counter(
            photo.reason
            for photo in self.unusable
            if photo.lon is not None
            and distance_m(point.lon, point.lat, photo.lon, photo.lat) <= radius_m
        )
        # The best photo that decodes: one whose header reads but whose data is cut short is
        # found here, when it would be used, so indexing a large folder decodes nothing.
        for photo in nearby:
            reason = self._decode_failure(photo.extra["path"])
            if not reason:
                return photo
            unusable[reason] += 1
        why = ""
        if unusable:
            count = sum(unusable.values())
            reasons = "; ".join(f"{reason}: {n}" for reason, n in unusable.most_common())
            why = (
                f"{count} photo{'s' if count > 1 else ''} within {radius_m:g} m unusable "
                f"({reasons})"
            )
        elif self._no_gps:
            # Such a photo may be this point's: say so, and what places it.
            n = self._no_gps
            gps = (
                f"{n} photo{'s' if n > 1 else ''} of the folder {'have' if n > 1 else 'has'} no "
                f"GPS position in {'their' if n > 1 else 'its'} EXIF"
            )
            where = (
                f"no photo within {radius_m:g} m; {gps}"
                if self._index
                else f"no photo of the folder can be placed: {gps}"
            )
            why = f"{where}; {PLACE_BY_CSV}"
        if why:
            with self._lock:
                self._why_none[point.key] = why
        return None

    def why_none(self, point: FetchPoint) -> str:
        with self._lock:
            return self._why_none.get(point.key, "")

    def _decode_failure(self, path: str) -> str:
        with self._lock:
            known = self._decodes.get(path)
        if known is None:
            known = decode_problem(Path(path))
            with self._lock:
                self._decodes[path] = known
        return known

    def planned_files(self, candidate, point, plan, folder):
        return [Path(candidate.extra["path"])], [candidate.heading or 0.0]

    def download(
        self, candidate: Candidate, point: FetchPoint, plan: ViewPlan, folder: Path
    ) -> tuple[list[Path], list[float]]:
        return self.planned_files(candidate, point, plan, folder)


def _read_index(location: Path) -> tuple[list[Candidate], list[UnusablePhoto]]:
    if not location.exists():
        raise LocalPhotosError(f"The local photo location {location} does not exist.")
    if location.is_file():
        return _read_csv(location)
    photos, unusable = [], []
    for path in sorted(location.rglob("*")):
        if path.suffix.lower() in SUFFIXES and path.is_file():
            try:
                photos.append(_read_photo(path))
            except _Unusable as exc:
                unusable.append(UnusablePhoto(str(path), exc.reason))
    return photos, unusable


def _read_csv(path: Path) -> tuple[list[Candidate], list[UnusablePhoto]]:
    photos, unusable = [], []
    data = path.read_bytes()
    try:
        # UTF-8, with or without the byte-order mark that Excel's "CSV UTF-8" writes. No other
        # encoding is guessed: a wrong guess would garble the paths, and every photo would be
        # "not found" for a reason the user could not see.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LocalPhotosError(_not_utf8(path, data, exc)) from None
    rows = csv.DictReader(io.StringIO(text, newline=""))
    names = {name.lower().strip(): name for name in rows.fieldnames or []}
    lon_name = names.get("lon") or names.get("longitude") or names.get("x")
    lat_name = names.get("lat") or names.get("latitude") or names.get("y")
    path_name = names.get("path") or names.get("file") or names.get("image")
    if not (lon_name and lat_name and path_name):
        raise LocalPhotosError(f"{path} needs columns lon, lat and path.")
    for row in rows:
        try:
            lon, lat = float(row[lon_name]), float(row[lat_name])
        except (TypeError, ValueError):
            continue
        image = Path(row[path_name])
        image = image if image.is_absolute() else path.parent / image
        try:
            photos.append(_read_photo(image, (lon, lat)))
        except _Unusable as exc:
            unusable.append(UnusablePhoto(str(image), exc.reason, lon, lat))
    return photos, unusable


def _not_utf8(path: Path, data: bytes, exc: UnicodeDecodeError) -> str:
    """What a CSV that is not UTF-8 is, likely, and how to save it as UTF-8."""
    line = data.count(b"\n", 0, exc.start) + 1
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        likely = ": it is UTF-16 text, as Excel's 'Unicode Text' writes it"
    else:
        try:
            data.decode("cp1252")
            likely = (
                ": it is likely Windows-1252 or Latin-1 text, as Excel's 'CSV (Comma "
                "delimited)' writes it"
            )
        except UnicodeDecodeError:
            likely = ""
    return (
        f"The local photos CSV {path} is not UTF-8 text (line {line}: byte "
        f"0x{data[exc.start]:02x}, {exc.reason}){likely}. Save it as UTF-8 (Excel: 'CSV UTF-8 "
        "(Comma delimited)'; LibreOffice: character set 'Unicode (UTF-8)') and run again: its "
        "paths must be read exactly to find the photos."
    )


def _read_photo(path: Path, position: tuple[float, float] | None = None) -> Candidate:
    """The photo as a candidate; raises :class:`_Unusable` with the reason it cannot be one."""
    from PIL import Image

    if not path.is_file():
        raise _Unusable(MISSING)
    if path.stat().st_size == 0:
        raise _Unusable(EMPTY)
    try:
        with Image.open(path) as image:
            width, height = image.size
            exif = image.getexif()
        with path.open("rb") as handle:
            head = handle.read(1 << 16)
    except Image.DecompressionBombError as exc:
        raise _Unusable(TOO_LARGE) from exc
    except Exception as exc:  # Pillow's many error types for a file it cannot open
        raise _Unusable(NOT_AN_IMAGE) from exc
    gps = exif.get_ifd(_GPS_IFD)
    if position is None:
        position = gps_position(gps)
        if position is None:
            raise _Unusable(NO_GPS)
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
