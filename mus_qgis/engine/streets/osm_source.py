"""Street networks as unsimplified osmnx graphs, from Overpass or from a local OpenStreetMap file.

Every source returns the same thing: a MultiDiGraph of all ``highway`` ways (no class filter yet;
street areas such as piazzas drawn as polygons are in it as their outline, tagged area=yes), not
simplified, with every street walkable both ways. Filtering by class and simplifying happen
afterwards in one place (:mod:`.streets`), so a study run offline on a file and one run online on
the same area give the same segments.
"""

from __future__ import annotations

import bz2
import gzip
import math
import threading
import xml.sax
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import networkx as nx
import osmnx as ox
import requests

from ...shared.errors import DownloadError, OsmFileError, StudyAreaError
from ...shared.progress import LoggingProgress, Progress, warn

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

# Every way with a highway tag, street areas (squares drawn as polygons, area=yes) included: they
# are told apart from streets and sampled at their centre afterwards (:mod:`.centroids`).
ALL_HIGHWAYS_FILTER = '["highway"]'

_settings_lock = threading.Lock()


@dataclass(frozen=True)
class NetworkServices:
    """Where and how to reach OpenStreetMap's web services.

    Parameters
    ----------
    cache_dir
        Folder for osmnx's HTTP cache, so that a repeated study asks the servers nothing.
    user_agent
        Sent with every request, as Nominatim's and Overpass's usage policies ask.
    overpass_url, nominatim_url
        Service endpoints; ``None`` keeps osmnx's public defaults.
    timeout_s
        Seconds to wait for one answer.
    """

    cache_dir: Path | None = None
    user_agent: str = "mus_qgis (QGIS plugin for Multimodal Urban Studies)"
    overpass_url: str | None = None
    nominatim_url: str | None = None
    timeout_s: float = 180.0


@contextmanager
def _osmnx_settings(
    services: NetworkServices, *, overpass_rate_limit: bool = True
) -> Iterator[None]:
    """Apply the services to osmnx's module-wide settings for one call, then restore them."""
    names = {
        "overpass_rate_limit": overpass_rate_limit,
        "use_cache": services.cache_dir is not None,
        "http_user_agent": services.user_agent,
        "requests_timeout": services.timeout_s,
        "log_console": False,
    }
    if services.cache_dir is not None:
        names["cache_folder"] = str(services.cache_dir)
    if services.overpass_url:
        names["overpass_url"] = services.overpass_url.rstrip("/")
    if services.nominatim_url:
        names["nominatim_url"] = services.nominatim_url.rstrip("/") + "/"
    with _settings_lock:
        saved = {name: getattr(ox.settings, name) for name in names}
        try:
            for name, value in names.items():
                setattr(ox.settings, name, value)
            yield
        finally:
            for name, value in saved.items():
                setattr(ox.settings, name, value)


def geocode_place(place: str, services: NetworkServices) -> BaseGeometry:
    """The boundary polygon of a named place, in EPSG:4326, from Nominatim."""
    try:
        with _osmnx_settings(services):
            gdf = ox.geocode_to_gdf(place)
    except requests.RequestException as exc:
        raise DownloadError(f"Could not reach Nominatim to find '{place}': {exc}") from exc
    except (ox._errors.InsufficientResponseError, ox._errors.ResponseStatusCodeError) as exc:
        raise StudyAreaError(f"Nominatim found no place named '{place}' ({exc}).") from exc
    except TypeError as exc:  # osmnx: the place geocoded to a point or line, not an area
        raise StudyAreaError(
            f"Nominatim found '{place}', but not as an area with a boundary; give a polygon "
            "layer or an extent instead."
        ) from exc
    return gdf.geometry.iloc[0]


def graph_from_overpass(polygon: BaseGeometry, services: NetworkServices) -> nx.MultiDiGraph:
    """Download every street inside a polygon (EPSG:4326) from Overpass."""
    reachable = _reachable(services.overpass_url or ox.settings.overpass_url, services)
    try:
        with _osmnx_settings(services, overpass_rate_limit=reachable):
            graph = ox.graph_from_polygon(
                polygon,
                network_type="all",
                custom_filter=ALL_HIGHWAYS_FILTER,
                simplify=False,
                retain_all=True,
                truncate_by_edge=True,
            )
    except requests.RequestException as exc:
        raise DownloadError(f"Could not download streets from Overpass: {exc}") from exc
    except ox._errors.ResponseStatusCodeError as exc:
        raise DownloadError(f"Overpass answered with an error: {exc}") from exc
    except ox._errors.InsufficientResponseError as exc:
        raise StudyAreaError("OpenStreetMap has no streets in the study area.") from exc
    return make_bidirectional(graph)


