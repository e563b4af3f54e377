"""The dreams' schemas: dream_streets and mainstream_image take and give them, as plain JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, fields

import pytest

from mus_qgis.engine.jobs import registered
from mus_qgis.shared.errors import MusError
from mus_qgis.shared.schemas import dreams as dreams_schemas
from mus_qgis.shared.schemas.clip import LabelSetChoice, ModelChoice, ViewChoice

METADATA = {
    "plugin_version": "1.4.0",
    "created_utc": "2026-01-05T10:00:00+00:00",
    "dream_model": "stabilityai/sd-turbo",
    "dream_model_revision": "b261bac6fd2cf515557d5d0707481eafa0485ec2",
    "dream_device": "cpu",
    "dream_precision": "float32",
    "dream_prompt": "a street in {label}",
    "clip": {"model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k", "views": 4},
}


def carried(schema):
    """As the worker's protocol carries it."""
    return json.loads(json.dumps(schema.to_dict()))


@pytest.mark.parametrize(
    ("name", "params", "result"),
    [
        ("dream_streets", dreams_schemas.DreamStreetsParams, dreams_schemas.DreamStreetsResult),
        (
            "mainstream_image",
            dreams_schemas.MainstreamImageParams,
            dreams_schemas.MainstreamImageResult,
        ),
    ],
)
def test_the_dream_jobs_declare_their_schemas(name, params, result):
    run = registered()[name]
    assert (run.params, run.result) == (params, result)


def test_dream_streets_params_and_result_survive_the_pipe():
    params = dreams_schemas.DreamStreetsParams(
        locations="/tmp/locations.json",
        settings=dreams_schemas.DreamSettingsChoice(
            prompt="a street in {label}", strength=0.6, views="all"
        ),
        dream_model=dreams_schemas.DreamModelChoice(
            model="/models/tiny", revision="main", device="cpu"
        ),
        label_set=LabelSetChoice(builtin="urban_atlas_2018", templates=["a photo of {label}"]),
        model=ModelChoice(checkpoint="/models/clip.pt", device="cpu"),
        view=ViewChoice(count=6, fov=60.0),
        cache_dir="/tmp/cache",
        output="/tmp/out.json",
    )
    back = dreams_schemas.DreamStreetsParams.from_dict(carried(params))
    assert back == params
    assert isinstance(back.settings, dreams_schemas.DreamSettingsChoice) and isinstance(
        back.view, ViewChoice
    )
    result = dreams_schemas.DreamStreetsResult(
        output="/tmp/out.json",
        counts=dreams_schemas.DreamStreetsCounts(
            generated=2, cached=1, locations=4, dreamed=3, seconds=[1.5, 2]
        ),
        metadata={**METADATA, "dream_strength": 0.6, "dream_views": "all"},
    )
    back = dreams_schemas.DreamStreetsResult.from_dict(carried(result))
    assert back == result and back.counts.dreamed == 3


def test_mainstream_image_params_and_result_survive_the_pipe():
    params = dreams_schemas.MainstreamImageParams(
        locations="/tmp/locations.json",
        cities=["Rome", "Paris"],
        template="a street in {city}",
        images_per_city=8,
        settings=dreams_schemas.DreamSettingsChoice(steps=1, size=256, seed=3),
        dream_model=dreams_schemas.DreamModelChoice(),
        model=ModelChoice(),
        view=ViewChoice(centre_crop=True),
        cache_dir="/tmp/cache",
        output="/tmp/out.json",
        report="/tmp/report.html",
    )
    assert dreams_schemas.MainstreamImageParams.from_dict(carried(params)) == params
    result = dreams_schemas.MainstreamImageResult(
        output="/tmp/out.json",
        cities=["Rome", "Paris"],
        prompts=["a street in Rome", "a street in Paris"],
        gallery=[["/c/rome-1.png", "/c/rome-2.png"], ["/c/paris-1.png", "/c/paris-2.png"]],
        counts=dreams_schemas.GalleryCounts(generated=2, cached=2),
        metadata={**METADATA, "cities": ["Rome", "Paris"], "images_per_city": 2},
        report="/tmp/report.html",
    )
    back = dreams_schemas.MainstreamImageResult.from_dict(carried(result))
    assert back == result and back.counts == dreams_schemas.GalleryCounts(2, 2)


def test_a_dream_job_without_its_models_is_refused_by_name():
    incomplete = {"locations": "l", "cache_dir": "c", "output": "o", "settings": {}}
    with pytest.raises(MusError, match="DreamStreetsParams lacks dream_model, label_set, model"):
        dreams_schemas.DreamStreetsParams.from_dict(incomplete)
    with pytest.raises(MusError, match="DreamSettingsChoice has no field negative_prompt"):
        dreams_schemas.DreamSettingsChoice.from_dict({"negative_prompt": "cars"})


def test_the_dream_choices_mirror_the_engines_records():
    """Each choice makes its engine record field for field, with the same defaults."""
    from mus_qgis.engine.dreams.generate import DreamSettings
    from mus_qgis.engine.dreams.pipeline import DreamModelSpec

    assert dreams_schemas.DreamSettingsChoice().to_dict() == asdict(DreamSettings())
    assert dreams_schemas.DreamModelChoice().to_dict() == asdict(DreamModelSpec())
    assert [f.name for f in fields(dreams_schemas.DreamSettingsChoice)] == [
        f.name for f in fields(DreamSettings)
    ]
    chosen = dreams_schemas.DreamSettingsChoice(
        prompt="a street in {label}", strength=0.25, steps=8, size=64
    )
    assert DreamSettings(**chosen.to_dict()) == DreamSettings(
        "a street in {label}", 0.25, 8, 0.0, 64
    )
