"""Probe training and re-scoring time on synthetic stored embeddings (no model, no image).

    python scripts/bench_probe.py [--sizes 4157 1000000] [--dim 512] [--labels 27]

For each size: a store holding that many unit vectors of a ViT-B-32's length (512) written
through the store's API, photos by path; then, as mus:trainprobe does, the probe is cross-
validated and trained on 20 corrections per label (27 labels, Urban Atlas 2018's count) and every
location is re-scored from the store (file facts, keys, stored vectors, checked, scored), CHUNK
locations at a time. Training depends on the corrections, not on the layer; re-scoring on both.
Prints times, rates, the peak memory, and ratios taken in this one run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

try:
    import resource
except ImportError:  # Windows has no getrusage: the peak is not measured there
    resource = None

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def peak_mib() -> float:
    if resource is None:
        return float("nan")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_store(folder: Path, size: int, dim: int, texts, rng):
    """A store of ``size`` photos' embeddings near the label embeddings; (store, targets)."""
    import numpy as np

    from mus_qgis.engine.clip.store import EmbeddingStore
    from mus_qgis.engine.clip.views import ImageFacts

    store = EmbeddingStore.under(folder, "bench/synthetic", "views4-fov90-pitch0")
    targets = rng.integers(0, len(texts), size)
    batch = 50_000
    for start in range(0, size, batch):
        part = targets[start : start + batch]
        vectors = 0.3 * texts[part] + rng.normal(size=(len(part), dim)) * (0.9 / np.sqrt(dim))
        vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
        ids = range(start, start + len(part))
        store.put(
            [(f"{i:032x}", vector, 1) for i, vector in zip(ids, vectors, strict=True)],
            [(f"/photos/{i}.jpg", 1, 1, ImageFacts(f"{i:032x}", "photo", 1, 1, None)) for i in ids],
        )
    return store, targets


def run(size: int, dim: int, labels: int, per_label: int) -> dict:
    import numpy as np

    from mus_qgis.engine.clip.embedding import Location
    from mus_qgis.engine.clip.probe import Probe, cross_validate, fit_weights
    from mus_qgis.engine.clip.teach import rescore, stored_vectors
    from mus_qgis.engine.imagery.panorama import ViewSetting
    from mus_qgis.shared.labels import Label, LabelSet
    from mus_qgis.shared.progress import LoggingProgress

    rng = np.random.default_rng(0)
    texts = np.linalg.qr(rng.normal(size=(dim, labels)))[0].T.astype(np.float32)
    label_set = LabelSet("bench", tuple(Label(f"label {i}") for i in range(labels)), ("{label}",))
    setting = ViewSetting()
    with tempfile.TemporaryDirectory(prefix="mus_bench_probe_") as folder:
        started = time.perf_counter()
        store, targets = synthetic_store(Path(folder), size, dim, texts, rng)
        written = time.perf_counter() - started
        locations = [Location((f"/photos/{i}.jpg",)) for i in range(size)]
        corrected = np.concatenate(
            [np.flatnonzero(targets == label)[:per_label] for label in range(labels)]
        )
        started, cpu = time.perf_counter(), time.process_time()
        found = stored_vectors([locations[i] for i in corrected], store, setting, dim)
        validation = cross_validate(found.vectors, targets[corrected], texts, 100.0, 0.3)
        weights, bias = fit_weights(found.vectors, targets[corrected], texts, 100.0, 0.3)
        trained, trained_cpu = time.perf_counter() - started, time.process_time() - cpu
        started, cpu = time.perf_counter(), time.process_time()
        top_index, *_, status = rescore(
            locations, store, setting, Probe(weights, bias), label_set, 3, LoggingProgress()
        )
        rescored, rescored_cpu = time.perf_counter() - started, time.process_time() - cpu
        store.close()
    assert status.count("ok") == size and (top_index[:, 0] >= 0).all()
    return {
        "size": size,
        "write": written,
        "train": trained,
        "rescore": rescored,
        "train_cpu": trained_cpu,
        "rescore_cpu": rescored_cpu,
        "corrections": len(corrected),
        "method": validation.method,
        "peak_mib": peak_mib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4157, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--labels", type=int, default=27)
    parser.add_argument("--per-label", type=int, default=20)
    args = parser.parse_args()
    import numpy as np

    from mus_qgis.engine.clip.probe import fit_weights

    # torch.optim's first step in a process imports its compiler machinery: once per worker,
    # timed here apart so that it does not count as the first size's training.
    started = time.perf_counter()
    fit_weights(np.eye(2, 4, dtype=np.float32), [0, 1], np.eye(2, 4), 100.0, 0.3)
    print(
        "first probe fit in this process (imports torch and its optimiser; once per worker): "
        f"{time.perf_counter() - started:.1f} s"
    )
    results = []
    for size in args.sizes:
        result = run(size, args.dim, args.labels, args.per_label)
        results.append(result)
        print(
            f"{size:>9,} stored embeddings ({args.dim} values): store written in "
            f"{result['write']:.1f} s (setup, not timed below); probe trained on "
            f"{result['corrections']} corrections ({result['method']} + final fit) in "
            f"{result['train']:.2f} s ({result['train_cpu']:.2f} s of CPU); every location "
            f"re-scored from the store in {result['rescore']:.2f} s ({result['rescore_cpu']:.2f} "
            f"s of CPU; {size / result['rescore']:,.0f} locations/s); "
            f"peak memory {result['peak_mib']:,.0f} MiB",
            flush=True,
        )
    if len(results) >= 2:
        small, big = results[0], results[-1]
        per_small = small["rescore"] / small["size"]
        per_big = big["rescore"] / big["size"]
        print(
            f"ratios: re-scoring time per location, {big['size']:,} vs {small['size']:,}: "
            f"{per_big / per_small:.2f}; training time, {big['size']:,} vs {small['size']:,} "
            f"stored: {big['train'] / small['train']:.2f}; re-scoring {big['size']:,} vs "
            f"training: {big['rescore'] / big['train']:.1f}"
        )


if __name__ == "__main__":
    main()
