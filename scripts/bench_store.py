"""Re-scoring a store at scale: a new 250-label set over 1,000,000 stored embeddings.

Writes synthetic unit vectors (ViT-B-32's 512 values) into the store's Arrow shards, as 16
writers would, then, in a fresh process (so that its peak memory is the scoring's own), reads them
in chunks and ranks a 250-label set: first label of every embedding, mean probability per label.
The text encoding is left aside (random unit text vectors): it is the same whatever the store
holds. Prints seconds and peak memory, and the matrix product alone for the same sizes.

    .engine/env/bin/python scripts/bench_store.py [--rows 1000000] [--labels 250]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DIM = 512
WRITERS = 16
IDENTITY, VIEWS = "ViT-B-32/synthetic", "views4-fov90-pitch0"


def write_store(folder: Path, rows: int) -> None:
    import numpy as np

    from mus_qgis.engine.clip.shards import ShardFolder

    shards = ShardFolder(folder, IDENTITY, VIEWS)
    generator = np.random.default_rng(12)
    per_writer = -(-rows // WRITERS)
    for start in range(0, rows, per_writer):
        count = min(per_writer, rows - start)
        matrix = generator.standard_normal((count, DIM), dtype=np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        keys = [f"{i:032x}" for i in range(start, start + count)]
        shards.write_matrix(keys, matrix, 4)


def score_store(folder: Path, labels: int) -> dict:
    import numpy as np
    import torch

    from mus_qgis.engine.clip.rescore import rank_chunks
    from mus_qgis.engine.clip.shards import ShardFolder

    torch.set_num_threads(2)
    texts = np.random.default_rng(3).standard_normal((labels, DIM), dtype=np.float32)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    started = time.perf_counter()
    ranking = rank_chunks(ShardFolder(folder, IDENTITY, VIEWS).iter_chunks(), texts, 100.0)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB → GiB
    # The arithmetic alone (one chunk's product, scaled to every row), for scale.
    chunk = torch.from_numpy(np.random.default_rng(4).standard_normal((65_536, DIM), "f4"))
    started = time.perf_counter()
    chunk @ torch.from_numpy(texts).T
    product = (time.perf_counter() - started) * ranking.count / 65_536
    assert ranking.count == ranking.first.shape[0] and not ranking.damaged
    assert abs(float(ranking.mean_probability.sum()) - 1.0) < 1e-6, ranking.mean_probability.sum()
    return {"seconds": seconds, "peak_gib": peak, "rows": ranking.count, "product_s": product}


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
        folder = Path(tmp) / f"{VIEWS}.shards"
        started = time.perf_counter()
        write_store(folder, args.rows)
        written = time.perf_counter() - started
        size = sum(p.stat().st_size for p in folder.rglob("*.arrow")) / 2**30
        done = subprocess.run(
            [sys.executable, __file__, "--score", str(folder), "--labels", str(args.labels)],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            sys.exit(done.stderr)
        result = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"store: {args.rows:,} embeddings × {DIM} in {WRITERS} Arrow shards, {size:.2f} GiB, "
        f"written in {written:.1f} s"
    )
    print(
        f"re-scoring {args.labels} labels over {result['rows']:,} embeddings (chunked): "
        f"{result['seconds']:.2f} s, peak memory {result['peak_gib']:.2f} GiB "
        f"(target < 5 s, < 4 GiB); the matrix product alone {result['product_s']:.2f} s "
        f"(ratio {result['seconds'] / result['product_s']:.2f})"
    )


if __name__ == "__main__":
    main()
