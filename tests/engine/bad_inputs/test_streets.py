"""Sample street centroids fed what users and hostile files present: each case ends in a clear
error that names the input and what to fix, or works and says what it did.

Small OSM files are made on the fly (XML text, or PBF written with pyosmium); the real Rome extract
is read in place.
"""

from __future__ import annotations

import bz2
import math
import shutil
from pathlib import Path

import pytest
import shapely
from shapely.geometry import box

from mus_qgis.engine.streets.centroids import StudyArea, sample_street_centroids
from mus_qgis.shared.errors import CrsError, OsmFileError, SettingError, StudyAreaError
from mus_qgis.shared.progress import LoggingProgress
from tests.conftest import ROME_OSM, SHARED_DATA, osm_xml

# A residential street of three nodes ~100 m apart along latitude 45, and a square piazza north of
# it (about 60 m a side) drawn as a pedestrian area.
STREET = {1: (7.0, 45.0), 2: (7.0013, 45.0), 3: (7.0026, 45.0)}
SQUARE = {11: (7.0, 45.001), 12: (7.0008, 45.001), 13: (7.0008, 45.0016), 14: (7.0, 45.0016)}
SQUARE_TAGS = {"highway": "pedestrian", "area": "yes", "name": "Piazza Prova"}


def _write_xml(path: Path, nodes, ways) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(osm_xml(nodes, ways), encoding="utf-8")
    return path


def _write_pbf(path: Path, nodes, ways) -> Path:
    import osmium
    from osmium.osm.mutable import Node, Way

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = osmium.SimpleWriter(str(path))
    try:
        for node_id, location in nodes.items():
            writer.add_node(Node(id=node_id, location=location))
        for way_id, refs, tags in ways:
            writer.add_way(Way(id=way_id, nodes=refs, tags=tags))
    finally:
        writer.close()
    return path


def _one_street(tmp_path: Path, name="area.osm", **tags) -> Path:
    return _write_xml(tmp_path / name, STREET, [(100, [1, 2, 3], {"highway": "residential"})])


# -- street areas (piazzas) ------------------------------------------------------------------------
def test_a_pedestrian_square_gets_one_point_at_its_centre(tmp_path):
    path = _write_xml(
        tmp_path / "piazza.osm",
        {**STREET, **SQUARE},
        [(100, [1, 2, 3], {"highway": "residential"}), (200, [11, 12, 13, 14, 11], SQUARE_TAGS)],
    )
    progress = LoggingProgress()
    result = sample_street_centroids(StudyArea(osm_file=path), progress=progress)
    assert result.areas_selected == 1 and result.segments_selected == 1
    square = result.points[result.points["osm_ids"] == "200"].iloc[0]
    assert square["name"] == "Piazza Prova" and square["highway"] == "pedestrian"
    assert square.geometry.x == pytest.approx(7.0004, abs=1e-6)
    assert square.geometry.y == pytest.approx(45.0013, abs=1e-6)
    assert square["length_m"] == pytest.approx(66.7, abs=1.0)  # its long (north-south) side
    assert square["bearing"] == pytest.approx(0.0, abs=0.5) or square["bearing"] > 179.5
    assert any("street areas" in m and ": 1;" in m for m in progress.messages)


def test_a_bent_square_gets_its_point_inside_it(tmp_path):
    # an L-shaped square: its centroid falls in the notch, outside the square
    nodes = {
        21: (7.0, 45.0),
        22: (7.002, 45.0),
        23: (7.002, 45.0003),
        24: (7.0003, 45.0003),
        25: (7.0003, 45.002),
        26: (7.0, 45.002),
    }
    tags = {"highway": "pedestrian", "area": "yes"}
    path = _write_xml(tmp_path / "elle.osm", nodes, [(300, [21, 22, 23, 24, 25, 26, 21], tags)])
    result = sample_street_centroids(StudyArea(osm_file=path))
    point = result.points.geometry.iloc[0]
    elle = shapely.Polygon([nodes[n] for n in (21, 22, 23, 24, 25, 26)])
    assert not elle.contains(elle.centroid)
    assert elle.contains(point)


