"""Dream streets and the mainstream image with a tiny random-weight diffusion pipeline.

The pipeline is built from small configs, saved with save_pretrained and loaded as a model
folder (engine/dreams/tiny.py); its pictures are noise, which is all these tests need.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mus_qgis.engine.clip.classify import classify_locations
from mus_qgis.engine.clip.embedding import Location
from mus_qgis.engine.dreams.generate import DreamSettings
from mus_qgis.engine.dreams.pipeline import DreamModelSpec
from mus_qgis.engine.dreams.streets import NO_LABEL, DreamLocation, dream_streets
from mus_qgis.engine.imagery.panorama import ViewSetting
from mus_qgis.shared.errors import ModelError, SettingError
from mus_qgis.shared.labels import builtin_label_set
from tests.conftest import AREZZO_PHOTOS, PANORAMAS

SETTINGS = DreamSettings(prompt="a street in {label}", strength=0.5, steps=2, size=64, seed=7)
PHOTOS = [DreamLocation((str(path),), label="Rome") for path in AREZZO_PHOTOS[:2]]
LABELS = builtin_label_set("urban_atlas_2018")


def dream(locations, spec, folder, cache, settings=SETTINGS, views=None):
    return dream_streets(
        locations,
        settings,
        DreamModelSpec(str(folder), device="cpu"),
        LABELS,
        spec,
        views or ViewSetting(),
        cache,
    )


@pytest.fixture(scope="module")
def first_run(tiny_diffusion, tiny_spec, tmp_path_factory):
    cache = tmp_path_factory.mktemp("dream-cache")
    return cache, dream(PHOTOS, tiny_spec, tiny_diffusion, cache)


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_dreams_are_made_once_and_a_seed_gives_the_same_pixels(
    first_run, tiny_diffusion, tiny_spec, tmp_path
):
    cache, run = first_run
    assert run.status == ["ok", "ok"]
    assert run.counts["generated"] == 2 and run.counts["cached"] == 0
    assert all(len(paths) == 1 and paths[0].endswith(".png") for paths in run.dream_paths)
    assert run.metadata["dream_model_revision"].startswith("local-")
    again = dream(PHOTOS, tiny_spec, tiny_diffusion, cache)
    assert again.counts["generated"] == 0 and again.counts["cached"] == 2
    assert again.dream_paths == run.dream_paths

    fresh = dream(PHOTOS, tiny_spec, tiny_diffusion, tmp_path / "same-seed")
    assert fresh.counts["generated"] == 2
    for ours, theirs in zip(run.dream_paths, fresh.dream_paths, strict=True):
        assert np.array_equal(pixels(ours[0]), pixels(theirs[0]))
    reseeded = DreamSettings(**{**vars(SETTINGS), "seed": 8})
    other = dream(PHOTOS[:1], tiny_spec, tiny_diffusion, tmp_path / "other-seed", reseeded)
    assert not np.array_equal(pixels(run.dream_paths[0][0]), pixels(other.dream_paths[0][0]))
    # The two locations' seeds differ: each comes from its own image's digest.
    assert run.seeds[0] != run.seeds[1]


def test_the_readings_of_dreams_are_the_engines_readings_of_their_files(
    first_run, tiny_spec, tmp_path
):
    cache, run = first_run
    files = [Location((paths[0],)) for paths in run.dream_paths]
    reading = classify_locations(files, LABELS, tiny_spec, ViewSetting(), 1, tmp_path / "other")
    for row in range(len(files)):
        assert run.dream_label[row] == LABELS.labels[reading.scores.top_index[row, 0]].text
        assert run.dream_score[row] == pytest.approx(float(reading.scores.cosine[row, 0]), abs=1e-6)
    real = classify_locations(
        [Location(loc.paths) for loc in PHOTOS], LABELS, tiny_spec, ViewSetting(), 1, cache
    )
    cosine = float(np.dot(real.embeddings.vectors[0], reading.embeddings.vectors[0]))
    assert run.real_dream_cosine[0] == pytest.approx(cosine, abs=1e-5)
    assert run.label_changed[0] == (run.real_label[0] != run.dream_label[0])
    assert run.drift[0] == pytest.approx(run.dream_to_prompt[0] - run.real_to_prompt[0])
    assert run.metadata["dream_prompt"] == "a street in {label}"


def test_every_view_of_a_panorama_is_dreamed(tiny_diffusion, tiny_spec, first_run):
    cache, _ = first_run
    settings = DreamSettings(**{**vars(SETTINGS), "views": "all", "prompt": "a street in Rome"})
    run = dream([DreamLocation((str(PANORAMAS[0]),))], tiny_spec, tiny_diffusion, cache, settings)
    assert run.status == ["ok"] and len(run.dream_paths[0]) == 4
    assert len(set(run.seeds[0])) == 4


def test_locations_without_imagery_or_label_keep_their_row(tiny_diffusion, tiny_spec, first_run):
    cache, _ = first_run
    locations = [
        DreamLocation(()),
        DreamLocation((str(AREZZO_PHOTOS[0]),), label=None),
        DreamLocation(("/nowhere/photo.jpg",), label="Rome"),
        PHOTOS[0],
    ]
    run = dream(locations, tiny_spec, tiny_diffusion, cache)
    assert run.status[0] == "no image"
    assert run.status[1] == NO_LABEL
    assert run.status[2] == "error: image /nowhere/photo.jpg does not exist"
    assert run.status[3] == "ok" and run.counts["generated"] == 0
    assert run.dream_label[:3] == [None, None, None] and run.drift[:3] == [None, None, None]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"strength": 0.0}, "strength must be above 0 and at most 1"),
        ({"strength": 1.5}, "strength must be above 0 and at most 1"),
        ({"prompt": "  "}, "The prompt is empty"),
        ({"steps": 1, "strength": 0.5}, "leave no step to run"),
        ({"size": 100}, "multiple of 8"),
    ],
)
def test_bad_settings_are_refused_by_name(change, message, tiny_spec, tmp_path):
    settings = DreamSettings(**{**vars(SETTINGS), **change})
    with pytest.raises(SettingError, match=message):
        dream(PHOTOS, tiny_spec, tmp_path, tmp_path / "cache", settings)


def test_an_unknown_model_offline_and_a_folder_that_is_no_model_are_clear(tiny_spec, tmp_path):
    with pytest.raises(
        ModelError, match=r"neither a local folder nor in the cache.*HF_HUB_OFFLINE"
    ):
        dream(PHOTOS, tiny_spec, "someone/no-such-diffusion-model", tmp_path / "cache")
    with pytest.raises(ModelError, match=r"is not a diffusers model: it has no model_index\.json"):
        dream(PHOTOS, tiny_spec, tmp_path, tmp_path / "cache")


def test_the_mainstream_image_scores_every_street_and_its_report_shows_every_image(
    first_run, tiny_diffusion, tiny_spec, tmp_path
):
    from mus_qgis.engine.dreams.mainstream import mainstream_image, write_report

    cache, _ = first_run
    locations = [Location((str(path),)) for path in AREZZO_PHOTOS[:3]] + [Location(())]

    def run(cities):
        return mainstream_image(
            locations,
            cities,
            "a street in {city}",
            2,
            DreamSettings(steps=1, size=64, seed=3),
            DreamModelSpec(str(tiny_diffusion), device="cpu"),
            tiny_spec,
            ViewSetting(),
            cache,
        )

    rome = run(["Rome"])
    assert rome.counts == {"generated": 2, "cached": 0}
    assert [len(files) for files in rome.gallery] == [2]
    assert rome.prompts == ["a street in Rome"]
    assert rome.status[-1] == "no image" and np.isnan(rome.image_cosine[-1, 0])
    # The image way: each street's cosine with the normalised mean of the gallery's embeddings.
    gallery = classify_locations(
        [Location(tuple(rome.gallery[0]))], LABELS, tiny_spec, ViewSetting(), 1, tmp_path / "c"
    )
    streets = classify_locations(locations[:1], LABELS, tiny_spec, ViewSetting(), 1, cache)
    expected = float(np.dot(streets.embeddings.vectors[0], gallery.embeddings.vectors[0]))
    assert rome.image_cosine[0, 0] == pytest.approx(expected, abs=1e-5)

    both = run(["Rome", "Paris"])
    assert both.counts == {"generated": 2, "cached": 2}  # Rome's gallery is not made twice
    assert both.gallery[0] == rome.gallery[0]
    assert np.allclose(both.image_cosine[:, :1], rome.image_cosine, equal_nan=True)
    report = write_report(both, tmp_path / "report.html", "random weights")
    text = report.read_text(encoding="utf-8")
    for file in [f for files in both.gallery for f in files]:
        assert Path(file).resolve().as_uri() in text
    assert "Most mainstream" in text and "<svg" in text
    assert text.index("Random weights.") < text.index("Most mainstream")  # the banner leads


def test_the_mainstream_prompt_needs_a_city(tiny_spec, tmp_path):
    from mus_qgis.engine.dreams.mainstream import city_prompts

    with pytest.raises(SettingError, match="must contain \\{city\\}"):
        city_prompts(["Rome"], "a street")
    with pytest.raises(SettingError, match="No city given"):
        city_prompts(["  "], "a street in {city}")


@pytest.mark.parametrize("views", [1, 3, 7, 30])
def test_the_mainstream_report_never_shows_a_view_as_both_most_and_least_typical(tmp_path, views):
    import re

    import numpy as np

    from mus_qgis.engine.dreams.mainstream import SHOWN, MainstreamRun, write_report

    scores = np.random.default_rng(views).random((views, 1)).astype(np.float32)
    run = MainstreamRun(
        cities=["Rome"],
        prompts=["a street in Rome"],
        gallery=[[]],
        text_cosine=scores,
        image_cosine=scores,
        status=["ok"] * views,
        paths=[(f"/photos/view{row}.jpg",) for row in range(views)],
    )
    page = write_report(run, tmp_path / "report.html").read_text(encoding="utf-8")
    most, least = page.split("<h3>Least mainstream")

    def shown(html: str) -> list[str]:
        figures = re.findall(r"<figure.*?</figure>", html, re.S)
        return [re.search(r"view(\d+)\.jpg", figure)[1] for figure in figures]

    most, least = shown(most.split("<h3>Most mainstream")[1]), shown(least)
    assert not set(most) & set(least)
    assert len(most) + len(least) == min(views, 2 * SHOWN)
    ranked = [str(row) for row in np.argsort(-scores[:, 0])]
    assert most == ranked[: len(most)]  # the highest scores, highest first
    assert least == ranked[::-1][: len(least)]  # the lowest, lowest first
