"""CLIP's schemas: which label set, model and views a job uses (shared by every job that scores
images), and the jobs classify, train_probe and view_scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from ..defaults import DEFAULT_MODEL, DEFAULT_PRECISION, DEFAULT_PRETRAINED
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
    precision: str = DEFAULT_PRECISION  # one of PRECISIONS


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


@dataclass(frozen=True)
class TrainProbeParams(Schema):
    """Train a probe on a classified layer's corrected points and score every point with it."""

    points: str  # a JSON file: {"rows": [[paths, bearing, heading]], "labels": [...], "ids": [...]}
    settings: dict  # the classified layer's run settings, as CLIP-classify recorded them
    device: str
    cache_dir: str  # the classification's cache folder (its embedding stores)
    regularisation: float  # pull toward the zero-shot classifier
    top_k: int
    output: str  # the NumPy file (.npz) to write the probe's scores to
    label_file: str = ""  # the label file the classification used, when it was not built in
    checkpoint: str = ""  # the checkpoint the classification used, when it used one
    probe: str = ""  # where to save the probe (.npz); empty: next to the embedding store


@dataclass(frozen=True)
class LeftOutPoint(Schema):
    """A corrected point that could not be trained on."""

    point: str  # its feature id
    why: str


@dataclass(frozen=True)
class ProbeReport(Schema):
    """A probe's cross-validated accuracy beside zero-shot's, and what it learnt from."""

    method: str  # "leave-one-out" or "k-fold stratified"
    points: int  # corrected points trained on (those with a stored embedding)
    probe_accuracy: float  # 0..1, each point predicted by a probe trained without it
    zero_shot_accuracy: float  # 0..1, the prompts on the same points
    corrected: int  # points with a corrected label
    left_out: list  # LeftOutPoint: corrected points without a stored embedding
    scored: int  # points the probe scored
    locations: int  # points sent
    untrained: bool  # random weights: the accuracies mean nothing
    model_identity: str
    examples_per_label: dict  # label: corrected points trained on
    regularisation: float

    parts: ClassVar[dict] = {"left_out": LeftOutPoint}


@dataclass(frozen=True)
class CrossValidationScores(Schema):
    method: str
    points: int
    probe_accuracy: float
    zero_shot_accuracy: float


@dataclass(frozen=True)
class ProbeSummary(Schema):
    """What a layer scored by a probe records of it in its run settings (``probe``)."""

    file: str  # the probe (.npz)
    weights_sha256: str
    trained_points: int
    regularisation: float
    cross_validation: CrossValidationScores

    parts: ClassVar[dict] = {"cross_validation": CrossValidationScores}


@dataclass(frozen=True)
class TrainProbeResult(Schema):
    output: str  # the .npz: top_index, probability, margin, status, scored_by
    probe: str  # the probe file written
    report: ProbeReport
    summary: ProbeSummary

    parts: ClassVar[dict] = {"report": ProbeReport, "summary": ProbeSummary}


@dataclass(frozen=True)
class ViewScoresParams(Schema):
    """Each view's reading of a classified layer's points, from the stores the classification
    filled (no image read, no model loaded)."""

    locations: str  # a JSON file: one [image paths, street bearing, panorama heading] a location
    label_set: LabelSetChoice
    model_identity: str  # the run settings' model_identity: names the stores
    views: str  # the run settings' view key ('views4-fov90-pitch0', 'centre-crop')
    cache_dir: str  # the classification's cache folder
    logit_scale: float  # the model's, to turn cosines into probabilities
    output: str  # the JSON file to write the readings to, one a location
    fast_decode: bool = True  # the classification decoded JPEGs in draft mode
    top_k: int = 3

    parts: ClassVar[dict] = {"label_set": LabelSetChoice}


@dataclass(frozen=True)
class ViewScoresResult(Schema):
    output: str
    count: int  # readings written


@dataclass(frozen=True)
class DownloadWeightsParams(Schema):
    """A pretrained tag's weights to fetch into the model cache, before any classification."""

    cache_dir: str  # the plugin's cache folder (the weights go to its models/ folder)
    model: str = DEFAULT_MODEL
    pretrained: str = DEFAULT_PRETRAINED


@dataclass(frozen=True)
class DownloadWeightsResult(Schema):
    path: str  # the weights file in the cache
    bytes: int
    cached: bool  # it was there already: nothing was downloaded
