"""Dreams made and kept: seeds from the run seed and the image, a cache that never makes one twice.

A dream is named by everything that decides its pixels: the model and its revision, the prompt,
the settings (strength, steps, guidance, size), the source (image digest and view) and the seed.
It is written once under ``<cache>/dreams`` and read back on every later run.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ...shared.errors import CanceledError, MusError, SettingError
from ...shared.folders import writable_folder
from ...shared.progress import Progress

PLACEHOLDER = "{label}"
VIEW_MODES = ("first", "all")


@dataclass(frozen=True)
class DreamSettings:
    """How a dream is made. ``prompt`` may hold {label}, filled per location from a field."""

    prompt: str = "a street in Rome"
    strength: float = 0.5
    steps: int = 2
    guidance: float = 0.0
    size: int = 512
    seed: int = 0
    views: str = "first"  # "first": one dream a location; "all": one per view of a panorama

    def check(self) -> None:
        if not self.prompt.strip():
            raise SettingError("The prompt is empty: give a prompt such as 'a street in Rome'.")
        if not 0.0 < self.strength <= 1.0:
            raise SettingError(
                f"The strength must be above 0 and at most 1 (how far a dream may move from "
                f"its image), not {self.strength:g}."
            )
        if not 1 <= self.steps <= 200:
            raise SettingError(f"The steps must be 1 to 200, not {self.steps}.")
        if int(self.steps * self.strength) < 1:
            raise SettingError(
                f"{self.steps} step(s) at strength {self.strength:g} leave no step to run "
                "(image-to-image runs steps × strength of them): raise either."
            )
        if not 0.0 <= self.guidance <= 30.0:
            raise SettingError(f"The guidance must be 0 to 30, not {self.guidance:g}.")
        if not 64 <= self.size <= 2048 or self.size % 8:
            raise SettingError(
                f"The size must be a multiple of 8 from 64 to 2048, not {self.size}."
            )
        if self.views not in VIEW_MODES:
            raise SettingError(f"Views must be one of {', '.join(VIEW_MODES)}, not {self.views!r}.")

    def prompt_for(self, label: str | None) -> str:
        """The prompt for a location, or '' when the template wants a label it has none of."""
        if PLACEHOLDER not in self.prompt:
            return self.prompt.strip()
        if label is None or not str(label).strip():
            return ""
        return self.prompt.replace(PLACEHOLDER, str(label).strip()).strip()

    def record(self) -> dict:
        return {f"dream_{name}": value for name, value in asdict(self).items()}


def derived_seed(run_seed: int, source_key: str) -> int:
    """A location's seed: the run seed and its image's digest (and view), so reruns agree."""
    digest = hashlib.sha256(f"{int(run_seed)}:{source_key}".encode()).hexdigest()
    return int(digest[:8], 16)


def dream_key(model: str, revision: str, prompt: str, settings: DreamSettings, source: str, seed):
    """The cache key: everything that decides a dream's pixels."""
    payload = {
        "model": model,
        "revision": revision,
        "prompt": prompt,
        "strength": settings.strength,
        "steps": settings.steps,
        "guidance": settings.guidance,
        "size": settings.size,
        "source": source,
        "seed": int(seed),
    }
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def dream_folder(cache_dir) -> Path:
    return Path(cache_dir) / "dreams"


@dataclass
class DreamCounts:
    generated: int = 0
    cached: int = 0
    seconds: list[float] = field(default_factory=list)


class DreamMaker:
    """Makes (or finds) dreams with one pipeline, timing the first to estimate the rest."""

    def __init__(self, pipeline, settings: DreamSettings, cache_dir, progress: Progress) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self.folder = writable_folder(dream_folder(cache_dir), "dream cache folder")
        self.progress = progress
        self.counts = DreamCounts()
        self.planned = 0

    def path_for(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.png"

    def cached(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def make(self, key: str, prompt: str, seed: int, source=None) -> Path:
        """The dream ``key``: read from the cache, or made from ``source`` (image-to-image) or
        from the prompt alone (text-to-image) and written there."""
        path = self.path_for(key)
        if path.is_file():
            self.counts.cached += 1
            return path
        if self.progress.is_canceled():
            raise CanceledError()
        started = time.perf_counter()
        image = self._generate(prompt, seed, source)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial_path = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.png")
        image.save(partial_path)
        os.replace(partial_path, path)  # a dream is whole or absent, even if the run stops
        self.counts.seconds.append(time.perf_counter() - started)
        self.counts.generated += 1
        if self.counts.generated == 1:
            self._estimate()
        return path

    def _generate(self, prompt: str, seed: int, source):
        import torch

        pipeline, settings = self.pipeline, self.settings
        device = pipeline.device if not pipeline.device.startswith("mps") else "cpu"
        generator = torch.Generator(device).manual_seed(int(seed))
        common = {
            "prompt": prompt,
            "num_inference_steps": settings.steps,
            "guidance_scale": settings.guidance,
            "generator": generator,
        }
        if source is None:
            return pipeline.text_to_image(
                height=settings.size, width=settings.size, **common
            ).images[0]
        return pipeline.image_to_image(image=source, strength=settings.strength, **common).images[0]

    def _estimate(self) -> None:
        """After the first dream: how long the rest will take, measured, not guessed."""
        left = max(self.planned - 1, 0)
        first = self.counts.seconds[0]
        device = self.pipeline.device
        where = "on the CPU: slow, a GPU is many times faster" if device == "cpu" else device
        self.progress.info(
            f"The first dream took {first:.1f} s ({where}); the {left} other(s) to make will "
            f"take about {_duration(first * left)} (the first includes warming up)."
        )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def open_maker(dream_spec, settings: DreamSettings, cache_dir, progress: Progress) -> DreamMaker:
    """Check the settings and the cache folder, load the model (saying which), and a maker."""
    from ..clip.classify import check_cache_dir
    from .pipeline import load_dream_pipeline

    settings.check()
    if cache_dir is None:
        raise MusError("Dreams need a cache folder to keep them in.")
    check_cache_dir(cache_dir)
    pipeline = load_dream_pipeline(dream_spec, cache_dir)
    progress.info(
        f"Diffusion model: {pipeline.identity} (revision {pipeline.revision}) on "
        f"{pipeline.device} in {pipeline.dtype}."
    )
    return DreamMaker(pipeline, settings, cache_dir, progress)
