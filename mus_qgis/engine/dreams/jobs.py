"""The dreams' jobs: streets re-imagined, and a city's mainstream image."""

from __future__ import annotations

import json

from ...shared.schemas.dreams import (
    DreamStreetsCounts,
    DreamStreetsParams,
    DreamStreetsResult,
    GalleryCounts,
    MainstreamImageParams,
    MainstreamImageResult,
)
from ..clip.jobs import label_set_from_spec, model_and_view
from ..deps import require
from ..jobs import job


def _dream_inputs(params: DreamStreetsParams | MainstreamImageParams):
    from .generate import DreamSettings
    from .pipeline import DreamModelSpec

    return (
        DreamSettings(**params.settings.to_dict()),
        DreamModelSpec(**params.dream_model.to_dict()),
    )


@job("dream_streets", params=DreamStreetsParams, result=DreamStreetsResult)
def dream_streets_job(params: DreamStreetsParams, progress) -> DreamStreetsResult:
    """Dream each location's view and read the dreams with CLIP; rows go to a JSON file."""
    require("numpy", "PIL", "torch", "open_clip", "diffusers", "transformers")
    from .streets import DreamLocation, dream_streets

    with open(params.locations, encoding="utf-8") as handle:
        rows = json.load(handle)
    locations = [DreamLocation(tuple(p), b, h, label) for p, b, h, label in rows]
    settings, dream_model = _dream_inputs(params)
    spec, view = model_and_view(params)
    run = dream_streets(
        locations,
        settings,
        dream_model,
        label_set_from_spec(params.label_set),
        spec,
        view,
        params.cache_dir,
        progress,
    )
    columns = ("dream_paths", "status", "prompts", "seeds", "real_label", "dream_label")
    columns += ("dream_score", "label_changed", "real_dream_cosine", "real_to_prompt")
    columns += ("dream_to_prompt", "drift")
    with open(params.output, "w", encoding="utf-8") as handle:
        json.dump({name: getattr(run, name) for name in columns}, handle)
    return DreamStreetsResult(
        output=params.output,
        counts=DreamStreetsCounts.from_dict(run.counts),
        metadata=run.metadata,
    )


@job("mainstream_image", params=MainstreamImageParams, result=MainstreamImageResult)
def mainstream_image_job(params: MainstreamImageParams, progress) -> MainstreamImageResult:
    """Score locations against cities' mainstream images; rows to JSON, and an HTML report."""
    require("numpy", "PIL", "torch", "open_clip", "diffusers", "transformers")
    from ..clip.classify import UNTRAINED_WARNING
    from ..clip.embedding import Location
    from .mainstream import mainstream_image, write_report

    with open(params.locations, encoding="utf-8") as handle:
        rows = json.load(handle)
    locations = [Location(tuple(p), b, h) for p, b, h in rows]
    settings, dream_model = _dream_inputs(params)
    spec, view = model_and_view(params)
    run = mainstream_image(
        locations,
        list(params.cities),
        params.template,
        int(params.images_per_city),
        settings,
        dream_model,
        spec,
        view,
        params.cache_dir,
        progress,
    )
    if params.report:
        write_report(run, params.report, UNTRAINED_WARNING if spec.untrained else "")
    with open(params.output, "w", encoding="utf-8") as handle:
        json.dump(
            {
                "text_cosine": _rows(run.text_cosine),
                "image_cosine": _rows(run.image_cosine),
                "status": run.status,
            },
            handle,
        )
    return MainstreamImageResult(
        output=params.output,
        cities=run.cities,
        prompts=run.prompts,
        gallery=run.gallery,
        counts=GalleryCounts.from_dict(run.counts),
        metadata=run.metadata,
        report=params.report,
    )


def _rows(matrix) -> list[list[float | None]]:
    return [[None if v != v else float(v) for v in row] for row in matrix.tolist()]
