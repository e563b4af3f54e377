"""A label set over every stored embedding, in chunks: millions of rows in bounded memory.

What a ranking needs, and no N×L matrix: each embedding's first label, and per label the sum of
its softmax probabilities (so the mean over all embeddings). The same numbers as ``scoring.score``
(cosine at the model's logit scale, softmax over the labels), chunk by chunk: memory is one chunk
of vectors and its chunk×L scores, whatever the store holds. A vector that fails the store's
checks (not finite, not unit length, another length) is counted as damaged and left out.
"""

from __future__ import annotations

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


# Rows scored at a time within a chunk: their scores (rows × labels) stay in the processor's
# cache between the product, the first label and the softmax, instead of a round trip to memory
# each (8,192 × 250 labels is 8 MB).
BLOCK_ROWS = 8_192


def read_ahead(chunks: Iterable, depth: int = 1):
    """The items of ``chunks``, read by a thread of their own up to ``depth`` items ahead of the
    caller: while the caller scores one chunk (arithmetic), the next is read from disk (a cold
    memory-mapped shard is read as its pages are first touched), so a cold reading takes about
    the longer of the two instead of their sum. An error in the reading reaches the caller at
    the item where it happened; a caller that stops early stops the reading too."""
    import queue
    import threading

    box: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def hand_over(item) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for chunk in chunks:
                if not hand_over((chunk, None)):
                    return
            hand_over((end, None))
        except BaseException as exc:  # handed over: the caller raises it
            hand_over((None, exc))

    reader = threading.Thread(target=read, name="mus-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            item, error = box.get()
            if error is not None:
                raise error
            if item is end:
                return
            yield item
    finally:
        stop.set()
        reader.join()


def rank_chunks(chunks: Iterable, text_vectors, logit_scale: float) -> StoreRanking:
    """``chunks``: N×D float32 matrices, or tuples whose second item is one (as
    ``ShardFolder.iter_chunks`` and ``EmbeddingStore.iter_chunks`` give them)."""
    return rank_chunks_by_set(chunks, [text_vectors], logit_scale)[0]


def rank_chunks_by_set(
    chunks: Iterable, text_sets: list, logit_scale: float, checked: bool = False
) -> list[StoreRanking]:
    """One ``StoreRanking`` per label set's L×D text vectors, the store read once for all.

    ``checked``: the chunks' vectors have passed the store's checks already (as
    ``EmbeddingStore.iter_chunks`` gives them), so they are not measured a second time."""
    import numpy as np

    # NumPy (its BLAS) rather than torch: on a two-core AMD EPYC the product took 1.7 s a million
    # rows against torch's 2.3 s, and the whole ranking 2.7 s against 3.8 s (BENCHMARKS.md). The
    # logit scale goes into the text vectors, once, rather than over every score.
    sets = [
        np.ascontiguousarray((np.asarray(t, dtype=np.float32) * np.float32(logit_scale)).T)
        for t in text_sets
    ]
    firsts: list[list] = [[] for _ in sets]
    sums = [np.zeros(texts.shape[1], dtype=np.float64) for texts in sets]
    count, damaged = 0, 0
    dim = sets[0].shape[0]
    for chunk in chunks:
        matrix = chunk[1] if isinstance(chunk, tuple) else chunk
        vectors = np.asarray(matrix, dtype=np.float32)
        if not vectors.shape[0]:
            continue
        if vectors.ndim != 2 or vectors.shape[1] != dim:
            damaged += vectors.shape[0]
            continue
        if not checked:
            norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))  # NaN fails the test too
            good = np.abs(norms - 1.0) <= UNIT_TOLERANCE
            if not good.all():
                damaged += int((~good).sum())
                vectors = vectors[good]
        for start in range(0, vectors.shape[0], BLOCK_ROWS):
            block = vectors[start : start + BLOCK_ROWS]
            rows = np.arange(block.shape[0])
            for texts, first, probability_sum in zip(sets, firsts, sums):
                logits = block @ texts
                best = logits.argmax(axis=1)
                first.append(best.astype(np.int32))
                # The softmax in place: exp(logit - the row's largest) over the row's sum; the
                # per-label sums of the probabilities are then one product with 1 / row sum.
                logits -= logits[rows, best][:, None]
                np.exp(logits, out=logits)
                probability_sum += np.reciprocal(logits.sum(axis=1)) @ logits
        count += vectors.shape[0]
    return [
        StoreRanking(
            np.concatenate(first) if first else np.zeros(0, dtype=np.int32),
            probability_sum,
            count,
            damaged,
        )
        for first, probability_sum in zip(firsts, sums)
    ]
