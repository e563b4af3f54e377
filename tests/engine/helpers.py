"""Helpers the engine's tests share: fetch runs against the fake services, crafted files."""

from __future__ import annotations

import struct
import zlib

import numpy as np

from mus_qgis.engine.imagery.fetch import FetchSettings, fetch_imagery
from mus_qgis.engine.imagery.http import Http, RetryPolicy
from mus_qgis.engine.imagery.sources.base import Credentials, FetchPoint
from tests.fakes.imagery_services import GOOD_KEY, GOOD_TOKEN

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, timeout=1.0)


def http_for(credentials: Credentials | None = None, policy: RetryPolicy = FAST) -> Http:
    credentials = credentials or Credentials()
    return Http(secrets=[credentials.key, credentials.secret], policy=policy)


def points_on(images, offset_m: float = 5.0) -> list[FetchPoint]:
    """A point a few metres east of each image, plus one far from any, plus a second point on
    the first image (two points resolving to one panorama)."""
    shift = offset_m / 111_320.0 / 0.75
    points = [FetchPoint(i, im.lon + shift, im.lat, 90.0) for i, im in enumerate(images)]
    points.append(FetchPoint(900, 12.0, 41.0, None))
    points.append(FetchPoint(901, images[0].lon - shift, images[0].lat, 0.0))
    return points


def settings_for(fake, source: str, **kwargs) -> tuple[FetchSettings, Credentials | None]:
    urls = {
        "streetview": fake.streetview_url,
        "mapillary": fake.mapillary_url,
        "kartaview": fake.kartaview_url,
        "panoramax": fake.panoramax_url,
    }
    credentials = {
        "streetview": Credentials(GOOD_KEY, ""),
        "mapillary": Credentials(GOOD_TOKEN),
    }.get(source)
    return FetchSettings(source, url=urls[source], **kwargs), credentials


def run(fake, source, cache, points, progress=None, policy=FAST, **kwargs):
    settings, credentials = settings_for(fake, source, **kwargs)
    return fetch_imagery(
        points, settings, cache, credentials, progress, http=http_for(credentials, policy)
    )


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge size (a decompression bomb; no pixels needed)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


def square_rings(columns: int, rows: int, size: float = 100.0):
    """A grid of square cells' rings (rows × columns, ``size`` metres), as the grid job writes
    them."""
    rings = []
    for row in range(rows):
        for column in range(columns):
            x, y = column * size, row * size
            rings.append([(x, y), (x + size, y), (x + size, y + size), (x, y + size), (x, y)])
    return np.array(rings, dtype=float)


def engine_cli_args(tiny_checkpoint, cache) -> list[str]:
    """The engine command line's model options for the tiny test model."""
    from tests.conftest import TINY_MODEL_CONFIG

    return [
        "--model",
        str(TINY_MODEL_CONFIG),
        "--checkpoint",
        str(tiny_checkpoint),
        "--device",
        "cpu",
        "--cache-dir",
        str(cache),
    ]


def store_vectors(cache, identity: str, setting, vectors) -> list[str]:
    """Put ready-made image embeddings into the store a classification with this model and view
    setting reads (fast decode), as if photos at made-up paths had been embedded; their paths."""
    from mus_qgis.engine.clip.classify import embedding_cache_dir, store_key
    from mus_qgis.engine.clip.store import EmbeddingStore
    from mus_qgis.engine.clip.views import ImageFacts

    store = EmbeddingStore.under(
        embedding_cache_dir(cache), identity, store_key(setting, fast_decode=True)
    )
    paths = [f"/nowhere/street_{i:03d}.jpg" for i in range(len(vectors))]
    digests = [f"{i:032x}" for i in range(len(vectors))]
    store.put(
        [(digest, vector, 1) for digest, vector in zip(digests, vectors, strict=True)],
        [
            (path, 1000, 1, ImageFacts(digest, "photo", 640, 480, None))
            for path, digest in zip(paths, digests, strict=True)
        ],
    )
    store.close()
    return paths
