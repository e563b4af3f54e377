"""Bad and hostile answers from imagery services: each costs at most its own point, says what
happened, keeps what was fetched, and never shows a key.

Each case is served by the fake services on 127.0.0.1 the way the real services sometimes answer.
"""

from __future__ import annotations

import traceback
from contextlib import closing
from pathlib import Path

import pytest

from mus_qgis.engine.imagery.fetch import FetchSettings, fetch_imagery
from mus_qgis.engine.imagery.http import Http, RetryPolicy
from mus_qgis.engine.imagery.sources.base import Credentials, ViewPlan
from mus_qgis.engine.readings.grid import resample_to_grid
from mus_qgis.engine.worker.server import _error_message, job_secret_redactor
from mus_qgis.shared.errors import CanceledError, CredentialsError, MusError
from mus_qgis.shared.progress import LoggingProgress
from tests.engine.helpers import http_for, points_on, run
from tests.fakes.imagery_services import GOOD_TOKEN, FakeImageryServices, grid_images
from tests.folders import read_only


def written_files(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*.jpg") if p.is_file()]


# -- secrets -----------------------------------------------------------------------------------
@pytest.mark.parametrize("ending", ["\r", "\n", "\r\n", " "])
def test_a_token_read_with_a_line_ending_is_trimmed_and_works(tmp_path, ending):
    images = grid_images(3)
    credentials = Credentials(GOOD_TOKEN + ending)
    assert credentials.key == GOOD_TOKEN
    with FakeImageryServices(images) as fake:
        settings = FetchSettings("mapillary", url=fake.mapillary_url, concurrency=1)
        outcomes = fetch_imagery(
            points_on(images)[:3], settings, tmp_path, credentials, http=http_for(credentials)
        )
    assert [o.status for o in outcomes] == ["ok"] * 3


def test_a_token_with_a_line_break_inside_is_refused_without_showing_it(tmp_path):
    token = "MLY|4242|abc\rdef-secret"
    credentials = Credentials(token)
    images = grid_images(2)
    with FakeImageryServices(images) as fake:
        settings = FetchSettings("mapillary", url=fake.mapillary_url)
        with pytest.raises(CredentialsError, match="not allowed in a request") as raised:
            fetch_imagery(
                points_on(images), settings, tmp_path, credentials, http=http_for(credentials)
            )
    shown = "".join(traceback.format_exception(raised.value))
    for part in ("abc", "def-secret", "MLY|4242"):
        assert part not in shown, part


def test_the_worker_blanks_a_jobs_secrets_out_of_any_error_it_sends():
    """The last guard: whatever a library puts in an error, the worker's answer carries no
    credential of the job, in any of the forms Python prints it."""
    token = "MLY|4242|abcdef\r"
    redact = job_secret_redactor({"credentials": {"key": token, "secret": "sign-secret-xyz"}})
    try:
        raise ValueError(f"Invalid header value {('OAuth ' + token).encode()!r} (sign-secret-xyz)")
    except ValueError as exc:
        answer = _error_message("7", exc, redact)
    shown = answer["message"] + answer["traceback"]
    assert "Invalid header value" in answer["message"]
    for part in ("MLY|4242|abcdef", "sign-secret-xyz"):
        assert part not in shown, part


# -- odd answers cost one point, not the run ---------------------------------------------------
@pytest.mark.parametrize(
    ("source", "route", "fault", "first_status"),
    [
        ("mapillary", "mly-search", "error-as-string", "error: Mapillary: some text"),
        ("mapillary", "mly-search", "item-without-geometry", "no imagery"),
        ("mapillary", "mly-search", "captured-as-iso-text", "ok"),
        ("streetview", "sv-metadata", "ok-without-pano-id", "error: Street View metadata"),
    ],
)
def test_an_odd_answer_costs_its_point_only(tmp_path, source, route, fault, first_status):
    images = grid_images(4)
    points = points_on(images)[:4]
    with FakeImageryServices(images) as fake:
        fake.faults[route] = [fault]
        outcomes = run(fake, source, tmp_path, points, concurrency=1)
    assert [o.key for o in outcomes] == [p.key for p in points]
    assert outcomes[0].status.startswith(first_status), outcomes[0].status
    assert [o.status for o in outcomes[1:]] == ["ok"] * 3
    if fault == "captured-as-iso-text":
        assert outcomes[0].captured is not None and outcomes[0].captured.year == 2019


# -- an answer that is not an image is never saved, nor called ok ------------------------------
@pytest.mark.parametrize("fault", ["empty-image", "html-as-image"])
def test_a_body_that_is_not_an_image_is_that_points_error(tmp_path, fault):
    images = grid_images(
        3,
    )
    for image in images:
        image.is_pano = False  # one flat photo per point: one download each
    points = points_on(images)[:3]
    with FakeImageryServices(images) as fake:
        fake.faults["mly-thumb"] = [fault]
        outcomes = run(fake, "mapillary", tmp_path, points, concurrency=1)
    first = outcomes[0]
    assert (
        first.status
        == {
            "empty-image": "error: the service answered with an empty body instead of an image",
            "html-as-image": "error: the service's answer is not a whole image (40 bytes)",
        }[fault]
    ), first.status
    assert first.paths == []
    assert [o.status for o in outcomes[1:]] == ["ok"] * 2
    assert len(written_files(tmp_path)) == 2  # nothing written for the bad answer


def test_a_point_whose_views_all_failed_lists_no_file(tmp_path):
    images = grid_images(2)
    points = points_on(images)[:2]
    plan = ViewPlan(count=4)
    with FakeImageryServices(images) as fake:
        fake.faults["sv-image"] = ["empty-image"] * 4  # the first point's four views
        outcomes = run(fake, "streetview", tmp_path, points, concurrency=1, plan=plan)
    assert outcomes[0].status.startswith("error:") and outcomes[0].paths == []
    assert outcomes[0].headings == []
    assert outcomes[1].status == "ok" and len(outcomes[1].paths) == 4
    assert all(Path(p).exists() for p in outcomes[1].paths)


def test_a_point_with_some_views_failed_lists_only_the_views_it_has(tmp_path):
    images = grid_images(1)
    with FakeImageryServices(images) as fake:
        fake.faults["sv-image"] = ["empty-image"]
        (outcome,) = run(
            fake, "streetview", tmp_path, points_on(images)[:1], concurrency=1, plan=ViewPlan()
        )
    assert outcome.status == (
        "error: 1 of 4 files missing (first failure: the service answered with an empty body "
        "instead of an image)"
    )
    assert len(outcome.paths) == 3 == len(outcome.headings)
    assert all(Path(p).exists() for p in outcome.paths)


# -- a dead service: stop asking, say so, resume later -----------------------------------------
def test_a_dead_service_is_no_longer_asked_and_the_rest_resumes_later(tmp_path):
    images = grid_images(12)
    points = points_on(images)[:12]
    progress = LoggingProgress()
    with FakeImageryServices(images) as fake:
        fake.faults["sv-metadata"] = ["500"] * 1000
        outcomes = run(
            fake,
            "streetview",
            tmp_path,
            points,
            progress=progress,
            concurrency=1,
            max_consecutive_failures=3,
        )
        asked = fake.count("/maps/api/streetview/metadata")
    statuses = [o.status for o in outcomes]
    assert all(s.startswith("error:") for s in statuses[:3]), statuses
    assert all(s.startswith("not tried:") for s in statuses[3:]), statuses
    assert "failed 3 times in a row" in statuses[-1]
    assert asked == 3 * 4  # three points, four attempts each; nobody asked after that
    assert any("stops asking" in m for m in progress.messages)
    assert any(m.startswith("Point 0: error:") for m in progress.messages)
    with FakeImageryServices(images) as fake:  # the service is back: the same run resumes
        resumed = run(fake, "streetview", tmp_path, points, concurrency=1)
    assert [o.status for o in resumed] == ["ok"] * 12


def test_a_service_that_hangs_past_every_timeout_costs_a_bounded_time(tmp_path):
    images = grid_images(10)
    points = points_on(images)[:10]
    hanging = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02, timeout=0.3)
    with FakeImageryServices(images) as fake:
        fake.faults["sv-metadata"] = ["timeout"] * 1000
        outcomes = run(
            fake,
            "streetview",
            tmp_path,
            points,
            policy=hanging,
            concurrency=1,
            max_consecutive_failures=2,
        )
        asked = fake.count("/maps/api/streetview/metadata")
    assert asked == 2 * 2
    assert sum(o.status.startswith("not tried:") for o in outcomes) == 8


