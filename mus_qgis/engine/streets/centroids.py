"""Sample street centroids: a point at the middle of each street segment, merged within a distance.

The method of "CLIP and the City": take a study area's street network, keep chosen highway classes,
put a sample point at the middle of each segment (on the street, halfway along it), and merge points
closer than 20 m so that nearby segments share one location.

A street area (a piazza drawn as a polygon: a highway way tagged area=yes) has no middle line; it is
street space a study wants all the same, so it gets one point at its centre (its centroid, or a
point inside it where the centroid falls outside a bent square), as its long axis for bearing and
length. Before, such areas were dropped without a word.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import geopandas as gpd
import networkx as nx
import numpy as np
import osmnx as ox
import pandas as pd
import pyproj
import shapely

from ...shared.errors import CrsError, NoStreetsError, SettingError, StudyAreaError
from ...shared.progress import LoggingProgress, Progress, check_canceled
from ...shared.street_classes import MAX_MERGE_DISTANCE_M, reference_study_classes
from .osm_source import (
    REVERSE_OF_ONE_WAY,
    NetworkServices,
    geocode_place,
    graph_from_osm_file,
    graph_from_overpass,
)

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

# The reference study's classes; footways and tracks were set apart as mostly without imagery.
DEFAULT_CLASSES = reference_study_classes()

WGS84 = "EPSG:4326"
_GEOD = pyproj.Geod(ellps="WGS84")
_RING_ANCHOR = "mus_ring_anchor"


@dataclass(frozen=True)
class StudyArea:
    """Where to sample: a place name, a polygon in EPSG:4326, or a local OpenStreetMap file.

    A polygon given with a file clips the file's streets to it; otherwise exactly one is given.
    """

    place: str | None = None
    polygon: BaseGeometry | None = None
    osm_file: Path | None = None

    def __post_init__(self) -> None:
        online = [s for s in (self.place, self.polygon) if s is not None]
        if self.osm_file is None and not online:
            raise StudyAreaError(
                "No study area: give a place name, a polygon layer, an extent or an "
                "OpenStreetMap file."
            )
        if self.place is not None and self.polygon is not None:
            raise StudyAreaError("Give a place name or a polygon/extent as study area, not both.")
        if self.place is not None and self.osm_file is not None:
            raise StudyAreaError(
                "Give a place name or an OpenStreetMap file, not both; to clip a file, give a "
                "polygon layer or an extent with it."
            )
        if self.place is not None and not self.place.strip():
            raise StudyAreaError("The place name is empty.")
        if self.polygon is not None:
            _check_polygon(self.polygon)


def _check_polygon(polygon: BaseGeometry) -> None:
    if polygon.is_empty:
        raise StudyAreaError("The study area polygon is empty.")
    if polygon.geom_type not in ("Polygon", "MultiPolygon"):
        raise StudyAreaError(f"The study area must be a polygon, not a {polygon.geom_type}.")
    if not polygon.is_valid:
        raise StudyAreaError(
            f"The study area polygon is invalid ({shapely.is_valid_reason(polygon)}); repair it "
            "first, e.g. with Processing's 'Fix geometries'."
        )
    if polygon.area == 0:
        raise StudyAreaError("The study area polygon has no area.")
    west, south, east, north = polygon.bounds
    if west < -180 or east > 180 or south < -90 or north > 90:
        raise StudyAreaError(
            "The study area polygon is not in longitude/latitude (EPSG:4326) degrees."
        )


@dataclass
class SamplingResult:
    """Sample points and the counts a study reports.

    ``points`` is in EPSG:4326 with the columns id, osm_ids, highway, name, length_m, bearing and
    n_merged.
    """

    points: gpd.GeoDataFrame
    segments_total: int
    segments_selected: int
    segments_excluded: int
    excluded_by_class: dict[str, int] = field(default_factory=dict)
    projected_crs: str = ""
    areas_selected: int = 0
    areas_excluded: int = 0
    areas_open: int = 0
    # Edges of osmnx's directed, simplified graph of the chosen classes: a two-way street counts
    # twice, as graph_from_place counts segments (the count studies built on osmnx report).
    directed_edges: int = 0

    @property
    def locations(self) -> int:
        return len(self.points)

    def summary(self) -> str:
        text = (
            f"Street segments found: {self.segments_total}; of the chosen classes: "
            f"{self.segments_selected}; excluded by class: {self.segments_excluded}; "
        )
        if self.areas_selected or self.areas_excluded or self.areas_open:
            text += (
                f"street areas (squares drawn as polygons) of the chosen classes, one point each "
                f"at their centre: {self.areas_selected}; excluded by class: "
                f"{self.areas_excluded}; "
            )
            if self.areas_open:
                text += (
                    f"left out because their outline is not closed in the data: {self.areas_open}; "
                )
        text += (
            f"edges of osmnx's directed graph of the chosen classes (a two-way street counts "
            f"twice, as osmnx's graph_from_place counts segments): {self.directed_edges}; "
        )
        return text + f"locations after merging: {self.locations}."


def sample_street_centroids(
    area: StudyArea,
    *,
    classes: Sequence[str] = DEFAULT_CLASSES,
    merge_distance_m: float = 20.0,
    projected_crs: str | None = None,
    services: NetworkServices | None = None,
    progress: Progress | None = None,
) -> SamplingResult:
    """Sample one point per street segment of the chosen classes and merge close points.

    Parameters
    ----------
    area
        The study area.
    classes
        OpenStreetMap ``highway`` values to keep.
    merge_distance_m
        Points closer than this, in metres, are merged; no two output points are closer.
    projected_crs
        CRS in which distances are measured (any form pyproj accepts); ``None`` picks the UTM
        zone of the study area.
    services
        How to reach Nominatim and Overpass (unused for a local file).
    progress
        Receives progress and messages, and is asked about a cancel between steps.
    """
    progress = progress or LoggingProgress()
    services = services or NetworkServices()
    classes = _check_classes(classes)
    _check_merge_distance(merge_distance_m)

    polygon = area.polygon
    if area.osm_file is not None:
        progress.info(f"Reading streets from {Path(area.osm_file).name}")
        graph = graph_from_osm_file(Path(area.osm_file), progress)
    else:
        if area.place is not None:
            progress.info(f"Finding '{area.place}' with Nominatim")
            polygon = geocode_place(area.place, services)
            check_canceled(progress)
        progress.info("Downloading streets from Overpass")
        graph = graph_from_overpass(polygon, services)
    progress.set_progress(30)
    check_canceled(progress)

    kept = _simplified(graph, lambda highway: highway in classes)
    selected = _edge_frame(kept)
    # What osmnx's graph_from_place counts: the directed graph's edges (a two-way street twice).
    directed = _edge_frame(
        _simplified(graph, lambda highway: highway in classes, as_osmnx_directs=True),
        undirected=False,
    )
    progress.set_progress(50)
    check_canceled(progress)
    excluded = _segments(graph, lambda highway: highway not in classes)
    areas, areas_open = _street_areas(graph, lambda highway: highway in classes)
    other_areas, _ = _street_areas(graph, lambda highway: highway not in classes)
    progress.set_progress(60)
    check_canceled(progress)

    if polygon is not None:
        selected = _midpoint_within(selected, polygon)
        directed = _midpoint_within(directed, polygon)
        excluded = _midpoint_within(excluded, polygon)
        areas = _centre_within(areas, polygon)
        other_areas = _centre_within(other_areas, polygon)
    if selected.empty and areas.empty:
        found = sorted(set(excluded["highway"]) | set(other_areas["highway"]))
        raise NoStreetsError(
            f"The study area has no streets of the classes {', '.join(classes)} "
            f"(classes found: {', '.join(found) or 'none'}); choose other street classes or "
            "another study area."
        )

    crs = _projected_crs(selected if len(selected) else areas, projected_crs)
    points = _midpoints(selected, crs)
    if len(areas):
        points = pd.concat([points, _area_points(areas, crs)], ignore_index=True)
    progress.set_progress(80)
    check_canceled(progress)
    merged = merge_close_points(points, merge_distance_m, crs)
    progress.set_progress(100)

    result = SamplingResult(
        points=merged,
        segments_total=len(selected) + len(excluded),
        segments_selected=len(selected),
        segments_excluded=len(excluded),
        excluded_by_class=excluded["highway"].value_counts().to_dict() if len(excluded) else {},
        projected_crs=crs.to_string(),
        areas_selected=len(areas),
        areas_excluded=len(other_areas),
        areas_open=areas_open,
        directed_edges=len(directed),
    )
    progress.info(result.summary())
    return result


def _check_merge_distance(distance_m: float) -> None:
    if not 0 <= distance_m <= MAX_MERGE_DISTANCE_M:  # NaN fails both tests
        raise SettingError(
            f"The merge distance {distance_m:g} m is out of range: give 0 (one point per segment) "
            f"to {MAX_MERGE_DISTANCE_M:,.0f} m (the reference study used 20 m)."
        )


def _check_classes(classes: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(c.strip() for c in classes if c and c.strip()))
    if not chosen:
        raise StudyAreaError("Choose at least one street class.")
    return chosen


def _segments(graph: nx.MultiDiGraph, keep) -> gpd.GeoDataFrame:
    """Street segments of the kept classes: simplified, each two-way street counted once.

    A segment runs between intersections (or dead ends) of the kept network, and also ends where
    the highway class changes, so that each segment has one class.
    """
    return _edge_frame(_simplified(graph, keep))


def _simplified(
    graph: nx.MultiDiGraph, keep, as_osmnx_directs: bool = False
) -> nx.MultiDiGraph | None:
    """The graph of the kept classes, simplified as osmnx does (None: no such street); with
    ``as_osmnx_directs``, without the reverse of one-way streets, as osmnx's own graph is."""
    edges = [
        (u, v, k)
        for u, v, k, data in graph.edges(keys=True, data=True)
        if data.get("area") != "yes"
        and keep(_first(data.get("highway")))
        and not (as_osmnx_directs and data.get(REVERSE_OF_ONE_WAY))
    ]
    if not edges:
        return None
    sub = graph.edge_subgraph(edges).copy()
    for u, v, k, hw in sub.edges(keys=True, data="highway"):
        sub.edges[u, v, k]["highway"] = _first(hw)
    _anchor_isolated_rings(sub)
    return ox.simplify_graph(
        sub, node_attrs_include=[_RING_ANCHOR], edge_attrs_differ=["highway"], remove_rings=False
    )