def test_the_rome_extracts_squares_are_sampled_and_logged():
    progress = LoggingProgress()
    result = sample_street_centroids(StudyArea(osm_file=ROME_OSM), progress=progress)
    assert (result.areas_selected, result.areas_excluded) == (27, 1)
    summary = progress.messages[-1]
    assert "one point each at their centre: 27; excluded by class: 1" in summary
    # each square stands in some point (its own, or the one it merged into)
    sampled = {int(i) for ids in result.points["osm_ids"] for i in ids.split(";")}
    assert {346997697, 346995621, 81741068, 24167332} <= sampled  # Suburra, Zingari, ...
    assert "Piazza degli Zingari" in set(result.points["name"])


# -- out-of-range coordinates ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fmt", "bad_node", "location", "shown"),
    [
        ("osm", 2, (7.0013, 95.0), "latitude 95, longitude 7.0013"),
        ("osm", 3, (187.0026, 45.0), "latitude 45, longitude 187.003"),
        ("pbf", 2, (7.0013, 95.0), "latitude 95, longitude 7.0013"),
    ],
)
def test_out_of_range_coordinates_name_the_file_and_the_node(
    tmp_path, fmt, bad_node, location, shown
):
    nodes = {**STREET, bad_node: location}
    ways = [(100, [1, 2, 3], {"highway": "residential"})]
    write = _write_xml if fmt == "osm" else _write_pbf
    path = write(
        tmp_path / f"damaged.osm.{fmt}" if fmt == "pbf" else tmp_path / "damaged.osm", nodes, ways
    )
    with pytest.raises(OsmFileError) as raised:
        sample_street_centroids(StudyArea(osm_file=path))
    message = str(raised.value)
    assert path.name in message and f"node {bad_node}" in message and shown in message
    assert "outside -90..90 and -180..180" in message


# -- format told by content, not name --------------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "renamed"),
    [
        ("xml", "streets.txt"),
        ("bz2", "streets download.dat"),
        ("pbf", "streets.txt"),
    ],
)
def test_an_osm_file_under_another_name_is_read_by_its_content(tmp_path, source, renamed):
    nodes = {**STREET, **SQUARE}
    ways = [(100, [1, 2, 3], {"highway": "residential"}), (200, [11, 12, 13, 14, 11], SQUARE_TAGS)]
    if source == "pbf":
        original = _write_pbf(tmp_path / "orig.osm.pbf", nodes, ways)
    else:
        original = _write_xml(tmp_path / "orig.osm", nodes, ways)
        if source == "bz2":
            packed = tmp_path / "orig.osm.bz2"
            packed.write_bytes(bz2.compress(original.read_bytes()))
            original = packed
    expected = sample_street_centroids(StudyArea(osm_file=original))
    target = tmp_path / "renamed" / renamed
    target.parent.mkdir()
    shutil.copy(original, target)
    result = sample_street_centroids(StudyArea(osm_file=target))
    assert (result.segments_selected, result.areas_selected) == (1, 1)
    assert result.points.drop(columns="geometry").equals(expected.points.drop(columns="geometry"))


# -- a clipped extract: .osm and .pbf alike --------------------------------------------------------
def test_a_clipped_extract_keeps_the_streets_parts_inside_and_says_so_for_osm_and_pbf(tmp_path):
    # what a clip leaves: node 4 east of 3 and node 9 are outside the file
    nodes = {**STREET, 5: (7.0, 45.003), 6: (7.0013, 45.003), 7: (7.0026, 45.003)}
    nodes.update({8: (7.0, 45.006)})
    ways = [
        (100, [1, 2, 3, 4], {"highway": "residential", "name": "Cut at its end"}),
        (200, [5, 6, 99, 7], {"highway": "residential", "name": "Gap in the middle"}),
        (300, [8, 9], {"highway": "residential", "name": "One node inside"}),
    ]
    results = {}
    for fmt in ("osm", "pbf"):
        path = tmp_path / f"clip.{fmt}"
        (_write_xml if fmt == "osm" else _write_pbf)(path, nodes, ways)
        progress = LoggingProgress()
        results[fmt] = sample_street_centroids(
            StudyArea(osm_file=path), merge_distance_m=0, progress=progress
        )
        assert any(
            f"clip.{fmt} is clipped: 3 streets reference nodes the file does not hold; 2 keep "
            "their parts inside the file, 1 with fewer than two nodes inside are left out" in m
            for m in progress.messages
        ), progress.messages
    for result in results.values():
        names = sorted(result.points["name"])
        # the gap splits street 200 into its two parts ([5, 6] and a lone 7 that is no street)
        assert names == ["Cut at its end", "Gap in the middle"]
        cut = result.points[result.points["name"] == "Cut at its end"].iloc[0]
        assert cut["length_m"] == pytest.approx(2 * 102.2, rel=0.02)
    osm, pbf = results["osm"].points, results["pbf"].points
    assert osm.drop(columns="geometry").equals(pbf.drop(columns="geometry"))


