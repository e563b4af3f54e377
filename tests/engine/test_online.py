"""The online path (Nominatim + Overpass through osmnx) against fake servers on 127.0.0.1."""

from __future__ import annotations

import pytest
from shapely.geometry import box

from mus_qgis.engine.streets.centroids import StudyArea, sample_street_centroids
from mus_qgis.engine.streets.osm_source import NetworkServices
from mus_qgis.shared.errors import DownloadError, StudyAreaError
from tests.conftest import ROME_OSM
from tests.fakes.osm_services import KNOWN_PLACE, ROME_BBOX, FakeOsmServices


@pytest.fixture
def fake():
    server = FakeOsmServices().start()
    yield server
    server.stop()


def _services(fake, tmp_path, **extra) -> NetworkServices:
    return NetworkServices(
        cache_dir=tmp_path / "cache",
        user_agent="mus_qgis-tests/0.1",
        overpass_url=fake.overpass_url,
        nominatim_url=fake.nominatim_url,
        timeout_s=10,
        **extra,
    )


def test_place_name_gives_the_same_streets_as_the_local_file(fake, tmp_path):
    online = sample_street_centroids(
        StudyArea(place=KNOWN_PLACE), services=_services(fake, tmp_path)
    )
    offline = sample_street_centroids(StudyArea(osm_file=ROME_OSM, polygon=box(*ROME_BBOX)))
    assert online.segments_selected == offline.segments_selected > 300
    assert online.segments_excluded == offline.segments_excluded
    assert online.locations == offline.locations
    paths = [path for _, path, _ in fake.requests]
    assert "/nominatim/search" in paths and "/api/interpreter" in paths


def test_requests_carry_the_user_agent_and_are_cached(fake, tmp_path):
    services = _services(fake, tmp_path)
    polygon = box(*ROME_BBOX)
    first = sample_street_centroids(StudyArea(polygon=polygon), services=services)
    agents = {headers.get("User-Agent") for _, _, headers in fake.requests}
    assert agents == {"mus_qgis-tests/0.1"}
    assert any((tmp_path / "cache").iterdir())
    fake.stop()  # a second run of the same study asks no server
    second = sample_street_centroids(StudyArea(polygon=polygon), services=services)
    assert second.locations == first.locations


def test_unknown_place_is_a_clear_error(fake, tmp_path):
    with pytest.raises(StudyAreaError, match="no place named 'Atlantis'"):
        sample_street_centroids(StudyArea(place="Atlantis"), services=_services(fake, tmp_path))


def test_overpass_server_error_is_a_download_error(fake, tmp_path):
    fake.overpass_status = 500
    with pytest.raises(DownloadError, match="Overpass"):
        sample_street_centroids(
            StudyArea(polygon=box(*ROME_BBOX)), services=_services(fake, tmp_path)
        )


def test_overpass_non_json_answer_is_a_download_error(fake, tmp_path):
    fake.overpass_body = b"<html>not json</html>"
    with pytest.raises((DownloadError, StudyAreaError)):
        sample_street_centroids(
            StudyArea(polygon=box(*ROME_BBOX)), services=_services(fake, tmp_path)
        )


def test_unreachable_server_is_a_download_error(fake, tmp_path):
    services = _services(fake, tmp_path)
    fake.stop()
    with pytest.raises(DownloadError, match="Could not"):
        sample_street_centroids(StudyArea(polygon=box(*ROME_BBOX)), services=services)


def test_an_area_without_streets(fake, tmp_path):
    fake.overpass_body = b'{"version": 0.6, "elements": []}'
    with pytest.raises(StudyAreaError, match="no streets"):
        sample_street_centroids(
            StudyArea(polygon=box(*ROME_BBOX)), services=_services(fake, tmp_path)
        )
