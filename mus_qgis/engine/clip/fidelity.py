"""How far a faster number format moves what CLIP says: the same images' views embedded by the
same model in fp32 (exact) and in bf16 or fp16, then compared, embedding by embedding and label
set by label set. Measured, not assumed: a user runs it on their own images and weights
(``scripts/precision_fidelity.py``) before choosing a precision for a study."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ...shared.labels import LabelSet
from ..imagery.panorama import ViewSetting
from .models import ModelSpec, load_model
from .scoring import label_embeddings, score
from .views import prepare_image


@dataclass(frozen=True)
class LabelSetFidelity:
    name: str
    labels: int
    largest_score_difference: float  # of any label's probability in any view
    top1_agreement: float  # share of views whose first label is the same


@dataclass(frozen=True)
class Fidelity:
    precision: str
    model: str
    images: int
    views: int
    smallest_cosine: float  # between a view's two embeddings
    label_sets: tuple[LabelSetFidelity, ...]


def precision_fidelity(
    paths: list[str],
    spec: ModelSpec,
    precision: str,
    label_sets: list[LabelSet],
    setting: ViewSetting | None = None,
    cache_dir=None,
    batch_size: int = 32,
) -> Fidelity:
    """The views of ``paths`` embedded in fp32 and in ``precision``, and what changes."""
    import numpy as np
    import torch

    setting = setting or ViewSetting()
    exact = load_model(replace(spec, precision="fp32"), cache_dir)
    faster = load_model(replace(spec, precision=precision), cache_dir)
    views = []
    for path in paths:
        prepared = prepare_image(str(path), setting, exact.preprocess, set())
        if prepared.views is not None:
            views.append(prepared.views)
    if not views:
        raise ValueError("None of the images could be read: give JPEG or PNG street images.")
    pixels = torch.cat(views)
    first, second = [], []
    for start in range(0, len(pixels), batch_size):
        batch = pixels[start : start + batch_size]
        first.append(exact.encode_images(batch).numpy())
        second.append(faster.encode_images(batch).numpy())
    a, b = np.concatenate(first), np.concatenate(second)
    cosines = np.sum(a.astype(np.float64) * b, axis=1)
    results = []
    for label_set in label_sets:
        # Scored as a classification scores them: the probabilities its layer's fields hold.
        pa = score(a, label_embeddings(exact, label_set), label_set, exact.logit_scale, 1)
        pb = score(b, label_embeddings(faster, label_set), label_set, faster.logit_scale, 1)
        pa, pb = pa.all_probability, pb.all_probability
        results.append(
            LabelSetFidelity(
                label_set.name,
                len(label_set),
                float(np.abs(pa - pb).max()),
                float(np.mean(pa.argmax(axis=1) == pb.argmax(axis=1))),
            )
        )
    return Fidelity(
        precision,
        spec.describe(),
        len(views),
        len(a),
        float(cosines.min()),
        tuple(results),
    )
