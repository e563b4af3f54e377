"""Benchmark: fetching Street View views from a local fake server with 50 ms latency a request.

Prints, from one run on one machine: views per second with 16 concurrent requests (the target is
at least 200), then the same with 10 % of requests failing transiently (429 with Retry-After,
500, 503, truncated bodies), checking that every point ends with its images, that no image was
fetched twice and that every file decodes; then a second run over the same cache (no request for
images). Results go in BENCHMARKS.md.

    python scripts/bench_fetch.py [--points 500] [--latency 0.05] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mus_qgis.engine.imagery.fetch import FetchSettings, fetch_imagery
from mus_qgis.engine.imagery.http import Http, image_decodes
from mus_qgis.engine.imagery.sources.base import Credentials, FetchPoint
from tests.fakes.imagery_services import GOOD_KEY, grid_images, serve_in_this_process


def one_run(points, images, latency, failure_rate, concurrency, cache) -> tuple[float, dict]:
    # The server runs in its own process, as a real one would: it must not share our GIL.
    context = multiprocessing.get_context("spawn")
    ports, stop = context.Queue(), context.Event()
    server = context.Process(
        target=serve_in_this_process,
        args=(images, latency, failure_rate, 7, ports, stop),
        daemon=True,
    )
    server.start()
    base = f"http://127.0.0.1:{ports.get(timeout=60)}"
    try:
        http = Http(secrets=[GOOD_KEY])
        settings = FetchSettings(
            "streetview", url=f"{base}/maps/api/streetview", concurrency=concurrency
        )
        started, cpu = time.perf_counter(), time.process_time()
        outcomes = fetch_imagery(points, settings, cache, Credentials(GOOD_KEY), http=http)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        stats = json.loads(urllib.request.urlopen(f"{base}/__stats").read())
    finally:
        stop.set()
        server.join(10)
    counts = [n for _, n in stats["downloads"]]
    report = {
        "views": sum(len(o.paths) for o in outcomes),
        "ok": sum(o.status == "ok" for o in outcomes),
        "requests": stats["requests"],
        "retries": http.counts["retries"],
        "fetched twice": sum(1 for n in counts if n > 1),
        "image requests": sum(counts),
        "cpu": cpu,
    }
    return elapsed, report


def server_ceiling(images, latency, concurrency, seconds=3.0) -> float:
    """Requests a second the fake server answers to bare urllib3 threads: the ceiling."""
    import threading

    import urllib3

    context = multiprocessing.get_context("spawn")
    ports, stop = context.Queue(), context.Event()
    server = context.Process(
        target=serve_in_this_process, args=(images, latency, 0.0, 7, ports, stop), daemon=True
    )
    server.start()
    url = (
        f"http://127.0.0.1:{ports.get(timeout=60)}/maps/api/streetview?size=640x640"
        f"&pano={images[0].image_id}&heading=0&key={GOOD_KEY}"
    )
    pool = urllib3.PoolManager(maxsize=concurrency)
    answered = []
    deadline = time.perf_counter() + seconds

    def hammer() -> None:
        count = 0
        while time.perf_counter() < deadline:
            pool.request("GET", url).release_conn()
            count += 1
        answered.append(count)

    threads = [threading.Thread(target=hammer) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rate = sum(answered) / (time.perf_counter() - started)
    stop.set()
    server.join(10)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    images = grid_images(args.points)
    points = [FetchPoint(i, im.lon, im.lat, 45.0) for i, im in enumerate(images)]
    print(
        f"{args.points} points, 4 views each, {args.latency * 1000:.0f} ms a request, "
        f"{args.concurrency} concurrent requests"
    )
    ceiling = server_ceiling(images, args.latency, args.concurrency)
    print(
        f"fake server ceiling (bare urllib3 threads): {ceiling:.0f} requests/s, i.e. "
        f"{ceiling * 4 / 5:.0f} views/s at 5 requests (1 lookup + 4 views) a point"
    )
    for failure_rate in (0.0, 0.10):
        with tempfile.TemporaryDirectory() as cache:
            elapsed, report = one_run(
                points, images, args.latency, failure_rate, args.concurrency, cache
            )
            files = list(Path(cache).rglob("*.jpg"))
            decoding = sum(image_decodes(p) for p in files)
            print(
                f"failures {failure_rate:4.0%}: {elapsed:6.2f} s, "
                f"{report['views'] / elapsed:6.1f} views/s; points ok {report['ok']}/"
                f"{len(points)}; {report['requests']} requests ({report['retries']} retries); "
                f"images fetched twice: {report['fetched twice']}; files {len(files)}, "
                f"decoding {decoding}; client CPU {report['cpu']:.1f} s"
            )
            again, second = one_run(points, images, args.latency, 0.0, args.concurrency, cache)
            print(
                f"   second run over the same cache: {again:5.2f} s, image requests "
                f"{second['image requests']}, points ok {second['ok']}"
            )


if __name__ == "__main__":
    main()