# -- a grid too large to be of use is refused before the work; filling can be stopped ------------
def test_a_grid_of_millions_of_cells_is_refused_at_once_with_its_size():
    import shapely

    area = shapely.box(0, 0, 2500, 450)  # the reported case: 1 m cells over 2.5 × 0.45 km
    with pytest.raises(MusError, match=r"about 1,1\d\d,\d\d\d cells.*at least 2 m"):
        resample_to_grid([10.0, 2000.0], [10.0, 400.0], [0, 1], 2, 1.0, area=area)
    result = resample_to_grid([10.0, 2000.0], [10.0, 400.0], [0, 1], 2, 50.0, area=area)
    assert (result.label >= 0).all()


def test_filling_a_grid_stops_on_a_cancel():
    import shapely

    class CancelAfter:
        def __init__(self, calls):
            self.calls = calls

        def is_canceled(self):
            self.calls -= 1
            return self.calls < 0

    area = shapely.box(0, 0, 20_000, 20_000)
    progress = CancelAfter(3)
    with pytest.raises(CanceledError):
        resample_to_grid([10.0], [10.0], [0], 1, 40.0, area=area, progress=progress)
    assert progress.calls == -1  # asked once per ring: stopped at the fourth ring


# -- redirects: never followed with a key; a key-less image download follows to its host -------
@pytest.mark.parametrize(
    ("source", "route"),
    [
        ("streetview", "sv-metadata"),
        ("mapillary", "mly-search"),
        ("kartaview", "kv-search"),
        ("panoramax", "pnx-search"),
    ],
)
def test_a_redirect_to_another_host_costs_its_point_and_no_key_goes_there(tmp_path, source, route):
    images = grid_images(3)
    points = points_on(images)[:3]
    with FakeImageryServices(images) as fake:
        fake.faults[route] = ["redirect-elsewhere"]
        outcomes = run(fake, source, tmp_path, points, concurrency=1)
        followed = [r for r in fake.requests if r[0] == "/login"]
    first = outcomes[0]
    assert first.status.startswith(
        "error: 127.0.0.1 redirected the request to another host, localhost (HTTP 302), which "
        "is not followed (no key went there)."
    ), first.status
    assert followed == []  # the login page never saw the request, key or token
    assert [o.status for o in outcomes[1:]] == ["ok"] * 2