# -- files that are not usable ---------------------------------------------------------------------
def _truncated(source: Path, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: _empty(d / "empty.osm"), r"empty.osm is empty \(0 bytes\)"),
        (lambda d: _empty(d / "empty.osm.pbf"), r"empty.osm.pbf is empty \(0 bytes\)"),
        (
            lambda d: _truncated(ROME_OSM, d, "cut short.osm"),
            "cut short.osm could not be read as OpenStreetMap XML (.*); the file is damaged or "
            "cut short",
        ),
        (
            lambda d: _truncated(SHARED_DATA / "osm" / "rome_piazza_venezia.osm.pbf", d, "cut.pbf"),
            "cut.pbf could not be read as OpenStreetMap PBF (.*); the file is damaged or cut short",
        ),
        (
            lambda d: _garbage(d / "noise.osm"),
            "noise.osm is not an OpenStreetMap file: its content",
        ),
        (
            lambda d: _garbage(d / "noise.pbf"),
            "noise.pbf is not an OpenStreetMap file: its content",
        ),
        (
            lambda d: _text(d / "track.osm", '<?xml version="1.0"?><gpx><trk/></gpx>'),
            "track.osm is XML but not OpenStreetMap: its root element is <gpx>",
        ),
        (
            lambda d: _text(d / "shops.osm", osm_xml(STREET, [(5, [1, 2], {"shop": "bakery"})])),
            "shops.osm holds no streets: no way with a highway tag",
        ),
    ],
    ids=[
        "empty-osm",
        "empty-pbf",
        "truncated-osm",
        "truncated-pbf",
        "garbage-osm",
        "garbage-pbf",
        "gpx-as-osm",
        "no-highways",
    ],
)
def test_an_unusable_file_is_named_with_what_to_do(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(OsmFileError, match=message):
        sample_street_centroids(StudyArea(osm_file=path))


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _garbage(path: Path) -> Path:
    path.write_bytes(bytes(range(256)) * 64)
    return path


def _text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- settings --------------------------------------------------------------------------------------
@pytest.mark.parametrize("distance", [-1.0, math.nan, 1e9, math.inf])
def test_a_negative_or_absurd_merge_distance_is_refused(tmp_path, distance):
    with pytest.raises(
        SettingError, match=r"merge distance .* out of range: give 0 .* to 10,000 m"
    ):
        sample_street_centroids(
            StudyArea(osm_file=_one_street(tmp_path)), merge_distance_m=distance
        )


@pytest.mark.parametrize(
    ("crs", "message"),
    [
        ("EPSG:4326", "geographic CRS in degrees"),
        ("EPSG:2263", "measures in US survey foot; choose a CRS in metres"),
        ("EPSG:999999", "Unknown coordinate reference system 'EPSG:999999'.*EPSG:32633"),
    ],
)
def test_a_crs_that_cannot_measure_metres_is_refused(tmp_path, crs, message):
    with pytest.raises(CrsError, match=message):
        sample_street_centroids(StudyArea(osm_file=_one_street(tmp_path)), projected_crs=crs)


@pytest.mark.parametrize("classes", [[], ["", "  "]])
def test_no_street_class_chosen(tmp_path, classes):
    with pytest.raises(StudyAreaError, match="Choose at least one street class"):
        sample_street_centroids(StudyArea(osm_file=_one_street(tmp_path)), classes=classes)


def test_unicode_and_spaces_in_the_path_work(tmp_path):
    path = _one_street(tmp_path / "Città di prova" / "strade è ü 東京", name="vie del centro.osm")
    result = sample_street_centroids(StudyArea(osm_file=path))
    assert result.locations == 1


def test_a_study_area_polygon_far_from_the_files_streets(tmp_path):
    from mus_qgis.shared.errors import NoStreetsError

    elsewhere = box(12.0, 41.0, 12.01, 41.01)
    with pytest.raises(NoStreetsError, match=r"no streets of the classes .*choose other"):
        sample_street_centroids(StudyArea(osm_file=_one_street(tmp_path), polygon=elsewhere))