def _edge_frame(sub: nx.MultiDiGraph | None, undirected: bool = True) -> gpd.GeoDataFrame:
    """The edges as a frame: undirected (a two-way street once) or as osmnx's directed graph
    holds them (a two-way street twice)."""
    columns = ["u", "v", "key", "osmid", "highway", "name", "length", "geometry"]
    if sub is None:
        return gpd.GeoDataFrame(columns=columns, geometry="geometry", crs=WGS84)
    graph = ox.convert.to_undirected(sub) if undirected else sub
    gdf = ox.graph_to_gdfs(graph, nodes=False, fill_edge_geometry=True).reset_index()
    if "name" not in gdf:
        gdf["name"] = None
    gdf = gdf[columns]
    # A deterministic order, so that merging (which depends on order) is reproducible.
    return gdf.sort_values(["u", "v", "key"], kind="stable").reset_index(drop=True)


def _first(value):
    return value[0] if isinstance(value, list) else value


def _anchor_isolated_rings(graph: nx.MultiDiGraph) -> None:
    """Mark one node of each component that is a bare cycle, so simplifying keeps it as a loop.

    osmnx either drops such rings (a street loop whose side streets are of other classes) or leaves
    them unsimplified; a loop is one street and gets one sample point.
    """
    for component in nx.weakly_connected_components(graph):
        if all(len(set(graph.predecessors(n)) | set(graph.successors(n))) == 2 for n in component):
            graph.nodes[min(component)][_RING_ANCHOR] = True


