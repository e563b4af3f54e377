"""The survey of imagery across providers, and the fetch that picks each point's image by date,
against fake services that hold several providers' images from several years per point."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mus_qgis.engine.imagery.by_date import fetch_by_date, pick_image
from mus_qgis.engine.imagery.fetch import FetchSettings
from mus_qgis.engine.imagery.http import image_decodes
from mus_qgis.engine.imagery.sources.base import Candidate, Credentials, DateWindow, FetchPoint
from mus_qgis.engine.imagery.survey import (
    Listing,
    SourceAccess,
    coverage,
    gaps,
    list_candidates,
    survey_rows,
)
from tests.engine.helpers import http_for
from tests.fakes.imagery_services import FakeImage, FakeImageryServices
from tests.fakes.imagery_study import (
    ALL,
    LAT0,
    LON0,
    RADIUS,
    accesses,
    expected_pick,
    offset,
    served_within,
    study_world,
)


def test_the_survey_counts_what_each_fake_service_serves(tmp_path):
    points, images = study_world()
    with FakeImageryServices(images) as fake:
        listings = list_candidates(
            points, accesses(fake, *ALL), RADIUS, DateWindow(), tmp_path, http=http_for()
        )
        first_requests = len(fake.requests)
        rows = survey_rows(points, listings)
        # A second survey asks nothing: every list is remembered.
        again = list_candidates(
            points, accesses(fake, *ALL), RADIUS, DateWindow(), tmp_path, http=http_for()
        )
        assert len(fake.requests) == first_requests
    assert sum(fake.downloads.values()) == 0  # metadata only: no image was downloaded
    assert first_requests == len(points) * len(ALL)
    assert len(rows) == len(points) * len(ALL)
    for row in rows:
        point = next(p for p in points if p.key == row.key)
        served = served_within(images, row.source, point)
        assert row.images == len(served), (row.key, row.source)
        assert row.panoramas == sum(1 for image in served if image.is_pano)
        assert row.years == sorted({int(image.captured[:4]) for image in served})
        assert row.status == ("ok" if served else "no imagery")
        if row.source == "mapillary" and served:  # a panorama is taken before a nearer flat image
            assert row.image_id == f"mly-{row.key}-2022" and row.is_panorama
            assert row.distance_m == pytest.approx(8.0, abs=0.2)
            assert (row.first_date, row.last_date) == ("2016-04-10", "2022-09-01")
            assert row.creator == f"mapillary_mapper_{row.key}"
            assert row.licence == "CC BY-SA 4.0"
        if row.source == "streetview" and served:
            assert row.captured == "2021-03-01"  # Street View dates are months
    assert all(lst.cached for by_key in again.values() for lst in by_key.values())
    assert gaps(points, rows) == [900]
    summary = {c.source: c for c in coverage(rows, {})}
    assert (summary["mapillary"].covered, summary["panoramax"].covered) == (6, 3)
    assert (summary["streetview"].covered, summary["kartaview"].covered) == (2, 0)
    assert summary["mapillary"].per_year == {2016: 6, 2022: 6}
    assert summary["panoramax"].per_year == {2019: 3}
    assert summary["mapillary"].requests == len(points)  # the first survey asked every list
    assert all(c.requests == 0 for c in coverage(survey_rows(points, again), {}))


def test_the_survey_window_keeps_only_images_captured_within_it(tmp_path):
    points, images = study_world()
    window = DateWindow(date(2018, 1, 1), date(2020, 12, 31))
    with FakeImageryServices(images) as fake:
        listings = list_candidates(
            points,
            accesses(fake, "mapillary", "panoramax"),
            RADIUS,
            window,
            tmp_path,
            http=http_for(),
        )
    rows = survey_rows(points, listings)
    covered = {(r.key, r.source) for r in rows if r.images}
    assert covered == {(k, "panoramax") for k in (0, 2, 4)}
    assert gaps(points, rows) == [1, 3, 5, 900]


def test_a_source_without_a_key_costs_its_rows_only(tmp_path):
    points, images = study_world()
    with FakeImageryServices(images) as fake:
        given = [SourceAccess("mapillary", Credentials(""), fake.mapillary_url)]
        given += accesses(fake, "panoramax")
        listings = list_candidates(points, given, RADIUS, DateWindow(), tmp_path, http=http_for())
        assert fake.count("/mly") == 0
    rows = survey_rows(points, listings)
    mapillary = [r for r in rows if r.source == "mapillary"]
    assert all(r.status.startswith("not tried: Mapillary needs a key") for r in mapillary)
    assert sum(1 for r in rows if r.source == "panoramax" and r.images) == 3


def test_a_failing_service_is_no_longer_asked_and_the_rest_is_not_tried(tmp_path):
    points, images = study_world()
    with FakeImageryServices(images) as fake:
        fake.faults["pnx-search"] = ["stac-error"] * 10
        listings = list_candidates(
            points,
            accesses(fake, "panoramax", "mapillary"),
            RADIUS,
            DateWindow(),
            tmp_path,
            concurrency=1,
            http=http_for(),
        )
        assert fake.count("/pnx/api/search") == 5
    statuses = [listings["panoramax"][p.key].status for p in points]
    assert all(s.startswith("error: Panoramax: Parameter bbox is invalid") for s in statuses[:5])
    assert all(s.startswith("not tried: Panoramax failed 5 times in a row") for s in statuses[5:])
    assert all(listings["mapillary"][p.key].status != "not tried" for p in points)
    # The failed lists were not remembered: a later survey asks for them again.
    with FakeImageryServices(images) as fake:
        again = list_candidates(
            points, accesses(fake, "panoramax"), RADIUS, DateWindow(), tmp_path, http=http_for()
        )
    assert sum(1 for p in points if again["panoramax"][p.key].candidates) == 3


@pytest.mark.parametrize("target", [date(2016, 1, 1), date(2019, 6, 1), date(2021, 6, 1)])
def test_the_fetch_by_date_takes_each_point_the_image_nearest_in_time(tmp_path, target):
    points, images = study_world()
    services = ("mapillary", "panoramax", "streetview")
    with FakeImageryServices(images) as fake:
        outcomes = fetch_by_date(
            points, accesses(fake, *services), FetchSettings("", concurrency=4), target, tmp_path
        )
    assert [o.key for o in outcomes] == [p.key for p in points]
    for point, outcome in zip(points, outcomes):
        expected = expected_pick(point, images, services, target)
        if expected is None:
            assert outcome.status == "no imagery" and outcome.image_id == ""
            assert "no imagery within 25 m" in outcome.reason
            continue
        assert outcome.image_id == expected.image_id, (point.key, outcome.reason)
        assert outcome.status == "ok" and outcome.source in services
        assert outcome.paths and all(image_decodes(Path(p)) for p in outcome.paths)
        assert f"from {target.isoformat()}: the nearest in time of" in outcome.reason
        assert outcome.reason.startswith(f"captured {outcome.captured.isoformat()}")


def test_a_tie_in_time_goes_to_the_nearer_image_and_the_reason_says_so(tmp_path):
    point = FetchPoint(1, LON0, LAT0, 0.0)
    images = [
        FakeImage("far", *offset(LON0, LAT0, 12.0, 0.0), "2020-05-01", services=("mapillary",)),
        FakeImage("near", *offset(LON0, LAT0, 0.0, 5.0), "2020-05-01", services=("panoramax",)),
    ]
    with FakeImageryServices(images) as fake:
        (outcome,) = fetch_by_date(
            [point],
            accesses(fake, "mapillary", "panoramax"),
            FetchSettings("", concurrency=2),
            date(2020, 1, 1),
            tmp_path,
        )
    assert (outcome.image_id, outcome.source) == ("near", "panoramax")
    assert outcome.reason == (
        "captured 2020-05-01, 121 days from 2020-01-01: the nearest in time of 2 images from "
        "Mapillary, Panoramax; 1 other as near in time but farther (5.0 m against 12.0 m)"
    )


def test_a_fetch_by_date_run_again_asks_nothing(tmp_path):
    points, images = study_world()
    with FakeImageryServices(images) as fake:
        settings = FetchSettings("", concurrency=4)
        first = fetch_by_date(
            points, accesses(fake, "mapillary", "panoramax"), settings, date(2019, 1, 1), tmp_path
        )
        asked = len(fake.requests)
        second = fetch_by_date(
            points, accesses(fake, "mapillary", "panoramax"), settings, date(2019, 1, 1), tmp_path
        )
        assert len(fake.requests) == asked
    assert [(o.image_id, o.paths, o.reason) for o in first] == [
        (o.image_id, o.paths, o.reason) for o in second
    ]


def _candidate(i, days_after, east_m, pano=False, source="mapillary"):
    captured = (
        None if days_after is None else date.fromordinal(date(2020, 1, 1).toordinal() + days_after)
    )
    lon, lat = offset(LON0, LAT0, east_m, 0.0)
    return Candidate(source, f"c{i}", lon, lat, captured, None, pano)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(-3000, 3000)),
            st.floats(0.0, 24.0),
            st.booleans(),
            st.sampled_from(["mapillary", "panoramax"]),
        ),
        min_size=1,
        max_size=8,
    ),
    st.one_of(st.none(), st.integers(-3000, 3000)),
)
def test_the_pick_is_never_beaten_by_another_candidate(found, target_days):
    """No candidate is strictly nearer in time, or as near in time and nearer in space (with a
    target); none is a panorama nearer, or a nearer image of the same kind (without one)."""
    point = FetchPoint(0, LON0, LAT0)
    candidates = [_candidate(i, d, e, p, s) for i, (d, e, p, s) in enumerate(found)]
    listings = {
        name: Listing(name, 0, candidates=[c for c in candidates if c.source == name])
        for name in ("mapillary", "panoramax")
    }
    target = (
        None
        if target_days is None
        else date.fromordinal(date(2020, 1, 1).toordinal() + target_days)
    )
    pick = pick_image(point, listings, target, RADIUS).candidate
    assert pick in candidates

    def metres(c):
        return math.hypot(
            (c.lon - point.lon) * 111_320.0 * math.cos(math.radians(point.lat)),
            (c.lat - point.lat) * 111_320.0,
        )

    for other in candidates:
        if target is not None:
            apart = lambda c: abs((c.captured - target).days) if c.captured else math.inf  # noqa: E731
            assert apart(other) >= apart(pick)
            if apart(other) == apart(pick):
                assert metres(other) >= metres(pick) - 1e-6
        else:
            assert not (other.is_panorama and not pick.is_panorama)
            if other.is_panorama == pick.is_panorama:
                assert metres(other) >= metres(pick) - 1e-6


def test_service_urls_name_each_source_or_serve_the_one_source():
    from mus_qgis.shared.errors import MusError
    from mus_qgis.shared.imagery_sources import service_urls

    assert service_urls("", ["mapillary", "panoramax"]) == {}
    assert service_urls(" https://a.example/api ", ["panoramax"]) == {
        "panoramax": "https://a.example/api"
    }
    # A query string's own '=' is no source's name.
    assert service_urls("https://a.example/?x=1", ["panoramax"]) == {
        "panoramax": "https://a.example/?x=1"
    }
    assert service_urls(
        "mapillary=http://h/mly; panoramax=http://h/pnx/api?x=1", ["mapillary", "panoramax"]
    ) == {"mapillary": "http://h/mly", "panoramax": "http://h/pnx/api?x=1"}
    with pytest.raises(MusError, match="give each its address as name=URL"):
        service_urls("http://h/mly", ["mapillary", "panoramax"])
    with pytest.raises(MusError, match="names kartaview, which is not among the sources"):
        service_urls("kartaview=http://h/kv", ["mapillary"])


def test_every_year_takes_each_point_one_image_per_year_it_has(tmp_path):
    from mus_qgis.engine.imagery.by_date import fetch_moments

    points, images = study_world()
    services = ("mapillary", "panoramax")
    with FakeImageryServices(images) as fake:
        rows = fetch_moments(
            points,
            accesses(fake, *services),
            FetchSettings("", concurrency=4),
            ["every year"],
            tmp_path,
        )
    seen = {(row.outcome.key, row.moment): row.outcome for row in rows}
    for point in points:
        served = [i for s in services for i in served_within(images, s, point)]
        years = sorted({image.captured[:4] for image in served})
        assert sorted(m for k, m in seen if k == point.key) == (years or [""])
        for year in years:
            outcome = seen[(point.key, year)]
            (expected,) = [i for i in served if i.captured.startswith(year)]
            assert outcome.image_id == expected.image_id and outcome.status == "ok"
            assert outcome.captured.year == int(year)
            assert outcome.paths and all(Path(p).exists() for p in outcome.paths)
    assert seen[(900, "")].status == "no imagery"


def test_moments_as_dates_take_the_image_nearest_each(tmp_path):
    from mus_qgis.engine.imagery.by_date import fetch_moments

    points, images = study_world()
    moments = ["2015-01-01", "2023-01-01"]
    with FakeImageryServices(images) as fake:
        rows = fetch_moments(
            points[:2],
            accesses(fake, "mapillary"),
            FetchSettings("", concurrency=2),
            moments,
            tmp_path,
        )
    assert [(row.outcome.key, row.moment) for row in rows] == [
        (0, moments[0]),
        (0, moments[1]),
        (1, moments[0]),
        (1, moments[1]),
    ]
    assert [row.outcome.image_id for row in rows] == [
        "mly-0-2016",
        "mly-0-2022",
        "mly-1-2016",
        "mly-1-2022",
    ]


def test_one_image_nearest_two_dates_is_downloaded_once_for_the_point(tmp_path):
    from mus_qgis.engine.imagery.by_date import fetch_moments

    point = FetchPoint(5, LON0, LAT0, 90.0)
    images = [
        FakeImage(
            "only",
            *offset(LON0, LAT0, 3.0, 0.0),
            "2019-05-01",
            is_pano=False,
            services=("mapillary",),
        )
    ]
    with FakeImageryServices(images) as fake:
        rows = fetch_moments(
            [point],
            accesses(fake, "mapillary"),
            FetchSettings("", concurrency=2),
            ["2016-01-01", "2022-01-01"],
            tmp_path,
        )
        assert sum(fake.downloads.values()) == 1
    assert [row.outcome.image_id for row in rows] == ["only", "only"]
    assert rows[1].outcome.duplicate_of == 5 and rows[1].outcome.paths == rows[0].outcome.paths
