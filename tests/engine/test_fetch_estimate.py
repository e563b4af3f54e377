"""What a fetch will cost, told before the first request: requests, bytes, cached work, money."""

from __future__ import annotations

import pytest

from mus_qgis.engine.imagery.sources.base import JPEG_BYTES_PER_PIXEL, Credentials, ViewPlan
from mus_qgis.shared.errors import MusError
from mus_qgis.shared.progress import LoggingProgress
from tests.engine.helpers import http_for, points_on, run, settings_for
from tests.fakes.imagery_services import FakeImageryServices, grid_images


def estimate(fake, source, cache, points, credentials=None, **kwargs):
    from mus_qgis.engine.imagery.fetch import fetch_imagery

    settings, default_credentials = settings_for(fake, source, estimate_only=True, **kwargs)
    estimates: list = []
    progress = LoggingProgress()
    outcomes = fetch_imagery(
        points,
        settings,
        cache,
        credentials if credentials is not None else default_credentials,
        progress,
        http=http_for(credentials),
        on_estimate=estimates.append,
    )
    return estimates[0], outcomes, progress


def test_a_street_view_estimate_asks_nothing_needs_no_key_and_prices_every_view(tmp_path):
    images = grid_images(10)
    points = points_on(images)[:10]
    cache = tmp_path / "cache"
    with FakeImageryServices(images) as fake:
        found, outcomes, progress = estimate(
            fake, "streetview", cache, points, credentials=Credentials()
        )
        assert fake.requests == []  # not one request, and no key needed to learn the price
    assert not cache.exists()  # nothing written either
    assert (found.lookup_requests, found.image_requests, found.other_requests) == (10, 40, 0)
    assert found.cost == pytest.approx(40 * 7.0 / 1000)
    assert found.bytes_expected == int(4 * 640 * 640 * JPEG_BYTES_PER_PIXEL) * 10
    assert {o.status for o in outcomes} == {"not tried: estimate only"}
    message = progress.messages[-1]
    assert message.startswith("Estimate for 10 points from Google Street View: at most 50")
    assert "USD 0.28" in message


def test_an_estimate_counts_what_the_cache_already_holds(tmp_path):
    images = grid_images(10)
    points = points_on(images)[:10]
    with FakeImageryServices(images) as fake:
        run(fake, "streetview", tmp_path, points[:4])  # four points fetched before
        asked_before = len(fake.requests)
        found, _, _ = estimate(fake, "streetview", tmp_path, points, price_per_1000=5.6)
        assert len(fake.requests) == asked_before
    assert (found.lookups_cached, found.images_cached) == (4, 4)
    assert (found.lookup_requests, found.image_requests) == (6, 24)
    assert found.cost == pytest.approx(24 * 5.6 / 1000)  # the price set, not the list price


@pytest.mark.parametrize(
    ("source", "image_requests", "other_requests", "cost"),
    [("mapillary", 5, 5, 0.0), ("kartaview", 5, 0, 0.0), ("panoramax", 5, 0, 0.0)],
)
def test_each_source_has_its_own_request_count_and_no_price(
    tmp_path, source, image_requests, other_requests, cost
):
    images = grid_images(5)
    with FakeImageryServices(images) as fake:
        found, _, progress = estimate(fake, source, tmp_path, points_on(images)[:5])
    assert (found.lookup_requests, found.image_requests) == (5, image_requests)
    assert found.other_requests == other_requests and found.cost == cost
    assert "USD" not in progress.messages[-1]


def test_a_fetch_logs_its_estimate_before_its_first_request(tmp_path):
    images = grid_images(3)
    progress = LoggingProgress()
    with FakeImageryServices(images) as fake:
        outcomes = run(fake, "kartaview", tmp_path, points_on(images)[:3], progress=progress)
    assert [o.status for o in outcomes] == ["ok"] * 3
    estimate_line = next(i for i, m in enumerate(progress.messages) if m.startswith("Estimate"))
    lookup_line = next(i for i, m in enumerate(progress.messages) if m.startswith("Looking up"))
    assert estimate_line < lookup_line


def test_an_estimate_into_a_cache_path_that_is_a_file_says_so(tmp_path):
    cache = tmp_path / "cache"
    cache.write_text("", encoding="utf-8")
    images = grid_images(2)
    with FakeImageryServices(images) as fake, pytest.raises(MusError, match="is a file"):
        estimate(fake, "panoramax", cache, points_on(images)[:2])


def test_views_of_a_whole_panorama_count_once(tmp_path):
    images = grid_images(3)
    with FakeImageryServices(images) as fake:
        found, _, _ = estimate(
            fake, "mapillary", tmp_path, points_on(images)[:3], plan=ViewPlan(whole_panorama=True)
        )
    assert found.image_requests == 3


@pytest.mark.parametrize("source", ["mapillary", "kartaview", "panoramax"])
def test_a_price_set_for_street_view_does_not_make_a_free_source_cost(tmp_path, source):
    images = grid_images(3)
    with FakeImageryServices(images) as fake:
        found, _, progress = estimate(
            fake, source, tmp_path, points_on(images)[:3], price_per_1000=7.0
        )
    assert found.cost == 0.0 and found.price_per_1000 == 0.0
    assert "USD" not in progress.messages[-1]


def test_an_estimate_reads_a_relative_cache_path(tmp_path, monkeypatch):
    images = grid_images(3)
    monkeypatch.chdir(tmp_path)
    with FakeImageryServices(images) as fake:
        run(fake, "kartaview", "relative cache", points_on(images)[:2])
        found, _, _ = estimate(fake, "kartaview", "relative cache", points_on(images)[:3])
    assert (found.lookups_cached, found.images_cached, found.lookup_requests) == (2, 2, 1)
