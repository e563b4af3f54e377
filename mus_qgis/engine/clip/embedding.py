"""Image embeddings for locations, fast: parallel decoding, batched inference, nothing twice.

Worker threads read, hash, decode (JPEG draft mode) and cut images while the calling thread runs
the model on batches of views; Pillow and torch release the GIL for the heavy parts. A location
with several images (a panorama, or one photo per heading) gets the mean of their embeddings.

When the model runs on the CPU, decoding waits while a batch runs (``DecodeGate``): the model's
threads take every core and work in lockstep, so a decoding thread that displaces one of them
stalls them all. Taking turns wasted less than sharing the cores: in bfloat16 on two cores the
engine went from 48 to 55 % of the model alone on whole panoramas (BENCHMARKS.md).
"""

from __future__ import annotations

import math
import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

from ...shared.errors import CanceledError
from ...shared.progress import LoggingProgress, Progress
from ..imagery.panorama import ViewSetting
from .views import embedding_key, prepare_image

DEFAULT_BATCH_SIZE = 32


@dataclass(frozen=True)
class Location:
    """The images of one point, and the angles that aim a panorama's views along the street."""

    paths: tuple[str, ...]
    bearing: float | None = None
    heading: float | None = None


@dataclass
class LocationEmbeddings:
    vectors: object  # float32 N×D; a failed location's row is NaN
    status: list[str]
    images_used: list[int]
    keys: list[list[str]]
    counts: dict[str, int] = field(default_factory=dict)
    # Stored vectors that failed their check ({key: why}) and the image paths of each.
    damaged: dict[str, str] = field(default_factory=dict)
    damaged_paths: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class ImageTask:
    """One image to embed under one (bearing, heading): locations sharing it share its work."""

    path: str
    bearing: float | None
    heading: float | None
    key: str = ""
    status: str = "pending"
    stored_key: str = ""  # the key the store gave it, kept when a damaged vector is redone


class DecodeGate:
    """Lets decoding start only while the model is not running a batch on the same cores.

    An image already being decoded finishes; new ones wait for the batch to end, checked under
    the gate's lock (so a decode woken by one batch's end cannot slip into the next batch). With
    the model on a GPU the gate stays open, so that decoding and inference overlap.
    """

    def __init__(self, model_on_cpu: bool) -> None:
        self._model_on_cpu = model_on_cpu
        self._condition = threading.Condition()
        self._model_running = False

    def wait(self) -> None:
        with self._condition:
            self._condition.wait_for(lambda: not self._model_running)

    def run_model(self, compute):
        if not self._model_on_cpu:
            return compute()
        with self._condition:
            self._model_running = True
        try:
            return compute()
        finally:
            with self._condition:
                self._model_running = False
                self._condition.notify_all()


def _prepare_when_open(gate: DecodeGate, *args):
    gate.wait()
    return prepare_image(*args)


def default_workers() -> int:
    return max(2, min(8, os.cpu_count() or 2))


def image_tasks(locations: list[Location]) -> tuple[dict[tuple, ImageTask], list[list[tuple]]]:
    """One task per distinct (image, bearing, heading), and each location's task ids."""
    tasks: dict[tuple, ImageTask] = {}
    task_of_location = []
    for location in locations:
        ids = []
        for path in location.paths:
            task_id = (path, location.bearing, location.heading)
            tasks.setdefault(task_id, ImageTask(path, location.bearing, location.heading))
            ids.append(task_id)
        task_of_location.append(ids)
    return tasks, task_of_location


def embed_locations(
    locations: list[Location],
    model,
    setting: ViewSetting,
    store=None,
    progress: Progress | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    fast_decode: bool = True,
) -> LocationEmbeddings:
    """Embed every location's images; images already in ``store`` are not read again."""
    import numpy as np

    progress = progress or LoggingProgress()
    tasks, task_of_location = image_tasks(locations)

    known_keys = store.keys() if store is not None else set()
    to_read = resolve_from_store(list(tasks.values()), store, setting, known_keys)
    counts = {"images": len(tasks), "known without reading": len(tasks) - len(to_read)}
    counts.update({"decoded": 0, "cached": 0, "failed": 0})
    encode = partial(
        _encode,
        model=model,
        setting=setting,
        store=store,
        progress=progress,
        batch_size=batch_size,
        workers=workers or default_workers(),
        fast_decode=fast_decode,
        known_keys=known_keys,
        counts=counts,
    )
    # Stored vectors are checked before anything is scored: a damaged one is computed again from
    # its image (its key leaves known_keys, so the image is decoded, not taken as "cached").
    damaged: dict[str, str] = {}
    vectors: dict[str, object] = {}
    if store is not None:
        stored = {t.key for t in tasks.values() if t.status == "cached"}
        found, bad = store.get(stored)
        vectors.update(found)
        damaged.update(bad)
        known_keys.difference_update(bad)
        again = [t for t in tasks.values() if t.status == "cached" and t.key in bad]
        counts["known without reading"] -= len(again)
        to_read += again
    vectors.update(encode(to_read))

    wanted = {t.key for t in tasks.values() if t.status in ("ok", "cached") and t.key}
    missing = wanted - vectors.keys()
    if missing and store is not None:
        # Images read and hashed whose embedding was already stored (another file name).
        found, bad = store.get(missing)
        vectors.update(found)
        if bad:
            damaged.update(bad)
            known_keys.difference_update(bad)
            again = [t for t in tasks.values() if t.key in bad]
            counts["cached"] -= len(again)
            vectors.update(encode(again))
    counts["damaged in store"] = len(damaged)
    dim = _dimension(model, vectors)
    result = np.full((len(locations), dim), np.nan, dtype=np.float32)
    status, used, keys = [], [], []
    for row, ids in enumerate(task_of_location):
        good = [tasks[i] for i in ids if tasks[i].key in vectors]
        keys.append([t.key for t in good])
        used.append(len(good))
        if good:
            mean = np.mean([vectors[t.key] for t in good], axis=0)
            result[row] = mean / max(float(np.linalg.norm(mean)), 1e-12)
            status.append("ok")
        elif not ids:
            status.append("no image")
        else:
            failures = sorted({_failure(tasks[i], damaged) for i in ids})
            status.append("; ".join(failures))
    counts["locations ok"] = sum(1 for s in status if s == "ok")
    damaged_paths = {
        key: sorted({t.path for t in tasks.values() if t.key == key or t.stored_key == key})
        for key in damaged
    }
    return LocationEmbeddings(result, status, used, keys, counts, damaged, damaged_paths)