def test_a_thumbnail_redirected_to_a_host_name_that_does_not_resolve_is_not_retried(
    tmp_path, monkeypatch
):
    """A name the DNS does not know will not be known on a retry: one attempt, a quick failure
    that says so, the rest of the run fetched. ``.invalid`` never resolves (RFC 6761); the test
    answers for the resolver as a resolver does (EAI_NONAME), so no query leaves the machine."""
    import socket
    import time

    asked = []
    resolve = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if str(host).endswith(".invalid"):
            asked.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    backoff = []
    pause = Http.sleep

    def sleep(self, seconds):
        backoff.append(seconds)
        pause(self, seconds)

    monkeypatch.setattr(Http, "sleep", sleep)
    images = grid_images(2)
    # Retries as a user's run makes them (full jitter up to 0.5 s, 1 s, 2 s, ... per attempt).
    patient = RetryPolicy(attempts=6, base_delay=0.5, max_delay=4.0, timeout=5.0)
    with FakeImageryServices(images) as fake:
        fake.faults["mly-thumb"] = ["redirect-unresolvable"]
        started = time.monotonic()
        points = points_on(images)[:2]
        outcomes = run(fake, "mapillary", tmp_path, points, policy=patient, concurrency=1)
        took = time.monotonic() - started
    assert asked == ["nonexistent.invalid"] and backoff == []  # one attempt, no wait
    status = outcomes[0].status  # a panorama's four views, all from the one thumbnail
    assert status.startswith("error: 4 of 4 files missing (first failure: the host name "), status
    assert "nonexistent.invalid does not resolve (Name or service not known)" in status
    assert "not retried" in status and "127.0.0.1 (HTTP 302) redirected the request" in status
    assert outcomes[0].paths == [] and outcomes[1].status == "ok"
    assert took < 30  # a bound, not a measurement (six attempts slept up to 15.5 s more)


# -- Panoramax answers that are not what a search should be ------------------------------------
@pytest.mark.parametrize(
    ("fault", "first_status"),
    [
        ("stac-error", "error: Panoramax: Parameter bbox is invalid"),
        ("features-not-a-list", "error: Panoramax: an answer that is not a picture search"),
        ("item-without-assets", "no imagery"),
    ],
)
def test_an_odd_panoramax_answer_costs_its_point_only(tmp_path, fault, first_status):
    images = grid_images(3)
    points = points_on(images)[:3]
    with FakeImageryServices(images) as fake:
        fake.faults["pnx-search"] = [fault]
        outcomes = run(fake, "panoramax", tmp_path, points, concurrency=1)
    assert outcomes[0].status.startswith(first_status), outcomes[0].status
    assert [o.status for o in outcomes[1:]] == ["ok"] * 2