def _street_areas(graph: nx.MultiDiGraph, keep) -> tuple[gpd.GeoDataFrame, int]:
    """Street areas (highway ways tagged area=yes) of the kept classes as polygons in EPSG:4326,
    and how many of them have an outline that does not close (cut by a clip or a study area)."""
    outlines: dict[int, set] = {}
    tags: dict[int, tuple] = {}
    for u, v, data in graph.edges(data=True):
        if data.get("area") != "yes" or not keep(_first(data.get("highway"))):
            continue
        way = int(_first(data["osmid"]))
        outlines.setdefault(way, set()).add(frozenset((u, v)))
        tags[way] = (_first(data.get("highway")), data.get("name"))
    rows, open_outlines = [], 0
    for way in sorted(outlines):
        lines = [
            shapely.LineString([(graph.nodes[n]["x"], graph.nodes[n]["y"]) for n in sorted(edge)])
            for edge in outlines[way]
            if len(edge) == 2
        ]
        polygon = shapely.union_all(list(shapely.polygonize(lines).geoms))
        if polygon.is_empty:
            open_outlines += 1
            continue
        highway, name = tags[way]
        rows.append({"osmid": way, "highway": highway, "name": name, "geometry": polygon})
    columns = ["osmid", "highway", "name", "geometry"]
    if not rows:
        return gpd.GeoDataFrame(columns=columns, geometry="geometry", crs=WGS84), open_outlines
    return gpd.GeoDataFrame(rows, columns=columns, geometry="geometry", crs=WGS84), open_outlines


