"""The imagery's schemas: fetch_imagery takes and gives them, and they travel as plain JSON."""

from __future__ import annotations

import json
import shutil

import pytest

from mus_qgis.engine.jobs import registered
from mus_qgis.shared.errors import MusError
from mus_qgis.shared.schemas.imagery import (
    CaptureWindow,
    FetchImageryParams,
    FetchImageryResult,
    ImageryEstimate,
    SourceCredentials,
    ViewPlanChoice,
)
from tests.conftest import AREZZO_PHOTOS
from tests.fakes.imagery_services import GOOD_KEY, FakeImageryServices, grid_images

SECRET = "c2VjcmV0LXNpZ25pbmc="


def carried(schema):
    """As the worker's protocol carries it."""
    return json.loads(json.dumps(schema.to_dict()))


def test_the_fetch_job_declares_its_schemas():
    run = registered()["fetch_imagery"]
    assert (run.params, run.result) == (FetchImageryParams, FetchImageryResult)


def test_fetch_params_and_result_survive_the_pipe():
    params = FetchImageryParams(
        points="/tmp/points.json",
        source="streetview",
        radius_m=25.0,
        plan=ViewPlanChoice(count=6, fov=60.0, size=320),
        concurrency=4,
        cache_dir="/tmp/cache",
        output="/tmp/out.json",
        window=CaptureWindow(start="2018-01-01", end=None),
        price_per_1000=5.6,
        credentials=SourceCredentials(GOOD_KEY, SECRET),
        proxies={"http": "http://user:pass@proxy:3128", "https": "http://user:pass@proxy:3128"},
    )
    back = FetchImageryParams.from_dict(carried(params))
    assert back == params
    assert back.plan == ViewPlanChoice(6, 60.0, 0.0, 320, False)
    assert back.credentials.secret == SECRET  # the engine needs it: it crosses the pipe
    result = FetchImageryResult(
        output="/tmp/out.json",
        count=7,
        estimate=ImageryEstimate(
            source="Google Street View",
            points=7,
            lookups_cached=2,
            lookup_requests=5,
            images_cached=2,
            images_to_fetch=5,
            image_requests=20,
            other_requests=0,
            bytes_expected=1_234_567,
            price_per_1000=7.0,
            cost=0.14,
            requests=25,
            message="Estimate for 7 points from Google Street View: at most 25 requests",
        ),
    )
    back = FetchImageryResult.from_dict(carried(result))
    assert back == result and isinstance(back.estimate, ImageryEstimate)
    assert (
        FetchImageryResult.from_dict({"output": "o", "count": 0, "estimate": None}).estimate is None
    )


def test_no_secret_shows_in_a_repr_or_a_refusal():
    credentials = SourceCredentials(GOOD_KEY, SECRET)
    proxies = {"https": "http://user:hunter2@proxy:3128"}
    params = FetchImageryParams(
        "p", "streetview", 25.0, ViewPlanChoice(), 8, "c", "o", credentials=credentials
    )
    params = FetchImageryParams.from_dict({**params.to_dict(), "proxies": proxies})
    for text in (repr(credentials), str(credentials), repr(params), str(params)):
        assert GOOD_KEY not in text and SECRET not in text and "hunter2" not in text
    with pytest.raises(MusError) as refused:
        SourceCredentials.from_dict({"key": GOOD_KEY, "secret": SECRET, "token": SECRET})
    assert "token" in str(refused.value)
    assert GOOD_KEY not in str(refused.value) and SECRET not in str(refused.value)


def test_the_fetch_job_estimates_street_view_and_asks_nothing(tmp_path):
    images = grid_images(3)
    points = tmp_path / "points.json"
    rows = [[i, im.lon, im.lat, 90.0] for i, im in enumerate(images)]
    points.write_text(json.dumps(rows), encoding="utf-8")
    output = tmp_path / "out.json"
    with FakeImageryServices(images) as fake:
        params = FetchImageryParams(
            points=str(points),
            source="streetview",
            radius_m=25.0,
            plan=ViewPlanChoice(),
            concurrency=2,
            cache_dir=str(tmp_path / "cache"),
            output=str(output),
            url=fake.streetview_url,
            estimate_only=True,
            price_per_1000=10.0,
            credentials=SourceCredentials(GOOD_KEY, SECRET),
        )
        answer = registered()["fetch_imagery"](carried(params), None)
        assert fake.requests == []
    result = FetchImageryResult.from_dict(json.loads(json.dumps(answer)))
    assert result.output == str(output) and result.count == 3
    estimate = result.estimate
    assert (estimate.points, estimate.lookup_requests, estimate.image_requests) == (3, 3, 12)
    assert estimate.requests == 15 and estimate.cost == pytest.approx(12 * 10.0 / 1000)
    assert estimate.message.startswith("Estimate for 3 points")
    rows = json.loads(output.read_text(encoding="utf-8"))
    assert {row["status"] for row in rows} == {"not tried: estimate only"}
    assert GOOD_KEY not in json.dumps(answer) and SECRET not in json.dumps(answer)


def test_the_fetch_job_finds_local_photos_placed_by_a_csv(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(AREZZO_PHOTOS[0], folder / "piazza.jpg")
    listing = folder / "listing.csv"
    listing.write_text("lon,lat,path\n11.0,43.0,piazza.jpg\n", encoding="utf-8")
    points = tmp_path / "points.json"
    points.write_text(json.dumps([[1, 11.0, 43.0, None], [2, 12.0, 41.0, 0.0]]), "utf-8")
    output = tmp_path / "out.json"
    answer = registered()["fetch_imagery"](
        {
            "points": str(points),
            "source": "local",
            "radius_m": 15.0,
            "plan": {"count": 1, "fov": 90.0, "pitch": 0.0, "size": 640, "whole_panorama": True},
            "concurrency": 2,
            "cache_dir": str(tmp_path / "cache"),
            "output": str(output),
            "location": str(listing),
        },
        None,
    )
    result = FetchImageryResult.from_dict(json.loads(json.dumps(answer)))
    assert result.count == 2 and result.estimate.points == 2 and result.estimate.cost == 0.0
    rows = json.loads(output.read_text(encoding="utf-8"))
    assert [row["key"] for row in rows] == [1, 2]
    assert rows[0]["status"] == "ok" and rows[0]["paths"] == [str(folder / "piazza.jpg")]
    assert rows[1]["status"].startswith("no imagery")


def test_the_choices_mirror_the_engines_records():
    """Each choice makes its engine record field for field, with the same defaults."""
    from dataclasses import asdict, fields

    from mus_qgis.engine.imagery.estimate import FetchEstimate
    from mus_qgis.engine.imagery.sources.base import Credentials, DateWindow, ViewPlan

    assert asdict(ViewPlan(**ViewPlanChoice().to_dict())) == asdict(ViewPlan())
    assert [f.name for f in fields(CaptureWindow)] == [f.name for f in fields(DateWindow)]
    assert CaptureWindow().to_dict() == asdict(DateWindow())
    assert Credentials(**SourceCredentials(f" {GOOD_KEY}\n", SECRET).to_dict()).key == GOOD_KEY
    assert [f.name for f in fields(SourceCredentials)] == [f.name for f in fields(Credentials)]
    estimate = FetchEstimate("Panoramax", 3, lookup_requests=3, image_requests=3)
    assert ImageryEstimate.from_dict(estimate.as_dict()).requests == 6
