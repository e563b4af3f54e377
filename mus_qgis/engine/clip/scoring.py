"""Zero-shot scores of image embeddings against a label set's prompts.

Each label's text embedding is the mean of its normalised prompt embeddings over the templates,
normalised again (open_clip's zero-shot ensembling). Scores per image: cosine similarity, softmax
probability at the model's logit scale, the top-k labels and the margin between the first two.
"""

from __future__ import annotations

from dataclasses import dataclass

from .labels import LabelSet


@dataclass
class Scores:
    label_set: LabelSet
    top_index: object  # int N×k, -1 where the image had no embedding
    cosine: object  # float32 N×k
    probability: object  # float32 N×k
    margin: object  # float32 N: probability of the first label minus that of the second
    all_cosine: object  # float32 N×L
    all_probability: object  # float32 N×L

    @property
    def top_k(self) -> int:
        return self.top_index.shape[1]

    def top_labels(self, row: int) -> list[str | None]:
        return [self.label_set.labels[i].text if i >= 0 else None for i in self.top_index[row]]


def label_embeddings(model, label_set: LabelSet, text_store=None):
    """One normalised embedding per label (L×D float32), prompts read from/written to the store."""
    import numpy as np

    prompts = label_set.prompts()
    flat = list(dict.fromkeys(p for per_label in prompts for p in per_label))
    known = text_store.get(flat) if text_store is not None else {}
    missing = [p for p in flat if p not in known]
    if missing:
        encoded = model.encode_texts(missing).numpy()
        fresh = dict(zip(missing, encoded, strict=True))
        if text_store is not None:
            text_store.put(fresh)
        known = {**known, **fresh}
    weights = np.stack([np.mean([known[p] for p in per_label], axis=0) for per_label in prompts])
    weights /= np.linalg.norm(weights, axis=1, keepdims=True)
    return weights.astype(np.float32)


def score(
    image_vectors, text_vectors, label_set: LabelSet, logit_scale: float, top_k: int = 3
) -> Scores:
    """Scores of N image embeddings (NaN rows allowed) against L label embeddings."""
    import numpy as np

    vectors = np.asarray(image_vectors, dtype=np.float32)
    count, labels = vectors.shape[0], text_vectors.shape[0]
    top_k = max(1, min(top_k, labels))
    valid = ~np.isnan(vectors).any(axis=1) if count else np.zeros(0, dtype=bool)
    cosine = np.full((count, labels), np.nan, dtype=np.float32)
    cosine[valid] = vectors[valid] @ text_vectors.T
    logits = logit_scale * cosine[valid]
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    probability = np.full_like(cosine, np.nan)
    probability[valid] = exp / exp.sum(axis=1, keepdims=True)

    top_index = np.full((count, top_k), -1, dtype=np.int64)
    if valid.any():
        order = np.argsort(-cosine[valid], axis=1, kind="stable")[:, :top_k]
        top_index[valid] = order
    rows = np.arange(count)[:, None]
    safe = np.where(top_index >= 0, top_index, 0)
    top_cos = np.where(top_index >= 0, cosine[rows, safe], np.nan).astype(np.float32)
    top_prob = np.where(top_index >= 0, probability[rows, safe], np.nan).astype(np.float32)
    margin = np.full(count, np.nan, dtype=np.float32)
    if labels >= 2 and valid.any():
        ranked = np.sort(probability[valid], axis=1)
        margin[valid] = ranked[:, -1] - ranked[:, -2]
    return Scores(label_set, top_index, top_cos, top_prob, margin, cosine, probability)
