"""mus:samplestreetcentroids fed what users and hostile files present, through processing.run:
a QgsProcessingException whose message names the input and what to fix, written before any
output exists; or a result, with the log saying what was set aside."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
from qgis import processing
from qgis.core import QgsFeature, QgsGeometry, QgsProcessingException, QgsVectorLayer

from tests.conftest import ROME_OSM, SHARED_DATA, osm_xml
from tests.fakes.osm_services import FakeOsmServices
from tests.qgis.helpers import RecordingFeedback

ALG = "mus:samplestreetcentroids"
STREET = {1: (7.0, 45.0), 2: (7.0013, 45.0), 3: (7.0026, 45.0)}


def _layer(wkts: list[str | None], crs: str = "EPSG:4326") -> QgsVectorLayer:
    layer = QgsVectorLayer(f"Polygon?crs={crs}", "area", "memory")
    features = []
    for wkt in wkts:
        feature = QgsFeature()
        if wkt is not None:
            feature.setGeometry(QgsGeometry.fromWkt(wkt))
        features.append(feature)
    assert layer.dataProvider().addFeatures(features)[0]
    return layer


ROME_WEST = (
    "POLYGON((12.4833 41.8850, 12.4948 41.8850, 12.4948 41.8991, 12.4833 41.8991, 12.4833 41.8850))"
)


class WarningsFeedback(RecordingFeedback):
    """Keeps the warnings too (the engine's warnings reach QGIS as non-fatal errors)."""

    def reportError(self, error, fatalError=False):  # noqa: N803 (QGIS's names)
        self.lines.append(error)
        super().reportError(error, fatalError)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _file(folder: Path, name: str, content: bytes | str) -> str:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return str(path)


def _half(source: Path, folder: Path, name: str) -> str:
    data = source.read_bytes()
    return _file(folder, name, data[: len(data) // 2])


# Each case: parameters made from a temporary folder -> the message's fragments.
ERROR_CASES = {
    "area-null-geometry": (lambda d: {"AREA": _layer([None])}, ["study area layer has no polygon"]),
    "area-empty-geometry": (
        lambda d: {"AREA": _layer(["POLYGON EMPTY"])},
        ["study area layer has no polygon"],
    ),
    "area-invalid-polygon": (
        lambda d: {
            "AREA": _layer(
                ["POLYGON((12.48 41.88, 12.50 41.90, 12.50 41.88, 12.48 41.90, 12.48 41.88))"]
            )
        },
        ["Feature 1 of the study area layer is an invalid polygon", "Fix geometries"],
    ),
    "area-metres-labelled-degrees": (
        lambda d: {
            "AREA": _layer(
                ["POLYGON((291000 4640000, 292000 4640000, 292000 4641000, 291000 4640000))"]
            )
        },
        ["not in longitude/latitude (EPSG:4326) degrees"],
    ),
    "crs-geographic": (
        lambda d: {"OSM_FILE": str(ROME_OSM), "PROJECTED_CRS": "EPSG:4326"},
        ["geographic CRS in degrees", "leave it empty"],
    ),
    "crs-in-feet": (
        lambda d: {"OSM_FILE": str(ROME_OSM), "PROJECTED_CRS": "EPSG:2263"},
        ["measures in US survey foot", "choose a CRS in metres"],
    ),
    "place-unknown": (
        lambda d: {"PLACE": "Atlantide sommersa"},
        ["Nominatim found no place named 'Atlantide sommersa'"],
    ),
    "place-nominatim-offline": (
        lambda d: {
            "PLACE": "Rione Monti, Rome, Italy",
            "NOMINATIM_URL": f"http://127.0.0.1:{_closed_port()}/",
        },
        ["Could not reach Nominatim to find 'Rione Monti, Rome, Italy'"],
    ),
    "osm-empty": (
        lambda d: {"OSM_FILE": _file(d, "vuoto.osm", b"")},
        ["vuoto.osm is empty (0 bytes)"],
    ),
    "pbf-truncated": (
        lambda d: {
            "OSM_FILE": _half(
                SHARED_DATA / "osm" / "rome_castro_pretorio.osm.pbf", d, "cut.osm.pbf"
            )
        },
        ["cut.osm.pbf could not be read as OpenStreetMap PBF", "download it again"],
    ),
    "osm-truncated": (
        lambda d: {"OSM_FILE": _half(ROME_OSM, d, "roma a metà.osm")},
        ["roma a metà.osm could not be read as OpenStreetMap XML", "cut short"],
    ),
    "pbf-garbage": (
        lambda d: {"OSM_FILE": _file(d, "rumore.pbf", bytes(range(256)) * 16)},
        ["rumore.pbf is not an OpenStreetMap file", "OSM XML", "OSM PBF"],
    ),
    "osm-not-osm-xml": (
        lambda d: {"OSM_FILE": _file(d, "map.osm", "<?xml version='1.0'?><kml><Document/></kml>")},
        ["map.osm is XML but not OpenStreetMap", "<kml>"],
    ),
    "osm-out-of-range": (
        lambda d: {
            "OSM_FILE": _file(
                d,
                "rotto.osm",
                osm_xml(
                    {**STREET, 2: (7.0013, 91.5)}, [(9, [1, 2, 3], {"highway": "residential"})]
                ),
            )
        },
        ["rotto.osm: node 2 has latitude 91.5", "outside -90..90"],
    ),
    "merge-negative": (
        lambda d: {"OSM_FILE": str(ROME_OSM), "MERGE_DISTANCE": -5},
        ["(MERGE_DISTANCE) is -5", "give 0 (one point per segment) to 10,000 metres"],
    ),
    "merge-absurd": (
        lambda d: {"OSM_FILE": str(ROME_OSM), "MERGE_DISTANCE": 1e9},
        ["(MERGE_DISTANCE) is 1000000000.0", "give 0 (one point per segment) to 10,000"],
    ),
    "no-class": (
        lambda d: {"OSM_FILE": str(ROME_OSM), "CLASSES": []},
        ["(CLASSES) is []: choose at least one street class"],
    ),
    "no-streets-of-class-in-area": (
        lambda d: {
            "OSM_FILE": str(ROME_OSM),
            "CLASSES": [0],  # primary: the file has some, but not in the east of the extract
            "EXTENT": "12.5040,12.5063,41.8850,41.8870 [EPSG:4326]",
        },
        ["no streets of the classes primary", "choose other street classes or another study area"],
    ),
    "output-under-a-file": (
        lambda d: {"OSM_FILE": str(ROME_OSM), "OUTPUT": str(d / "nota.txt" / "punti.gpkg")},
        ["nota.txt is a file", "choose another place for the output"],
    ),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_bad_input_is_a_clear_error_and_writes_nothing(mus_provider, tmp_path, case):
    make, fragments = ERROR_CASES[case]
    (tmp_path / "nota.txt").write_text("mine", encoding="utf-8")
    parameters = make(tmp_path)
    output = parameters.pop("OUTPUT", str(tmp_path / "out.gpkg"))
    fake = FakeOsmServices().start()
    try:
        services = {"OVERPASS_URL": fake.overpass_url, "NOMINATIM_URL": fake.nominatim_url}
        with pytest.raises(QgsProcessingException) as raised:
            processing.run(ALG, {**services, **parameters, "OUTPUT": output})
    finally:
        fake.stop()
    message = str(raised.value)
    for fragment in fragments:
        assert fragment in message, message
    assert not Path(output).exists()
    if case == "output-under-a-file":
        assert not any(path == "POST" for path, *_ in fake.requests)


def test_an_osm_file_renamed_txt_and_unicode_paths_work(mus_provider, tmp_path):
    """An .osm saved as .txt, in and to folders with accents and spaces: read by its content."""
    renamed = tmp_path / "Città di prova" / "strade del centro.txt"
    renamed.parent.mkdir()
    shutil.copy(ROME_OSM, renamed)
    output = tmp_path / "uscita è ü" / "punti scelti.gpkg"  # a folder made for the output
    result = processing.run(ALG, {"OSM_FILE": str(renamed), "OUTPUT": str(output)})
    assert (result["SEGMENTS_SELECTED"], result["AREAS_SAMPLED"], result["LOCATIONS"]) == (
        417,
        27,
        372,
    )
    assert QgsVectorLayer(str(output), "out", "ogr").featureCount() == 372


def test_a_clipped_osm_keeps_what_is_inside_and_logs_what_was_cut(mus_provider, tmp_path):
    nodes = {**STREET, 5: (7.0, 45.003), 6: (7.0013, 45.003)}
    ways = [
        (100, [1, 2, 3, 4], {"highway": "residential", "name": "Via tagliata"}),
        (200, [5, 6], {"highway": "residential", "name": "Via intera"}),
        (300, [7, 8], {"highway": "residential", "name": "Via fuori"}),
    ]
    path = _file(tmp_path, "ritaglio.osm", osm_xml(nodes, ways))
    feedback = WarningsFeedback()
    result = processing.run(ALG, {"OSM_FILE": path, "OUTPUT": "memory:"}, feedback=feedback)
    assert sorted(f["name"] for f in result["OUTPUT"].getFeatures()) == [
        "Via intera",
        "Via tagliata",
    ]
    log = "\n".join(feedback.lines)
    assert (
        "ritaglio.osm is clipped: 2 streets reference nodes the file does not hold; 1 keep their "
        "parts inside the file, 1 with fewer than two nodes inside are left out" in log
    )


def test_a_null_feature_beside_a_good_polygon_is_skipped(mus_provider):
    result = processing.run(
        ALG, {"OSM_FILE": str(ROME_OSM), "AREA": _layer([None, ROME_WEST]), "OUTPUT": "memory:"}
    )
    assert 0 < result["LOCATIONS"] < 372


def test_zero_merge_distance_keeps_every_segment_and_square(mus_provider):
    result = processing.run(
        ALG, {"OSM_FILE": str(ROME_OSM), "MERGE_DISTANCE": 0, "OUTPUT": "memory:"}
    )
    assert result["LOCATIONS"] == 417 + 27
