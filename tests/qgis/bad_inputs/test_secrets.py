"""Keys live only in QGIS's authentication database: after runs that fail in every way the fakes
know, with keys that end in a line break, the key is in no file of the QGIS profile (the
authentication database holds it encrypted), the project, any output, the cache, the
Processing log or QGIS's message log."""

from __future__ import annotations

from pathlib import Path

import pytest
from qgis import processing
from qgis.core import QgsApplication, QgsProject, QgsVectorLayer

from tests.fakes.imagery_services import GOOD_KEY, GOOD_TOKEN, FakeImageryServices, grid_images
from tests.qgis.helpers import RecordingFeedback, auth_config, point_layer

SIGNING_SECRET = "c2VjcmV0LWluLXRoZS1wcm9maWxl"
ROUTE_FAULTS = {
    0: {
        "sv-metadata": ["500", "badjson", "redirect-elsewhere", "ok-without-pano-id"],
        "sv-image": ["empty-image", "html-as-image", "placeholder", "redirect-elsewhere"],
    },
    1: {
        "mly-search": ["code4", "error-as-string", "redirect-elsewhere", "500"],
        "mly-thumb": ["expired", "empty-image", "html-as-image"],
    },
}


class Messages:
    """Everything QGIS's message log receives while it is held."""

    def __init__(self):
        self.lines: list[str] = []

    def __enter__(self):
        QgsApplication.messageLog().messageReceived.connect(self.received)
        return self

    def received(self, message, tag, level):
        self.lines.append(f"{tag}: {message}")

    def __exit__(self, *exc):
        QgsApplication.messageLog().messageReceived.disconnect(self.received)


def every_byte_under(folder: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize(("source", "key"), [(0, GOOD_KEY), (1, GOOD_TOKEN)])
@pytest.mark.parametrize("ending", ["\r\n", ""], ids=["crlf", "plain"])
def test_no_key_at_rest_after_every_failure(mus_provider, tmp_path, source, key, ending):
    secret = SIGNING_SECRET if source == 0 else ""
    auth_id = auth_config(key + ending, secret + ending if secret else "")
    images = grid_images(10)
    layer = point_layer([(im.lon + 4e-5, im.lat) for im in images])
    output = tmp_path / "out" / "fetched.gpkg"
    cache = tmp_path / "cache"
    feedback = RecordingFeedback()
    with FakeImageryServices(images) as fake, Messages() as log:
        for route, faults in ROUTE_FAULTS[source].items():
            fake.faults[route] = list(faults)
        url = fake.streetview_url if source == 0 else fake.mapillary_url
        result = processing.run(
            "mus:fetchpanoramas",
            {
                "INPUT": layer,
                "SOURCE": source,
                "AUTH": auth_id,
                "SERVICE_URL": url,
                "CACHE_FOLDER": str(cache),
                "VIEWS": 3,  # one view: the faults spread over more points
                "CONCURRENCY": 1,
                "OUTPUT": str(output),
            },
            feedback=feedback,
        )
        assert all(not fake.faults[route] for route in ROUTE_FAULTS[source])
    fetched = QgsVectorLayer(str(output), "fetched", "ogr")
    statuses = [row["fetch_status"] for row in fetched.getFeatures()]
    assert result["WITH_IMAGERY"] >= 1 and any(s.startswith("error:") for s in statuses)
    project_file = tmp_path / "study.qgz"
    project = QgsProject()
    assert project.addMapLayer(fetched)
    assert project.write(str(project_file))
    QgsApplication.authManager()  # the profile's authentication database is written by now
    profile = Path(QgsApplication.qgisSettingsDirPath())
    assert (profile / "qgis-auth.db").is_file()  # it is there, and holds the key encrypted
    places = {
        "profile": every_byte_under(profile),
        "project": project_file.read_bytes(),
        "outputs": every_byte_under(output.parent),
        "cache": every_byte_under(cache),
        "processing log": "\n".join(feedback.lines + feedback.errors).encode(),
        "message log": "\n".join(log.lines).encode(),
    }
    for what in filter(None, (key, secret)):
        for place, text in places.items():
            assert what.encode() not in text, f"{what[:6]}… in the {place}"
