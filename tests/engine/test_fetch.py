"""Fetching imagery from every source against fake servers: answers, faults, resume, secrets."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from mus_qgis.engine.imagery.fetch import FetchSettings, fetch_imagery
from mus_qgis.engine.imagery.http import Http, RetryPolicy, image_decodes
from mus_qgis.engine.imagery.sources import imagery_sources
from mus_qgis.engine.imagery.sources.base import Credentials, DateWindow, FetchPoint, ViewPlan
from mus_qgis.shared.errors import CanceledError, CredentialsError
from tests.conftest import IMAGES, PANORAMAS, ROOT
from tests.engine.helpers import FAST, http_for, points_on, run
from tests.fakes.imagery_services import GOOD_KEY, FakeImageryServices, grid_images


def test_every_source_is_registered_from_its_own_module():
    # Appended, never inserted: Processing stores a source by its place in this list.
    assert list(imagery_sources()) == ["streetview", "mapillary", "kartaview", "local", "panoramax"]


def test_the_sources_are_those_of_the_shared_list_with_its_facts():
    """The fetch dialog lists the sources from shared data; the engine's classes carry the same
    titles, order, key needs and prices (taken from that list, not written twice)."""
    from mus_qgis.shared.imagery_sources import imagery_source_infos

    shared = imagery_source_infos()
    assert list(shared) == list(imagery_sources())
    for name, cls in imagery_sources().items():
        info = shared[name]
        assert (cls.title, cls.order, cls.needs_key, cls.price_per_1000) == (
            info.title,
            info.order,
            info.needs_key,
            info.price_per_1000,
        )
    assert [n for n, info in shared.items() if info.needs_key] == ["streetview", "mapillary"]
    assert shared["streetview"].price_per_1000 == 7.0 and shared["panoramax"].price_per_1000 is None
    assert shared["mapillary"].option == "Mapillary (needs a key)"
    assert shared["panoramax"].option == "Panoramax"


def test_a_source_missing_from_the_shared_list_is_named():
    from mus_qgis.engine.imagery.sources.base import ImagerySource

    with pytest.raises(RuntimeError, match=r"'nowhere' is not in resources/imagery/sources.json"):
        type("Nowhere", (ImagerySource,), {"name": "nowhere"})


@pytest.mark.parametrize("source", ["streetview", "mapillary", "kartaview", "panoramax"])
def test_each_source_finds_downloads_and_marks_duplicates(tmp_path, source):
    images = grid_images(6)
    points = points_on(images)
    with FakeImageryServices(images) as fake:
        outcomes = run(fake, source, tmp_path, points)
    assert [o.key for o in outcomes] == [p.key for p in points]  # no point dropped
    by_key = {o.key: o for o in outcomes}
    for index, image in enumerate(images):
        outcome = by_key[index]
        assert outcome.status == "ok", outcome.status
        assert outcome.image_id == image.image_id and outcome.source == source
        assert 3.0 < outcome.distance_m < 7.0
        assert outcome.captured is not None and outcome.captured.year == 2019
        assert outcome.paths and all(image_decodes(Path(p)) for p in outcome.paths)
    assert by_key[900].status == "no imagery" and by_key[900].paths == []
    assert by_key[901].duplicate_of == 0 and by_key[901].paths == by_key[0].paths
    if source == "streetview":
        assert by_key[0].headings == [90.0, 180.0, 270.0, 0.0]
        assert by_key[0].creator == "Google"
        assert sum(fake.downloads.values()) == 6 * 4  # the duplicate point cost nothing
    if source == "mapillary":
        assert by_key[0].licence == "CC BY-SA 4.0" and by_key[0].creator == "street_mapper"
        assert len(by_key[0].paths) == 4 and by_key[0].image_heading == 30.0
    if source == "panoramax":
        # The instance's licence, with the instance that holds the picture (which sent each
        # download on to its storage).
        assert by_key[0].licence == "etalab-2.0 (localhost)"
        assert by_key[0].creator == "street_mapper" and by_key[0].is_panorama
        assert len(by_key[0].paths) == 4 and by_key[0].image_heading == 30.0
        assert sum(fake.downloads.values()) == 6  # one full panorama per image, views cut here
    assert not list(tmp_path.rglob("*.part"))


def test_mapillary_whole_panorama_is_kept_as_one_equirectangular_file(tmp_path):
    images = grid_images(2)
    with FakeImageryServices(images) as fake:
        outcomes = run(
            fake, "mapillary", tmp_path, points_on(images)[:2], plan=ViewPlan(whole_panorama=True)
        )
    assert all(len(o.paths) == 1 and o.is_panorama for o in outcomes)
    from PIL import Image

    width, height = Image.open(outcomes[0].paths[0]).size
    assert width == 2 * height


@pytest.mark.parametrize(
    ("source", "route", "faults"),
    [
        ("streetview", "sv-metadata", ["429", "500", "timeout", "badjson", "truncated"]),
        ("streetview", "sv-image", ["503", "truncated", "429"]),
        ("mapillary", "mly-search", ["code4", "429", "badjson", "timeout"]),
        ("mapillary", "mly-thumb", ["expired", "500"]),
        ("kartaview", "kv-search", ["429", "500", "badjson"]),
        ("panoramax", "pnx-search", ["429", "503", "badjson", "timeout", "truncated"]),
    ],
)
def test_transient_faults_are_retried(tmp_path, source, route, faults):
    images = grid_images(3)
    with FakeImageryServices(images) as fake:
        fake.faults[route] = list(faults)
        outcomes = run(fake, source, tmp_path, points_on(images)[:3])
        assert not fake.faults[route]  # every fault was served
    assert [o.status for o in outcomes] == ["ok"] * 3


def test_a_placeholder_or_persistent_failure_is_that_points_status(tmp_path):
    images = grid_images(3)
    with FakeImageryServices(images) as fake:
        fake.faults["sv-image"] = ["placeholder"]
        outcomes = run(fake, "streetview", tmp_path, points_on(images)[:3], concurrency=1)
    statuses = [o.status for o in outcomes]
    assert statuses.count("ok") == 2
    assert any("placeholder" in s for s in statuses)


def test_bad_key_stops_at_the_first_call_and_is_never_shown(tmp_path):
    images = grid_images(20)
    bad = Credentials("AIzaBAD-secret-key-999", "c2VjcmV0LXNpZ25pbmc=")
    with FakeImageryServices(images) as fake:
        settings = FetchSettings("streetview", url=fake.streetview_url)
        with pytest.raises(CredentialsError) as raised:
            fetch_imagery(points_on(images), settings, tmp_path, bad, http=http_for(bad))
        assert fake.count("/maps/api/streetview") == 1
    assert bad.key not in str(raised.value) and bad.secret not in str(raised.value)
    assert "***" not in repr(bad) or bad.key not in repr(bad)
    with FakeImageryServices(images) as fake:
        settings = FetchSettings("mapillary", url=fake.mapillary_url)
        with pytest.raises(CredentialsError, match="credentials"):
            fetch_imagery(
                points_on(images),
                settings,
                tmp_path,
                Credentials("MLY|bad"),
                http=http_for(Credentials("MLY|bad")),
            )
        assert fake.count("/mly") == 1


def test_missing_key_is_a_clear_error(tmp_path):
    with pytest.raises(CredentialsError, match="needs a key"):
        fetch_imagery([FetchPoint(1, 12.5, 41.9)], FetchSettings("mapillary"), tmp_path)


def test_secrets_are_redacted_from_every_status(tmp_path):
    images = grid_images(1)
    with FakeImageryServices(images) as fake:
        fake.faults["sv-metadata"] = ["500"] * 10
        outcomes = run(fake, "streetview", tmp_path, points_on(images)[:1])
    assert outcomes[0].status.startswith("error:")
    assert GOOD_KEY not in outcomes[0].status and "key=***" in outcomes[0].status


def test_signed_urls_carry_a_signature(tmp_path):
    images = grid_images(1)
    with FakeImageryServices(images) as fake:
        settings = FetchSettings("streetview", url=fake.streetview_url)
        credentials = Credentials(GOOD_KEY, "c2VjcmV0LXNpZ25pbmc=")
        fetch_imagery(
            points_on(images)[:1], settings, tmp_path, credentials, http=http_for(credentials)
        )
        assert all("signature" in query for _, query, _ in fake.requests)


def test_date_window_and_street_view_without_whole_panoramas(tmp_path):
    images = grid_images(2)
    with FakeImageryServices(images) as fake:
        outside = run(
            fake,
            "mapillary",
            tmp_path / "a",
            points_on(images)[:2],
            window=DateWindow(date(2020, 1, 1), None),
        )
        inside = run(
            fake,
            "mapillary",
            tmp_path / "b",
            points_on(images)[:2],
            window=DateWindow(date(2019, 1, 1), date(2019, 12, 31)),
        )
        whole = run(
            fake,
            "streetview",
            tmp_path / "c",
            points_on(images)[:1],
            plan=ViewPlan(whole_panorama=True),
        )
    assert [o.status for o in outside] == ["no imagery"] * 2
    assert [o.status for o in inside] == ["ok"] * 2
    assert "not whole panoramas" in whole[0].status


def test_empty_point_list_and_unknown_source(tmp_path):
    from mus_qgis.shared.errors import MusError

    assert fetch_imagery([], FetchSettings("kartaview"), tmp_path) == []
    with pytest.raises(MusError, match="Unknown imagery source"):
        fetch_imagery([FetchPoint(1, 0, 0)], FetchSettings("nope"), tmp_path)


class CancelAfter:
    def __init__(self, progress_calls: int) -> None:
        self.left = progress_calls

    def set_progress(self, percent):
        self.left -= 1

    def is_canceled(self):
        return self.left < 0

    def info(self, message):
        pass


def assert_complete_and_unique(fake, outcomes, cache: Path):
    assert all(o.status == "ok" for o in outcomes if o.key < 900)
    assert all(count == 1 for count in fake.downloads.values()), fake.downloads.most_common(3)
    files = [p for p in cache.rglob("*.jpg")]
    assert files and all(image_decodes(p) for p in files)
    assert not list(cache.rglob("*.part"))


def test_a_cancel_then_a_second_run_completes_without_fetching_twice(tmp_path):
    images = grid_images(24)
    points = points_on(images)
    with FakeImageryServices(images) as fake:
        started = time.perf_counter()
        with pytest.raises(CanceledError):
            # Progress ticks once per lookup, once per image checked, then once per view.
            run(
                fake,
                "streetview",
                tmp_path,
                points,
                CancelAfter(len(points) + len(images) + 5),
                concurrency=4,
            )
        assert time.perf_counter() - started < 10
        fetched_before = sum(fake.downloads.values())
        assert 0 < fetched_before < 24 * 4
        outcomes = run(fake, "streetview", tmp_path, points)
        # Each point was looked up once over both runs: the first run's lookups are remembered.
        assert fake.count("/maps/api/streetview/metadata") == len(points)
        assert_complete_and_unique(fake, outcomes, tmp_path)


KILL_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from mus_qgis.engine.imagery.fetch import FetchSettings, fetch_imagery
from mus_qgis.engine.imagery.sources.base import Credentials, FetchPoint
points = [FetchPoint(i, lon, lat, 90.0) for i, (lon, lat) in enumerate({coords!r})]
print("started", flush=True)
fetch_imagery(points, FetchSettings("streetview", url={url!r}, concurrency=4), {cache!r},
              Credentials({key!r}))
print("finished", flush=True)
"""


