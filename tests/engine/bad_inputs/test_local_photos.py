"""Local photos that cannot be used: each is left out with a reason the user sees (a count per
reason in the log, and the status of a point whose only photos nearby were unusable); the rest
work. Bad files are made on the fly from the real Arezzo photos."""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from mus_qgis.engine.imagery.fetch import FetchSettings, fetch_imagery
from mus_qgis.engine.imagery.sources.base import FetchPoint
from mus_qgis.engine.imagery.sources.local_photos import gps_position
from mus_qgis.shared.errors import LocalPhotosError
from mus_qgis.shared.progress import LoggingProgress
from tests.conftest import AREZZO_PHOTOS, PANORAMAS

EMPTY = "empty file (0 bytes)"
TRUNCATED = "truncated or damaged image data"
TOO_LARGE = "too large to decode safely (over Pillow's decompression-bomb limit)"
NO_GPS = "no GPS position in its EXIF"
MISSING = "file not found"
PLACE_BY_CSV = (
    "place such photos with a CSV of lon, lat, path (given instead of the folder), or use photos "
    "taken with GPS on"
)


def _position(photo: Path) -> tuple[float, float]:
    with Image.open(photo) as image:
        return gps_position(image.getexif().get_ifd(0x8825))


def _bomb_png(path: Path, side: int = 30000) -> Path:
    """A valid single-colour 30000 x 30000 PNG (1-bit grey), a few hundred kB: Pillow refuses to
    open it (900 M pixels, over twice its limit), as it should."""
    row = b"\0" * (1 + (side + 7) // 8)
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )
    return path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _without_gps(source: Path, path: Path) -> Path:
    """A copy of a photo whose EXIF keeps everything but its GPS position (as a phone with
    location off, or a messaging app, leaves it)."""
    with Image.open(source) as image:
        exif = image.getexif()
        del exif[0x8825]
        image.save(path, exif=exif.tobytes(), quality=90)
    with Image.open(path) as image:
        assert image.getexif().get(0x0110) and not image.getexif().get_ifd(0x8825)  # model kept
    return path


def _truncated(source: Path, path: Path) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # header and EXIF GPS intact, pixels cut short
    return path


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory) -> Path:
    """A folder named with accents and spaces: two good photos, a truncated copy of a third,
    a 0-byte JPEG, a panorama without GPS and a decompression bomb."""
    folder = tmp_path_factory.mktemp("photos") / "Foto di prova è ü" / "giro 1"
    folder.mkdir(parents=True)
    shutil.copy(AREZZO_PHOTOS[0], folder / "buona uno.jpg")
    shutil.copy(AREZZO_PHOTOS[2], folder / "buona due.jpg")
    _truncated(AREZZO_PHOTOS[1], folder / "tagliata.jpg")
    (folder / "vuota.jpg").write_bytes(b"")
    shutil.copy(PANORAMAS[0], folder / "senza gps.jpg")
    _bomb_png(folder / "bomba.png")
    return folder


def test_a_folder_of_photos_good_and_bad(bad_folder, tmp_path):
    good, truncated = _position(AREZZO_PHOTOS[0]), _position(AREZZO_PHOTOS[1])
    points = [
        FetchPoint(1, good[0], good[1] + 2e-5),
        FetchPoint(2, truncated[0], truncated[1] + 2e-5),
        FetchPoint(3, 12.0, 41.0),
    ]
    progress = LoggingProgress()
    settings = FetchSettings("local", radius_m=10.0, location=str(bad_folder))
    outcomes = fetch_imagery(points, settings, tmp_path / "cache", progress=progress)
    assert [o.status for o in outcomes] == [
        "ok",
        f"no imagery: 1 photo within 10 m unusable ({TRUNCATED}: 1)",
        f"no imagery: no photo within 10 m; 1 photo of the folder has {NO_GPS}; {PLACE_BY_CSV}",
    ]
    assert outcomes[0].paths == [str(bad_folder / "buona uno.jpg")]
    # every photo set aside at indexing is counted, by reason, before any point
    logged = "\n".join(progress.messages)
    assert f"3 of 6 photos in {bad_folder} cannot be used" in logged
    for reason in (EMPTY, NO_GPS, TOO_LARGE):
        assert f"{reason}: 1" in logged


