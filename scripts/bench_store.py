"""Re-scoring a store at scale: a new 250-label set over 1,000,000 stored embeddings.

Writes synthetic unit vectors (ViT-B-32's 512 values) into the store: the study's 4,157 through
the SQLite file, as a run on one machine stores them, and 1,000,000 into its Arrow shards, as 16
writers of a cluster would. Then, in a fresh process each (so its peak memory is the scoring's
own), ranks a 250-label set over every stored embedding through ``classify.rank_store``, the
reading of ``rank`` and ``mus:ranklabels``: each embedding's first label, each label's mean
probability, every vector checked. The text encoding is left aside (random unit text vectors):
it is the same whatever the store holds. The 1,000,000 are ranked first (each shard file's
checksums are checked then, once), then three times warm (the shards in the page cache) and three
times cold. "Cold" means after ``sync; echo 1 > /proc/sys/vm/drop_caches`` (the kernel's page
cache emptied, as after restarting the machine): this script does exactly that before each cold
run, when it may (root); otherwise it says cold was not measured. The clock starts once the
libraries are imported (a worker that has run a job holds them) and covers opening the store,
reading and checking it, and the ranking. Prints each run's seconds and peak memory, and the
matrix product alone (the ranking's own, NumPy's) for the same sizes, in the same process.

    .engine/env/bin/python scripts/bench_store.py [--rows 1000000] [--labels 250]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
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

from mus_qgis.engine.clip.rescore import BLOCK_ROWS  # noqa: E402

DIM = 512
WRITERS = 16
STUDY = 4_157  # the locations of "CLIP and the City"
RUNS = 3  # warm and cold readings each: a claim must hold in every one
IDENTITY, VIEWS = "ViT-B-32/synthetic", "views4-fov90-pitch0"


def unit_rows(generator, count: int):
    import numpy as np

    matrix = generator.standard_normal((count, DIM), dtype=np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def write_store(root: Path, rows: int, sharded: bool) -> Path:
    import numpy as np

    from mus_qgis.engine.clip.store import EmbeddingStore

    generator = np.random.default_rng(12)
    with EmbeddingStore.under(root, IDENTITY, VIEWS) as store:
        if not sharded:
            matrix = unit_rows(generator, rows)
            store.put((f"{i:032x}", matrix[i], 4) for i in range(rows))
            return store.path
        per_writer = -(-rows // WRITERS)
        for start in range(0, rows, per_writer):
            count = min(per_writer, rows - start)
            keys = [f"{i:032x}" for i in range(start, start + count)]
            store.shards.write_matrix(keys, unit_rows(generator, count), 4)
        return store.path


def score_store(root: Path, labels: int) -> dict:
    import numpy as np

    # What the engine's worker holds once it has run a first job: the libraries a reading uses
    # are imported before the clock starts (a fresh worker pays them once, not per label set).
    import pyarrow.ipc  # noqa: F401

    from mus_qgis.engine.clip.classify import rank_store
    from mus_qgis.engine.clip.store import EmbeddingStore
    from mus_qgis.shared.progress import LoggingProgress

    texts = np.random.default_rng(3).standard_normal((labels, DIM), dtype=np.float32)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    started = time.perf_counter()
    with EmbeddingStore.under(root, IDENTITY, VIEWS) as store:
        (ranking,), damaged = rank_store(store, [texts], 100.0, LoggingProgress())
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF) if resource else None
    peak = usage.ru_maxrss / 2**20 if usage else float("nan")  # KiB → GiB
    # The arithmetic alone, for scale: the product the ranking does (NumPy's, in blocks of the
    # same rows), over one chunk's worth of rows, scaled to every row.
    size = min(65_536, ranking.count)
    chunk = np.random.default_rng(4).standard_normal((size, DIM), "f4")
    product_texts = np.ascontiguousarray(texts.T * np.float32(100.0))
    started = time.perf_counter()
    for start in range(0, size, BLOCK_ROWS):
        chunk[start : start + BLOCK_ROWS] @ product_texts
    product = (time.perf_counter() - started) * ranking.count / size
    assert ranking.count == ranking.first.shape[0] and not ranking.damaged and not damaged
    assert abs(float(ranking.mean_probability.sum()) - 1.0) < 1e-6, ranking.mean_probability.sum()
    return {"seconds": seconds, "peak_gib": peak, "rows": ranking.count, "product_s": product}


def drop_page_cache() -> bool:
    """Empty the kernel's page cache, so the shards are read from disk (root only)."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("1\n", encoding="utf-8")
        return True
    except OSError:
        return False


def measure(root: Path, labels: int) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--score", str(root), "--labels", str(labels)],
        capture_output=True,
        text=True,
        encoding="utf-8",
    )
    if done.returncode:
        sys.exit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(what: str, labels: int, result: dict) -> None:
    print(
        f"{what}: {labels} labels over {result['rows']:,} embeddings: "
        f"{result['seconds']:.2f} s, peak memory {result['peak_gib']:.2f} GiB; the matrix "
        f"product alone {result['product_s']:.2f} s "
        f"(ratio {result['seconds'] / result['product_s']:.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--labels", type=int, default=250)
    parser.add_argument("--score", type=Path, help=argparse.SUPPRESS)  # the measuring process
    args = parser.parse_args()
    if args.score:
        print(json.dumps(score_store(args.score, args.labels)))
        return
    with tempfile.TemporaryDirectory(prefix="mus-bench-store-") as tmp:
        study = Path(tmp) / "study"
        write_store(study, STUDY, sharded=False)
        report("the study's store (SQLite)", args.labels, measure(study, args.labels))
        big = Path(tmp) / "big"
        started = time.perf_counter()
        path = write_store(big, args.rows, sharded=True)
        written = time.perf_counter() - started
        size = sum(p.stat().st_size for p in path.with_suffix(".shards").rglob("*.arrow"))
        print(
            f"store: {args.rows:,} embeddings × {DIM} in {WRITERS} Arrow shards, "
            f"{size / 2**30:.2f} GiB, written in {written:.1f} s"
        )
        first = measure(big, args.labels)
        report("sharded store, first reading (checksums of every shard)", args.labels, first)
        for run in range(1, RUNS + 1):
            warm = measure(big, args.labels)
            report(f"later reading {run}, warm (in the page cache)", args.labels, warm)
        for run in range(1, RUNS + 1):
            if not drop_page_cache():
                print("cold from disk: not measured (emptying the page cache needs root)")
                break
            cold = measure(big, args.labels)
            report(f"later reading {run}, cold (after drop_caches)", args.labels, cold)
    print(f"(targets for {args.rows:,} embeddings: < 5 s, < 4 GiB)")


if __name__ == "__main__":
    main()