def test_a_killed_fetch_leaves_no_corrupt_file_and_resumes(tmp_path):
    images = grid_images(30)
    coords = [(im.lon, im.lat) for im in images]
    with FakeImageryServices(images, latency=0.05) as fake:
        script = KILL_SCRIPT.format(
            root=str(ROOT),
            coords=coords,
            url=fake.streetview_url,
            cache=str(tmp_path),
            key=GOOD_KEY,
        )
        child = subprocess.Popen(
            [sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert child.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 60
        while sum(fake.downloads.values()) < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        child.kill()  # SIGKILL on POSIX
        child.wait()
        time.sleep(0.5)  # the server finishes answering what was in flight at the kill
        before = Counter(fake.downloads)
        assert 20 <= sum(before.values()) < 30 * 4
        on_disk = {(p.parent.name, float(p.name[1:6])) for p in tmp_path.rglob("h*.jpg")}
        assert on_disk and all(image_decodes(p) for p in tmp_path.rglob("*.jpg"))
        points = [FetchPoint(i, lon, lat, 90.0) for i, (lon, lat) in enumerate(coords)]
        # A generous timeout: a timed-out request is rightly asked again, which would blur
        # what this test counts.
        patient = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, timeout=30.0)
        outcomes = run(fake, "streetview", tmp_path, points, policy=patient)
        again = Counter(fake.downloads)
        again.subtract(before)
        # What was on disk is never fetched again; what was in flight at the kill, once more.
        assert all(again[(image, f"{heading:g}")] == 0 for image, heading in on_disk)
        assert all(count <= 1 for count in again.values())
        assert all(o.status == "ok" for o in outcomes)
        assert len(list(tmp_path.rglob("h*.jpg"))) == 30 * 4
        assert not list(tmp_path.rglob("*.part"))


def image_points():
    with (IMAGES / "image_index.csv").open(encoding="utf-8") as handle:
        return [row for row in csv.DictReader(handle) if row["lat"]]


def test_local_photos_from_a_folder_with_exif_gps(tmp_path):
    rows = image_points()
    points = [
        FetchPoint(i, float(r["lon"]), float(r["lat"]) + 2e-5, None) for i, r in enumerate(rows)
    ]
    settings = FetchSettings("local", radius_m=10.0, location=str(IMAGES))
    outcomes = fetch_imagery(points, settings, tmp_path)
    for row, outcome in zip(rows, outcomes, strict=True):
        assert outcome.status == "ok", (row["path"], outcome.status)
        assert outcome.distance_m < 3.0
        if "berlin" not in row["path"]:  # the three Berlin photos stand within metres
            assert outcome.paths == [str(IMAGES / row["path"])]
    assert outcomes[0].captured == date(2008, 10, 22)


def test_local_photos_from_a_csv_recognise_panoramas(tmp_path):
    listing = tmp_path / "photos.csv"
    listing.write_text(
        "lon,lat,path\n12.50,41.90,{}\n12.51,41.90,{}\n".format(
            PANORAMAS[0], IMAGES / "arezzo" / "DSCN0010.jpg"
        ),
        encoding="utf-8",
    )
    settings = FetchSettings("local", radius_m=20.0, location=str(listing))
    points = [FetchPoint(1, 12.50, 41.90001), FetchPoint(2, 12.51, 41.90), FetchPoint(3, 0, 0)]
    outcomes = fetch_imagery(points, settings, tmp_path)
    assert [o.status for o in outcomes] == ["ok", "ok", "no imagery"]
    assert outcomes[0].is_panorama and not outcomes[1].is_panorama


def test_requests_go_through_a_proxy_when_one_is_set(tmp_path):
    images = grid_images(2)
    with FakeImageryServices(images) as fake:
        # The fake answers as the proxy would: the request line carries the absolute URL of a
        # host that does not exist, so only the proxy can have answered.
        proxied = Http(
            secrets=[GOOD_KEY], proxies={"http": fake.base, "https": fake.base}, policy=FAST
        )
        settings = FetchSettings("streetview", url="http://streetview.invalid/maps/api/streetview")
        outcomes = fetch_imagery(
            points_on(images)[:2], settings, tmp_path, Credentials(GOOD_KEY), http=proxied
        )
        assert [o.status for o in outcomes] == ["ok", "ok"]
        assert fake.count("/maps/api/streetview") == 2 + 2 * 4


def test_panoramax_resumes_from_its_cache_and_asks_only_for_what_is_missing(tmp_path):
    images = grid_images(6)
    points = points_on(images)[:6]
    with FakeImageryServices(images) as fake:
        fake.faults["pnx-search"] = ["500"] * 4  # the first point's lookup fails for good
        first = run(fake, "panoramax", tmp_path, points, concurrency=1)
        asked_first = len(fake.requests)
        second = run(fake, "panoramax", tmp_path, points, concurrency=1)
        asked_second = len(fake.requests) - asked_first
    assert first[0].status.startswith("error:") and [o.status for o in first[1:]] == ["ok"] * 5
    assert [o.status for o in second] == ["ok"] * 6
    assert [o.paths for o in second[1:]] == [o.paths for o in first[1:]]
    # Only the failed point is asked again: one search, one download and its storage hop.
    assert asked_second == 3