def _failure(task: ImageTask, damaged: dict[str, str]) -> str:
    """A failed image's status; one whose stored embedding was damaged says so too."""
    if task.stored_key in damaged:
        return (
            f"error: the stored embedding of {task.path} is damaged "
            f"({damaged[task.stored_key]}) and the image cannot be read to compute it again "
            f"({task.status.removeprefix('error: ')})"
        )
    return task.status


def _dimension(model, vectors: dict) -> int:
    for vector in vectors.values():
        return int(vector.shape[-1])
    return int(getattr(model.model, "embed_dim", 0) or model.model.text_projection.shape[-1])


def resolve_from_store(tasks: list[ImageTask], store, setting: ViewSetting, known_keys: set):
    """Tasks whose embedding the store has for this exact file version need no reading at all."""
    if store is None:
        return tasks
    known_files = store.file_facts(t.path for t in tasks)
    to_read = []
    for task in tasks:
        record = known_files.get(task.path)
        if record is not None:
            size, mtime, facts = record
            try:
                stat = os.stat(task.path)
                unchanged = stat.st_size == size and stat.st_mtime_ns == mtime
            except OSError:
                unchanged = True  # images elsewhere (a GPU server): the store speaks for them
            key = embedding_key(facts, setting, task.bearing, task.heading)
            if unchanged and key in known_keys:
                task.key, task.status, task.stored_key = key, "cached", key
                continue
        to_read.append(task)
    return to_read


def _encode(
    tasks, *, model, setting, store, progress, batch_size, workers, fast_decode, known_keys, counts
) -> dict:
    import torch

    computed: dict[str, object] = {}
    pending: list[tuple[ImageTask, object]] = []
    pending_views = 0
    pending_keys: set[str] = set()
    new_files = []
    total = max(len(tasks), 1)
    views_per_image = 1 if setting.centre_crop else setting.count
    window = max(2 * workers, 2 * math.ceil(batch_size / views_per_image))
    gate = DecodeGate(str(getattr(model, "device", "cpu")) == "cpu")

    def flush() -> None:
        nonlocal pending, pending_views
        if not pending:
            return
        batch = torch.cat([views for _, views in pending])
        features = gate.run_model(partial(model.encode_images, batch))
        rows, start = [], 0
        for task, views in pending:
            part = features[start : start + views.shape[0]]
            start += views.shape[0]
            pooled = torch.nn.functional.normalize(part.mean(dim=0), dim=0).numpy()
            computed[task.key] = pooled
            rows.append((task.key, pooled, views.shape[0]))
        if store is not None:
            store.put(rows, new_files)
            new_files.clear()
        pending, pending_views = [], 0

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mus-decode") as pool:
        queue: deque = deque()
        task_iter = iter(tasks)
        done = 0

        def top_up() -> None:
            while len(queue) < window:
                task = next(task_iter, None)
                if task is None:
                    return
                future = pool.submit(
                    _prepare_when_open,
                    gate,
                    task.path,
                    setting,
                    model.preprocess,
                    known_keys,
                    task.bearing,
                    task.heading,
                    fast_decode,
                )
                queue.append((task, future))

        top_up()
        while queue:
            if progress.is_canceled():
                pool.shutdown(wait=False, cancel_futures=True)
                raise CanceledError()
            task, future = queue.popleft()
            prepared = future.result()
            top_up()
            done += 1
            task.stored_key = task.stored_key or task.key
            task.key, task.status = prepared.key, prepared.status
            if prepared.facts is not None:
                new_files.append(_file_record(task.path, prepared.facts))
            if prepared.status == "ok":
                if task.key in computed or task.key in pending_keys:
                    task.status = "cached"  # the same picture under another name
                else:
                    pending.append((task, prepared.views))
                    pending_keys.add(task.key)
                    pending_views += prepared.views.shape[0]
                    counts["decoded"] += 1
            elif prepared.status == "cached":
                counts["cached"] += 1
            else:
                counts["failed"] += 1
            if pending_views >= batch_size:
                flush()
                pending_keys.clear()
            progress.set_progress(100.0 * done / total)
        flush()
    if store is not None and new_files:
        store.put((), new_files)
    return computed


def _file_record(path: str, facts):
    try:
        stat = os.stat(path)
        return (path, stat.st_size, stat.st_mtime_ns, facts)
    except OSError:
        return (path, None, None, facts)
