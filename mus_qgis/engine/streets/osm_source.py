"""Street networks as unsimplified osmnx graphs, from Overpass or from a local OpenStreetMap file.

Every source returns the same thing: a MultiDiGraph of all ``highway`` ways (no class filter yet),
not simplified, with every street walkable both ways. Filtering by class and simplifying happen
afterwards in one place (:mod:`.streets`), so a study run offline on a file and one run online on
the same area give the same segments.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from xml.sax.saxutils import quoteattr

import osmnx as ox
import requests

from ..errors import DownloadError, OsmFileError, StudyAreaError

if TYPE_CHECKING:
    import networkx as nx
    from shapely.geometry.base import BaseGeometry

OSM_FILE_SUFFIXES = (".osm", ".osm.bz2", ".osm.pbf", ".pbf", ".xml")

# Every mapped line with a highway tag. Areas (pedestrian squares drawn as polygons) are not
# streets with a middle, so they are left out here as osmnx's own network filters do.
ALL_HIGHWAYS_FILTER = '["highway"]["area"!~"yes"]'

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


def graph_from_osm_file(path: Path) -> nx.MultiDiGraph:
    """Read every street of a local .osm, .osm.bz2 or .osm.pbf file."""
    path = Path(path)
    if not path.is_file():
        raise OsmFileError(f"OpenStreetMap file not found: {path}")
    name = path.name.lower()
    if not name.endswith(OSM_FILE_SUFFIXES):
        raise OsmFileError(
            f"{path.name} is not an OpenStreetMap file: expected one of "
            f"{', '.join(OSM_FILE_SUFFIXES)}."
        )
    if name.endswith(".pbf"):
        with tempfile.TemporaryDirectory(prefix="mus_osm_") as tmp:
            xml_path = Path(tmp) / "streets.osm"
            _pbf_streets_to_xml(path, xml_path)
            return _graph_from_xml(xml_path, shown_as=path)
    return _graph_from_xml(path, shown_as=path)


def _graph_from_xml(path: Path, *, shown_as: Path) -> nx.MultiDiGraph:
    try:
        graph = ox.graph_from_xml(path, bidirectional=True, simplify=False, retain_all=True)
    except ox._errors.InsufficientResponseError as exc:
        raise OsmFileError(f"{shown_as.name} holds no OpenStreetMap nodes or ways.") from exc
    except Exception as exc:  # the XML parser's and decompressor's many error types
        raise OsmFileError(
            f"{shown_as.name} could not be read as OpenStreetMap XML: {type(exc).__name__}: {exc}"
        ) from exc
    streets = [
        (u, v, k)
        for u, v, k, data in graph.edges(keys=True, data=True)
        if "highway" in data and data.get("area") != "yes"
    ]
    return graph.edge_subgraph(streets).copy()


def _pbf_streets_to_xml(src: Path, dst: Path) -> None:
    """Write the highway ways of a PBF file, with their nodes, as OSM XML that osmnx reads."""
    import osmium

    nodes: dict[int, tuple[float, float]] = {}
    ways: list[tuple[int, list[int], dict[str, str]]] = []
    try:
        processor = osmium.FileProcessor(str(src)).with_locations()
        for obj in processor.with_filter(osmium.filter.KeyFilter("highway")):
            if not obj.is_way():
                continue
            refs = []
            for node in obj.nodes:
                if node.location.valid():
                    nodes[node.ref] = (node.location.lat, node.location.lon)
                    refs.append(node.ref)
            if len(refs) >= 2:
                ways.append((obj.id, refs, dict(obj.tags)))
    except RuntimeError as exc:
        raise OsmFileError(f"{src.name} could not be read as OpenStreetMap PBF: {exc}") from exc
    with dst.open("w", encoding="utf-8") as out:
        out.write('<?xml version="1.0" encoding="UTF-8"?>\n<osm version="0.6">\n')
        for node_id, (lat, lon) in nodes.items():
            out.write(f'<node id="{node_id}" lat="{lat:.7f}" lon="{lon:.7f}"/>\n')
        for way_id, refs, tags in ways:
            out.write(f'<way id="{way_id}">')
            out.write("".join(f'<nd ref="{ref}"/>' for ref in refs))
            out.write("".join(f"<tag k={quoteattr(k)} v={quoteattr(v)}/>" for k, v in tags.items()))
            out.write("</way>\n")
        out.write("</osm>\n")


def make_bidirectional(graph: nx.MultiDiGraph) -> nx.MultiDiGraph:
    """Add the reverse of every one-way edge: a street is sampled once, whatever its traffic."""
    missing = [(v, u, data) for u, v, data in graph.edges(data=True) if not graph.has_edge(v, u)]
    for v, u, data in missing:
        graph.add_edge(v, u, **{**data, "reversed": not data.get("reversed", False)})
    return graph
