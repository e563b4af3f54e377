"""Embedding past one machine: a Ray Data pipeline over a Ray cluster, into the store's shards.

read, hash, decode and cut views (CPU tasks running the engine's own ``prepare_image``)
→ encode (an actor pool, one model per actor, on a GPU or CPUs) → write (this process adds
Arrow shards to the store, ``shards.py``). Images the store knows (by path and file version,
or by content) are not encoded again, so a second or resumed run computes nothing twice.

Why this process writes: Ray retries the blocks of a worker that dies (tasks are retried, actors
restarted) and may so hand a block's rows over twice; one writer that keeps each key once makes
the store hold each digest once whatever failed on the way. Vectors are small beside images, so
one writer is no bottleneck. Ray is optional (``requirements-ray.txt``); nothing here imports it
until a run asks for it.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from ...shared.errors import MusError
from ...shared.progress import LoggingProgress, Progress, check_canceled
from ..imagery.panorama import ViewSetting
from .classify import embedding_cache_dir, model_cache_dir, store_key
from .embedding import Location, image_tasks, resolve_from_store
from .models import ModelSpec, load_model
from .store import EmbeddingStore
from .views import ImageFacts, prepare_image

RAY_REQUIREMENTS = Path(__file__).resolve().parents[1] / "requirements-ray.txt"
PACKAGE = Path(__file__).resolve().parents[2]  # mus_qgis, shipped to the cluster's workers
DEFAULT_SHARD_ROWS = 65_536
DECODE_MEMORY = 2**30


def require_ray():
    """Ray Data, or an error that says how to install it into this environment."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise MusError(
            f"--ray needs Ray, which this engine environment lacks ({exc}). Install it with "
            f"{sys.executable} -m pip install -r {RAY_REQUIREMENTS} (and the same on every node "
            "of the cluster), or leave --ray out to embed on this machine."
        ) from None
    return ray


@dataclass
class RayEmbedResult:
    store_path: Path
    statuses: dict[str, str]  # image path → ok, cached, or why it failed
    counts: dict[str, int] = field(default_factory=dict)
    encoder_pids: set[int] = field(default_factory=set)  # the actors' processes that encoded