def _centre_within(areas: gpd.GeoDataFrame, polygon: BaseGeometry) -> gpd.GeoDataFrame:
    if areas.empty:
        return areas
    return areas[shapely.within(_centres(areas.geometry.values), polygon)].reset_index(drop=True)


def _centres(polygons) -> np.ndarray:
    """The centroid of each polygon, or a point inside it where the centroid falls outside."""
    centroids = shapely.centroid(polygons)
    inside = shapely.within(centroids, polygons)
    return np.where(inside, centroids, shapely.point_on_surface(polygons))


def _area_points(areas: gpd.GeoDataFrame, crs: pyproj.CRS) -> gpd.GeoDataFrame:
    """One point per street area at its centre; its long axis (that of the smallest rectangle
    around it) gives the length and the bearing, as a street's own line does."""
    polygons = areas.geometry.to_crs(crs).values
    centres = _centres(polygons)
    corners = [shapely.get_coordinates(r)[:3] for r in shapely.oriented_envelope(polygons)]
    axes = []
    for a, b, c in corners:
        long_side = (b - a) if np.hypot(*(b - a)) >= np.hypot(*(c - b)) else (c - b)
        axes.append(long_side)
    axes = np.array(axes).reshape(-1, 2)
    lengths = np.hypot(axes[:, 0], axes[:, 1])
    unit = axes / np.maximum(lengths, 1e-9)[:, None]
    cx, cy = shapely.get_x(centres), shapely.get_y(centres)
    ends = gpd.GeoSeries(
        shapely.points(
            np.concatenate([cx - unit[:, 0], cx + unit[:, 0]]),
            np.concatenate([cy - unit[:, 1], cy + unit[:, 1]]),
        ),
        crs=crs,
    ).to_crs(WGS84)
    lon, lat = ends.x.to_numpy(), ends.y.to_numpy()
    n = len(polygons)
    azimuth, _, _ = _GEOD.inv(lon[:n], lat[:n], lon[n:], lat[n:])
    return gpd.GeoDataFrame(
        {
            "osm_ids": [[int(w)] for w in areas["osmid"]],
            "highway": areas["highway"].astype(str).values,
            "name": [_as_name(v) for v in areas["name"]],
            "length_m": np.round(lengths, 2),
            "bearing": np.round(np.mod(azimuth, 180.0), 2),
        },
        geometry=gpd.GeoSeries(centres, crs=crs),
    )


def _midpoint_within(segments: gpd.GeoDataFrame, polygon: BaseGeometry) -> gpd.GeoDataFrame:
    if segments.empty:
        return segments
    middles = shapely.line_interpolate_point(segments.geometry.values, 0.5, normalized=True)
    return segments[shapely.within(middles, polygon)].reset_index(drop=True)


def _projected_crs(segments: gpd.GeoDataFrame, requested: str | None) -> pyproj.CRS:
    if requested:
        try:
            crs = pyproj.CRS.from_user_input(requested)
        except pyproj.exceptions.CRSError as exc:
            raise CrsError(
                f"Unknown coordinate reference system '{requested}' ({exc}); give a projected CRS "
                "in metres such as EPSG:32633, or leave it empty for the UTM zone."
            ) from exc
        if not crs.is_projected:
            raise CrsError(
                f"{crs.name} is a geographic CRS in degrees; distances in metres need a projected "
                "CRS (leave it empty to use the study area's UTM zone)."
            )
        unit = crs.axis_info[0].unit_name if crs.axis_info else ""
        if unit not in ("metre", "meter"):
            raise CrsError(f"{crs.name} measures in {unit}; choose a CRS in metres.")
        return crs
    return segments.estimate_utm_crs()


