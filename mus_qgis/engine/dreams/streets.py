"""Dream streets: each location's view through a diffusion model, then read again by CLIP.

The real images and their dreams are classified by the same code, with the same model, label set
and store as CLIP-classify (``clip.classify.classify_locations``): a dream's reading is exactly
what classifying its file would give. Per location: the dream files, the dream's first label and
score, whether the first label changed, the cosine between the real and the dreamed embeddings,
and how close each is to the prompt's text embedding (drift = dream's minus real's).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from ...shared.labels import LabelSet
from ...shared.progress import LoggingProgress, Progress, check_canceled
from ...shared.resources import plugin_version
from ..clip.classify import classify_locations
from ..clip.embedding import Location
from ..clip.models import ModelSpec
from ..clip.views import prepare_image
from ..imagery.panorama import ViewSetting
from .generate import DreamSettings, derived_seed, dream_key, open_maker
from .pipeline import DreamModelSpec

NO_LABEL = "no dream: the prompt needs {label} and the location has no label"


@dataclass(frozen=True)
class DreamLocation:
    """A location's images (as CLIP-classify reads them) and the label its prompt may use."""

    paths: tuple[str, ...]
    bearing: float | None = None
    heading: float | None = None
    label: str | None = None


@dataclass
class DreamRun:
    dream_paths: list[list[str]]
    status: list[str]
    prompts: list[str]
    seeds: list[list[int]]
    real_label: list[str | None]
    dream_label: list[str | None]
    dream_score: list[float | None]
    label_changed: list[bool | None]
    real_dream_cosine: list[float | None]
    real_to_prompt: list[float | None]
    dream_to_prompt: list[float | None]
    drift: list[float | None]
    counts: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)


def source_views(location: DreamLocation, settings: DreamSettings):
    """(source key, PIL image) for each view a location dreams from, or ([], failure status).

    The views are cut as CLIP-classify cuts them (a panorama's perspective views aimed along the
    street, a photo's centre square), at the dream's size.
    """
    from PIL import Image

    if not location.paths:
        return [], "no image"
    count = 1 if settings.views == "first" else 4
    setting = ViewSetting(count=count, fov=90.0)
    paths = location.paths[:1] if settings.views == "first" else location.paths
    preprocess = {"size": settings.size, "interpolation": "bicubic"}
    views, failures = [], []
    for path in paths:
        prepared = prepare_image(
            path, setting, preprocess, set(), location.bearing, location.heading, True
        )
        if prepared.status != "ok":
            failures.append(prepared.status)
            continue
        pixels = prepared.views.permute(0, 2, 3, 1).numpy()
        for index, view in enumerate(pixels):
            key = f"{prepared.key}#view{index + 1}of{len(pixels)}-fov90"
            views.append((key, Image.fromarray(view)))
    if not views:
        return [], "; ".join(sorted(set(failures)))
    return views, "ok"


def dream_streets(
    locations: list[DreamLocation],
    settings: DreamSettings,
    dream_spec: DreamModelSpec,
    label_set: LabelSet,
    clip_spec: ModelSpec,
    clip_setting: ViewSetting | None,
    cache_dir,
    progress: Progress | None = None,
) -> DreamRun:
    """Dream every location with imagery, then read the real images and the dreams with CLIP."""
    import numpy as np

    progress = progress or LoggingProgress()
    maker = open_maker(dream_spec, settings, cache_dir, progress)
    pipeline = maker.pipeline
    count = len(locations)
    prompts, plans, status = [], [], []
    for location in locations:
        prompt = settings.prompt_for(location.label)
        prompts.append(prompt)
        if location.paths and prompt:
            views, why = source_views(location, settings)
        else:
            views, why = [], NO_LABEL if location.paths else "no image"
        plan = []
        for source, image in views:
            seed = derived_seed(settings.seed, source)
            key = dream_key(pipeline.identity, pipeline.revision, prompt, settings, source, seed)
            plan.append((key, seed, image))
        plans.append(plan)
        status.append("ok" if plan else why)
    maker.planned = len({key for plan in plans for key, _, _ in plan if not maker.cached(key)})
    progress.info(
        f"{maker.planned} dream(s) to make for {sum(1 for p in plans if p)} of {count} "
        f"location(s); the others are in the cache or have no usable image."
    )
    dream_paths: list[list[str]] = []
    seeds: list[list[int]] = []
    done = 0
    total = max(sum(len(p) for p in plans), 1)
    for plan in plans:
        paths = []
        for key, seed, image in plan:
            check_canceled(progress)
            paths.append(str(maker.make(key, prompts[len(dream_paths)], seed, image)))
            done += 1
            progress.set_progress(50.0 * done / total)
        dream_paths.append(paths)
        seeds.append([seed for _, seed, _ in plan])
    progress.info(f"Dreams: {maker.counts.generated} made, {maker.counts.cached} from the cache.")

    real = classify_locations(
        [Location(loc.paths, loc.bearing, loc.heading) for loc in locations],
        label_set,
        clip_spec,
        clip_setting,
        1,
        cache_dir,
        progress,
    )
    dreamed = classify_locations(
        [Location(tuple(paths)) for paths in dream_paths],
        label_set,
        clip_spec,
        clip_setting,
        1,
        cache_dir,
        progress,
    )
    unique_prompts = sorted({p for p in prompts if p})
    prompt_vectors = {}
    if unique_prompts:
        encoded = dreamed.model.encode_texts(unique_prompts).numpy()
        prompt_vectors = dict(zip(unique_prompts, encoded, strict=True))
    labels = label_set.labels
    run = DreamRun(dream_paths, [], prompts, seeds, *([] for _ in range(8)))
    for row in range(count):
        real_top = int(real.scores.top_index[row, 0])
        dream_top = int(dreamed.scores.top_index[row, 0])
        real_vector = real.embeddings.vectors[row]
        dream_vector = dreamed.embeddings.vectors[row]
        run.real_label.append(labels[real_top].text if real_top >= 0 else None)
        run.dream_label.append(labels[dream_top].text if dream_top >= 0 else None)
        run.dream_score.append(_number(dreamed.scores.cosine[row, 0]) if dream_top >= 0 else None)
        both = real_top >= 0 and dream_top >= 0
        run.label_changed.append(bool(real_top != dream_top) if both else None)
        run.real_dream_cosine.append(_number(np.dot(real_vector, dream_vector)) if both else None)
        text = prompt_vectors.get(prompts[row])
        to_real = _number(np.dot(real_vector, text)) if text is not None and real_top >= 0 else None
        to_dream = (
            _number(np.dot(dream_vector, text)) if text is not None and dream_top >= 0 else None
        )
        run.real_to_prompt.append(to_real)
        run.dream_to_prompt.append(to_dream)
        run.drift.append(
            to_dream - to_real if to_real is not None and to_dream is not None else None
        )
        if status[row] == "ok" and dream_top < 0:
            status[row] = dreamed.embeddings.status[row]
        run.status.append(status[row])
    run.counts = {
        "generated": maker.counts.generated,
        "cached": maker.counts.cached,
        "locations": count,
        "dreamed": sum(1 for s in run.status if s == "ok"),
        "seconds": [round(s, 3) for s in maker.counts.seconds],
    }
    run.metadata = {
        "plugin_version": plugin_version(),
        "created_utc": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        **pipeline.record(),
        **settings.record(),
        "clip": dreamed.metadata,
    }
    progress.set_progress(100.0)
    return run


def _number(value) -> float | None:
    number = float(value)
    return None if number != number else number