@pytest.mark.parametrize("fault", ["empty-image", "html-as-image"])
def test_a_panoramax_picture_that_is_not_an_image_is_that_points_error(tmp_path, fault):
    images = grid_images(2)
    with FakeImageryServices(images) as fake:
        fake.faults["pnx-image"] = [fault]
        outcomes = run(fake, "panoramax", tmp_path, points_on(images)[:2], concurrency=1)
    assert outcomes[0].status.startswith("error:") and outcomes[0].paths == []
    assert outcomes[1].status == "ok"


def test_panoramax_searches_only_the_chosen_dates(tmp_path):
    from datetime import date

    from mus_qgis.engine.imagery.sources.base import DateWindow

    images = grid_images(2)
    images[1].captured = "2023-03-01"
    with FakeImageryServices(images) as fake:
        outcomes = run(
            fake,
            "panoramax",
            tmp_path,
            points_on(images)[:2],
            window=DateWindow(date(2022, 1, 1), None),
        )
        asked = [q.get("datetime") for p, q, _ in fake.requests if p.endswith("/search")]
    assert [o.status for o in outcomes] == ["no imagery", "ok"]
    assert asked == ["2022-01-01T00:00:00Z/.."] * 2


# -- the cache folder ---------------------------------------------------------------------------
def test_a_cache_path_that_is_a_file_is_refused_before_any_request(tmp_path):
    images = grid_images(2)
    cache = tmp_path / "cache.txt"
    cache.write_text("my notes", encoding="utf-8")
    with FakeImageryServices(images) as fake:
        with pytest.raises(MusError, match=r"cache folder .*cache\.txt is a file, not a folder"):
            run(fake, "kartaview", cache, points_on(images)[:2])
        assert fake.requests == []
    assert cache.read_text(encoding="utf-8") == "my notes"


def test_a_read_only_cache_folder_is_refused_and_what_it_holds_kept(tmp_path):
    images = grid_images(2)
    cache = tmp_path / "cache"
    with FakeImageryServices(images) as fake:
        first = run(fake, "kartaview", cache, points_on(images)[:1])
        kept = sorted(p.relative_to(cache) for p in cache.rglob("*"))
        with read_only(cache), pytest.raises(MusError, match="cannot be written to"):
            run(fake, "kartaview", cache, points_on(images)[:2])
    assert first[0].status == "ok"
    assert sorted(p.relative_to(cache) for p in cache.rglob("*")) == kept


def test_unicode_and_spaces_in_the_cache_path_work(tmp_path):
    images = grid_images(2)
    cache = tmp_path / "Città di Roma" / "cache ünïcode"
    with FakeImageryServices(images) as fake:
        outcomes = run(fake, "panoramax", cache, points_on(images)[:2])
    assert [o.status for o in outcomes] == ["ok", "ok"]
    assert all(Path(p).is_file() and "Città di Roma" in p for o in outcomes for p in o.paths)


# -- a fetch closes what it opens ---------------------------------------------------------------
def test_a_fetch_leaves_no_socket_open(tmp_path):
    import gc
    import warnings

    images = grid_images(6)
    gc.collect()  # what earlier tests left is theirs, not this fetch's
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with FakeImageryServices(images) as fake:
            outcomes = run(fake, "mapillary", tmp_path, points_on(images), concurrency=4)
        gc.collect()
    assert all(o.status == "ok" for o in outcomes[:6])
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert unclosed == []


def test_a_service_failing_every_other_request_spends_at_most_the_runs_retry_budget(tmp_path):
    images = grid_images(12)
    points = points_on(images)[:12]
    budget = RetryPolicy(attempts=4, base_delay=0.0, max_delay=0.0, timeout=1.0, run_retry_budget=5)
    with FakeImageryServices(images) as fake:
        # Every other point's lookup fails for good: never two failures in a row.
        fake.faults["kv-search"] = ["500", "500", "500", "500", "", "", "", ""] * 6
        outcomes = run(fake, "kartaview", tmp_path, points, policy=budget, concurrency=1)
        asked = fake.count("/kv/2.0/photo")
    failed = [o for o in outcomes if o.status.startswith("error:")]
    assert failed and all("not tried" not in o.status for o in outcomes)
    assert "spent its 5 retries" in failed[-1].status
    assert asked <= 12 + 5  # one request per point, and the five retries the run allows


