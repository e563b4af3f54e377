"""Benchmark: surveying the study's 4,157 points across three providers, beside fetching them.

Fake Street View, Mapillary and Panoramax services (the tests' fakes, in their own process so
that they do not share the client's interpreter) answer every request after 50 ms; each point has
one flat image (a real 160 KB JPEG) that every provider serves. Prints, from one run:

1. the survey of the three providers (metadata only): seconds, requests, requests per point;
2. the survey again over the same cache (every list remembered: no request);
3. the fetch by date across the three providers after the survey (the survey's lists serve the
   pick: image requests only);
4. the ordinary fetch of the same points from one provider (a lookup and an image per point).

Results go in BENCHMARKS.md.

    python scripts/bench_survey.py [--points 4157] [--latency 0.05] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
import urllib.request
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mus_qgis.engine.imagery.by_date import fetch_by_date
from mus_qgis.engine.imagery.fetch import FetchSettings, fetch_imagery
from mus_qgis.engine.imagery.sources.base import Credentials, DateWindow, FetchPoint
from mus_qgis.engine.imagery.survey import SourceAccess, list_candidates, survey_rows
from tests.fakes.imagery_services import (
    GOOD_KEY,
    GOOD_TOKEN,
    FakeImage,
    grid_images,
    serve_in_this_process,
)

SOURCES = ("streetview", "mapillary", "panoramax")


class FakeServer:
    """The fake services in a process of their own, with their request count."""

    def __init__(self, images, latency: float) -> None:
        context = multiprocessing.get_context("spawn")
        ports, self.stop = context.Queue(), context.Event()
        self.process = context.Process(
            target=serve_in_this_process,
            args=(images, latency, 0.0, 7, ports, self.stop),
            daemon=True,
        )
        self.process.start()
        self.base = f"http://127.0.0.1:{ports.get(timeout=60)}"

    def requests(self) -> int:
        return json.loads(urllib.request.urlopen(f"{self.base}/__stats").read())["requests"]

    def close(self) -> None:
        self.stop.set()
        self.process.join(10)

    def accesses(self) -> list[SourceAccess]:
        return [
            SourceAccess("streetview", Credentials(GOOD_KEY), f"{self.base}/maps/api/streetview"),
            SourceAccess("mapillary", Credentials(GOOD_TOKEN), f"{self.base}/mly"),
            SourceAccess("panoramax", url=f"{self.base}/pnx/api"),
        ]


def timed(label: str, server: FakeServer, run) -> tuple[float, int, object]:
    before = server.requests()
    started = time.perf_counter()
    answer = run()
    seconds = time.perf_counter() - started
    asked = server.requests() - before  # the stats requests are not counted
    print(f"{label}: {seconds:7.2f} s, {asked:6,} requests", flush=True)
    return seconds, asked, answer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=4157)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    images = [
        FakeImage(i.image_id, i.lon, i.lat, "2019-05-14", is_pano=False, services=SOURCES)
        for i in grid_images(args.points)
    ]
    shift = 4.0 / 111_320.0 / 0.75
    points = [FetchPoint(n, im.lon + shift, im.lat, 45.0) for n, im in enumerate(images)]
    print(
        f"{len(points)} points, providers {', '.join(SOURCES)}, one image each per point, "
        f"{args.latency * 1000:.0f} ms a request, {args.concurrency} concurrent requests"
    )
    server = FakeServer(images, args.latency)
    try:
        with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as other:
            settings = FetchSettings("", radius_m=25.0, concurrency=args.concurrency)

            def survey():
                return list_candidates(
                    points, server.accesses(), 25.0, DateWindow(), cache,
                    concurrency=args.concurrency,
                )  # fmt: skip

            survey_s, survey_n, listings = timed("1. survey, 3 providers", server, survey)
            rows = survey_rows(points, listings)
            covered = sum(1 for row in rows if row.images)
            print(
                f"   rows {len(rows):,}, with imagery {covered:,}; "
                f"{survey_n / len(points):.2f} requests a point, "
                f"{len(points) / survey_s:.0f} points/s"
            )
            again_s, again_n, _ = timed("2. survey again (remembered)", server, survey)
            assert again_n == 0, "the survey's lists were not remembered"
            by_date_s, by_date_n, outcomes = timed(
                "3. fetch by date after the survey",
                server,
                lambda: fetch_by_date(points, server.accesses(), settings, date(2019, 6, 1), cache),
            )
            ok = sum(o.status == "ok" for o in outcomes)
            print(
                f"   points ok {ok:,} of {len(points):,}; {by_date_n / len(points):.2f} requests "
                f"a point (Mapillary's pick: a fresh image URL, then the image); "
                f"{len(points) / by_date_s:.0f} points/s"
            )
            plain_s, plain_n, plain = timed(
                "4. ordinary fetch, Panoramax alone",
                server,
                lambda: fetch_imagery(
                    points,
                    FetchSettings(
                        "panoramax", url=f"{server.base}/pnx/api", concurrency=args.concurrency
                    ),
                    other,
                ),
            )
            print(f"   points ok {sum(o.status == 'ok' for o in plain):,} of {len(points):,}")
            print(
                f"ratios: survey ÷ ordinary fetch, time {survey_s / plain_s:.2f}, requests "
                f"{survey_n / plain_n:.2f}; survey again ÷ survey, time {again_s / survey_s:.3f}"
            )
    finally:
        server.close()


if __name__ == "__main__":
    main()
