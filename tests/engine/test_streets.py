"""Street sampling on the real Rome extract and on small constructed networks."""

from __future__ import annotations

import bz2
import math
import os
import subprocess
import sys

import numpy as np
import pyproj
import pytest
import shapely
from shapely.geometry import LineString, Polygon, box

from mus_qgis.engine.streets.centroids import DEFAULT_CLASSES, StudyArea, sample_street_centroids
from mus_qgis.shared.errors import (
    CanceledError,
    CrsError,
    NoStreetsError,
    OsmFileError,
    StudyAreaError,
)
from tests.conftest import ROME_OSM, ROOT, SHARED_DATA
from tests.osm_reference import count_segments, read_ways, street_area_classes

UTM33 = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:32633", always_xy=True)


@pytest.fixture(scope="module")
def rome():
    return sample_street_centroids(StudyArea(osm_file=ROME_OSM))


@pytest.fixture(scope="module")
def rome_ways():
    return read_ways(ROME_OSM)


def _utm_points(gdf) -> np.ndarray:
    x, y = UTM33.transform(gdf.geometry.x.to_numpy(), gdf.geometry.y.to_numpy())
    return np.column_stack([x, y])


def test_counts_match_an_independent_count_of_the_file(rome, rome_ways):
    _, ways = rome_ways
    selected = set(DEFAULT_CLASSES)
    other = {w["tags"]["highway"] for w in ways} - selected
    assert rome.segments_selected == count_segments(ways, selected) == 417
    assert rome.segments_excluded == count_segments(ways, other) == 845
    assert rome.segments_total == 417 + 845
    # the file's street areas (piazzas), counted from the XML, are sampled one point each
    areas = street_area_classes(ROME_OSM)
    assert rome.areas_selected == sum(1 for c in areas if c in selected) == 27
    assert rome.areas_excluded == sum(1 for c in areas if c not in selected) == 1
    # every selected segment and area is in exactly one location
    assert rome.points["n_merged"].sum() == rome.segments_selected + rome.areas_selected
    assert rome.locations == len(rome.points) < rome.segments_selected


def test_directed_edges_count_two_way_streets_twice(rome):
    # Many streets of central Rome are one-way: counted once; the others twice.
    assert rome.segments_selected < rome.directed_edges < 2 * rome.segments_selected
    # osmnx's own directed graph of the file, the classes kept, simplified: the same count.
    import osmnx as ox

    graph = ox.graph_from_xml(ROME_OSM, simplify=False, retain_all=True, bidirectional=False)
    kept = [
        (u, v, k)
        for u, v, k, data in graph.edges(keys=True, data=True)
        if data.get("area") != "yes" and np.ravel([data.get("highway")])[0] in DEFAULT_CLASSES
    ]
    own = ox.simplify_graph(graph.edge_subgraph(kept).copy(), edge_attrs_differ=["highway"])
    assert rome.directed_edges == own.number_of_edges() == 601


def test_excluded_counts_by_class_add_up(rome):
    assert sum(rome.excluded_by_class.values()) == rome.segments_excluded
    assert set(rome.excluded_by_class) >= {"footway", "service", "steps"}
    assert not set(rome.excluded_by_class) & set(DEFAULT_CLASSES)


def test_no_two_points_closer_than_the_merge_distance(rome):
    xy = _utm_points(rome.points)
    diff = xy[:, None, :] - xy[None, :, :]
    dist = np.hypot(diff[..., 0], diff[..., 1])
    np.fill_diagonal(dist, np.inf)
    assert dist.min() >= 20.0


def test_every_point_lies_on_a_street_or_in_a_square_of_a_selected_class(rome, rome_ways):
    nodes, ways = rome_ways
    lines = [
        LineString([UTM33.transform(*nodes[n]) for n in w["nodes"]])
        for w in ways
        if w["tags"]["highway"] in DEFAULT_CLASSES and len(w["nodes"]) > 1
    ]
    streets = shapely.STRtree(lines)
    squares = _squares_utm(rome_ways)
    xy = _utm_points(rome.points)
    in_squares = 0
    for (x, y), highway, ids in zip(xy, rome.points["highway"], rome.points["osm_ids"]):
        assert highway in DEFAULT_CLASSES
        point = shapely.Point(x, y)
        # a square's point lies inside it (a merged point stays where its longest member was)
        if any(int(i) in squares and squares[int(i)].contains(point) for i in ids.split(";")):
            in_squares += 1
            continue
        nearest = streets.query_nearest(point, return_distance=True)[1][0]
        assert nearest < 0.05, f"point ({x:.1f}, {y:.1f}) is {nearest:.2f} m from any street"
    assert in_squares > 0