def test_photos_without_gps_say_why_at_each_point_and_what_places_them(tmp_path):
    """A folder of photos with no GPS position in their EXIF: every point says why it has no
    imagery and what to do; the CSV it advises places the same photos."""
    folder = tmp_path / "senza gps"
    folder.mkdir()
    stripped = [_without_gps(p, folder / f"foto {i}.jpg") for i, p in enumerate(AREZZO_PHOTOS[:2])]
    places = [_position(p) for p in AREZZO_PHOTOS[:2]]
    points = [FetchPoint(i, lon, lat + 2e-5) for i, (lon, lat) in enumerate(places)]
    progress = LoggingProgress()
    settings = FetchSettings("local", radius_m=10.0, location=str(folder))
    outcomes = fetch_imagery(points, settings, tmp_path / "cache", progress=progress)
    why = "no photo of the folder can be placed: 2 photos of the folder have no GPS position"
    assert [o.status for o in outcomes] == [f"no imagery: {why} in their EXIF; {PLACE_BY_CSV}"] * 2
    logged = "\n".join(progress.messages)
    assert f"2 of 2 photos in {folder} cannot be used" in logged and f"{NO_GPS}: 2" in logged
    assert f"Photos without a GPS position: {PLACE_BY_CSV}." in logged
    # Beside a photo that has its position: the point it serves works, the other says why.
    shutil.copy(AREZZO_PHOTOS[2], folder / "con gps.jpg")
    lon, lat = _position(AREZZO_PHOTOS[2])
    outcomes = fetch_imagery(
        [points[0], FetchPoint(2, lon, lat + 2e-5)], settings, tmp_path / "cache"
    )
    assert [o.status for o in outcomes] == [
        f"no imagery: no photo within 10 m; 2 photos of the folder have no GPS position in "
        f"their EXIF; {PLACE_BY_CSV}",
        "ok",
    ]
    # What the status advises: a CSV of lon, lat, path places them.
    listing = tmp_path / "posizioni.csv"
    rows = "".join(f"{lon},{lat},{p}\n" for (lon, lat), p in zip(places, stripped, strict=True))
    listing.write_text(f"lon,lat,path\n{rows}", "utf-8")
    settings = FetchSettings("local", radius_m=10.0, location=str(listing))
    outcomes = fetch_imagery(points, settings, tmp_path / "cache")
    assert [o.status for o in outcomes] == ["ok", "ok"]
    assert [o.paths for o in outcomes] == [[str(p)] for p in stripped]


@pytest.mark.parametrize(
    ("encoding", "likely"),
    [
        (
            "cp1252",
            ": it is likely Windows-1252 or Latin-1 text, as Excel's 'CSV (Comma delimited)' "
            "writes it",
        ),
        ("utf-16", ": it is UTF-16 text, as Excel's 'Unicode Text' writes it"),
    ],
)
def test_a_csv_that_is_not_utf8_is_named_with_what_to_do(tmp_path, encoding, likely):
    folder = tmp_path / "città"
    folder.mkdir()
    shutil.copy(AREZZO_PHOTOS[0], folder / "piazza è.jpg")
    listing = folder / "elenco.csv"
    listing.write_bytes("lon,lat,path\n11.0,43.0,piazza è.jpg\n".encode(encoding))
    settings = FetchSettings("local", radius_m=15.0, location=str(listing))
    with pytest.raises(LocalPhotosError) as raised:
        fetch_imagery([FetchPoint(1, 11.0, 43.0), FetchPoint(2, 11.1, 43.0)], settings, tmp_path)
    line = 2 if encoding == "cp1252" else 1
    assert str(raised.value).startswith(
        f"The local photos CSV {listing} is not UTF-8 text (line {line}: byte 0x"
    )
    assert f"{likely}. Save it as UTF-8 (Excel: 'CSV UTF-8 (Comma delimited)'" in str(raised.value)


