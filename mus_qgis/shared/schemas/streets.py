"""The streets' schemas: street centroids of a study area."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Optional

from . import Schema


@dataclass(frozen=True)
class OsmServices(Schema):
    """Where and how to reach OpenStreetMap's web services (the engine's ``NetworkServices``)."""

    cache_dir: Optional[str] = None  # osmnx's HTTP cache
    user_agent: str = "mus_qgis (QGIS plugin for Multimodal Urban Studies)"
    overpass_url: Optional[str] = None  # None: osmnx's public endpoint
    nominatim_url: Optional[str] = None
    timeout_s: float = 180.0


@dataclass(frozen=True)
class SampleStreetsParams(Schema):
    """A study area (a place name, a WKT polygon in EPSG:4326, or an OpenStreetMap file) and the
    street classes to sample."""

    classes: list  # OSM highway values
    merge_distance_m: float
    output: str  # the GeoPackage to write
    place: str = ""
    polygon_wkt: str = ""
    osm_file: str = ""
    projected_crs: str = ""  # WKT; empty: the area's UTM zone
    services: OsmServices = field(default_factory=OsmServices)

    parts: ClassVar[dict] = {"services": OsmServices}


@dataclass(frozen=True)
class SampleStreetsResult(Schema):
    output: str
    layer: str  # the layer's name in the GeoPackage
    segments_total: int
    segments_selected: int
    segments_excluded: int
    locations: int  # points after merging
    excluded_by_class: dict  # highway value: segments left out
    areas_selected: int
    directed_edges: int
