"""A label set over every stored embedding, in chunks: millions of rows in bounded memory.

What a ranking needs, and no N×L matrix: each embedding's first label, and per label the sum of
its softmax probabilities (so the mean over all embeddings). The same numbers as ``scoring.score``
(cosine at the model's logit scale, softmax over the labels), chunk by chunk: memory is one chunk
of vectors and its chunk×L scores, whatever the store holds. A vector that fails the store's
checks (not finite, not unit length, another length) is counted as damaged and left out.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass

from .store import UNIT_TOLERANCE


@dataclass
class StoreRanking:
    first: object  # int32 per embedding: the index of its first label
    probability_sum: object  # float64 per label
    count: int
    damaged: int

    @property
    def first_places(self):
        import numpy as np

        return np.bincount(self.first, minlength=len(self.probability_sum))

    @property
    def mean_probability(self):
        return self.probability_sum / max(self.count, 1)


def rank_chunks(chunks: Iterable, text_vectors, logit_scale: float) -> StoreRanking:
    """``chunks``: N×D float32 matrices, or tuples whose second item is one (as
    ``ShardFolder.iter_chunks`` and ``EmbeddingStore.iter_chunks`` give them)."""
    return rank_chunks_by_set(chunks, [text_vectors], logit_scale)[0]


def rank_chunks_by_set(chunks: Iterable, text_sets: list, logit_scale: float) -> list[StoreRanking]:
    """One ``StoreRanking`` per label set's L×D text vectors, the store read once for all."""
    import numpy as np
    import torch

    # The logit scale goes into the text vectors, once, rather than over every score.
    sets = [
        torch.as_tensor(np.ascontiguousarray(t, dtype=np.float32)) * logit_scale for t in text_sets
    ]
    firsts: list[list] = [[] for _ in sets]
    sums = [torch.zeros(texts.shape[0], dtype=torch.float64) for texts in sets]
    count, damaged = 0, 0
    dim = sets[0].shape[1]
    with torch.inference_mode():
        for chunk in chunks:
            matrix = chunk[1] if isinstance(chunk, tuple) else chunk
            with warnings.catch_warnings():  # read-only (Arrow's own buffer), and only read
                warnings.simplefilter("ignore", UserWarning)
                vectors = torch.from_numpy(np.asarray(matrix, dtype=np.float32))
            if not vectors.shape[0]:
                continue
            if vectors.shape[1] != dim:
                damaged += vectors.shape[0]
                continue
            norms = torch.linalg.vector_norm(vectors, dim=1)
            good = torch.isfinite(norms) & ((norms - 1.0).abs() <= UNIT_TOLERANCE)
            if not bool(good.all()):
                damaged += int((~good).sum())
                vectors = vectors[good]
            for texts, first, probability_sum in zip(sets, firsts, sums):
                logits = vectors @ texts.T
                first.append(logits.argmax(dim=1).to(torch.int32))
                # One fused pass (max, exp, sum, divide) rather than one pass over memory each.
                probability = torch.softmax(logits, dim=1)
                probability_sum += probability.sum(dim=0).double()  # torch sums float32 pairwise
            count += vectors.shape[0]
    return [
        StoreRanking(
            torch.cat(first).numpy() if first else np.zeros(0, dtype=np.int32),
            probability_sum.numpy(),
            count,
            damaged,
        )
        for first, probability_sum in zip(firsts, sums)
    ]
