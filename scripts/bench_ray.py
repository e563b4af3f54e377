"""The single-process engine against Ray Data with 1 and 2 CPU actors, on the same 200 panoramas.

The panoramas are made from the two shared equirectangular images (each turned by its own yaw
and saved at 1024×512, so each has its own digest); the model is the tests' tiny random-weight
CLIP, so the numbers weigh the pipeline (reading, decoding, cutting 4 views, moving them to the
model, writing) more than the model. Every run starts from an empty store. The Ray runs go
through a local cluster started once (its start is not counted; each run's actor start is).

    .engine/env/bin/python scripts/bench_ray.py [--panoramas 200]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PANORAMAS = sorted((ROOT.parent / "shared" / "data" / "images" / "equirectangular").glob("*.jpg"))


def make_panoramas(folder: Path, count: int) -> list[str]:
    import numpy as np
    from PIL import Image

    sources = [np.asarray(Image.open(p).convert("RGB").resize((1024, 512))) for p in PANORAMAS]
    paths = []
    for index in range(count):
        pixels = np.roll(sources[index % len(sources)], 5 * index + 1, axis=1)
        path = folder / f"pano_{index:04d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(str(path))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--panoramas", type=int, default=200)
    args = parser.parse_args()

    import ray
    import torch

    from mus_qgis.engine.clip.embedding import Location, embed_locations
    from mus_qgis.engine.clip.models import ModelSpec, load_model
    from mus_qgis.engine.clip.ray_embed import embed_with_ray
    from mus_qgis.engine.clip.store import EmbeddingStore
    from mus_qgis.engine.imagery.panorama import ViewSetting

    setting = ViewSetting()
    with tempfile.TemporaryDirectory(prefix="mus-bench-ray-") as tmp:
        tmp = Path(tmp)
        (tmp / "images").mkdir()
        paths = make_panoramas(tmp / "images", args.panoramas)
        checkpoint = tmp / "tiny.pt"
        subprocess.run(
            [sys.executable, str(ROOT / "tests" / "tiny_checkpoint.py"), str(checkpoint)],
            check=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        config = ROOT / "tests" / "assets" / "mus-tiny-vit.json"
        spec = ModelSpec(str(config), "", str(checkpoint), "cpu")
        locations = [Location((path,)) for path in paths]
        views = args.panoramas * setting.count

        torch.set_num_threads(2)
        model = load_model(spec)
        store = EmbeddingStore.under(tmp / "single" / "embeddings", model.identity, setting.key)
        started = time.perf_counter()
        result = embed_locations(locations, model, setting, store, batch_size=32)
        single = time.perf_counter() - started
        store.close()
        assert result.counts["decoded"] == args.panoramas
        print(
            f"single process (2 decoding threads, model on 2 threads): {single:.1f} s, "
            f"{views / single:.1f} views/s"
        )
        for actors in (1, 2):
            # Each actor has one CPU, the decoding tasks one more: logical CPUs on 2 real cores.
            ray.init(
                num_cpus=actors + 1,
                include_dashboard=False,
                log_to_driver=False,
                runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}},
            )
            try:
                started = time.perf_counter()
                ran = embed_with_ray(
                    locations, spec, setting, tmp / f"ray{actors}", actors=actors, batch_size=32
                )
                seconds = time.perf_counter() - started
            finally:
                ray.shutdown()
            assert ran.counts["encoded"] == args.panoramas, ran.counts
            print(
                f"Ray Data, {actors} CPU actor(s): {seconds:.1f} s, {views / seconds:.1f} views/s, "
                f"{seconds / single:.2f} × the single process's time"
            )


if __name__ == "__main__":
    main()
