"""A city's mainstream image as the models hold it, and how much each street looks like it.

Two ways: (a) CLIP alone, the text embedding of a prompt such as "a street in {city}" (the label
set's own scoring, ``clip.scoring``); (b) with a diffusion model, the mean CLIP embedding of N
images generated from that prompt (seeded, cached, kept as a gallery). Every location is scored
by its cosine with each; with several cities, each location's closest city by either way.
"""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass, field
from pathlib import Path

from ...shared.errors import LabelSetError, SettingError
from ...shared.labels import PLACEHOLDER as LABEL_PLACEHOLDER
from ...shared.labels import Label, LabelSet
from ...shared.progress import LoggingProgress, Progress, check_canceled
from ...shared.reports import report_start
from ...shared.resources import plugin_version
from ..clip.classify import classify_locations
from ..clip.embedding import Location
from ..clip.models import ModelSpec
from ..imagery.panorama import ViewSetting
from .generate import DreamSettings, derived_seed, dream_key, open_maker
from .pipeline import DreamModelSpec

CITY = "{city}"
DEFAULT_TEMPLATE = "a street in {city}"
SHOWN = 12  # the most and least mainstream real views in the report


@dataclass
class MainstreamRun:
    cities: list[str]
    prompts: list[str]
    gallery: list[list[str]]  # per city, its generated images
    text_cosine: object  # float32 N×C: each location against each city's prompt
    image_cosine: object  # float32 N×C: against each city's mean generated image
    status: list[str]
    paths: list[tuple[str, ...]]
    counts: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)


def city_prompts(cities: list[str], template: str) -> list[str]:
    cities = [c.strip() for c in cities if c and c.strip()]
    if not cities:
        raise SettingError("No city given: name one (e.g. Rome) or give a label set of cities.")
    if CITY not in template:
        raise SettingError(f"The prompt {template!r} must contain {CITY} where the city goes.")
    if len({c.casefold() for c in cities}) < len(cities):
        raise LabelSetError(f"A city is named twice in {', '.join(cities)}.")
    return [template.replace(CITY, city) for city in cities]


def mainstream_image(
    locations: list[Location],
    cities: list[str],
    template: str,
    images_per_city: int,
    settings: DreamSettings,
    dream_spec: DreamModelSpec,
    clip_spec: ModelSpec,
    clip_setting: ViewSetting | None,
    cache_dir,
    progress: Progress | None = None,
) -> MainstreamRun:
    import numpy as np

    progress = progress or LoggingProgress()
    prompts = city_prompts(cities, template)
    cities = [c.strip() for c in cities if c and c.strip()]
    settings = DreamSettings(**{**vars(settings), "prompt": prompts[0], "strength": 1.0})
    if not 1 <= images_per_city <= 256:
        raise SettingError(f"Images per city must be 1 to 256, not {images_per_city}.")
    maker = open_maker(dream_spec, settings, cache_dir, progress)
    pipeline = maker.pipeline
    plans = []
    for prompt in prompts:
        plan = []
        for index in range(images_per_city):
            source = f"text-to-image#{index + 1}"
            seed = derived_seed(settings.seed, f"{prompt}#{index + 1}")
            key = dream_key(pipeline.identity, pipeline.revision, prompt, settings, source, seed)
            plan.append((key, seed))
        plans.append(plan)
    maker.planned = sum(1 for plan in plans for key, _ in plan if not maker.cached(key))
    progress.info(f"{maker.planned} image(s) to generate for {len(cities)} city prompt(s).")
    gallery = []
    for prompt, plan in zip(prompts, plans, strict=True):
        made = []
        for key, seed in plan:
            check_canceled(progress)
            made.append(str(maker.make(key, prompt, seed)))
        gallery.append(made)
    progress.info(f"Gallery: {maker.counts.generated} made, {maker.counts.cached} from the cache.")

    # (a) The cities as a label set whose template is the prompt: CLIP's own text embeddings.
    label_set = LabelSet(
        "mainstream",
        tuple(Label(city) for city in _at_least_two(cities)),
        (template.replace(CITY, LABEL_PLACEHOLDER),),
        "Mainstream image",
    )
    real = classify_locations(locations, label_set, clip_spec, clip_setting, 1, cache_dir, progress)
    # (b) Each city's generated images as one location: their mean embedding, normalised.
    means = classify_locations(
        [Location(tuple(paths)) for paths in gallery],
        label_set,
        clip_spec,
        clip_setting,
        1,
        cache_dir,
        progress,
    )
    count = len(cities)
    text_cosine = real.scores.all_cosine[:, :count]
    image_cosine = (real.embeddings.vectors @ means.embeddings.vectors.T).astype(np.float32)
    metadata = {
        "plugin_version": plugin_version(),
        "created_utc": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        **pipeline.record(),
        **{
            k: v for k, v in settings.record().items() if k not in ("dream_strength", "dream_views")
        },
        "dream_prompt": template,
        "cities": cities,
        "images_per_city": images_per_city,
        "clip": {k: v for k, v in real.metadata.items() if not k.startswith("label")},
    }
    return MainstreamRun(
        cities,
        prompts,
        gallery,
        text_cosine,
        image_cosine,
        list(real.embeddings.status),
        [loc.paths for loc in locations],
        {"generated": maker.counts.generated, "cached": maker.counts.cached},
        metadata,
    )


