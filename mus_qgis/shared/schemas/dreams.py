"""The dreams' schemas: streets re-imagined by a diffusion model, and a city's mainstream image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..defaults import DEFAULT_DREAM_MODEL
from . import Schema
from .clip import LabelSetChoice, ModelChoice, ViewChoice


@dataclass(frozen=True)
class DreamModelChoice(Schema):
    """The engine's ``DreamModelSpec``: a diffusers model id (downloaded once into the cache) or
    a local model folder."""

    model: str = DEFAULT_DREAM_MODEL
    revision: str = ""  # a Hub branch, tag or commit; empty: the newest
    device: str = "auto"


@dataclass(frozen=True)
class DreamSettingsChoice(Schema):
    """The engine's ``DreamSettings``: how a dream is made. ``prompt`` may hold {label}, filled
    per location from a field."""

    prompt: str = "a street in Rome"
    strength: float = 0.5  # how far a dream may move from its image: above 0, at most 1
    steps: int = 2
    guidance: float = 0.0  # 0 for one-step models
    size: int = 512  # pixels, a multiple of 8
    seed: int = 0  # the run's seed; each dream's comes from it and its image
    views: str = "first"  # "first": one dream a location; "all": one per view of a panorama


# The parts both dream jobs take: the dream settings, the diffusion model, and the CLIP model
# and views that read the images.
DREAM_JOB_PARTS = {
    "settings": DreamSettingsChoice,
    "dream_model": DreamModelChoice,
    "model": ModelChoice,
    "view": ViewChoice,
}


@dataclass(frozen=True)
class DreamStreetsParams(Schema):
    """Locations to dream, the diffusion model that dreams them and the CLIP that reads them."""

    # A JSON file: [[paths], bearing or null, heading or null, label or null] per location.
    locations: str
    settings: DreamSettingsChoice
    dream_model: DreamModelChoice
    label_set: LabelSetChoice  # the labels CLIP reads the real view and its dream with
    model: ModelChoice  # the CLIP model
    view: ViewChoice
    cache_dir: str
    output: str  # the JSON file the readings go to: a list per column, a row per location

    parts: ClassVar[dict] = {**DREAM_JOB_PARTS, "label_set": LabelSetChoice}


@dataclass(frozen=True)
class DreamStreetsCounts(Schema):
    generated: int  # dreams made this run
    cached: int  # dreams read from the cache
    locations: int
    dreamed: int  # locations whose dream was made and read
    seconds: list  # per dream made, in order


@dataclass(frozen=True)
class DreamStreetsResult(Schema):
    output: str  # the JSON file of readings: dream_paths, status, prompts, seeds, labels, scores
    counts: DreamStreetsCounts
    metadata: dict  # the run settings: both models and their revisions, the dream settings

    parts: ClassVar[dict] = {"counts": DreamStreetsCounts}


@dataclass(frozen=True)
class MainstreamImageParams(Schema):
    """Locations to score against each city's mainstream image, as a diffusion model makes it
    from ``template`` and CLIP reads it."""

    locations: str  # a JSON file: [[paths], bearing or null, heading or null] per location
    cities: list
    template: str  # the prompt, with {city}
    images_per_city: int
    settings: DreamSettingsChoice  # its prompt and strength are the engine's own
    dream_model: DreamModelChoice
    model: ModelChoice  # the CLIP model
    view: ViewChoice
    cache_dir: str
    output: str  # the JSON file of scores: text_cosine, image_cosine, status
    report: str = ""  # an HTML report to write; empty: none

    parts: ClassVar[dict] = DREAM_JOB_PARTS


@dataclass(frozen=True)
class GalleryCounts(Schema):
    generated: int  # images made this run
    cached: int  # images read from the cache


@dataclass(frozen=True)
class MainstreamImageResult(Schema):
    output: str
    cities: list  # as scored, in the order of the scores' columns
    prompts: list  # per city, the prompt its images were made from
    gallery: list  # per city, the paths of its generated images
    counts: GalleryCounts
    metadata: dict  # the run settings
    report: str = ""  # the HTML report written; empty: none

    parts: ClassVar[dict] = {"counts": GalleryCounts}