def _squares_utm(rome_ways) -> dict:
    """The pedestrian squares (area=yes) of the Rome file as polygons in UTM 33N, by way id."""
    import xml.etree.ElementTree as ET

    nodes, _ = rome_ways
    squares = {}
    for way in ET.parse(ROME_OSM).getroot().iter("way"):
        tags = {t.get("k"): t.get("v") for t in way.iter("tag")}
        if tags.get("highway") == "pedestrian" and tags.get("area") == "yes":
            ring = [UTM33.transform(*nodes[int(nd.get("ref"))]) for nd in way.iter("nd")]
            squares[int(way.get("id"))] = Polygon(ring)
    return squares


def test_output_columns_and_values(rome):
    points = rome.points
    assert list(points.columns) == [
        "id",
        "osm_ids",
        "highway",
        "name",
        "length_m",
        "bearing",
        "n_merged",
        "geometry",
    ]
    assert points.crs.to_epsg() == 4326
    assert list(points["id"]) == list(range(1, len(points) + 1))
    assert points["bearing"].between(0, 180, inclusive="left").all()
    assert (points["length_m"] > 0).all()
    assert points["osm_ids"].str.fullmatch(r"\d+(;\d+)*").all()
    assert "Via Cavour" in set(points["name"].dropna())
    west, south, east, north = points.total_bounds
    assert 12.48 < west < east < 12.51 and 41.88 < south < north < 41.90


def test_zero_merge_distance_keeps_one_point_per_segment(rome):
    unmerged = sample_street_centroids(StudyArea(osm_file=ROME_OSM), merge_distance_m=0)
    assert unmerged.locations == rome.segments_selected + rome.areas_selected
    assert (unmerged.points["n_merged"] == 1).all()


def test_larger_merge_distance_leaves_fewer_locations(rome):
    wider = sample_street_centroids(StudyArea(osm_file=ROME_OSM), merge_distance_m=50)
    assert wider.locations < rome.locations
    assert wider.points["n_merged"].sum() == rome.segments_selected + rome.areas_selected


def test_polygon_clips_a_file(rome):
    half = box(12.4833, 41.8850, 12.4948, 41.8991)
    clipped = sample_street_centroids(StudyArea(osm_file=ROME_OSM, polygon=half))
    assert 0 < clipped.locations < rome.locations
    assert clipped.points.geometry.within(half).all()


# --- constructed networks -------------------------------------------------------------------------


# A node every ~100 m east along latitude 45 (1e-3 degree of longitude is about 78.7 m there).
def _row(first_id: int, count: int, lat: float = 45.0, lon0: float = 7.0, step: float = 1.3e-3):
    return {first_id + i: (lon0 + i * step, lat) for i in range(count)}


def test_bearing_points_along_the_street(write_osm):
    nodes = {**_row(1, 3), **{10: (7.0, 45.0), 11: (7.0, 45.002), 12: (7.0, 45.004)}}
    ways = [
        (100, [1, 2, 3], {"highway": "residential", "name": "East Street"}),
        (200, [10, 11, 12], {"highway": "residential", "name": "North Street"}),
    ]
    result = sample_street_centroids(StudyArea(osm_file=write_osm(nodes, ways)))
    bearing = dict(zip(result.points["name"], result.points["bearing"]))
    assert bearing["East Street"] == pytest.approx(90.0, abs=0.1)
    assert bearing["North Street"] == pytest.approx(0.0, abs=0.1)
    # both streets meet at node 1 = node 10, so each is one segment
    assert result.segments_selected == 2


def test_two_way_and_one_way_streets_count_once(write_osm):
    nodes = {**_row(1, 4), **_row(11, 4, lat=45.01)}
    ways = [
        (100, [1, 2, 3, 4], {"highway": "residential"}),
        (200, [11, 12, 13, 14], {"highway": "residential", "oneway": "yes"}),
    ]
    result = sample_street_centroids(StudyArea(osm_file=write_osm(nodes, ways)))
    assert result.segments_selected == 2
    assert result.locations == 2
    # osmnx's directed graph, as graph_from_place counts: the two-way street twice.
    assert result.directed_edges == 3
    assert "directed graph of the chosen classes (a two-way street counts twice" in (
        result.summary()
    )


