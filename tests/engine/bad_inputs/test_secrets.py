"""No secret at rest or in a message: every source runs with a key (with and without a line
ending), fails in every way the fake services know, and the key is then searched for in the
cache, the lookups, the statuses and every message."""

from __future__ import annotations

import traceback
from contextlib import closing
from pathlib import Path

import pytest

from mus_qgis.engine.imagery.fetch import FetchSettings, fetch_imagery
from mus_qgis.engine.imagery.sources.base import Credentials, ViewPlan
from mus_qgis.shared.errors import CredentialsError
from mus_qgis.shared.progress import LoggingProgress
from tests.engine.helpers import http_for, points_on
from tests.fakes.imagery_services import GOOD_KEY, GOOD_TOKEN, FakeImageryServices, grid_images

SIGNING_SECRET = "c2lnbmluZy1zZWNyZXQtZm9yLXRlc3Rz"
# Every answer the fakes can give a route, each served once across the points of a run.
FAULTS = {
    "streetview": {
        "sv-metadata": ["500", "badjson", "truncated", "redirect-elsewhere", "ok-without-pano-id"],
        "sv-image": ["empty-image", "html-as-image", "placeholder", "redirect-elsewhere", "503"],
    },
    "mapillary": {
        "mly-search": ["code4", "error-as-string", "badjson", "redirect-elsewhere", "500"],
        "mly-entity": ["redirect-elsewhere", "truncated"],
        "mly-thumb": ["expired", "empty-image", "html-as-image"],
    },
    "kartaview": {"kv-search": ["500", "badjson", "redirect-elsewhere"]},
    "panoramax": {
        "pnx-search": ["stac-error", "features-not-a-list", "redirect-elsewhere", "badjson"],
        "pnx-image": ["empty-image", "html-as-image"],
    },
}
KEYS = {
    "streetview": (GOOD_KEY, SIGNING_SECRET),
    "mapillary": (GOOD_TOKEN, ""),
    # Key-less sources are given one too: it must not leak where it is not even used.
    "kartaview": ("kv-unused-key-0987", ""),
    "panoramax": ("pnx-unused-key-6543", ""),
}


def every_text_under(folder: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


def assert_nowhere(secrets, *texts) -> None:
    for secret in filter(None, secrets):
        for text in texts:
            haystack = text if isinstance(text, bytes) else str(text).encode()
            assert secret.encode() not in haystack, secret[:6]


@pytest.mark.parametrize("ending", ["", "\r\n", "\n"], ids=["plain", "crlf", "lf"])
@pytest.mark.parametrize("source", list(FAULTS))
def test_a_key_is_nowhere_after_every_failure(tmp_path, source, ending):
    key, secret = KEYS[source]
    credentials = Credentials(key + ending, secret + ending if secret else "")
    images = grid_images(12)
    points = points_on(images)[:12]
    progress = LoggingProgress()
    settings = FetchSettings(
        source,
        plan=ViewPlan(count=2),
        concurrency=1,
        max_consecutive_failures=0,  # every point is asked, so every fault is served
    )
    with FakeImageryServices(images) as fake:
        settings.url = getattr(fake, f"{source}_url")
        for route, faults in FAULTS[source].items():
            fake.faults[route] = list(faults)
        outcomes = fetch_imagery(
            points, settings, tmp_path, credentials, progress, http=http_for(credentials)
        )
        served = {route: fake.faults[route] for route in FAULTS[source]}
        sent_to_elsewhere = [r for r in fake.requests if r[0] == "/login"]
    assert all(not left for left in served.values()), served  # every fault was met
    assert sent_to_elsewhere == []
    statuses = [o.status for o in outcomes]
    assert any(s.startswith("error:") for s in statuses) and "ok" in statuses
    assert_nowhere(
        [key, secret],
        every_text_under(tmp_path),
        "\n".join(progress.messages),
        "\n".join(statuses),
        repr(outcomes),
    )


@pytest.mark.parametrize("source", ["streetview", "mapillary"])
def test_a_refused_key_is_nowhere_in_the_error(tmp_path, source):
    key = "AIzaWRONG-but-secret-1234" if source == "streetview" else "MLY|999|wrong-secret"
    credentials = Credentials(key + "\r\n", SIGNING_SECRET if source == "streetview" else "")
    images = grid_images(2)
    with FakeImageryServices(images) as fake:
        settings = FetchSettings(source, url=getattr(fake, f"{source}_url"))
        with pytest.raises(CredentialsError) as raised:
            fetch_imagery(
                points_on(images), settings, tmp_path, credentials, http=http_for(credentials)
            )
    shown = "".join(traceback.format_exception(raised.value))
    assert "refused" in shown or "invalid" in shown.lower()
    assert_nowhere([key, SIGNING_SECRET], shown, every_text_under(tmp_path))


def test_an_unreachable_service_names_its_address_but_not_the_key(tmp_path):
    credentials = Credentials(GOOD_KEY, SIGNING_SECRET)
    from mus_qgis.engine.imagery.http import RetryPolicy

    settings = FetchSettings("streetview", url="http://127.0.0.1:9/maps/api/streetview")
    progress = LoggingProgress()
    outcomes = fetch_imagery(
        points_on(grid_images(2)),
        settings,
        tmp_path,
        credentials,
        progress,
        http=http_for(credentials, RetryPolicy(attempts=2, base_delay=0.01, timeout=0.5)),
    )
    assert outcomes[0].status.startswith("error:") and "127.0.0.1:9" in outcomes[0].status
    assert "key=***" in outcomes[0].status
    assert_nowhere([GOOD_KEY, SIGNING_SECRET], "\n".join(progress.messages), repr(outcomes))


def test_the_key_never_reaches_a_lookup_cache_entry(tmp_path):
    import sqlite3

    images = grid_images(3)
    credentials = Credentials(GOOD_TOKEN)
    with FakeImageryServices(images) as fake:
        settings = FetchSettings("mapillary", url=fake.mapillary_url)
        fetch_imagery(points_on(images), settings, tmp_path, credentials, http=http_for())
    with closing(sqlite3.connect(tmp_path / "imagery" / "mapillary" / "lookups.sqlite")) as db, db:
        rows = db.execute("SELECT key, value FROM lookups").fetchall()
    assert rows and all(GOOD_TOKEN not in key + value for key, value in rows)


def test_an_error_of_our_own_naming_a_url_is_redacted():
    from mus_qgis.engine.imagery.http import Http

    http = Http(secrets=[GOOD_KEY, SIGNING_SECRET])
    text = http.redact(
        f"https://maps.example/x?key={GOOD_KEY}&signature=abc123&other=1 ({SIGNING_SECRET})"
    )
    assert GOOD_KEY not in text and SIGNING_SECRET not in text and "abc123" not in text
