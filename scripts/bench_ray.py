"""The single-process engine against Ray Data with 1 and 2 CPU actors, on the same 200 panoramas.

The panoramas are made from the two shared equirectangular images (each turned by its own yaw
and saved at 1024×512, so each has its own digest); the model is the tests' tiny random-weight
CLIP, so the numbers weigh the pipeline (reading, decoding, cutting 4 views, moving them to the
model, writing) more than the model. Every run starts from an empty store. The Ray runs go
through a local cluster started once (its start is not counted; each run's actor start is).

    .engine/env/bin/python scripts/bench_ray.py [--panoramas 200]

With ``--model``, a real architecture (random weights: the speed is the same) on ``--device``
instead: the model alone (uint8 batches of ``--batch-size`` views, already cut, from host memory)
against the whole Ray Data pipeline with one actor on that device and the decoding on every
other CPU. The issue's GPU goal: ViT-B-32 in half precision on one GPU, at least 5,000 views/s
end to end and within 80 % of the model alone:

    .engine/env/bin/python scripts/bench_ray.py --model ViT-B-32 --device cuda \
        --precision fp16 --panoramas 4000 --batch-size 512
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

SHARED_PANORAMAS = ROOT.parent / "shared" / "data" / "images" / "equirectangular"


def make_panoramas(folder: Path, count: int, images: Path = SHARED_PANORAMAS) -> list[str]:
    import numpy as np
    from PIL import Image

    sources = [
        np.asarray(Image.open(p).convert("RGB").resize((1024, 512)))
        for p in sorted(images.glob("*.jpg"))
    ]
    paths = []
    for index in range(count):
        pixels = np.roll(sources[index % len(sources)], 5 * index + 1, axis=1)
        path = folder / f"pano_{index:04d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(str(path))
    return paths


def start_local_cluster(ray, cpus: int, gpus: int = 0) -> None:
    """A local Ray cluster of that many logical CPUs (and GPUs) whose workers import this tree."""
    ray.init(
        num_cpus=cpus,
        num_gpus=gpus,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={
            "env_vars": {
                # This tree first, then what the caller's PYTHONPATH held (a GPU machine's
                # carried wheels, say): Ray would otherwise replace it.
                "PYTHONPATH": os.pathsep.join(
                    p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
                ),
                "HF_HUB_OFFLINE": "1",
            }
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--panoramas", type=int, default=200)
    parser.add_argument("--model", help="an OpenCLIP architecture: the model against Ray")
    parser.add_argument("--device", default="cpu", help="with --model: cpu or cuda")
    parser.add_argument(
        "--precision", default="fp32", help="with --model: fp32, bf16, or fp16 (GPU)"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="views per model batch")
    parser.add_argument(
        "--images",
        type=Path,
        default=SHARED_PANORAMAS,
        help="a folder of equirectangular JPEGs to make the panoramas from (default: the shared)",
    )
    args = parser.parse_args()
    if args.model:
        model_against_ray(args)
        return

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
        paths = make_panoramas(tmp / "images", args.panoramas, args.images)
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
            start_local_cluster(ray, cpus=actors + 1)
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


def model_against_ray(args) -> None:
    """The model alone on the device, then the Ray pipeline with one actor on it."""
    import ray
    import torch

    from mus_qgis.engine.clip.embedding import Location
    from mus_qgis.engine.clip.models import ModelSpec, forget_models, load_model
    from mus_qgis.engine.clip.ray_embed import embed_with_ray
    from mus_qgis.engine.imagery.panorama import ViewSetting

    setting = ViewSetting()
    spec = ModelSpec(args.model, "", "", args.device, args.precision)
    model = load_model(spec)
    size = model.preprocess["size"]
    size = int(size[0] if isinstance(size, tuple | list) else size)
    batch = torch.randint(0, 256, (args.batch_size, 3, size, size), dtype=torch.uint8)
    if args.device.startswith("cuda"):
        batch = batch.pin_memory()
    for _ in range(3):  # warm-up: kernels chosen, memory pools filled
        model.encode_images(batch)
    rounds = max(3, 20_000 // args.batch_size) if args.device.startswith("cuda") else 3
    started = time.perf_counter()
    for _ in range(rounds):
        model.encode_images(batch)  # returns on the CPU: the device has finished
    alone = rounds * args.batch_size / (time.perf_counter() - started)
    print(
        f"{args.model} alone on {args.device} ({model.dtype}), batches of {args.batch_size} "
        f"views: {alone:.0f} views/s"
    )
    del model, batch
    forget_models()  # the actor loads its own copy: this one must leave the device
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    with tempfile.TemporaryDirectory(prefix="mus-bench-ray-") as tmp:
        tmp = Path(tmp)
        (tmp / "images").mkdir()
        paths = make_panoramas(tmp / "images", args.panoramas, args.images)
        gpus = 1 if args.device.startswith("cuda") else 0
        cpus = os.cpu_count() or 2
        start_local_cluster(ray, cpus, gpus)
        try:
            started = time.perf_counter()
            ran = embed_with_ray(
                [Location((path,)) for path in paths],
                spec,
                setting,
                tmp / "ray",
                actors=1,
                cpus_per_actor=1.0,
                gpus_per_actor=float(gpus),
                batch_size=args.batch_size,
            )
            seconds = time.perf_counter() - started
        finally:
            ray.shutdown()
    assert ran.counts["encoded"] == args.panoramas, ran.counts
    views = args.panoramas * setting.count
    print(
        f"Ray Data end to end, 1 actor on {args.device}, {cpus} CPUs: {args.panoramas} panoramas "
        f"({views} views) in {seconds:.1f} s, actor start included: {views / seconds:.0f} views/s, "
        f"{views / seconds / alone:.0%} of the model alone"
    )


if __name__ == "__main__":
    main()