def test_disconnected_streets_are_kept(write_osm):
    # three separate residential streets, joined only by footways that are not selected
    nodes = {**_row(1, 2), **_row(11, 2, lat=45.01), **_row(21, 2, lat=45.02)}
    ways = [
        (100, [1, 2], {"highway": "residential"}),
        (200, [11, 12], {"highway": "residential"}),
        (300, [21, 22], {"highway": "residential"}),
        (400, [2, 12, 22], {"highway": "footway"}),
    ]
    result = sample_street_centroids(StudyArea(osm_file=write_osm(nodes, ways)))
    assert result.segments_selected == 3
    # classes are segmented apart: within the footway network the footway is one segment
    assert result.segments_excluded == 1


def test_a_street_loop_is_one_segment(write_osm):
    # a closed residential loop whose only connection is a footway
    square = {
        1: (7.0, 45.0),
        2: (7.002, 45.0),
        3: (7.002, 45.002),
        4: (7.0, 45.002),
        5: (6.99, 45.0),
    }
    ways = [
        (100, [1, 2, 3, 4, 1], {"highway": "residential", "name": "Loop"}),
        (200, [5, 1], {"highway": "footway"}),
    ]
    result = sample_street_centroids(StudyArea(osm_file=write_osm(square, ways)))
    assert result.segments_selected == 1
    assert result.points["length_m"].iloc[0] == pytest.approx(4 * 200, rel=0.35)


def test_class_change_splits_a_segment(write_osm):
    nodes = _row(1, 5)
    ways = [
        (100, [1, 2, 3], {"highway": "residential"}),
        (200, [3, 4, 5], {"highway": "tertiary"}),
    ]
    result = sample_street_centroids(StudyArea(osm_file=write_osm(nodes, ways)))
    assert sorted(result.points["highway"]) == ["residential", "tertiary"]


def test_merging_keeps_the_longest_segment_and_all_way_ids(write_osm):
    # a 300 m street with two 8 m stubs north of its middle: the first stub's midpoint is 17 m from
    # the street's, the second's 40 m from the street's and 22 m from the first stub's
    nodes = {**_row(1, 4, step=1.27e-3), 10: (7.0019, 45.0001), 11: (7.0019, 45.0002)}
    nodes.update({20: (7.0020, 45.0003), 21: (7.0020, 45.0004)})
    ways = [
        (100, [1, 2, 3, 4], {"highway": "residential", "name": "Main"}),
        (200, [10, 11], {"highway": "pedestrian"}),
        (300, [20, 21], {"highway": "pedestrian"}),
    ]
    result = sample_street_centroids(StudyArea(osm_file=write_osm(nodes, ways)))
    assert result.segments_selected == 3
    assert result.locations == 2
    merged = result.points[result.points["n_merged"] == 2].iloc[0]
    assert merged["osm_ids"] == "100;200"
    assert merged["name"] == "Main"  # the longest segment keeps its place and attributes
    assert merged.geometry.y == pytest.approx(45.0, abs=1e-7)


# --- file formats ---------------------------------------------------------------------------------


def test_bz2_and_pbf_files_give_the_same_streets_as_xml(tmp_path):
    # osmnx's test area exists as .osm.bz2 and .osm.pbf; the plain XML is unpacked here
    bz2_path = SHARED_DATA / "osm" / "aguascalientes.osm.bz2"
    xml_path = tmp_path / "aguascalientes.osm"
    xml_path.write_bytes(bz2.decompress(bz2_path.read_bytes()))
    pbf_path = SHARED_DATA / "osm" / "aguascalientes.osm.pbf"
    classes = ["primary", "secondary", "tertiary", "residential", "unclassified", "service"]
    results = [
        sample_street_centroids(StudyArea(osm_file=path), classes=classes)
        for path in (xml_path, bz2_path, pbf_path)
    ]
    counts = {(r.segments_selected, r.segments_excluded, r.locations) for r in results}
    assert len(counts) == 1
    _, ways = read_ways(xml_path)
    assert results[0].segments_selected == count_segments(ways, set(classes)) > 0


def test_pbf_extract_of_rome():
    result = sample_street_centroids(
        StudyArea(osm_file=SHARED_DATA / "osm" / "rome_castro_pretorio.osm.pbf")
    )
    assert result.segments_selected > 10
    west, south, east, north = result.points.total_bounds
    assert 12.49 < west < east < 12.51 and 41.90 < south < north < 41.91


# --- bad input ------------------------------------------------------------------------------------


def test_no_study_area():
    with pytest.raises(StudyAreaError, match="No study area"):
        StudyArea()


