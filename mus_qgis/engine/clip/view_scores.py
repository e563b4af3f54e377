"""Each view's own reading: a location's stored image embeddings scored one by one, and pooled.

A classified layer keeps the pooled top labels of each point; the street inspector also shows what
the model read in each image. Nothing is read from the images and no model is loaded: the image
vectors come from the embedding store, the label embeddings from the prompt store (both filled
when the layer was classified), and the logit scale from the run's settings.
"""

from __future__ import annotations

import re
from pathlib import Path

from ...shared.errors import EmbeddingStoreError, MusError
from ...shared.labels import LabelSet
from ..imagery.panorama import ViewSetting
from .classify import check_cache_dir, embedding_cache_dir
from .embedding import Location
from .scoring import score
from .store import EmbeddingStore, TextStore, slug
from .views import embedding_key

NOT_STORED = "no stored embedding (classify the layer again with this cache folder)"
_VIEW_KEY = re.compile(r"views(\d+)-fov([0-9.]+)-pitch(-?[0-9.]+)$")


def view_setting_from_key(key: str) -> ViewSetting:
    """The view setting a store key names (the run settings record it: views4-fov90-pitch0)."""
    if key == "centre-crop":
        return ViewSetting(centre_crop=True)
    match = _VIEW_KEY.match(key)
    if not match:
        raise MusError(f"Unknown view setting {key!r} in the layer's run settings.")
    return ViewSetting(int(match[1]), float(match[2]), float(match[3]))


def score_views(
    locations: list[Location],
    label_set: LabelSet,
    identity: str,
    store_name: str,
    cache_dir: str | Path,
    logit_scale: float,
    top_k: int = 3,
) -> list[dict]:
    """Per location: each image's top labels and probabilities, and the pooled ones.

    ``identity`` and ``store_name`` name the stores as the classification did (its settings'
    model_identity; views key, with ``-full-decode`` for full-resolution runs). An image with no
    stored vector gets a status instead of labels; the pooled reading uses the images that have
    one, as the classification did.
    """
    import numpy as np

    check_cache_dir(cache_dir)
    root = embedding_cache_dir(cache_dir)
    # Looked for before opening: opening would create an empty store where there is none.
    if not (root / slug(identity) / f"{slug(store_name)}.sqlite").is_file():
        raise EmbeddingStoreError(
            f"No embedding store for {identity} ({store_name}) under {root}: the layer was "
            "classified with another cache folder, or the store was moved."
        )
    setting = view_setting_from_key(store_name.removesuffix("-full-decode"))
    with EmbeddingStore.under(root, identity, store_name) as store:
        facts = store.file_facts(p for location in locations for p in location.paths)
        keys = {}
        for location in locations:
            for path in location.paths:
                known = facts.get(path)
                if known is not None:
                    keys[(path, location.bearing, location.heading)] = embedding_key(
                        known[2], setting, location.bearing, location.heading
                    )
        vectors, damaged = store.get(set(keys.values()))
    text_store = TextStore(root, identity)
    try:
        prompts = label_set.prompts()
        known = text_store.get(list(dict.fromkeys(p for per in prompts for p in per)))
    finally:
        text_store.close()
    missing = sorted({p for per in prompts for p in per} - known.keys())
    if missing:
        raise EmbeddingStoreError(
            f"{len(missing)} prompt(s) of {label_set.title or label_set.name} are not in the "
            f"prompt store under {root} (first: {missing[0]!r}): classify the layer again."
        )
    texts = np.stack([np.mean([known[p] for p in per], axis=0) for per in prompts])
    texts = (texts / np.linalg.norm(texts, axis=1, keepdims=True)).astype(np.float32)

    # Every view and every pooled vector scored in two calls (one per kind), not one per point.
    views_of, pooled_of, view_vectors, pooled_vectors = [], [], [], []
    for location in locations:
        views, good = [], []
        for path in location.paths:
            key = keys.get((path, location.bearing, location.heading))
            if key in damaged:
                views.append({"path": path, "status": f"damaged stored embedding ({damaged[key]})"})
            elif key not in vectors:
                views.append({"path": path, "status": NOT_STORED})
            else:
                good.append(vectors[key])
                views.append({"path": path, "status": "ok", "row": len(view_vectors)})
                view_vectors.append(vectors[key])
        pooled = None
        if good:
            mean = np.mean(good, axis=0)
            pooled = len(pooled_vectors)
            pooled_vectors.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
        views_of.append(views)
        pooled_of.append(pooled)
    per_view = _readings(view_vectors, texts, label_set, logit_scale, top_k)
    per_point = _readings(pooled_vectors, texts, label_set, logit_scale, top_k)
    results = []
    for views, pooled in zip(views_of, pooled_of):
        for view in views:
            if "row" in view:
                view.update(per_view[view.pop("row")])
        results.append({"views": views, "pooled": None if pooled is None else per_point[pooled]})
    return results


def _readings(vectors, texts, label_set, logit_scale, top_k) -> list[dict]:
    """Top labels, their probabilities and the margin of each vector."""
    import numpy as np

    if not vectors:
        return []
    scores = score(np.stack(vectors), texts, label_set, logit_scale, top_k)
    return [
        {
            "labels": scores.top_labels(row),
            "probabilities": [float(p) for p in scores.probability[row]],
            # NaN (a set of one label) is not JSON: None.
            "margin": None if np.isnan(scores.margin[row]) else float(scores.margin[row]),
        }
        for row in range(len(vectors))
    ]
