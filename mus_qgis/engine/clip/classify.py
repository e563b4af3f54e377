"""The whole classification of locations: model, embeddings (stored), label scores, metadata."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ...shared.errors import EmbeddingStoreError, MusError
from ...shared.labels import LabelSet
from ...shared.progress import LoggingProgress, Progress, check_canceled, warn
from ...shared.resources import plugin_version
from ..imagery.panorama import ViewSetting
from .embedding import DEFAULT_BATCH_SIZE, Location, LocationEmbeddings, embed_locations
from .models import LoadedModel, ModelSpec, load_model
from .rescore import StoreRanking, rank_chunks_by_set, read_ahead
from .scoring import Scores, concatenated_scores, label_embeddings, score
from .shards import ROW_GROUP_ROWS
from .store import WHERE_TO_CHOOSE, EmbeddingStore, TextStore

# Stored embeddings read at a time when a whole store is scored or ranked: 128 MiB of 512-value
# vectors, whatever the store holds.
CHUNK_ROWS = ROW_GROUP_ROWS

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


def check_cache_dir(cache_dir) -> None:
    """A cache path that exists must be a folder (it is created when it does not exist)."""
    if cache_dir is None:
        return
    path = Path(cache_dir)
    if path.exists() and not path.is_dir():
        raise EmbeddingStoreError(
            f"The cache folder {path} is a file, not a folder: choose a folder "
            f"({WHERE_TO_CHOOSE}); it is created when it does not exist."
        )


def check_top_k(top_k: int) -> None:
    if top_k < 1:
        raise MusError(
            f"Labels to keep per point (top k) must be 1 or more, not {top_k} "
            "(TOP_K in QGIS, --top-k on the command line)."
        )


def store_key(setting: ViewSetting, fast_decode: bool = True) -> str:
    """What names a store: the view setting, and how JPEGs were decoded.

    Draft-mode (fast) embeddings keep the store they always had; full-resolution ones have their
    own, so switching the decode never mixes the two nor takes one for the other.
    """
    return setting.key if fast_decode else f"{setting.key}-full-decode"


def open_stores(cache_dir, model: LoadedModel, setting: ViewSetting, fast_decode: bool = True):
    if cache_dir is None:
        return None, None
    check_cache_dir(cache_dir)
    root = embedding_cache_dir(cache_dir)
    store = EmbeddingStore.under(root, model.identity, store_key(setting, fast_decode))
    try:
        text_store = TextStore(root, model.identity)
    except BaseException:
        store.close()
        raise
    return store, text_store


def report_notes(progress, *stores) -> None:
    """Tell the user what the image stores said when opened: read-only, upgraded. (The prompt
    store is not worth a word: prompts are encoded again in a moment.)"""
    for opened in stores:
        for note in getattr(opened, "notes", ()):
            warn(progress, note)


def report_damaged(progress, store, text_store, embeddings: LocationEmbeddings | None) -> None:
    """Name the images whose stored embeddings were damaged, and what became of them."""
    if store is not None and embeddings is not None and embeddings.damaged:
        names = sorted(
            {path for paths in embeddings.damaged_paths.values() for path in paths}
            or embeddings.damaged
        )
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        reasons = ", ".join(sorted(set(embeddings.damaged.values())))
        warn(
            progress,
            f"The embedding store {store.path} held {len(embeddings.damaged)} damaged "
            f"embedding(s) ({reasons}), of {shown}: computed again from the images that could "
            "be read; a point whose image could not says so in its status.",
        )
    if text_store is not None and text_store.damaged:
        warn(
            progress,
            f"{text_store.damaged} damaged prompt embedding(s) in the store were encoded again.",
        )


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
    probe=None,
) -> ClassificationRun:
    """Embed each location's images (reusing stored ones) and score them against the labels.

    ``fast_decode`` decodes JPEGs in draft mode (see ``views.decoded_photo``); it is recorded
    in the run settings and names the store. A trained ``probe`` (``probe.Probe``, made for
    this model, view setting and label set) scores the embeddings instead of the prompts.
    """
    progress = progress or LoggingProgress()
    setting = setting or ViewSetting()
    check_top_k(top_k)
    check_cache_dir(cache_dir)
    model = load_model(spec, model_cache_dir(cache_dir) if cache_dir else None)
    progress.info(f"Model: {spec.describe()} on {model.device}.")
    if model.untrained:
        progress.info(UNTRAINED_WARNING)
    if probe is not None:
        probe.check_fits(model.identity, store_key(setting, fast_decode), label_set)
    check_canceled(progress)
    store, text_store = open_stores(cache_dir, model, setting, fast_decode)
    embeddings = None
    try:
        embeddings = embed_locations(
            locations, model, setting, store, progress, batch_size, workers, fast_decode
        )
        check_canceled(progress)
        text_vectors = label_embeddings(model, label_set, text_store)
    finally:
        report_notes(progress, store)
        report_damaged(progress, store, text_store, embeddings)
        for opened in (store, text_store):
            if opened is not None:
                opened.close()
    if probe is None:
        scores = score(embeddings.vectors, text_vectors, label_set, model.logit_scale, top_k)
    else:
        scores = probe.scores(embeddings.vectors, label_set, top_k)
    _agree_status_with_scores(embeddings, scores)
    counts = embeddings.counts
    failed = len(locations) - counts["locations ok"]
    progress.info(
        f"{counts['locations ok']} of {len(locations)} locations classified, {failed} not; "
        f"{counts.get('decoded', 0)} images decoded, "
        f"{counts.get('cached', 0) + counts.get('known without reading', 0)} from the store, "
        f"{counts.get('failed', 0)} unusable."
    )
    metadata = run_metadata(model, label_set, setting, top_k, fast_decode)
    if probe is not None:
        metadata["probe"] = probe.summary()
    return ClassificationRun(embeddings, scores, metadata, model)


def _agree_status_with_scores(embeddings: LocationEmbeddings, scores: Scores) -> None:
    """A location is "ok" exactly when it has labels: the log, the status and the layer agree."""
    for row, status in enumerate(embeddings.status):
        if status == "ok" and scores.top_index[row, 0] < 0:
            embeddings.status[row] = "error: its embedding is not a finite vector"
    embeddings.counts["locations ok"] = sum(1 for s in embeddings.status if s == "ok")


@dataclass
class StoredScores:
    """Scores of every image embedding in a store, one ``Scores`` per label set asked for;
    ``paths`` as recorded when each image was embedded."""

    paths: list[str]
    scores: list[Scores]
    model: LoadedModel


@dataclass
class StoredRankings:
    """What a ranking needs of every stored image embedding, per label set asked for: each
    embedding's first label and each label's mean probability, not an N×L matrix."""

    rankings: list[StoreRanking]
    count: int
    model: LoadedModel


def score_stored_embeddings(
    label_sets: Sequence[LabelSet],
    spec: ModelSpec,
    setting: ViewSetting,
    cache_dir: str | Path,
    top_k: int = 1,
    progress: Progress | None = None,
    fast_decode: bool = True,
) -> StoredScores:
    """Score every image embedded so far with this model and view setting; no image is read.

    This is how label sets are scored on a laptop over embeddings a GPU server computed: only the
    prompts go through the model. Holds every score in memory: ``iter_stored_scores`` gives them
    chunk by chunk for a store of millions.
    """
    paths: list[str] = []
    parts: list[list[Scores]] = []
    with iter_stored_scores(
        label_sets, spec, setting, cache_dir, top_k, progress, fast_decode
    ) as chunks:
        for chunk_paths, chunk_scores in chunks:
            paths += chunk_paths
            parts.append(chunk_scores)
    scores = [concatenated_scores(list(per_set)) for per_set in zip(*parts)]
    return StoredScores(paths, scores, chunks.model)


def iter_stored_scores(
    label_sets: Sequence[LabelSet],
    spec: ModelSpec,
    setting: ViewSetting,
    cache_dir: str | Path,
    top_k: int = 1,
    progress: Progress | None = None,
    fast_decode: bool = True,
) -> StoredScoreChunks:
    """Every stored image embedding's scores, chunk by chunk (use it in a ``with``).

    The store is checked whole before the first chunk is given: a damaged stored embedding is
    computed again when its image is where the store saw it; otherwise the scoring is refused (a
    table without some images, or with a wrong vector, would mislead).
    """
    progress = progress or LoggingProgress()
    check_top_k(top_k)
    model, text_sets, store = _model_texts_and_store(
        label_sets, spec, setting, cache_dir, progress, fast_decode
    )

    def count_rows():
        damaged: dict[str, str] = dict(store.verify_shards(progress))
        return sum(len(m) for m in _checked_matrices(store, damaged, progress)), damaged

    try:
        count = _read_mending(count_rows, model, setting, store, progress, fast_decode)
        _refuse_empty(count, spec, setting, cache_dir)
    except BaseException:
        store.close()
        raise
    titles = ", ".join(label_set.title for label_set in label_sets)
    progress.info(f"{count} stored image embeddings scored against {titles}.")
    return StoredScoreChunks(model, store, list(zip(label_sets, text_sets)), top_k, progress)


class StoredScoreChunks:
    """(image paths, one ``Scores`` per label set) per chunk of a checked store, in the store's
    order (its SQLite rows, then its shards'). Memory: one chunk of vectors and scores, plus
    the store's path table. Closes the store when used as a context manager."""

    def __init__(self, model: LoadedModel, store, sets: list, top_k: int, progress) -> None:
        self.model = model
        self._store, self._sets, self._top_k, self._progress = store, sets, top_k, progress

    def __iter__(self):
        path_of = _paths_by_digest(self._store.files())
        for keys, matrix, _ in self._store.iter_chunks(CHUNK_ROWS):
            check_canceled(self._progress)
            if not len(matrix):
                continue
            keys = keys if isinstance(keys, list) else keys.to_pylist()
            paths = [_path_of_key(key, path_of) for key in keys]
            yield (
                paths,
                [
                    score(matrix, texts, label_set, self.model.logit_scale, self._top_k)
                    for label_set, texts in self._sets
                ],
            )

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> StoredScoreChunks:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def rank_stored_embeddings(
    label_sets: Sequence[LabelSet],
    spec: ModelSpec,
    setting: ViewSetting,
    cache_dir: str | Path,
    progress: Progress | None = None,
    fast_decode: bool = True,
) -> StoredRankings:
    """Rank label sets over every image embedded with this model and view setting, reading the
    store once, in chunks: memory stays at one chunk of vectors (plus the store's keys) whether
    it holds thousands or millions of rows (a store made on a cluster). The same numbers as
    ranking ``score_stored_embeddings``'s scores; a damaged embedding is mended from its image
    or the ranking refused, as there.
    """
    progress = progress or LoggingProgress()
    model, text_sets, store = _model_texts_and_store(
        label_sets, spec, setting, cache_dir, progress, fast_decode
    )
    try:
        rankings = _read_mending(
            lambda: rank_store(store, text_sets, model.logit_scale, progress),
            model,
            setting,
            store,
            progress,
            fast_decode,
        )
    finally:
        store.close()
    count = rankings[0].count if rankings else 0
    _refuse_empty(count, spec, setting, cache_dir)
    titles = ", ".join(label_set.title for label_set in label_sets)
    progress.info(f"{count} stored image embeddings ranked against {titles}.")
    return StoredRankings(rankings, count, model)


def rank_store(store, text_sets: list, logit_scale: float, progress: Progress):
    """One reading of a whole store: a ``StoreRanking`` per label set's text vectors, and the
    damaged keys found ({key: why}; their rows are left out of the rankings)."""
    # Each shard file's checksums first (once on this machine), here: they report progress.
    damaged: dict[str, str] = dict(store.verify_shards(progress))
    # The next chunk is read (and checked) while this one is ranked: cold, the reading is disk
    # time and the ranking arithmetic (BENCHMARKS.md, re-scoring a million).
    matrices = read_ahead(_checked_matrices(store, damaged, progress))
    return rank_chunks_by_set(matrices, text_sets, logit_scale, checked=True), damaged


def _checked_matrices(store, damaged: dict[str, str], progress: Progress):
    """The trusted vectors of a whole store, a chunk at a time; the damaged keys found go into
    ``damaged`` on the way."""
    for _, matrix, chunk_damaged in store.iter_chunks(CHUNK_ROWS):
        check_canceled(progress)
        damaged.update(chunk_damaged)
        yield matrix


def _model_texts_and_store(label_sets, spec, setting, cache_dir, progress, fast_decode):
    """The model, each label set's text vectors and the open image store."""
    check_cache_dir(cache_dir)
    model = load_model(spec, model_cache_dir(cache_dir))
    store, text_store = open_stores(cache_dir, model, setting, fast_decode)
    try:
        report_notes(progress, store)
        text_sets = []
        for label_set in label_sets:
            check_canceled(progress)
            text_sets.append(label_embeddings(model, label_set, text_store))
        report_damaged(progress, None, text_store, None)
    except BaseException:
        store.close()
        raise
    finally:
        text_store.close()
    return model, text_sets, store


def _read_mending(read, model, setting, store, progress, fast_decode):
    """What ``read()`` gives of one whole reading of the store ((result, damaged keys)): damage
    found is computed again from its images and the store read again; damage still there then
    refuses the whole reading."""
    result, damaged = read()
    if damaged:
        _mend_damaged(damaged, store.files(), model, setting, store, progress, fast_decode)
        result, damaged = read()
        if damaged:
            raise _damaged_store_refusal(store, damaged, store.files())
    return result


def _refuse_empty(count: int, spec: ModelSpec, setting: ViewSetting, cache_dir) -> None:
    if not count:
        raise EmbeddingStoreError(
            f"No image has been embedded with {spec.describe()} and views {setting.key} "
            f"under {embedding_cache_dir(cache_dir)}: embed or classify images first."
        )


def _paths_by_digest(files: dict) -> dict[str, list[str]]:
    """Each image digest's paths, in the order recorded (one image may be at several); a stored
    key is the digest of the image's bytes, and a panorama's yaw after an @."""
    paths: dict[str, list[str]] = {}
    for path, facts in files.items():
        paths.setdefault(facts.digest, []).append(path)
    return paths


def _path_of_key(key: str, paths_by_digest: dict[str, list[str]]) -> str:
    """The first path of the image a stored key came from; the key itself when none is known."""
    return paths_by_digest.get(key.split("@")[0], [key])[0]


def _mend_damaged(damaged, files, model, setting, store, progress, fast_decode) -> None:
    """Compute damaged stored embeddings again from their images, where the images are."""
    paths_of = _paths_by_digest(files)
    locations = []
    for key in damaged:
        digest, _, yaw = key.partition("@")
        for path in paths_of.get(digest, ()):
            # A panorama's key holds its views' yaw offset: bearing = offset, heading = 0.
            offset = float(yaw) if yaw else None
            locations.append(Location((path,), offset, 0.0 if yaw else None))
    if locations:
        result = embed_locations(
            locations, model, setting, store, progress, fast_decode=fast_decode
        )
        report_damaged(progress, store, None, result)


def _damaged_store_refusal(store, damaged: dict[str, str], files: dict) -> EmbeddingStoreError:
    path_of = _paths_by_digest(files)
    names = sorted({_path_of_key(key, path_of) for key in damaged})
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    reasons = ", ".join(sorted(set(damaged.values())))
    where = (
        "images that are not where the store saw them"
        if store.writable
        else "images the read-only store cannot take again (make it writable first)"
    )
    return EmbeddingStoreError(
        f"The embedding store {store.path} holds {len(damaged)} damaged embedding(s) "
        f"({reasons}) of {where}: {shown}. No score is given from a damaged store: embed or "
        "classify those images again where they are (that mends the store), or move the store "
        "aside to start afresh."
    )


def run_metadata(
    model: LoadedModel,
    label_set: LabelSet,
    setting: ViewSetting,
    top_k: int,
    fast_decode: bool = True,
) -> dict:
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
        # JPEG draft-mode decoding: faster, scores within about 1e-4 of a full decode.
        "jpeg_draft_decode": bool(fast_decode),
        "top_k": top_k,
        # Turns cosines into probabilities: the street inspector scores each view with it.
        "logit_scale": float(model.logit_scale),
        "open_clip_version": open_clip.__version__,
        "torch_version": torch.__version__,
    }