def _reachable(base_url: str, services: NetworkServices) -> bool:
    """Whether Overpass answers at all.

    When it does not, osmnx's wait for a free slot is switched off: it would sleep 60 s before
    failing, whereas now a cached study still runs offline and an uncached one fails at once.
    """
    try:
        requests.get(
            base_url.rstrip("/") + "/status",
            timeout=min(services.timeout_s, 15),
            headers={"User-Agent": services.user_agent},
        )
    except requests.RequestException:
        return False
    return True


def graph_from_osm_file(path: Path, progress: Progress | None = None) -> nx.MultiDiGraph:
    """Read every street and street area of a local OpenStreetMap file, whatever its name.

    The format is told by the content, not the name: OSM XML (plain, bz2 or gzip) or OSM PBF. Ways
    that reference nodes the file lacks (a clipped extract) keep their parts that are in the file,
    and how many were cut is logged: a .osm and a .pbf of the same clip give the same streets.
    """
    path = Path(path)
    if not path.is_file():
        raise OsmFileError(f"OpenStreetMap file not found: {path}")
    if path.stat().st_size == 0:
        raise OsmFileError(
            f"{path.name} is empty (0 bytes): the export or download did not finish; get the "
            "file again."
        )
    kind = osm_file_format(path)
    if kind is None:
        raise OsmFileError(
            f"{path.name} is not an OpenStreetMap file: its content is neither OSM XML (as "
            ".osm or .xml, optionally bz2- or gzip-compressed) nor OSM PBF. Export the area from "
            "openstreetmap.org, Overpass or a Geofabrik extract and give that file."
        )
    elements = _pbf_elements(path) if kind == "pbf" else _xml_elements(path, kind)
    return _graph_from_elements(elements, path, progress or LoggingProgress())


def osm_file_format(path: Path) -> str | None:
    """'xml', 'bz2', 'gz' or 'pbf' from the file's first bytes, or None for anything else."""
    with path.open("rb") as handle:
        head = handle.read(64)
    if head.startswith(b"BZh"):
        return "bz2"
    if head.startswith(b"\x1f\x8b"):
        return "gz"
    # A PBF file starts with a 4-byte header length and a BlobHeader whose type is OSMHeader.
    if len(head) > 8 and b"OSMHeader" in head[4:32]:
        return "pbf"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"<"):
        return "xml"
    return None


class _RootRecordingHandler(ox._osm_xml._OSMContentHandler):
    """osmnx's OSM XML reader, remembering the root element so that other XML is told apart."""

    def __init__(self) -> None:
        super().__init__()
        self.root: str | None = None

    def startElement(self, name, attrs) -> None:
        if self.root is None:
            self.root = name
            if name != "osm":
                raise _NotOsmXmlError(name)
        super().startElement(name, attrs)


class _NotOsmXmlError(Exception):
    pass


def _xml_elements(path: Path, kind: str) -> list[dict]:
    opener = {"bz2": bz2.open, "gz": gzip.open}.get(kind, open)
    handler = _RootRecordingHandler()
    try:
        with opener(path, "rb") as handle:
            xml.sax.parse(handle, handler)
    except _NotOsmXmlError as exc:
        raise OsmFileError(
            f"{path.name} is XML but not OpenStreetMap: its root element is <{exc}>, where an "
            "OpenStreetMap file has <osm>."
        ) from exc
    except Exception as exc:  # the XML parser's and decompressor's many error types
        raise OsmFileError(
            f"{path.name} could not be read as OpenStreetMap XML ({type(exc).__name__}: {exc}); "
            "the file is damaged or cut short: export or download it again."
        ) from exc
    return handler.object["elements"]


def _pbf_elements(path: Path) -> list[dict]:
    """The highway ways of a PBF file with their nodes, as Overpass-like elements.

    A node the file lacks stays in its way's list (as in XML) and is handled with XML's; a node
    whose coordinates are out of range keeps them, so that it is reported the same way too.
    """
    import osmium

    nodes: dict[int, dict] = {}
    elements: list[dict] = []
    try:
        processor = osmium.FileProcessor(osmium.io.File(str(path), "pbf")).with_locations()
        for obj in processor.with_filter(osmium.filter.KeyFilter("highway")):
            if not obj.is_way():
                continue
            refs = []
            for node in obj.nodes:
                refs.append(node.ref)
                location = node.location
                if location.x != _OSMIUM_UNDEFINED and node.ref not in nodes:
                    nodes[node.ref] = {
                        "type": "node",
                        "id": node.ref,
                        "lat": location.lat_without_check(),
                        "lon": location.lon_without_check(),
                    }
            elements.append({"type": "way", "id": obj.id, "nodes": refs, "tags": dict(obj.tags)})
    except RuntimeError as exc:
        raise OsmFileError(
            f"{path.name} could not be read as OpenStreetMap PBF ({exc}); the file is damaged or "
            "cut short: download it again."
        ) from exc
    return [*nodes.values(), *elements]


