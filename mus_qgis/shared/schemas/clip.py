"""CLIP's schemas: which label set, model and views a job uses (shared by every job that scores
images), and the jobs classify, train_probe and view_scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

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