@pytest.mark.parametrize(
    ("polygon", "message"),
    [
        (Polygon(), "empty"),
        (Polygon([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)]), "invalid"),
        (Polygon([(0, 0), (1, 1), (2, 2), (0, 0)]), "invalid|no area"),
        (box(500000, 4600000, 501000, 4601000), "longitude/latitude"),
    ],
)
def test_bad_polygons(polygon, message):
    with pytest.raises(StudyAreaError, match=message):
        StudyArea(polygon=polygon)


def test_place_and_polygon_together():
    with pytest.raises(StudyAreaError, match="not both"):
        StudyArea(place="Rome", polygon=box(12, 41, 13, 42))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.osm", None, "not found"),
        ("streets.csv", "lon,lat\n1,2\n", "not an OpenStreetMap file"),
        ("broken.osm", "<osm><node id='1' lat='x'", "could not be read"),
        ("other.osm", "<html><body>not osm</body></html>", "XML but not OpenStreetMap"),
        ("broken.osm.pbf", "this is not a pbf file", "not an OpenStreetMap file"),
        ("broken.osm.bz2", "not bz2", "not an OpenStreetMap file"),
    ],
)
def test_unreadable_files(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(OsmFileError, match=message):
        sample_street_centroids(StudyArea(osm_file=path))


def test_no_streets_of_the_chosen_classes():
    with pytest.raises(NoStreetsError, match="motorway") as error:
        sample_street_centroids(StudyArea(osm_file=ROME_OSM), classes=["motorway"])
    assert "residential" in str(error.value)  # names the classes the area does have


def test_no_class_chosen():
    with pytest.raises(StudyAreaError, match="at least one"):
        sample_street_centroids(StudyArea(osm_file=ROME_OSM), classes=[])


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:4258"])
def test_geographic_crs_is_refused_for_distances(crs):
    with pytest.raises(CrsError, match="geographic"):
        sample_street_centroids(StudyArea(osm_file=ROME_OSM), projected_crs=crs)


def test_chosen_projected_crs_is_used():
    result = sample_street_centroids(StudyArea(osm_file=ROME_OSM), projected_crs="EPSG:3035")
    assert result.projected_crs == "EPSG:3035"
    # the same merge in another metric CRS gives about the same number of locations
    assert abs(result.locations - 372) <= 5


def test_cancel_stops_the_run():
    class CancelAfterFirstMessage:
        def __init__(self):
            self.messages = []

        def set_progress(self, percent):
            pass

        def is_canceled(self):
            return bool(self.messages)

        def info(self, message):
            self.messages.append(message)

    with pytest.raises(CanceledError):
        sample_street_centroids(StudyArea(osm_file=ROME_OSM), progress=CancelAfterFirstMessage())


def test_merge_is_deterministic(rome):
    again = sample_street_centroids(StudyArea(osm_file=ROME_OSM))
    assert again.points.drop(columns="geometry").equals(rome.points.drop(columns="geometry"))


def test_distance_helper_measures_metres():
    # guards the UTM transform the distance checks above rely on
    a, b = UTM33.transform(12.49, 41.89), UTM33.transform(12.49, 41.8909)
    assert math.dist(a, b) == pytest.approx(100, rel=0.01)


def test_a_merged_segment_names_its_streets_in_one_order_whatever_the_process(write_osm):
    """osmnx gathers the names of the ways it merges in a set, whose order changes with each
    process's string hashing: the names are sorted, so a re-run of a study writes the same."""
    from mus_qgis.engine.streets.centroids import _as_name

    assert _as_name(["Via Zeta", "Via Alfa", "Via Zeta", 7]) == "Via Alfa; Via Zeta"
    nodes = _row(1, 5)
    names = ["Via Zeta", "Via Mu", "Via Alfa", "Via Kappa"]
    ways = [
        (100 + i, [1 + i, 2 + i], {"highway": "residential", "name": name})
        for i, name in enumerate(names)
    ]
    path = write_osm(nodes, ways)
    script = (
        "import sys; from mus_qgis.engine.streets.centroids import StudyArea, "
        "sample_street_centroids as s; print(list(s(StudyArea(osm_file=sys.argv[1]))"
        ".points['name']))"
    )
    seen = set()
    for seed in ("1", "2", "3"):
        done = subprocess.run(
            [sys.executable, "-c", script, str(path)],
            capture_output=True,
            text=True,
            encoding="utf-8",
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)},
        )
        seen.add(done.stdout.strip().splitlines()[-1])
    assert seen == {str(["; ".join(sorted(names))])}
