"""An independent count of street segments in an OSM XML file, for checking the engine.

It follows the definition the engine documents, without osmnx or networkx: take the highway ways
(not areas) of the chosen classes; a node ends a segment where the network around it is not a plain
continuation (it does not have exactly two neighbours, or the class changes there); each run of
way-edges between such nodes is one segment, counted once whatever the traffic direction; a closed
loop with no such node is one segment.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path


def read_ways(path: Path) -> tuple[dict[int, tuple[float, float]], list[dict]]:
    root = ET.parse(path).getroot()
    nodes = {
        int(n.get("id")): (float(n.get("lon")), float(n.get("lat"))) for n in root.iter("node")
    }
    # An id that appears twice keeps its last element, as OSM readers (and osmnx) do; the Rome
    # export has one such way (140754165), repeated without its tags.
    by_id = {}
    for way in root.iter("way"):
        tags = {t.get("k"): t.get("v") for t in way.iter("tag")}
        refs = [int(nd.get("ref")) for nd in way.iter("nd") if int(nd.get("ref")) in nodes]
        by_id[int(way.get("id"))] = {"id": int(way.get("id")), "tags": tags, "nodes": refs}
    ways = [w for w in by_id.values() if "highway" in w["tags"] and w["tags"].get("area") != "yes"]
    return nodes, ways


def street_area_classes(path: Path) -> list[str]:
    """The highway class of each street area (a highway way tagged area=yes), last copy of an id
    winning as in :func:`read_ways`."""
    root = ET.parse(path).getroot()
    by_id = {
        int(w.get("id")): {t.get("k"): t.get("v") for t in w.iter("tag")} for w in root.iter("way")
    }
    return [t["highway"] for t in by_id.values() if "highway" in t and t.get("area") == "yes"]


def count_segments(ways: list[dict], classes: set[str]) -> int:
    edge_class: dict[frozenset, str] = {}
    for way in ways:
        if way["tags"]["highway"] not in classes:
            continue
        for a, b in zip(way["nodes"], way["nodes"][1:]):
            if a != b:
                edge_class.setdefault(frozenset((a, b)), way["tags"]["highway"])
    neighbours: dict[int, set[int]] = defaultdict(set)
    for edge in edge_class:
        a, b = tuple(edge)
        neighbours[a].add(b)
        neighbours[b].add(a)

    def is_end(node: int) -> bool:
        around = neighbours[node]
        if len(around) != 2:
            return True
        return len({edge_class[frozenset((node, other))] for other in around}) > 1

    seen: set[frozenset] = set()
    segments = 0
    for start in neighbours:
        if not is_end(start):
            continue
        for first in neighbours[start]:
            if frozenset((start, first)) in seen:
                continue
            segments += 1
            previous, current = start, first
            seen.add(frozenset((previous, current)))
            while not is_end(current):
                following = next(n for n in neighbours[current] if n != previous)
                seen.add(frozenset((current, following)))
                previous, current = current, following
    # closed loops with no end node
    remaining = set(edge_class) - seen
    while remaining:
        edge = remaining.pop()
        segments += 1
        stack = list(edge)
        while stack:
            node = stack.pop()
            for other in neighbours[node]:
                key = frozenset((node, other))
                if key in remaining:
                    remaining.discard(key)
                    stack.append(other)
    return segments