def test_a_redirect_on_the_same_host_is_followed(tmp_path):
    images = grid_images(2)
    with FakeImageryServices(images) as fake:
        fake.faults["pnx-search"] = ["redirect-same-host"]
        fake.faults["sv-metadata"] = ["redirect-same-host"]
        outcomes = run(fake, "panoramax", tmp_path / "p", points_on(images)[:2], concurrency=1)
        keyed = run(fake, "streetview", tmp_path / "s", points_on(images)[:2], concurrency=1)
    assert [o.status for o in outcomes + keyed] == ["ok"] * 4


def test_a_damaged_lookup_cache_is_refused_by_name_and_a_damaged_entry_asked_again(tmp_path):
    import sqlite3

    images = grid_images(2)
    with FakeImageryServices(images) as fake:
        run(fake, "kartaview", tmp_path, points_on(images)[:2])
        lookups = tmp_path / "imagery" / "kartaview" / "lookups.sqlite"
        with closing(sqlite3.connect(lookups)) as db, db:
            db.execute("UPDATE lookups SET value = '{\"oops\": 1'")
        asked = fake.count("/kv/2.0/photo")
        again = run(fake, "kartaview", tmp_path, points_on(images)[:2])
        assert [o.status for o in again] == ["ok", "ok"]
        assert fake.count("/kv/2.0/photo") == asked + 2  # both entries asked again
        lookups.write_bytes(b"this is no database" * 100)
        with pytest.raises(MusError, match=r"lookup cache .*lookups\.sqlite is damaged"):
            run(fake, "kartaview", tmp_path, points_on(images)[:2])
    assert all(p.is_file() for p in (tmp_path / "imagery" / "kartaview").rglob("*.jpg"))


def test_an_image_folder_that_cannot_be_changed_costs_its_point_only(tmp_path):
    images = grid_images(2)
    with FakeImageryServices(images) as fake:
        first = run(fake, "kartaview", tmp_path, points_on(images)[:2])
        folder = Path(first[0].paths[0]).parent
        Path(first[0].paths[0]).write_bytes(b"damaged")  # must go, but cannot
        with read_only(folder):
            again = run(fake, "kartaview", tmp_path, points_on(images)[:2])
    assert again[0].status.startswith("error: the cached image folder ")
    assert "cannot be used" in again[0].status
    assert again[1].status == "ok"


def test_a_street_view_signing_secret_that_is_not_base64_is_refused_before_any_request(
    tmp_path,
):
    secret = "not-base64-ü-secret"
    images = grid_images(2)
    with FakeImageryServices(images) as fake:
        settings = FetchSettings("streetview", url=fake.streetview_url)
        credentials = Credentials("AIzaFAKE-good-key-123", secret)
        with pytest.raises(CredentialsError, match="URL-signing secret is not the base64") as e:
            fetch_imagery(
                points_on(images), settings, tmp_path, credentials, http=http_for(credentials)
            )
        assert fake.requests == []
    assert secret not in "".join(traceback.format_exception(e.value))


def test_a_server_trickling_its_answer_is_cut_off_at_the_deadline(tmp_path):
    import time

    images = grid_images(2)
    # Each byte comes in 0.05 s, well within the 0.3 s timeout; the whole answer would take 20 s.
    slow = RetryPolicy(attempts=1, base_delay=0.0, max_delay=0.0, timeout=0.3)
    with FakeImageryServices(images) as fake:
        fake.faults["kv-search"] = ["trickle"]
        started = time.monotonic()
        outcomes = run(fake, "kartaview", tmp_path, points_on(images)[:2], policy=slow)
        took = time.monotonic() - started
    assert outcomes[0].status.startswith("error:") and "TimeoutError" in outcomes[0].status
    assert outcomes[1].status == "ok"
    assert took < 10  # not the 20 s the answer would take (a bound, not a measurement)


def test_a_resolver_that_fails_only_for_now_is_retried_one_that_knows_no_such_name_is_not():
    import socket

    from mus_qgis.engine.imagery.http import _name_not_resolved

    unknown = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    for_now = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    assert _name_not_resolved(ConnectionError("x")) is None
    assert _name_not_resolved(unknown) is unknown
    assert _name_not_resolved(for_now) is None  # retried with the other transient failures
    wrapped = OSError("connection failed")
    wrapped.__cause__ = unknown
    assert _name_not_resolved(wrapped) is unknown
