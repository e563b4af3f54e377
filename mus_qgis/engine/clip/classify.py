"""The whole classification of locations: model, embeddings (stored), label scores, metadata."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import EmbeddingStoreError
from ..imagery.panorama import ViewSetting
from ..progress import LoggingProgress, Progress, check_canceled
from ..resources import plugin_version
from .embedding import DEFAULT_BATCH_SIZE, Location, LocationEmbeddings, embed_locations
from .labels import LabelSet
from .models import LoadedModel, ModelSpec, load_model
from .scoring import Scores, label_embeddings, score
from .store import EmbeddingStore, TextStore

UNTRAINED_WARNING = (
    "The model has random, untrained weights: its labels say nothing about the images. "
    "Give a pretrained tag (with internet) or a checkpoint file for real answers."
)


@dataclass
class ClassificationRun:
    embeddings: LocationEmbeddings
    scores: Scores
    metadata: dict
    model: LoadedModel


def model_cache_dir(cache_dir: str | Path) -> Path:
    return Path(cache_dir) / "models"


def embedding_cache_dir(cache_dir: str | Path) -> Path:
    return Path(cache_dir) / "embeddings"


def open_stores(cache_dir, model: LoadedModel, setting: ViewSetting):
    if cache_dir is None:
        return None, None
    root = embedding_cache_dir(cache_dir)
    return EmbeddingStore.under(root, model.identity, setting.key), TextStore(root, model.identity)


def classify_locations(
    locations: list[Location],
    label_set: LabelSet,
    spec: ModelSpec,
    setting: ViewSetting | None = None,
    top_k: int = 3,
    cache_dir: str | Path | None = None,
    progress: Progress | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    fast_decode: bool = True,
) -> ClassificationRun:
    """Embed each location's images (reusing stored ones) and score them against the labels."""
    progress = progress or LoggingProgress()
    setting = setting or ViewSetting()
    model = load_model(spec, model_cache_dir(cache_dir) if cache_dir else None)
    progress.info(f"Model: {spec.describe()} on {model.device}.")
    if model.untrained:
        progress.info(UNTRAINED_WARNING)
    check_canceled(progress)
    store, text_store = open_stores(cache_dir, model, setting)
    try:
        embeddings = embed_locations(
            locations, model, setting, store, progress, batch_size, workers, fast_decode
        )
        check_canceled(progress)
        text_vectors = label_embeddings(model, label_set, text_store)
    finally:
        for opened in (store, text_store):
            if opened is not None:
                opened.close()
    scores = score(embeddings.vectors, text_vectors, label_set, model.logit_scale, top_k)
    counts = embeddings.counts
    progress.info(
        f"{counts.get('locations ok', 0)} of {len(locations)} locations classified; "
        f"{counts.get('decoded', 0)} images decoded, "
        f"{counts.get('cached', 0) + counts.get('known without reading', 0)} from the store, "
        f"{counts.get('failed', 0)} unusable."
    )
    metadata = run_metadata(model, label_set, setting, top_k)
    return ClassificationRun(embeddings, scores, metadata, model)


@dataclass
class StoredScores:
    """Scores of every image embedding in a store, one ``Scores`` per label set asked for;
    ``paths`` as recorded when each image was embedded."""

    paths: list[str]
    scores: list[Scores]
    model: LoadedModel


def score_stored_embeddings(
    label_sets: Sequence[LabelSet],
    spec: ModelSpec,
    setting: ViewSetting,
    cache_dir: str | Path,
    top_k: int = 1,
    progress: Progress | None = None,
) -> StoredScores:
    """Score every image embedded so far with this model and view setting; no image is read.

    This is how label sets are scored on a laptop over embeddings a GPU server computed: only the
    prompts go through the model, and the store is read once for all the sets.
    """
    progress = progress or LoggingProgress()
    model = load_model(spec, model_cache_dir(cache_dir))
    store, text_store = open_stores(cache_dir, model, setting)
    try:
        files = store.files()
        stored_keys, vectors = store.all()
        if not stored_keys:
            raise EmbeddingStoreError(
                f"No image has been embedded with {spec.describe()} and views {setting.key} "
                f"under {embedding_cache_dir(cache_dir)}: embed or classify images first."
            )
        text_vectors = []
        for label_set in label_sets:
            check_canceled(progress)
            text_vectors.append(label_embeddings(model, label_set, text_store))
    finally:
        store.close()
        text_store.close()
    titles = ", ".join(label_set.title for label_set in label_sets)
    progress.info(f"{len(stored_keys)} stored image embeddings scored against {titles}.")
    # The files table says which image each key came from (a key is the digest of its bytes).
    digest_to_path = {facts.digest: path for path, facts in files.items()}
    paths = [digest_to_path.get(key.split("@")[0], key) for key in stored_keys]
    scores = [
        score(vectors, texts, label_set, model.logit_scale, top_k)
        for label_set, texts in zip(label_sets, text_vectors, strict=True)
    ]
    return StoredScores(paths, scores, model)


def run_metadata(model: LoadedModel, label_set: LabelSet, setting: ViewSetting, top_k: int) -> dict:
    """What a map needs to be reproduced: model, weights, labels, prompts, views, versions."""
    import open_clip
    import torch

    spec = model.spec
    return {
        "plugin_version": plugin_version(),
        "created_utc": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "model": spec.name,
        "pretrained": spec.pretrained if not spec.checkpoint else "",
        "checkpoint": Path(spec.checkpoint).name if spec.checkpoint else "",
        "model_identity": model.identity,
        "untrained": model.untrained,
        "device": str(model.device),
        "precision": str(model.dtype).replace("torch.", ""),
        "label_set": label_set.name,
        "label_set_title": label_set.title,
        "label_set_hash": label_set.content_hash(),
        "labels": len(label_set),
        "templates": list(label_set.templates),
        "views": setting.key,
        "top_k": top_k,
        "open_clip_version": open_clip.__version__,
        "torch_version": torch.__version__,
    }
