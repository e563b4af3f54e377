"""What the dialogs and the toolbox say, where a string is a behaviour."""

from __future__ import annotations

from qgis.core import QgsApplication


def mus_algorithms():
    return [
        a for a in QgsApplication.processingRegistry().algorithms() if a.provider().id() == "mus"
    ]


def test_every_algorithm_has_a_one_sentence_tooltip(mus_provider):
    for algorithm in mus_algorithms():
        if algorithm.id() == "mus:pipeline":
            continue  # a model: its description is its help
        short = algorithm.shortDescription()
        assert short and short.endswith(".") and short.count(". ") == 0, algorithm.id()


def test_no_label_says_optional_where_qgis_already_does(mus_provider):
    for algorithm in mus_algorithms():
        for definition in algorithm.parameterDefinitions():
            assert "optional" not in definition.description().lower(), (
                algorithm.id(),
                definition.name(),
            )


def test_the_study_area_inputs_say_one_of_them_is_needed(mus_provider):
    algorithm = QgsApplication.processingRegistry().algorithmById("mus:samplestreetcentroids")
    place, polygon, extent, osm_file = (
        algorithm.parameterDefinition(name).description()
        for name in ("PLACE", "AREA", "EXTENT", "OSM_FILE")
    )
    assert place.startswith("Study area: ")
    assert all(text.startswith("… or ") for text in (polygon, extent, osm_file))
    help_text = algorithm.parameterDefinition("PLACE").help()  # the tooltip, and the Help page
    assert help_text.startswith("Give one of these four")


def test_distances_show_whole_metres(mus_provider):
    registry = QgsApplication.processingRegistry()
    for algorithm_id, name in (
        ("mus:samplestreetcentroids", "MERGE_DISTANCE"),
        ("mus:fetchpanoramas", "RADIUS"),
        ("mus:resampletogrid", "CELL_SIZE"),
    ):
        definition = registry.algorithmById(algorithm_id).parameterDefinition(name)
        assert definition.metadata()["widget_wrapper"]["decimals"] == 0, algorithm_id


def test_rank_labels_has_no_target_unless_one_is_given(mus_provider):
    algorithm = QgsApplication.processingRegistry().algorithmById("mus:ranklabels")
    assert not algorithm.parameterDefinition("TARGETS").defaultValue()


def test_reading_dialogs_open_on_a_layer_they_can_read(mus_provider):
    """The first layer of the project may be anything (streets, a basemap's points): each
    reading's input defaults to the first layer that has the fields it reads."""
    from qgis.core import QgsApplication, QgsProject, QgsVectorLayer

    project = QgsProject.instance()
    streets = QgsVectorLayer("Point?crs=EPSG:4326&field=name:string", "streets", "memory")
    classified = QgsVectorLayer(
        "Point?crs=EPSG:4326&field=label_1:string&field=prob_1:double", "classified", "memory"
    )
    grid = QgsVectorLayer(
        "Polygon?crs=EPSG:3857&field=label:string&field=share:double", "grid", "memory"
    )
    assert len(project.addMapLayers([streets, classified, grid])) == 3
    try:
        registry = QgsApplication.processingRegistry()
        expected = {
            "mus:labelclusters": classified.id(),
            "mus:resampletogrid": classified.id(),
            "mus:compareurbanatlas": classified.id(),
            "mus:trainprobe": classified.id(),
            "mus:labelboundaries": grid.id(),
        }
        for algorithm_id, layer_id in expected.items():
            algorithm = registry.createAlgorithmById(algorithm_id)
            assert algorithm.parameterDefinition("INPUT").defaultValue() == layer_id, algorithm_id
    finally:
        project.removeAllMapLayers()
    # With no such layer, no default: the dialog asks.
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("mus:labelclusters")
    assert algorithm.parameterDefinition("INPUT").defaultValue() is None


def test_fetch_defaults_to_a_source_that_needs_no_key_and_names_those_that_do(mus_provider):
    from mus_qgis.engine.imagery.sources import imagery_sources

    definition = QgsApplication.processingRegistry().algorithmById("mus:fetchpanoramas")
    source = definition.parameterDefinition("SOURCE")
    options, default = source.options(), source.defaultValue()
    # Several sources may be chosen: the default is one, which needs no key.
    assert isinstance(default, list) and len(default) == 1
    chosen = list(imagery_sources().values())[default[0]]
    assert not chosen.needs_key and chosen.name != "local"  # and needs no folder either
    assert [option.endswith("(needs a key)") for option in options] == [
        cls.needs_key for cls in imagery_sources().values()
    ]
    assert "Mapillary (needs a key)" in options and "Panoramax" in options
