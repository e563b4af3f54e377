"""CLIP's schemas: which label set, model and views a job uses (shared by every job that scores
images), and the jobs classify, train_probe and view_scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from ..defaults import DEFAULT_MODEL, DEFAULT_PRETRAINED
from . import Schema


@dataclass(frozen=True)
class LabelSetChoice(Schema):
    """A built-in label set by name, or a label file; ``templates`` replace the set's own."""

    builtin: str = ""
    file: str = ""
    templates: Optional[list] = None


@dataclass(frozen=True)
class ModelChoice(Schema):
    """The engine's ``ModelSpec``: a checkpoint file wins over a pretrained tag; with neither,
    random weights."""

    name: str = DEFAULT_MODEL
    pretrained: str = DEFAULT_PRETRAINED
    checkpoint: str = ""
    device: str = "auto"


@dataclass(frozen=True)
class ViewChoice(Schema):
    """The engine's ``ViewSetting``: ``count`` views of ``fov`` degrees per panorama, tilted by
    ``pitch``; or CLIP's own centre crop."""

    count: int = 4
    fov: float = 90.0
    pitch: float = 0.0
    centre_crop: bool = False


@dataclass(frozen=True)
class ClassifyParams(Schema):
    """Score each location's images against a label set."""

    locations: str  # a JSON file: one [image paths, street bearing, panorama heading] a location
    label_set: LabelSetChoice
    model: ModelChoice
    view: ViewChoice
    top_k: int
    cache_dir: str  # the cache folder: models and embedding stores
    batch_size: int  # views a forward pass
    output: str  # the NumPy file (.npz) to write the scores to, row for row with the locations
    full_decode: bool = False  # full-resolution JPEG decoding (default: draft mode)
    probe: str = ""  # a trained probe (.npz) that scores instead of the prompts; empty: none

    parts: ClassVar[dict] = {"label_set": LabelSetChoice, "model": ModelChoice, "view": ViewChoice}


@dataclass(frozen=True)
class ClassifyResult(Schema):
    output: str  # the .npz: top_index, cosine, probability, margin, images_used, status
    metadata: dict  # the run settings (model, weights, label set, templates, views, …)
    untrained: bool  # random weights: the labels mean nothing
    counts: dict  # images and locations by what became of them (decoded, cached, failed, …)
