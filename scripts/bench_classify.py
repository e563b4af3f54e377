"""Benchmark: CLIP-classifying panoramas, the engine against a naive loop and the model alone.

Prints, from one run on one machine (these are shared and noisy: compare ratios, not seconds):
  (a) a naive loop: open each panorama at full size, cut four views, open_clip's preprocess,
      encode one view at a time;
  (b) the engine end to end (parallel draft-mode decoding and projection, batched inference);
  (c) the model alone on ready tensors, the same number of views (the compute ceiling);
  (d) re-scoring a new 250-label set over 4,157 stored panorama embeddings (text encoding
      aside), against recomputing those embeddings at rate (b);
and, when asked, two decoding candidates: (b') the engine with its decoding in processes
(--processes), (e) cut views kept on disk and read back instead of decoding (--stored-views);
and (f) what a location's files cost to read, hash, decode and cut on one thread, with the bound
that puts on (b)/(c) when the model and the decoding share the same cores.
(b) and (c) are alternated --rounds times and their medians compared.
The panoramas are the real 4096×2048 equirectangular photo in ../shared/data, turned by a
different angle each and re-encoded, so every file differs; with --inputs views the engine reads
instead the four 640-pixel views per location that a fetch saves by default, cut from them.
Results go in BENCHMARKS.md.

    python scripts/bench_classify.py [--panoramas 200] [--naive 40] [--width 4096]
        [--precision fp32,bf16] [--rounds 3] [--inputs panoramas|views] [--processes]
        [--stored-views]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mus_qgis.engine.clip.embedding import Location, embed_locations
from mus_qgis.engine.clip.models import ModelSpec, load_model
from mus_qgis.engine.clip.scoring import score
from mus_qgis.engine.clip.store import EmbeddingStore
from mus_qgis.engine.imagery.panorama import ViewSetting
from mus_qgis.shared.labels import Label, LabelSet

SOURCE = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "images"
    / "equirectangular"
    / "pannellum_examplepano_nonurban.jpg"
)
STUDY_LOCATIONS = 4157
STORED_VIEWS_PANORAMAS = 20  # how many panoramas (e) times, one thread each way


def make_panoramas(folder: Path, count: int, width: int, source_path: Path = SOURCE) -> list[str]:
    """``count`` files of the source panorama, each turned by its own angle and re-encoded;
    written by several threads (Pillow encodes outside the GIL): a GPU run needs thousands."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    source = Image.open(source_path).convert("RGB")
    if width != source.width:
        source = source.resize((width, width // 2), Image.BICUBIC)
    source = np.asarray(source)
    shifts = np.random.default_rng(0).integers(0, source.shape[1], count)
    paths = [str(folder / f"pano_{index:04d}.jpg") for index in range(count)]

    def write(index: int) -> None:
        turned = np.roll(source, int(shifts[index]), axis=1)
        Image.fromarray(turned).save(paths[index], quality=90)

    with ThreadPoolExecutor() as pool:
        list(pool.map(write, range(count)))
    return paths


def make_views(folder: Path, panoramas: list[str]) -> list[tuple[str, ...]]:
    """What a fetch saves by default instead of the whole panorama: four 90° views of 640×640
    pixels (JPEG) per location, cut from each panorama the way the fetch cuts them."""
    from mus_qgis.engine.imagery.sources.base import Candidate, ViewPlan, cut_views

    plan = ViewPlan()
    headings = plan.headings(None)
    locations = []
    for index, path in enumerate(panoramas):
        candidate = Candidate("bench", str(index), 0.0, 0.0, is_panorama=True)
        files = []
        for heading, data in zip(
            headings, cut_views(Path(path).read_bytes(), candidate, headings, plan)
        ):
            view = folder / f"view_{index:04d}_{heading:05.1f}.jpg"
            view.write_bytes(data)
            files.append(str(view))
        locations.append(tuple(files))
    return locations


def naive_view(panorama: np.ndarray, yaw: float, fov: float, size: int) -> np.ndarray:
    """A straightforward gnomonic view: the sampling grid computed anew, bilinear in numpy."""
    height, width = panorama.shape[:2]
    focal = (size / 2) / math.tan(math.radians(fov) / 2)
    grid = np.arange(size) + 0.5 - size / 2
    x, y = np.meshgrid(grid, -grid)
    z = np.full_like(x, focal)
    cos_y, sin_y = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    x, z = x * cos_y + z * sin_y, -x * sin_y + z * cos_y
    lon, lat = np.arctan2(x, z), np.arctan2(y, np.hypot(x, z))
    col = (lon / (2 * math.pi) + 0.5) * width - 0.5
    row = (0.5 - lat / math.pi) * height - 0.5
    c0, r0 = np.floor(col).astype(int), np.floor(row).astype(int)
    fc, fr = (col - c0)[..., None], (row - r0)[..., None]
    c1, r0c, r1c = (c0 + 1) % width, np.clip(r0, 0, height - 1), np.clip(r0 + 1, 0, height - 1)
    c0 %= width
    top = panorama[r0c, c0] * (1 - fc) + panorama[r0c, c1] * fc
    bottom = panorama[r1c, c0] * (1 - fc) + panorama[r1c, c1] * fc
    return (top * (1 - fr) + bottom * fr).round().astype(np.uint8)


def run_naive(paths, model, setting) -> float:
    import open_clip
    import torch
    from PIL import Image

    preprocess = open_clip.transform.image_transform_v2(
        open_clip.transform.PreprocessCfg(**model.model.visual.preprocess_cfg), is_train=False
    )
    started = time.perf_counter()
    for path in paths:
        panorama = np.asarray(Image.open(path).convert("RGB"))
        views = []
        for yaw in setting.yaws():
            view = Image.fromarray(naive_view(panorama, yaw, setting.fov, model.image_size))
            with torch.no_grad():
                features = model.model.encode_image(preprocess(view).unsqueeze(0))
            views.append(torch.nn.functional.normalize(features, dim=-1))
    return time.perf_counter() - started


def run_engine(locations, model, setting, batch_size, workers: int | None = None) -> float:
    started = time.perf_counter()
    result = embed_locations(
        [Location(files) for files in locations],
        model,
        setting,
        batch_size=batch_size,
        workers=workers,
    )
    elapsed = time.perf_counter() - started
    assert result.status == ["ok"] * len(locations), set(result.status)
    return elapsed


def warm_up(model, batch_size) -> None:
    """One full batch first, so that neither the engine nor the model alone pays the first call's
    set-up (the math library plans its kernels for a batch's shape on first use)."""
    import torch

    size = model.image_size
    model.encode_images(torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8))


def run_engine_decoding_in_processes(locations, model, setting, batch_size) -> float:
    """(b) with the decoding in worker processes instead of threads: a candidate measured, not
    kept (BENCHMARKS.md says why). The engine's pool is swapped for a process pool here only."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import torch

    from mus_qgis.engine.clip import embedding

    def process_pool(max_workers, thread_name_prefix=""):
        # Spawned, not forked: a child forked from a process whose torch has run parallel code
        # hangs at its first parallel loop (OpenMP is not fork-safe). Each child starts Python
        # and torch, as an engine that decoded in processes would once per run.
        return ProcessPoolExecutor(
            max_workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=torch.set_num_threads,
            initargs=(1,),
        )

    threads = embedding.ThreadPoolExecutor
    embedding.ThreadPoolExecutor = process_pool
    try:
        return run_engine(locations, model, setting, batch_size)
    finally:
        embedding.ThreadPoolExecutor = threads


def run_stored_views(paths, model, setting, folder: Path) -> tuple[float, float, float, float]:
    """A candidate measured, not kept: keeping each panorama's cut views (uint8) on disk so a
    second model never decodes again. (decode-and-cut seconds, read-back seconds, bytes of views
    per panorama, bytes of JPEG per panorama), the same panoramas, one thread each way."""
    from mus_qgis.engine.clip.views import prepare_image

    views_folder = folder / "stored_views"
    views_folder.mkdir()
    started = time.perf_counter()
    prepared = [prepare_image(p, setting, model.preprocess, set()) for p in paths]
    decode_s = time.perf_counter() - started
    for index, image in enumerate(prepared):
        np.save(views_folder / f"{index}.npy", image.views.numpy())
    started = time.perf_counter()
    for index in range(len(paths)):
        np.load(views_folder / f"{index}.npy")
    read_s = time.perf_counter() - started
    view_bytes = sum(f.stat().st_size for f in views_folder.iterdir()) / len(paths)
    jpeg_bytes = sum(Path(p).stat().st_size for p in paths) / len(paths)
    return decode_s, read_s, view_bytes, jpeg_bytes


def decoding_cost(locations, model, setting) -> tuple[float, float, float]:
    """Medians, in seconds, of what a location's files cost on one thread: read, hash, decode and
    cut (the engine's own path); decoding the JPEGs alone at 1/8 scale, the floor of any JPEG
    decode (its entropy decoding, which no scaling shortens); hashing them for the store."""
    import hashlib
    import io

    from PIL import Image

    from mus_qgis.engine.clip.views import prepare_image

    sample = locations[: min(len(locations), 16)]
    prepared, floor, hashing = [], [], []
    for files in sample:
        started = time.perf_counter()
        for path in files:
            prepare_image(path, setting, model.preprocess, set())
        prepared.append(time.perf_counter() - started)
        contents = [Path(path).read_bytes() for path in files]
        started = time.perf_counter()
        for data in contents:
            image = Image.open(io.BytesIO(data))
            image.draft("RGB", (image.width // 8, image.height // 8))
            image.load()
        floor.append(time.perf_counter() - started)
        started = time.perf_counter()
        for data in contents:
            hashlib.blake2b(data, digest_size=16).hexdigest()  # as views.read_facts
        hashing.append(time.perf_counter() - started)
    return float(np.median(prepared)), float(np.median(floor)), float(np.median(hashing))


def run_model_alone(views: int, model, batch_size) -> float:
    import torch

    size = model.image_size
    batch = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8)
    started = time.perf_counter()
    done = 0
    while done < views:
        count = min(batch_size, views - done)
        model.encode_images(batch[:count])
        done += count
    return time.perf_counter() - started


def run_rescoring(folder: Path, dim: int, labels: int) -> tuple[float, float]:
    """(time to open the store, read 4,157 embeddings and score them; time for scoring alone)."""
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((STUDY_LOCATIONS, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with EmbeddingStore(folder / "rescoring.sqlite", "bench", "views4") as store:
        store.put((f"{i:032x}@0.0", vectors[i], 4) for i in range(STUDY_LOCATIONS))
    text = rng.standard_normal((labels, dim)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    label_set = LabelSet("bench", tuple(Label(f"label {i}") for i in range(labels)), ("{label}",))
    started = time.perf_counter()
    with EmbeddingStore(folder / "rescoring.sqlite", "bench", "views4") as store:
        _, stored, damaged = store.all()
        assert not damaged
    loaded = time.perf_counter()
    scores = score(stored, text, label_set, 100.0, top_k=5)
    finished = time.perf_counter()
    assert scores.top_index.shape == (STUDY_LOCATIONS, 5)
    return finished - started, finished - loaded


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--panoramas", type=int, default=200)
    parser.add_argument("--naive", type=int, default=40, help="panoramas for the naive loop")
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="", help="weights do not change the speed")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="the engine's decoding threads (default: the engine's own, 2 to 8 by the CPU count); "
        "on a GPU machine, every core",
    )
    parser.add_argument(
        "--precision",
        default="fp32",
        help="comma-separated precisions to measure on the same panoramas, e.g. fp32,bf16 "
        "(the naive loop runs in fp32 only)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="engine and model-alone timings alternated this many times; medians are reported",
    )
    parser.add_argument(
        "--inputs",
        choices=("panoramas", "views"),
        default="panoramas",
        help="what the engine reads: whole panoramas, or the four 640-pixel views per location "
        "that a fetch saves by default (cut from the same panoramas)",
    )
    parser.add_argument(
        "--processes",
        action="store_true",
        help="also time the engine with its decoding in processes instead of threads (fp32)",
    )
    parser.add_argument(
        "--stored-views",
        action="store_true",
        help="also time reading stored cut views back against decoding and cutting them",
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=SOURCE,
        help="the equirectangular JPEG the panoramas are made from (default: the shared one)",
    )
    parser.add_argument(
        "--width",
        type=int,
        default=4096,
        help="panorama width: 4096 is the real file; 360° cameras and Street "
        "View give 5760 to 16384",
    )
    args = parser.parse_args()
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]

    import torch

    setting = ViewSetting()
    print(f"torch threads {torch.get_num_threads()}; precisions {', '.join(precisions)}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = make_panoramas(folder, args.panoramas, args.width, args.source)
        locations = make_views(folder, paths) if args.inputs == "views" else [(p,) for p in paths]
        print(f"inputs: {args.inputs}")
        views = len(paths) * setting.count
        naive_paths = paths[: args.naive]
        rates = {}
        for precision in precisions:
            spec = ModelSpec(args.model, args.pretrained, "", args.device, precision)
            model = load_model(spec)
            print(f"model {model.identity} on {model.device} ({model.dtype})")
            warm_up(model, args.batch_size)
            # Alternated, the median of each kept: a shared machine's speed drifted by up to 25 %
            # within a minute, and one timing of each side would carry that into the ratio.
            engine_times, ceiling_times = [], []
            for _ in range(args.rounds):
                engine_times.append(
                    run_engine(locations, model, setting, args.batch_size, args.workers)
                )
                ceiling_times.append(run_model_alone(views, model, args.batch_size))
            engine_s, ceiling_s = float(np.median(engine_times)), float(np.median(ceiling_times))
            print(
                f"{precision}: engine {', '.join(f'{t:.2f}' for t in engine_times)} s; "
                f"model alone {', '.join(f'{t:.2f}' for t in ceiling_times)} s"
            )
            rates[precision] = (views / engine_s, views / ceiling_s, engine_s, ceiling_s)
            if precision == "fp32" and args.processes:
                processes_s = run_engine_decoding_in_processes(
                    locations, model, setting, args.batch_size
                )
                rates["processes"] = views / processes_s, processes_s
            if "decoding" not in rates:
                rates["decoding"] = decoding_cost(locations, model, setting)
            if precision == "fp32" and args.naive:
                naive_s = run_naive(naive_paths, model, setting)
                rates["naive"] = len(naive_paths) * setting.count / naive_s, naive_s
        dimension = (
            model.model.text_projection.shape[-1]
            if hasattr(model.model, "text_projection")
            else 512
        )
        rescore_s, score_only_s = run_rescoring(folder, dimension, 250)
        stored_views = (
            run_stored_views(paths[:STORED_VIEWS_PANORAMAS], model, setting, folder)
            if args.stored_views
            else None
        )
        fidelity = None
        if "fp32" in precisions and len(precisions) > 1:
            from mus_qgis.engine.clip.fidelity import precision_fidelity
            from mus_qgis.shared.labels import builtin_label_set

            other = next(p for p in precisions if p != "fp32")
            fidelity = precision_fidelity(
                paths[:20], spec, other, [builtin_label_set("urban_atlas_2018")]
            )

    if "naive" in rates:
        naive_rate, naive_s = rates["naive"]
        print(
            f"(a) naive loop, fp32  {len(naive_paths):5d} panoramas {naive_s:8.2f} s "
            f"{naive_rate:8.2f} views/s"
        )
    for precision in precisions:
        engine_rate, ceiling_rate, engine_s, ceiling_s = rates[precision]
        print(
            f"(b) engine, {precision:5}     {len(paths):5d} locations {engine_s:8.2f} s "
            f"{engine_rate:8.2f} views/s"
        )
        print(
            f"(c) model alone, {precision:5}{views:5d} views     {ceiling_s:8.2f} s "
            f"{ceiling_rate:8.2f} views/s"
        )
        versus_naive = (
            f"(b)/(a) = {engine_rate / rates['naive'][0]:.2f}x   " if ("naive" in rates) else ""
        )
        print(f"{precision}: {versus_naive}(b)/(c) = {engine_rate / ceiling_rate:.0%}")
        # Where decoding and the model share every core, (b)/(c) can be about the model's
        # core-seconds over the model's and the decoding's together, at most (both are timed,
        # so the measured ratio may land a point either side).
        decode_s = rates["decoding"][0]
        model_core_s = ceiling_s / len(paths) * torch.get_num_threads()
        if str(model.device) == "cpu":
            print(
                f"{precision}: bound about {model_core_s / (model_core_s + decode_s):.0%} on "
                f"{torch.get_num_threads()} cores, if nothing but the decoding's own CPU time "
                f"were lost"
            )
    if "processes" in rates:
        processes_rate, processes_s = rates["processes"]
        print(
            f"(b') engine, fp32, decoding in processes {processes_s:8.2f} s "
            f"{processes_rate:8.2f} views/s: (b')/(b) = {processes_rate / rates['fp32'][0]:.2f}, "
            f"(b')/(c) = {processes_rate / rates['fp32'][1]:.0%}"
        )
    if "fp32" in rates and len(precisions) > 1:
        for precision in precisions[1:]:
            print(
                f"{precision} against fp32: engine {rates[precision][0] / rates['fp32'][0]:.2f}x, "
                f"model alone {rates[precision][1] / rates['fp32'][1]:.2f}x"
            )
    if fidelity is not None:
        entry = fidelity.label_sets[0]
        print(
            f"fidelity ({fidelity.model}, {fidelity.views} views of the same panoramas): "
            f"smallest cosine {fidelity.smallest_cosine:.6f}; Urban Atlas probabilities differ "
            f"by at most {entry.largest_score_difference:.6f}; same first label in "
            f"{entry.top1_agreement:.1%} of views"
        )
    if stored_views is not None:
        decode_s, read_s, view_bytes, jpeg_bytes = stored_views
        count = min(STORED_VIEWS_PANORAMAS, len(paths))
        print(
            f"(e) cut views kept on disk, {count} panoramas, one thread: decoding and cutting "
            f"{decode_s / count * 1000:.1f} ms a panorama, reading them back "
            f"{read_s / count * 1000:.2f} ms ({decode_s / read_s:,.0f}x); "
            f"{view_bytes / 1e6:.2f} MB of views against {jpeg_bytes / 1e6:.2f} MB of JPEG "
            f"({view_bytes / jpeg_bytes:.1f}x the disk)"
        )
    decode_s, floor_s, hash_s = rates["decoding"]
    print(
        f"(f) a location's files read, hashed, decoded and cut on one thread: "
        f"{decode_s * 1000:.1f} ms; decoding the JPEGs alone at 1/8 scale: "
        f"{floor_s * 1000:.1f} ms; hashing them: {hash_s * 1000:.1f} ms"
    )
    engine_rate = rates[precisions[0]][0]
    recompute_s = STUDY_LOCATIONS * setting.count / engine_rate
    print(
        f"(d) re-scoring {STUDY_LOCATIONS} stored panoramas on 250 labels: "
        f"{rescore_s * 1000:.0f} ms (of which scoring {score_only_s * 1000:.0f} ms); "
        f"recomputing at rate (b): {recompute_s:.0f} s ({recompute_s / rescore_s:,.0f}x)"
    )


if __name__ == "__main__":
    main()