def test_a_csv_saved_as_utf8_with_a_byte_order_mark_works(tmp_path):
    """What Excel's 'CSV UTF-8' writes, and the advice above leads to."""
    folder = tmp_path / "città"
    folder.mkdir()
    shutil.copy(AREZZO_PHOTOS[0], folder / "piazza è.jpg")
    listing = folder / "elenco.csv"
    listing.write_bytes("lon,lat,path\r\n11.0,43.0,piazza è.jpg\r\n".encode("utf-8-sig"))
    settings = FetchSettings("local", radius_m=15.0, location=str(listing))
    outcomes = fetch_imagery([FetchPoint(1, 11.0, 43.0)], settings, tmp_path / "cache")
    assert [o.status for o in outcomes] == ["ok"]
    assert outcomes[0].paths == [str(folder / "piazza è.jpg")]


# Each row of a CSV places a photo at a point of its own, so each bad file costs only its point,
# and the point's status says why.
@pytest.mark.parametrize(
    ("make", "status"),
    [
        (lambda d: shutil.copy(AREZZO_PHOTOS[0], d / "ok.jpg"), "ok"),
        (
            lambda d: _write(d / "vuota.jpg", b""),
            f"1 photo within 15 m unusable ({EMPTY}: 1)",
        ),
        (
            lambda d: _truncated(AREZZO_PHOTOS[1], d / "tagliata.jpg"),
            f"1 photo within 15 m unusable ({TRUNCATED}: 1)",
        ),
        (lambda d: _bomb_png(d / "bomba.png"), f"1 photo within 15 m unusable ({TOO_LARGE}: 1)"),
        (lambda d: shutil.copy(PANORAMAS[0], d / "pano.jpg"), "ok"),  # the CSV gives its place
        (lambda d: d / "sparita.jpg", f"1 photo within 15 m unusable ({MISSING}: 1)"),
        (
            lambda d: _write(d / "testo.jpg", b"not a photo"),
            "1 photo within 15 m unusable (not an image Pillow can read: 1)",
        ),
    ],
    ids=["good", "0-byte", "truncated", "bomb-30000px", "no-gps-placed-by-csv", "missing", "text"],
)
def test_a_csv_row_whose_photo_is_unusable_says_why_at_its_point(tmp_path, make, status):
    folder = tmp_path / "cartella con spazi è"
    folder.mkdir()
    photo = Path(make(folder))
    good = folder / "altra.jpg"
    shutil.copy(AREZZO_PHOTOS[2], good)
    listing = folder / "foto elenco.csv"
    listing.write_text(f"lon,lat,path\n11.0,43.0,{photo.name}\n11.01,43.0,{good}\n", "utf-8")
    settings = FetchSettings("local", radius_m=15.0, location=str(listing))
    points = [FetchPoint(1, 11.0, 43.00001), FetchPoint(2, 11.01, 43.0)]
    outcomes = fetch_imagery(points, settings, tmp_path / "cache")
    expected = status if status == "ok" else f"no imagery: {status}"
    assert [o.status for o in outcomes] == [expected, "ok"]
    assert outcomes[1].paths == [str(good)]


def test_a_mended_photo_is_used_on_the_next_run(tmp_path):
    """Local lookups are not remembered: a photo repaired after a run is found by the next."""
    folder = tmp_path / "foto"
    folder.mkdir()
    broken = _truncated(AREZZO_PHOTOS[1], folder / "tagliata.jpg")
    lon, lat = _position(AREZZO_PHOTOS[1])
    settings = FetchSettings("local", radius_m=10.0, location=str(folder))
    first = fetch_imagery([FetchPoint(1, lon, lat)], settings, tmp_path / "cache")
    assert first[0].status.startswith("no imagery: 1 photo")
    shutil.copy(AREZZO_PHOTOS[1], broken)
    again = fetch_imagery([FetchPoint(1, lon, lat)], settings, tmp_path / "cache")
    assert again[0].status == "ok"