def connect(address: str | None):
    """Join the cluster at ``address`` (``auto``, ``ray://host:10001``) or start a local one.

    A Ray session already open in this process (a test's local cluster) is used as it is.
    """
    ray = require_ray()
    if ray.is_initialized():
        return ray
    runtime_env = {"py_modules": [str(PACKAGE)]}  # the engine's code, for nodes that lack it
    try:
        ray.init(address=address or None, runtime_env=runtime_env, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise MusError(
            f"Cannot reach the Ray cluster at {address!r} ({exc}): start it (ray start --head, "
            "ray up, KubeRay) or give its address (auto, or ray://HEAD:10001)."
        ) from exc
    return ray


def embed_with_ray(
    locations: list[Location],
    spec: ModelSpec,
    setting: ViewSetting,
    cache_dir: str | Path,
    address: str | None = None,
    actors: int = 1,
    cpus_per_actor: float = 1.0,
    gpus_per_actor: float | None = None,
    decode_cpus: float = 1.0,
    batch_size: int = 32,
    fast_decode: bool = True,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    progress: Progress | None = None,
) -> RayEmbedResult:
    """Embed every image of ``locations`` on a Ray cluster into the store under ``cache_dir``.

    ``batch_size`` counts views, as in the single-process engine; the store is the one
    ``embed`` and CLIP-classify use for this model, view setting and decode.
    """
    progress = progress or LoggingProgress()
    ray = connect(address)
    if gpus_per_actor is None:  # one model per GPU where the cluster has GPUs
        gpus_per_actor = 1.0 if ray.cluster_resources().get("GPU", 0) else 0.0
    # The model here only names the store and gives its input size; the actors load their own.
    model = load_model(replace(spec, device="cpu"), model_cache_dir(cache_dir))
    store = EmbeddingStore.under(
        embedding_cache_dir(cache_dir), model.identity, store_key(setting, fast_decode)
    )
    try:
        if not store.writable:
            raise MusError(
                f"The embedding store {store.path} is read-only: a Ray run adds to it. Make it "
                "writable or choose another cache folder (--cache-dir)."
            )
        options = {
            "actors": actors,
            "cpus_per_actor": cpus_per_actor,
            "gpus_per_actor": gpus_per_actor,
            "decode_cpus": decode_cpus,
            "batch_size": batch_size,
            "fast_decode": fast_decode,
            "shard_rows": shard_rows,
        }
        return _run(ray, locations, spec, setting, model, store, options, progress)
    finally:
        store.close()


def _run(ray, locations, spec, setting, model, store, options, progress) -> RayEmbedResult:
    tasks, _ = image_tasks(locations)
    known_keys = store.keys()
    to_read = resolve_from_store(list(tasks.values()), store, setting, known_keys)
    statuses = {t.path: "cached" for t in tasks.values() if t.status == "cached"}
    counts = {"images": len(tasks), "known without reading": len(tasks) - len(to_read)}
    counts.update({"encoded": 0, "cached": 0, "failed": 0, "same image as another": 0})
    result = RayEmbedResult(store.path, statuses, counts)
    if not to_read:
        progress.info(f"Every image is in the store {store.path} already: nothing to compute.")
        return result

    views_per_image = 1 if setting.centre_crop else setting.count
    images_per_batch = max(1, math.ceil(options["batch_size"] / views_per_image))
    gpus = float(options["gpus_per_actor"])
    items = [
        {"path": t.path, "bearing": _nan(t.bearing), "heading": _nan(t.heading)} for t in to_read
    ]
    # A block is one model batch: every CPU gets work soon, rows reach the store as they are
    # done, and a dead worker costs one batch to redo.
    blocks = max(1, math.ceil(len(items) / images_per_batch))
    dataset = ray.data.from_items(items, override_num_blocks=blocks)
    dataset = dataset.map_batches(
        cut_views,
        batch_size=None,
        batch_format="numpy",
        fn_kwargs={
            "setting": setting,
            "preprocess": model.preprocess,
            "known_keys": known_keys,
            "fast_decode": options["fast_decode"],
        },
        num_cpus=options["decode_cpus"],
        # What a task may hold: a 16k×8k panorama decodes to 384 MiB. Asking for memory, which
        # the actors do not, also keeps these tasks apart from them (Ray Data would otherwise
        # fuse the two): decoding must not wait on the model, which may be on a GPU. (Ray Data
        # runs a task whose worker died again, and restarts a dead actor: no image is lost.)
        memory=DECODE_MEMORY,
    )
    dataset = dataset.map_batches(
        Encoder,
        batch_size=images_per_batch,
        batch_format="numpy",
        fn_constructor_kwargs={
            "spec": replace(spec, device="cuda" if gpus else "cpu"),
            "threads": max(1, int(options["cpus_per_actor"])),
        },
        compute=ray.data.ActorPoolStrategy(size=int(options["actors"])),
        num_cpus=float(options["cpus_per_actor"]),
        num_gpus=gpus,
    )

    written: set[str] = set(known_keys)
    rows, files = [], []
    done = 0
    try:
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for row in _rows(batch):
                done += 1
                result.encoder_pids.add(row["pid"])
                statuses[row["path"]] = row["status"]
                if row["facts"] is not None:
                    files.append((row["path"], row["size"], row["mtime_ns"], row["facts"]))
                if row["status"] == "cached":
                    counts["cached"] += 1
                elif row["status"] != "ok":
                    counts["failed"] += 1
                elif row["key"] in written:
                    counts["same image as another"] += 1  # a retried block, or a copy
                else:
                    written.add(row["key"])
                    rows.append((row["key"], row["vector"], row["views"]))
                    counts["encoded"] += 1
            if len(rows) >= options["shard_rows"]:
                store.shards.write(rows, files)
                rows, files = [], []
            progress.set_progress(100.0 * done / len(items))
            check_canceled(progress)
    finally:
        # Canceled or failed: what was computed is kept all the same; a new run goes on from it.
        store.shards.write(rows, files)
    result.encoder_pids.discard(0)
    counts["encoder processes"] = len(result.encoder_pids)
    progress.info(
        f"{counts['encoded']} images encoded on Ray into {store.shards.folder}; "
        f"{counts['cached'] + counts['known without reading']} were stored already, "
        f"{counts['failed']} unusable."
    )
    return result


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _angle(value) -> float | None:
    value = float(value)
    return None if value != value else value


def cut_views(batch: dict, setting, preprocess, known_keys, fast_decode) -> dict:
    """Ray task: read, hash and (unless stored) decode and cut each image, as the engine does."""
    import numpy as np

    out = {name: [] for name in _COLUMNS if name not in ("vector", "pid")}
    for path, bearing, heading in zip(
        batch["path"], batch["bearing"], batch["heading"], strict=True
    ):
        path = str(path)
        prepared = prepare_image(
            path, setting, preprocess, known_keys, _angle(bearing), _angle(heading), fast_decode
        )
        facts = prepared.facts
        try:
            stat = os.stat(path)
            size, mtime = stat.st_size, stat.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        views = prepared.views.numpy() if prepared.views is not None else None
        out["path"].append(path)
        out["key"].append(prepared.key)
        out["status"].append(prepared.status)
        out["digest"].append(facts.digest if facts else "")
        out["kind"].append(facts.kind if facts else "")
        out["width"].append(facts.width if facts else -1)
        out["height"].append(facts.height if facts else -1)
        out["heading"].append(_nan(facts.heading if facts else None))
        out["size"].append(size)
        out["mtime_ns"].append(mtime)
        out["views"].append(0 if views is None else views.shape[0])
        out["pixels"].append(b"" if views is None else views.tobytes())
    arrays = {name: np.array(values) for name, values in out.items()}
    arrays["pixels"] = np.array(out["pixels"], dtype=object)
    return arrays


class Encoder:
    """Ray actor: one model, kept for the whole run; encodes the views of a batch of images."""

    def __init__(self, spec: ModelSpec, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.model = load_model(spec)
        size = self.model.preprocess["size"]
        self.size = int(size[0] if isinstance(size, tuple | list) else size)
        self.pid = os.getpid()

    def __call__(self, batch: dict) -> dict:
        import numpy as np
        import torch

        counts = [int(n) for n in batch["views"]]
        pixels = [
            np.frombuffer(blob, dtype=np.uint8).reshape(n, 3, self.size, self.size)
            for blob, n in zip(batch["pixels"], counts, strict=True)
            if n
        ]
        vectors = [b""] * len(counts)
        if pixels:
            features = self.model.encode_images(torch.from_numpy(np.concatenate(pixels)))
            start = 0
            for index, n in enumerate(counts):
                if n:
                    part = features[start : start + n]
                    start += n
                    pooled = torch.nn.functional.normalize(part.mean(dim=0), dim=0)
                    vectors[index] = pooled.numpy().astype("<f4").tobytes()
        out = {name: batch[name] for name in batch if name != "pixels"}
        out["vector"] = np.array(vectors, dtype=object)
        out["pid"] = np.full(len(counts), self.pid, dtype=np.int64)
        return out


_COLUMNS = (
    "path",
    "key",
    "status",
    "digest",
    "kind",
    "width",
    "height",
    "heading",
    "size",
    "mtime_ns",
    "views",
    "pixels",
    "vector",
    "pid",
)


def _rows(batch: dict):
    import numpy as np

    for index in range(len(batch["path"])):
        digest = str(batch["digest"][index])
        heading = float(batch["heading"][index])
        facts = (
            ImageFacts(
                digest,
                str(batch["kind"][index]),
                int(batch["width"][index]),
                int(batch["height"][index]),
                None if heading != heading else heading,
            )
            if digest
            else None
        )
        size, mtime = int(batch["size"][index]), int(batch["mtime_ns"][index])
        blob = batch["vector"][index]
        yield {
            "path": str(batch["path"][index]),
            "key": str(batch["key"][index]),
            "status": str(batch["status"][index]),
            "facts": facts,
            "size": None if size < 0 else size,
            "mtime_ns": None if mtime < 0 else mtime,
            "views": int(batch["views"][index]),
            "vector": np.frombuffer(blob, dtype="<f4") if blob else None,
            "pid": int(batch["pid"][index]),
        }