# osmium's coordinate of a location it has not seen (a node the file lacks).
_OSMIUM_UNDEFINED = 2147483647


def _graph_from_elements(elements: list[dict], path: Path, progress: Progress) -> nx.MultiDiGraph:
    """The unsimplified, two-way graph of the highway ways (areas included, tagged area=yes)."""
    nodes, paths = ox.graph._parse_nodes_paths({"elements": elements})
    streets = [p for p in paths.values() if "highway" in p]
    if not streets:
        raise OsmFileError(
            f"{path.name} holds no streets: no way with a highway tag"
            + ("" if nodes or paths else " (no OpenStreetMap nodes or ways at all)")
            + ". Check that the file covers the study area."
        )
    _check_coordinates(nodes, streets, path)
    parts, cut, dropped = _present_parts(streets, nodes)
    if cut or dropped:
        warn(
            progress,
            f"{path.name} is clipped: {cut + dropped} streets reference nodes the file does not "
            f"hold; {cut} keep their parts inside the file, {dropped} with fewer than two nodes "
            "inside are left out.",
        )
    graph = nx.MultiDiGraph(crs=ox.settings.default_crs)
    used = {n for part in parts for n in part["nodes"]}
    graph.add_nodes_from((n, nodes[n]) for n in used)
    for part in parts:
        part[_ONE_WAY] = ox.graph._is_path_one_way(part, False, OSMNX_ONEWAY_VALUES)
    ox.graph._add_paths(graph, parts, True)
    for _, _, data in graph.edges(data=True):
        if data.pop(_ONE_WAY) and data.get("reversed"):
            data[REVERSE_OF_ONE_WAY] = True
    if graph.number_of_edges():
        ox.distance.add_edge_lengths(graph)
    return graph


def _check_coordinates(nodes: dict, streets: list[dict], path: Path) -> None:
    used = {n for street in streets for n in street["nodes"] if n in nodes}
    bad = sorted(
        n
        for n in used
        if not (-90 <= nodes[n]["y"] <= 90 and -180 <= nodes[n]["x"] <= 180)
        or not (math.isfinite(nodes[n]["y"]) and math.isfinite(nodes[n]["x"]))
    )
    if bad:
        first = nodes[bad[0]]
        raise OsmFileError(
            f"{path.name}: node {bad[0]} has latitude {first['y']:g}, longitude {first['x']:g}, "
            f"outside -90..90 and -180..180 ({len(bad)} street node(s) out of range in all). "
            "The file is damaged or its coordinates are not longitude/latitude; repair or "
            "export it again."
        )


def _present_parts(streets: list[dict], nodes: dict) -> tuple[list[dict], int, int]:
    """Each street cut to its runs of nodes that the file holds.

    A clipped extract keeps the ways that cross its edge with references to nodes outside it;
    each run of two or more present nodes stays a part of its street (a way leaving and
    re-entering the clip gives two parts; bridging the gap would draw a street that is not there).
    Returns the parts, how many streets were cut, and how many had no part left.
    """
    parts, cut, dropped = [], 0, 0
    for street in streets:
        refs = street["nodes"]
        if all(n in nodes for n in refs):
            parts.append(street)
            continue
        runs, run = [], []
        for n in refs:
            if n in nodes:
                run.append(n)
            else:
                runs.append(run)
                run = []
        runs.append(run)
        runs = [r for r in runs if len(r) >= 2]
        if runs:
            cut += 1
            parts.extend({**street, "nodes": r} for r in runs)
        else:
            dropped += 1
    return parts, cut, dropped


# Every street is sampled once whatever its traffic, so the graph holds both directions of a
# one-way street; the direction osmnx's own (directed) graph would not have is marked, so that a
# count can be made as osmnx's graph_from_place makes it.
REVERSE_OF_ONE_WAY = "mus_reverse_of_one_way"
_ONE_WAY = "mus_one_way"
# The 'oneway' values osmnx reads as one-way (osmnx.graph._add_paths).
OSMNX_ONEWAY_VALUES = {"yes", "true", "1", "-1", "reverse", "T", "F"}


def make_bidirectional(graph: nx.MultiDiGraph) -> nx.MultiDiGraph:
    """Add the reverse of every one-way edge: a street is sampled once, whatever its traffic."""
    # The reverse of the same way: another way between the same nodes (a square's outline along
    # a one-way street) is no reverse of this one.
    missing = [
        (v, u, data)
        for u, v, data in graph.edges(data=True)
        if not any(
            other.get("osmid") == data.get("osmid")
            for other in (graph.get_edge_data(v, u) or {}).values()
        )
    ]
    for v, u, data in missing:
        graph.add_edge(
            v,
            u,
            **{**data, "reversed": not data.get("reversed", False), REVERSE_OF_ONE_WAY: True},
        )
    return graph