def _at_least_two(cities: list[str]) -> list[str]:
    """A label set needs two labels; a lone city gets a stand-in that no score is read from."""
    return cities if len(cities) > 1 else [*cities, "somewhere else"]


def write_report(run: MainstreamRun, path: str | Path, untrained_note: str = "") -> Path:
    """An HTML page: each city's generated gallery, the 12 most and 12 least mainstream real
    views side by side (by the first city's image score; never one view in both), and the
    scores' distribution."""
    import numpy as np

    path = Path(path)
    scores = run.image_cosine[:, 0]
    valid = [row for row in range(len(scores)) if np.isfinite(scores[row])]
    ordered = sorted(valid, key=lambda row: -float(scores[row]))
    # Up to 12 each side, never one view on both: with fewer than 24 views the top half is the
    # most mainstream and the rest the least.
    top = min(SHOWN, (len(ordered) + 1) // 2)
    most, least = ordered[:top], ordered[top:][::-1][:SHOWN]
    meta = run.metadata
    clip = dict(meta.get("clip") or {})
    if untrained_note:
        clip["untrained"] = True
    parts = [
        report_start(
            f"Mainstream image: {', '.join(run.cities)}",
            [clip],
            style="body{margin:2em}img{width:160px;height:160px;object-fit:cover;margin:2px}"
            "figure{display:inline-block;margin:4px}"
            "figcaption{font-size:11px;max-width:160px;word-break:break-all}"
            ".side{display:flex;gap:2em}",
            what="scores and pictures",
        )
    ]
    parts.append(
        f"<p>Diffusion model {html.escape(str(meta.get('dream_model')))} (revision "
        f"{html.escape(str(meta.get('dream_model_revision')))}), {meta.get('images_per_city')} "
        f"image(s) per city, seed {meta.get('dream_seed')}; CLIP "
        f"{html.escape(str(meta.get('clip', {}).get('model')))}.</p>"
    )
    for city, prompt, files in zip(run.cities, run.prompts, run.gallery, strict=True):
        parts.append(f"<h2>{html.escape(city)}: “{html.escape(prompt)}”</h2><div>")
        parts += [_figure(file, Path(file).name) for file in files]
        parts.append("</div>")
    parts.append(
        f"<h2>Real views by their cosine with the mainstream image of {run.cities[0]}</h2>"
    )
    parts.append("<div class='side'>")
    for title, rows in (("Most mainstream", most), ("Least mainstream", least)):
        parts.append(f"<div><h3>{title} ({len(rows)})</h3>")
        if not rows:
            parts.append("<p>(too few views with a score to show apart)</p>")
        for row in rows:
            first = run.paths[row][0] if run.paths[row] else ""
            parts.append(_figure(first, f"#{row + 1}: {float(scores[row]):.3f}"))
        parts.append("</div>")
    parts.append("</div><h2>Distribution of the scores</h2>")
    parts.append(_histogram([float(scores[row]) for row in valid]))
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _figure(file: str, caption: str) -> str:
    uri = Path(file).resolve().as_uri() if file else ""
    return (
        f"<figure><img src='{html.escape(uri)}' alt='{html.escape(Path(file).name)}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _histogram(values: list[float], bins: int = 20) -> str:
    """An SVG histogram: no plotting library for twenty bars."""
    import numpy as np

    if not values:
        return "<p>No location has a score.</p>"
    counts, edges = np.histogram(values, bins=bins)
    width, height, top = 600, 160, max(int(counts.max()), 1)
    bar = width / bins
    rects = "".join(
        f"<rect x='{i * bar:.1f}' y='{height - c / top * height:.1f}' width='{bar - 1:.1f}' "
        f"height='{c / top * height:.1f}' fill='#4a7ab5'><title>{edges[i]:.3f} to "
        f"{edges[i + 1]:.3f}: {c}</title></rect>"
        for i, c in enumerate(counts)
    )
    return (
        f"<svg width='{width}' height='{height + 20}' role='img'>{rects}"
        f"<text x='0' y='{height + 15}' font-size='11'>{edges[0]:.3f}</text>"
        f"<text x='{width - 40}' y='{height + 15}' font-size='11'>{edges[-1]:.3f}</text></svg>"
    )
