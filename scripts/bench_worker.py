"""Benchmark: what running the engine in a worker process costs, against calling it in-process.

Prints, from one run on one machine (shared and noisy: compare the ratios, not the seconds):
  (a) per-call overhead of a small job (agreement of 200 pairs): called in-process, through a
      warm worker (started once, reused, as in one QGIS session), and through a cold worker
      (started for the call, as the first call of a session or a qgis_process run pays);
  (b) the first call of a session that needs torch (a cold worker classifying one photo with
      the tiny test model): process start, imports and model load included;
  (c) CLIP classification throughput (ViT-B-32, random weights, 4 views per panorama, no store)
      through a warm worker against the engine called directly, alternated over rounds.

    python scripts/bench_worker.py [--panoramas 32] [--rounds 3] [--calls 200]

Run it in the engine's Python (make bench does). Results go in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mus_qgis.bridge.client import Worker  # noqa: E402
from mus_qgis.engine.jobs import registered  # noqa: E402

JOBS = registered()
from scripts.bench_classify import make_panoramas  # noqa: E402

TINY = ROOT / "tests" / "assets" / "mus-tiny-vit.json"
PHOTO = ROOT.parent / "shared" / "data" / "images" / "arezzo" / "DSCN0010.jpg"


class Quiet:
    def set_progress(self, percent):
        pass

    def is_canceled(self):
        return False

    def info(self, message):
        pass


def per_call(folder: Path, calls: int) -> None:
    pairs = folder / "pairs.json"
    pairs.write_text(
        json.dumps({"reference": ["11100", "12100"] * 100, "predicted": ["11100", "11100"] * 100}),
        encoding="utf-8",
    )
    params = {"pairs": str(pairs)}
    started = time.perf_counter()
    for _ in range(calls):
        JOBS["agreement"](params, Quiet())
    in_process = (time.perf_counter() - started) / calls
    worker = Worker(sys.executable)
    worker.run("agreement", params)  # the job's own imports, once
    started = time.perf_counter()
    for _ in range(calls):
        worker.run("agreement", params)
    warm = (time.perf_counter() - started) / calls
    worker.close()
    cold_times = []
    for _ in range(max(3, calls // 40)):
        started = time.perf_counter()
        fresh = Worker(sys.executable)
        fresh.run("agreement", params)
        cold_times.append(time.perf_counter() - started)
        fresh.close()
    cold = statistics.median(cold_times)
    print(
        f"(a) per call: in-process {in_process * 1e3:.2f} ms, warm worker {warm * 1e3:.2f} ms "
        f"(+{(warm - in_process) * 1e3:.2f} ms), cold worker {cold * 1e3:.0f} ms "
        f"(+{(cold - in_process) * 1e3:.0f} ms)"
    )


def first_torch_call(folder: Path, checkpoint: Path) -> None:
    locations = folder / "one.json"
    locations.write_text(json.dumps([[[str(PHOTO)], None, None]]), encoding="utf-8")
    params = {
        "locations": str(locations),
        "label_set": {"builtin": "urban_atlas_2018"},
        "model": {
            "name": str(TINY),
            "pretrained": "",
            "checkpoint": str(checkpoint),
            "device": "cpu",
        },
        "view": {"count": 4, "fov": 90.0, "pitch": 0.0, "centre_crop": False},
        "top_k": 3,
        "cache_dir": str(folder / "cache-first"),
        "batch_size": 32,
        "output": str(folder / "first.npz"),
    }
    started = time.perf_counter()
    worker = Worker(sys.executable)
    ready = time.perf_counter()
    worker.run("classify", params)
    done = time.perf_counter()
    params["cache_dir"] = str(folder / "cache-second")
    worker.run("classify", params)
    again = time.perf_counter()
    worker.close()
    print(
        f"(b) first classification of a session: worker ready in {ready - started:.2f} s, "
        f"first job {done - ready:.2f} s (torch, open_clip, model load), the same job warm "
        f"{again - done:.2f} s"
    )


def throughput(folder: Path, count: int, rounds: int) -> None:
    from mus_qgis.engine.clip.classify import classify_locations
    from mus_qgis.engine.clip.embedding import Location
    from mus_qgis.engine.clip.models import ModelSpec
    from mus_qgis.engine.imagery.panorama import ViewSetting
    from mus_qgis.shared.labels import builtin_label_set

    paths = make_panoramas(folder, count, 4096)
    locations_file = folder / "locations.json"
    locations_file.write_text(json.dumps([[[p], None, None] for p in paths]), encoding="utf-8")
    spec = {"name": "ViT-B-32", "pretrained": "", "checkpoint": "", "device": "cpu"}
    view = {"count": 4, "fov": 90.0, "pitch": 0.0, "centre_crop": False}
    params = {
        "locations": str(locations_file),
        "label_set": {"builtin": "urban_atlas_2018"},
        "model": spec,
        "view": view,
        "top_k": 3,
        "cache_dir": None,
        "batch_size": 32,
        "output": str(folder / "scores.npz"),
    }
    label_set = builtin_label_set("urban_atlas_2018")
    worker = Worker(sys.executable)
    # Both sides load the model and encode the labels once before timing.
    warm_up = dict(params, locations=str(folder / "warm.json"))
    Path(warm_up["locations"]).write_text(json.dumps([[[paths[0]], None, None]]), encoding="utf-8")
    worker.run("classify", warm_up)
    classify_locations(
        [Location((paths[0],))],
        label_set,
        ModelSpec(**spec),
        ViewSetting(**view),
        3,
        None,
        Quiet(),
        32,
    )
    direct, through = [], []
    views = count * 4
    for _ in range(rounds):
        started = time.perf_counter()
        classify_locations(
            [Location((p,)) for p in paths],
            label_set,
            ModelSpec(**spec),
            ViewSetting(**view),
            3,
            None,
            Quiet(),
            32,
        )
        direct.append(views / (time.perf_counter() - started))
        started = time.perf_counter()
        worker.run("classify", params)
        through.append(views / (time.perf_counter() - started))
    worker.close()
    ratio = statistics.median(t / d for t, d in zip(through, direct, strict=True))
    print(
        f"(c) {count} panoramas × 4 views, ViT-B-32, {rounds} alternated rounds: engine direct "
        f"{statistics.median(direct):.2f} views/s, through the worker "
        f"{statistics.median(through):.2f} views/s; worker/direct = {ratio:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--panoramas", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sys.path.insert(0, str(ROOT / "tests"))
        from tiny_checkpoint import write_tiny_checkpoint

        checkpoint = write_tiny_checkpoint(folder / "tiny.pt")
        per_call(folder, args.calls)
        first_torch_call(folder, checkpoint)
        throughput(folder, args.panoramas, args.rounds)


if __name__ == "__main__":
    main()
