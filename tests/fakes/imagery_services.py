"""Fake Street View, Mapillary, KartaView and Panoramax servers on 127.0.0.1, with their real
answers and failure modes (429 with Retry-After, 500, timeouts, truncated bodies, non-JSON,
refused keys, Mapillary's transient code 4, expiring image URLs, grey placeholders, redirects to
another host or to a host name that does not resolve). Panoramax answers STAC items shaped like
its published picture documents."""

from __future__ import annotations

import io
import json
import math
import random
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.conftest import AREZZO_PHOTOS, PANORAMAS

GOOD_KEY = "AIzaFAKE-good-key-123"
GOOD_TOKEN = "MLY|4242|fake-token-abc"


@dataclass
class FakeImage:
    image_id: str
    lon: float
    lat: float
    captured: str = "2019-05-14"
    is_pano: bool = True
    heading: float = 30.0
    creator: str = "street_mapper"
    # The services that serve this image (a study area is covered unevenly by each).
    services: tuple = ("streetview", "mapillary", "kartaview", "panoramax")
    photo: str = ""  # a file whose bytes the services serve as this image; "": a stock picture


def grid_images(count: int, lon0: float = 12.49, lat0: float = 41.89, step_m: float = 40.0):
    """``count`` images on a grid, ``step_m`` apart."""
    side = max(1, math.ceil(math.sqrt(count)))
    dlat = step_m / 111_320.0
    dlon = dlat / math.cos(math.radians(lat0))
    return [
        FakeImage(f"img{i:05d}", lon0 + (i % side) * dlon, lat0 + (i // side) * dlat)
        for i in range(count)
    ]


class FakeImageryServices:
    """All three services in one threaded server. ``faults[route]`` is a FIFO of faults to serve
    next; ``failure_rate`` adds random transient faults; ``latency`` delays every answer."""

    def __init__(
        self,
        images: list[FakeImage],
        latency: float = 0.0,
        failure_rate: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.images = {image.image_id: image for image in images}
        # A grid of cells over the images, so that a search looks at the images near it only:
        # with thousands of images a scan of all per request made the fake, not the client,
        # the bottleneck of a benchmark.
        self.order = {image_id: n for n, image_id in enumerate(self.images)}
        self.cells: dict[tuple[int, int], list[FakeImage]] = defaultdict(list)
        for image in images:
            self.cells[_cell(image.lon, image.lat)].append(image)
        self.latency = latency
        self.failure_rate = failure_rate
        self.random = random.Random(seed)
        self.faults: dict[str, list[str]] = defaultdict(list)
        self.requests: list[tuple[str, dict, dict]] = []
        self.downloads: Counter = Counter()
        self.lock = threading.Lock()
        self.pano_bytes = PANORAMAS[0].read_bytes()
        self.photo_bytes = AREZZO_PHOTOS[0].read_bytes()
        self.thumb_serial = 0
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def streetview_url(self) -> str:
        return f"{self.base}/maps/api/streetview"

    @property
    def mapillary_url(self) -> str:
        return f"{self.base}/mly"

    @property
    def kartaview_url(self) -> str:
        return f"{self.base}/kv/2.0"

    @property
    def panoramax_url(self) -> str:
        return f"{self.base}/pnx/api"

    @property
    def elsewhere(self) -> str:
        """The same server under another host name: "another host" for a redirect."""
        return f"http://localhost:{self.server.server_address[1]}"

    @property
    def unresolvable(self) -> str:
        """A host name that never resolves (RFC 6761 reserves .invalid): a redirect to it."""
        return f"http://nonexistent.invalid:{self.server.server_address[1]}"

    def __enter__(self) -> FakeImageryServices:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def count(self, prefix: str) -> int:
        return sum(1 for path, _, _ in self.requests if path.startswith(prefix))

    def image_bytes(self, image: FakeImage) -> bytes:
        """What the services send as the image: its own photo, else a stock one of its kind."""
        if image.photo:
            return Path(image.photo).read_bytes()
        return self.pano_bytes if image.is_pano else self.photo_bytes

    def in_box(self, service: str, west: float, south: float, east: float, north: float):
        """The service's images inside a box of degrees, in the order they were given."""
        (x0, y0), (x1, y1) = _cell(west, south), _cell(east, north)
        if (x1 - x0 + 1) * (y1 - y0 + 1) > len(self.cells):  # a box wider than the images
            near = self.images.values()
        else:
            near = [
                i for x in range(x0, x1 + 1) for y in range(y0, y1 + 1) for i in self.cells[(x, y)]
            ]
            near = sorted(near, key=lambda image: self.order[image.image_id])
        return [
            i
            for i in near
            if service in i.services and west <= i.lon <= east and south <= i.lat <= north
        ]

    def within(self, service: str, lon: float, lat: float, radius: float):
        """The service's images within ``radius`` metres, nearest first."""
        found = []
        dlat = radius / 111_320.0 * 1.01
        dlon = dlat / max(math.cos(math.radians(lat)), 1e-6)
        for image in self.in_box(service, lon - dlon, lat - dlat, lon + dlon, lat + dlat):
            dy = (image.lat - lat) * 111_320.0
            dx = (image.lon - lon) * 111_320.0 * math.cos(math.radians(lat))
            distance = math.hypot(dx, dy)
            if distance <= radius:
                found.append((distance, image))
        return [image for _, image in sorted(found, key=lambda item: item[0])]

    def nearest(self, lon: float, lat: float, radius: float, service: str = "streetview"):
        found = self.within(service, lon, lat, radius)
        return found[0] if found else None

    def _next_fault(self, route: str) -> str:
        with self.lock:
            if self.faults[route]:
                return self.faults[route].pop(0)
            if self.failure_rate and self.random.random() < self.failure_rate:
                return self.random.choice(["429", "500", "503", "truncated"])
        return ""

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real services

            def log_message(self, *args):
                pass

            def do_GET(self):
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if parts.path == "/__stats":  # for a server run in another process
                    stats = {
                        "requests": len(fake.requests),
                        "downloads": [[list(k), n] for k, n in fake.downloads.items()],
                    }
                    self._send(200, "application/json", json.dumps(stats).encode())
                    return
                with fake.lock:
                    fake.requests.append((parts.path, query, dict(self.headers)))
                if fake.latency:
                    time.sleep(fake.latency)
                route = fake._route(parts.path)
                fault = fake._next_fault(route)
                if fault and self._serve_fault(fault):
                    return
                status, content_type, body, *headers = fake._answer(
                    parts.path, query, self.headers, fault
                )
                self._send(status, content_type, body, *headers)

            def _send(self, status, content_type, body, headers=None, length=None):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(length or len(body)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _serve_fault(self, fault: str) -> bool:
                if fault == "429":
                    self._send(429, "text/plain", b"slow down", {"Retry-After": "0"})
                elif fault in ("500", "503"):
                    self._send(int(fault), "text/html", b"<html>server error</html>")
                elif fault == "timeout":
                    time.sleep(1.5)
                    self._send(200, "application/json", b"{}")
                elif fault == "trickle":  # a byte at a time, each well within the timeout
                    try:
                        self.send_response(200)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", "400")
                        self.end_headers()
                        for _ in range(400):
                            self.wfile.write(b" ")
                            self.wfile.flush()
                            time.sleep(0.05)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    self.close_connection = True
                elif fault == "truncated":
                    self._send(200, "application/octet-stream", b'{"partial', length=500)
                    self.close_connection = True
                elif fault == "badjson":
                    self._send(200, "text/html", b"<html>proxy login page</html>")
                elif fault == "redirect-same-host":  # e.g. a trailing slash the server adds
                    self._send(301, "text/html", b"", {"Location": self.path})
                elif fault == "redirect-elsewhere":
                    self._send(302, "text/html", b"", {"Location": f"{fake.elsewhere}/login"})
                elif fault == "redirect-unresolvable":
                    self._send(302, "text/html", b"", {"Location": f"{fake.unresolvable}/gone"})
                elif fault == "code4":
                    body = json.dumps(
                        {
                            "error": {
                                "message": "Application request limit reached",
                                "type": "MLYApiException",
                                "is_transient": True,
                                "code": 4,
                            }
                        }
                    )
                    self._send(400, "application/json", body.encode())
                else:
                    return False
                return True

        return Handler

    @staticmethod
    def _route(path: str) -> str:
        if path.endswith("/metadata"):
            return "sv-metadata"
        if path.startswith("/maps/api/streetview"):
            return "sv-image"
        if path.startswith("/mly/images"):
            return "mly-search"
        if path.startswith("/mly-thumbs"):
            return "mly-thumb"
        if path.startswith("/mly/"):
            return "mly-entity"
        if path.startswith("/kv-files"):
            return "kv-file"
        if path.startswith("/pnx/api/search"):
            return "pnx-search"
        if path.startswith("/pnx-instance"):
            return "pnx-instance-image"
        if path.startswith("/pnx-storage"):
            return "pnx-image"
        return "kv-search"

    def _answer(self, path, query, headers, fault):
        route = self._route(path)
        if route == "sv-metadata":
            if query.get("key") != GOOD_KEY:
                return _json(
                    {
                        "status": "REQUEST_DENIED",
                        "error_message": "The provided API key is invalid.",
                    }
                )
            lat, lon = (float(v) for v in query["location"].split(","))
            image = self.nearest(lon, lat, float(query.get("radius", 50)))
            if image is None:
                return _json({"status": "ZERO_RESULTS"})
            if fault == "ok-without-pano-id":
                return _json({"status": "OK", "location": {"lat": image.lat, "lng": image.lon}})
            return _json(
                {
                    "status": "OK",
                    "pano_id": image.image_id,
                    "date": image.captured[:7],
                    "location": {"lat": image.lat, "lng": image.lon},
                    "copyright": "© Google",
                }
            )
        if route == "sv-image":
            if query.get("key") != GOOD_KEY:
                return 403, "text/plain", b"The Google Maps Platform server rejected your request."
            if query.get("pano") not in self.images:
                return 404, "text/plain", b"not found"
            with self.lock:
                self.downloads[(query["pano"], query.get("heading"))] += 1
            if fault == "placeholder":
                return 200, "image/jpeg", _grey_jpeg()
            if fault in _NOT_IMAGES:
                return 200, *_NOT_IMAGES[fault]
            return 200, "image/jpeg", self.photo_bytes
        if route.startswith("mly"):
            if route != "mly-thumb" and headers.get("Authorization") != f"OAuth {GOOD_TOKEN}":
                return _json(
                    {
                        "error": {
                            "message": "Invalid OAuth access token.",
                            "type": "OAuthException",
                            "code": 190,
                        }
                    },
                    401,
                )
            if route == "mly-search":
                west, south, east, north = (float(v) for v in query["bbox"].split(","))
                data = [
                    {
                        "id": i.image_id,
                        "geometry": {"type": "Point", "coordinates": [i.lon, i.lat]},
                        "captured_at": _millis(i.captured),
                        "compass_angle": i.heading,
                        "computed_compass_angle": i.heading,
                        "is_pano": i.is_pano,
                        "camera_type": "spherical" if i.is_pano else "perspective",
                        "creator": {"username": i.creator, "id": "1"},
                    }
                    for i in self.in_box("mapillary", west, south, east, north)
                ]
                if fault == "error-as-string":
                    return _json({"error": "some text"})
                for item in data:
                    if fault == "item-without-geometry":
                        del item["geometry"]
                    elif fault == "captured-as-iso-text":
                        item["captured_at"] = "2019-06-01T10:00:00Z"
                return _json({"data": data})
            if route == "mly-entity":
                image_id = path.rsplit("/", 1)[-1]
                if image_id not in self.images:
                    return _json(
                        {"error": {"message": "Unsupported get request", "code": 100}}, 400
                    )
                with self.lock:
                    self.thumb_serial += 1
                    serial = self.thumb_serial
                return _json(
                    {
                        "id": image_id,
                        "thumb_2048_url": f"{self.base}/mly-thumbs/{image_id}.jpg?exp={serial}",
                    }
                )
            image_id = path.rsplit("/", 1)[-1].removesuffix(".jpg")
            if fault == "expired":
                return 403, "application/xml", b"<Error>Request has expired</Error>"
            if fault in _NOT_IMAGES:
                return 200, *_NOT_IMAGES[fault]
            with self.lock:
                self.downloads[(image_id, None)] += 1
            image = self.images[image_id]
            return 200, "image/jpeg", self.image_bytes(image)
        if route == "kv-search":
            found = self.within(
                "kartaview",
                float(query["lng"]),
                float(query["lat"]),
                float(query.get("radius", 50)),
            )
            if not found:
                return _json(
                    {"status": {"apiCode": 601, "apiMessage": "No results"}, "result": {"data": []}}
                )
            items = [
                {
                    "id": image.image_id,
                    "lat": str(image.lat),
                    "lng": str(image.lon),
                    "heading": str(image.heading),
                    "shotDate": f"{image.captured} 10:00:00",
                    "fileurlProc": f"{self.base}/kv-files/{image.image_id}.jpg",
                    "projectionType": "PLANE",
                    "sequenceId": "77",
                }
                for image in found[: int(query.get("itemsPerPage", 50))]
            ]
            return _json(
                {
                    "status": {"apiCode": 600, "apiMessage": "Request processed"},
                    "result": {"data": items},
                }
            )
        if route == "pnx-search":
            return self._panoramax_search(query, fault)
        if route == "pnx-instance-image":
            # The instance (named by the catalogue's item) serves the file from its storage.
            storage_path = path.replace("/pnx-instance/api/pictures", "/pnx-storage", 1)
            return 302, "text/html", b"", {"Location": f"{self.base}{storage_path}"}
        if route == "pnx-image":
            image_id = path.split("/")[-2]
            if fault in _NOT_IMAGES:
                return 200, *_NOT_IMAGES[fault]
            with self.lock:
                self.downloads[(image_id, path.rsplit("/", 1)[-1])] += 1
            image = self.images[image_id]
            return 200, "image/jpeg", self.image_bytes(image)
        image_id = path.rsplit("/", 1)[-1].removesuffix(".jpg")
        with self.lock:
            self.downloads[(image_id, None)] += 1
        image = self.images.get(image_id)
        return 200, "image/jpeg", self.image_bytes(image) if image else self.photo_bytes

    def _panoramax_search(self, query, fault):
        if fault == "stac-error":
            return _json({"code": 400, "description": "Parameter bbox is invalid"}, 400)
        west, south, east, north = (float(v) for v in query["bbox"].split(","))
        start, _, end = query.get("datetime", "../..").partition("/")
        for moment in (start, end):  # STAC takes RFC 3339 date-times, or ".." for open
            if moment not in ("..", "") and not _rfc3339(moment):
                return _json({"code": 400, "description": f"Invalid datetime {moment}"}, 400)
        features = []
        for image in self.in_box("panoramax", west, south, east, north):
            in_time = (start in ("..", "") or image.captured >= start[:10]) and (
                end in ("..", "") or image.captured <= end[:10]
            )
            if in_time:
                features.append(self._panoramax_item(image, fault))
        if fault == "features-not-a-list":
            return _json({"type": "FeatureCollection", "features": {"oops": 1}})
        return _json(
            {
                "type": "FeatureCollection",
                "features": features[: int(query.get("limit", 10))],
                "links": [{"rel": "self", "href": f"{self.panoramax_url}/search"}],
            }
        )

    def _panoramax_item(self, image: FakeImage, fault: str) -> dict:
        """A picture item as Panoramax publishes it (STAC 1.0 with perspective imagery)."""
        # The meta-catalogue's items point at the instance that holds the picture.
        picture = f"{self.elsewhere}/pnx-instance/api/pictures/{image.image_id}"
        item = {
            "type": "Feature",
            "stac_version": "1.0.0",
            "stac_extensions": [
                "https://stac-extensions.github.io/perspective-imagery/v1.0.0/schema.json",
                "https://stac-extensions.github.io/view/v1.0.0/schema.json",
            ],
            "id": image.image_id,
            "collection": "5f3b4a2e-sequence",
            "geometry": {"type": "Point", "coordinates": [image.lon, image.lat]},
            "bbox": [image.lon, image.lat, image.lon, image.lat],
            "properties": {
                "datetime": f"{image.captured}T10:00:00+00:00",
                "license": "etalab-2.0",
                "view:azimuth": image.heading,
                "pers:interior_orientation": {
                    "camera_manufacturer": "GoPro" if image.is_pano else "Apple",
                    "camera_model": "Max" if image.is_pano else "iPhone 12",
                    "field_of_view": 360 if image.is_pano else 67,
                },
                "geovisio:producer": image.creator,
                "geovisio:status": "ready",
            },
            "providers": [{"name": image.creator, "roles": ["producer"]}],
            "assets": {
                name: {"href": f"{picture}/{name}.jpg", "type": "image/jpeg", "roles": [role]}
                for name, role in (("hd", "data"), ("sd", "visual"), ("thumb", "thumbnail"))
            },
            "links": [
                {
                    "rel": "license",
                    "title": "License for this object (etalab-2.0)",
                    "href": "https://www.etalab.gouv.fr/licence-ouverte-open-licence",
                }
            ],
        }
        if fault == "item-without-assets":
            item["assets"] = {}
        return item


# Answers some services send now and then with status 200 where an image belongs.
_NOT_IMAGES = {
    "empty-image": ("image/jpeg", b""),
    "html-as-image": ("image/jpeg", b"<html><body>Please sign in</body></html>"),
}


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 refuses a burst of concurrent connections


CELL_DEGREES = 0.002  # about 220 m of latitude


def _cell(lon: float, lat: float) -> tuple[int, int]:
    return math.floor(lon / CELL_DEGREES), math.floor(lat / CELL_DEGREES)


def _json(value, status=200):
    return status, "application/json", json.dumps(value).encode()


def _rfc3339(text: str) -> bool:
    import datetime as dt

    try:
        return "T" in text and dt.datetime.fromisoformat(text.replace("Z", "+00:00")) is not None
    except ValueError:
        return False


def _millis(day: str) -> int:
    import datetime as dt

    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc).timestamp() * 1000)


def _grey_jpeg() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (640, 640), (228, 227, 223)).save(buffer, "JPEG")
    return buffer.getvalue()


def serve_in_this_process(images, latency, failure_rate, seed, port_queue, stop_event) -> None:
    """Run the fake services until ``stop_event`` is set (a target for multiprocessing), so a
    benchmark's client and server do not share one interpreter's GIL."""
    with FakeImageryServices(images, latency, failure_rate, seed) as fake:
        port_queue.put(fake.server.server_address[1])
        stop_event.wait()
