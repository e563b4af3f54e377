"""Zero-shot scores of image embeddings against a label set's prompts.

Each label's text embedding is the mean of its normalised prompt embeddings over the templates,
normalised again (open_clip's zero-shot ensembling). Scores per image: cosine similarity, softmax
probability at the model's logit scale, the top-k labels and the margin between the first two.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...shared.labels import LabelSet
from ...shared.sequences import zip_same_length


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


def concatenated_scores(parts: list[Scores]) -> Scores:
    """One ``Scores`` of the rows of several (chunks of one label set, in order)."""
    import numpy as np

    fields = ("top_index", "cosine", "probability", "margin", "all_cosine", "all_probability")
    return Scores(
        parts[0].label_set,
        *(np.concatenate([getattr(part, name) for part in parts]) for name in fields),
    )


def label_embeddings(model, label_set: LabelSet, text_store=None):
    """One normalised embedding per label (L×D float32), prompts read from/written to the store."""
    import numpy as np

    prompts = label_set.prompts()
    flat = list(dict.fromkeys(p for per_label in prompts for p in per_label))
    known = text_store.get(flat) if text_store is not None else {}
    missing = [p for p in flat if p not in known]
    if missing:
        encoded = model.encode_texts(missing).numpy()
        fresh = dict(zip_same_length(missing, encoded))
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
    valid = ~np.isnan(vectors).any(axis=1) if count else np.zeros(0, dtype=bool)
    cosine = np.full((count, labels), np.nan, dtype=np.float32)
    cosine[valid] = vectors[valid] @ text_vectors.T
    return scores_from_logits(cosine, logit_scale * cosine, label_set, top_k)


def scores_from_logits(values, logits, label_set: LabelSet, top_k: int = 3) -> Scores:
    """Scores from N×L logits (NaN rows: no embedding); ``values`` is what the score fields show
    (cosine similarity for zero-shot) and ranks the labels like the logits do."""
    import numpy as np

    values = np.asarray(values, dtype=np.float32)
    logits = np.asarray(logits, dtype=np.float32)
    count, labels = values.shape
    top_k = max(1, min(top_k, labels))
    valid = ~np.isnan(logits).any(axis=1) if count else np.zeros(0, dtype=bool)
    shifted = logits[valid] - logits[valid].max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    probability = np.full(values.shape, np.nan, dtype=np.float32)
    probability[valid] = exp / exp.sum(axis=1, keepdims=True)

    top_index = np.full((count, top_k), -1, dtype=np.int64)
    if valid.any():
        order = np.argsort(-values[valid], axis=1, kind="stable")[:, :top_k]
        top_index[valid] = order
    rows = np.arange(count)[:, None]
    safe = np.where(top_index >= 0, top_index, 0)
    top_values = np.where(top_index >= 0, values[rows, safe], np.nan).astype(np.float32)
    top_prob = np.where(top_index >= 0, probability[rows, safe], np.nan).astype(np.float32)
    margin = np.full(count, np.nan, dtype=np.float32)
    if labels >= 2 and valid.any():
        ranked = np.sort(probability[valid], axis=1)
        margin[valid] = ranked[:, -1] - ranked[:, -2]
    return Scores(label_set, top_index, top_values, top_prob, margin, values, probability)
