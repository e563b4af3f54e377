"""Fake Nominatim and Overpass servers on 127.0.0.1 that answer as the real ones do.

Overpass answers from the real Overpass export of central Rome in ../shared/data, filtered as the
real server filters for the query osmnx sends (every highway way, without the areas when the query
excludes ``area=yes``, with its nodes). Nominatim knows one place, whose boundary is the export's
bounding box. Failure modes are switched on per test.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote_plus, urlparse

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
ROME_OVERPASS_JSON = SHARED_DATA / "osm" / "rome_monti_2016_overpass.json"
# The export's bounding box (SOURCES.md): lat 41.8850–41.8991, lon 12.4833–12.5063.
ROME_BBOX = (12.4833, 41.8850, 12.5063, 41.8991)
KNOWN_PLACE = "Rione Monti, Rome, Italy"


def overpass_highways(path: Path = ROME_OVERPASS_JSON, *, with_areas: bool = True) -> dict:
    data = json.loads(path.read_text(encoding="utf-8"))
    # The export repeats one way id (the second time without tags); a real server returns each
    # element once, and OSM readers keep the last, so the fake does the same.
    last_ways = {e["id"]: e for e in data["elements"] if e["type"] == "way"}
    ways = [
        e
        for e in last_ways.values()
        if e["type"] == "way"
        and "highway" in e.get("tags", {})
        and (with_areas or e["tags"].get("area") != "yes")
    ]
    needed = {n for w in ways for n in w["nodes"]}
    nodes = [e for e in data["elements"] if e["type"] == "node" and e["id"] in needed]
    return {**{k: v for k, v in data.items() if k != "elements"}, "elements": nodes + ways}


def nominatim_result(place: str, bbox: tuple[float, float, float, float]) -> dict:
    west, south, east, north = bbox
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {
        "place_id": 123456,
        "licence": "Data © OpenStreetMap contributors, ODbL 1.0. http://osm.org/copyright",
        "osm_type": "relation",
        "osm_id": 3411399,
        "boundingbox": [str(south), str(north), str(west), str(east)],
        "lat": str((south + north) / 2),
        "lon": str((west + east) / 2),
        "display_name": place,
        "class": "boundary",
        "type": "administrative",
        "importance": 0.5,
        "geojson": {"type": "Polygon", "coordinates": [ring]},
    }


@dataclass
class FakeOsmServices:
    """State and switches of the fake servers; ``url`` is the base of both."""

    overpass_status: int = 200
    overpass_body: bytes | None = None
    nominatim_status: int = 200
    requests: list[tuple[str, str, dict]] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self._overpass = json.dumps(overpass_highways()).encode()
        self._overpass_no_areas = json.dumps(overpass_highways(with_areas=False)).encode()
        self._server: ThreadingHTTPServer | None = None

    @property
    def overpass_url(self) -> str:
        return self.url + "/api"

    @property
    def nominatim_url(self) -> str:
        return self.url + "/nominatim/"

    def start(self) -> FakeOsmServices:
        services = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = parse_qs(url.query)
                services.requests.append(("GET", url.path, dict(self.headers)))
                if url.path == "/api/status":
                    text = (
                        "Connected as: 2130706433\nCurrent time: 2026-11-23T12:00:00Z\n"
                        "Announced endpoint: none\nRate limit: 2\n2 slots available now.\n"
                        "Currently running queries (pid, space limit, time limit, start time):\n"
                    )
                    self._send(200, text.encode(), "text/plain")
                elif url.path == "/nominatim/search":
                    if services.nominatim_status != 200:
                        self._send(services.nominatim_status, b"<html>error</html>", "text/html")
                        return
                    place = query.get("q", [""])[0]
                    found = [nominatim_result(place, ROME_BBOX)] if place == KNOWN_PLACE else []
                    self._send(200, json.dumps(found).encode(), "application/json")
                else:
                    self._send(404, b"not found", "text/plain")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length).decode()
                services.requests.append(("POST", self.path, dict(self.headers)))
                if self.path != "/api/interpreter" or "data=" not in body:
                    self._send(400, b"bad request", "text/plain")
                elif services.overpass_status != 200:
                    self._send(services.overpass_status, b"<html>runtime error</html>", "text/html")
                else:
                    no_areas = '"area"!~"yes"' in unquote_plus(body)
                    payload = services.overpass_body or (
                        services._overpass_no_areas if no_areas else services._overpass
                    )
                    self._send(200, payload, "application/json")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