def _midpoints(segments: gpd.GeoDataFrame, crs: pyproj.CRS) -> gpd.GeoDataFrame:
    """The point halfway along each segment, and the street's axis there (degrees from north)."""
    lines = segments.geometry.to_crs(crs).values
    lengths = shapely.length(lines)
    middles = shapely.line_interpolate_point(lines, 0.5, normalized=True)
    step = np.minimum(1.0, lengths / 4)
    before = shapely.line_interpolate_point(lines, lengths / 2 - step)
    after = shapely.line_interpolate_point(lines, lengths / 2 + step)
    ends = gpd.GeoSeries(np.concatenate([before, after]), crs=crs).to_crs(WGS84)
    lon, lat = ends.x.to_numpy(), ends.y.to_numpy()
    n = len(lines)
    azimuth, _, _ = _GEOD.inv(lon[:n], lat[:n], lon[n:], lat[n:])
    return gpd.GeoDataFrame(
        {
            "osm_ids": [_as_id_list(v) for v in segments["osmid"]],
            "highway": segments["highway"].astype(str).values,
            "name": [_as_name(v) for v in segments["name"]],
            "length_m": segments["length"].astype(float).round(2).values,
            # A street is walked both ways: its bearing is the axis, 0 (north-south) to 180.
            "bearing": np.round(np.mod(azimuth, 180.0), 2),
        },
        geometry=gpd.GeoSeries(middles, crs=crs),
    )


def _as_id_list(value) -> list[int]:
    values = value if isinstance(value, list) else [value]
    return sorted({int(v) for v in values})


def _as_name(value) -> str | None:
    if isinstance(value, list):
        # Sorted: osmnx gathers a merged segment's names in a set, whose order changes from one
        # Python process to the next (string hashing is seeded per process), and a re-run of the
        # study must write the same names.
        return "; ".join(sorted({v for v in value if isinstance(v, str)})) or None
    if isinstance(value, str):
        return value
    return None


def merge_close_points(
    points: gpd.GeoDataFrame, distance_m: float, crs: pyproj.CRS
) -> gpd.GeoDataFrame:
    """Merge points closer than ``distance_m`` so that no two kept points are closer.

    Points are visited from the longest segment down; a point is kept unless a kept point lies
    closer than the distance, in which case it joins the nearest kept point. Each kept point
    stays where it was (on its street) and carries the way ids of all points that joined it.

    ``points`` must be in ``crs`` (metres); the result is in EPSG:4326.
    """
    order = np.lexsort((np.arange(len(points)), -points["length_m"].to_numpy()))
    xs = shapely.get_x(points.geometry.values)
    ys = shapely.get_y(points.geometry.values)
    kept: list[int] = []
    members: dict[int, list[int]] = {}
    cell = max(distance_m, 1e-9)
    grid: dict[tuple[int, int], list[int]] = {}
    for i in order:
        gx, gy = math.floor(xs[i] / cell), math.floor(ys[i] / cell)
        nearest, nearest_d = -1, math.inf
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for j in grid.get((gx + dx, gy + dy), ()):
                    d = math.hypot(xs[i] - xs[j], ys[i] - ys[j])
                    if d < nearest_d:
                        nearest, nearest_d = j, d
        if nearest >= 0 and nearest_d < distance_m:
            members[nearest].append(i)
        else:
            kept.append(i)
            members[i] = [i]
            grid.setdefault((gx, gy), []).append(i)

    rows = points.iloc[kept].copy()
    osm_ids = points["osm_ids"].to_numpy()
    rows["osm_ids"] = [
        ";".join(str(w) for w in sorted({w for m in members[i] for w in osm_ids[m]})) for i in kept
    ]
    rows["n_merged"] = [len(members[i]) for i in kept]
    rows.insert(0, "id", np.arange(1, len(kept) + 1))
    rows = rows.set_crs(crs, allow_override=True).to_crs(WGS84)
    return rows.reset_index(drop=True)[
        ["id", "osm_ids", "highway", "name", "length_m", "bearing", "n_merged", "geometry"]
    ]
