"""Benchmark: dreams per second on this machine with the tiny random-weight diffusion pipeline.

Prints, from one run: image-to-image dreams (2 steps at strength 0.5, as sd-turbo is run) and
text-to-image gallery images (1 step) per second at 64 and 128 pixels, and the same dreams
again from the cache (the ratio is what the cache saves). The tiny pipeline's cost is mostly the
VAE at full resolution and Python overhead, not a real UNet: these numbers bound the plugin's
own overhead, not a real model's speed. Results go in BENCHMARKS.md.

    python scripts/bench_dreams.py [--count 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mus_qgis.engine.dreams.generate import DreamMaker, DreamSettings, dream_key
from mus_qgis.engine.dreams.pipeline import DreamModelSpec, load_dream_pipeline
from mus_qgis.engine.dreams.tiny import write_tiny_pipeline
from mus_qgis.shared.progress import LoggingProgress


def timed(maker: DreamMaker, jobs) -> float:
    started = time.perf_counter()
    for key, prompt, seed, source in jobs:
        maker.make(key, prompt, seed, source)
    return time.perf_counter() - started


def main() -> None:
    import numpy as np
    import torch
    from PIL import Image

    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = write_tiny_pipeline(Path(scratch) / "tiny-sd")
        pipeline = load_dream_pipeline(DreamModelSpec(str(folder), device="cpu"))
        print(f"Tiny pipeline on the CPU, {torch.get_num_threads()} torch threads; no GPU here.")
        rng = np.random.default_rng(0)
        for size in (64, 128):
            settings = DreamSettings(prompt="a street in Rome", steps=2, size=size)
            maker = DreamMaker(pipeline, settings, Path(scratch) / f"cache{size}", _Quiet())
            maker.planned = args.count
            source = Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
            maker.make("warm-up", settings.prompt, 0, source)  # first call: allocations
            jobs = [
                (
                    dream_key("tiny", "r", settings.prompt, settings, f"s{i}", i),
                    settings.prompt,
                    i,
                    source,
                )
                for i in range(args.count)
            ]
            made = timed(maker, jobs)
            cached = timed(maker, jobs)
            text = [(f"text{i}", settings.prompt, i, None) for i in range(args.count)]
            texts = timed(
                DreamMaker(
                    pipeline,
                    DreamSettings(steps=1, size=size),
                    Path(scratch) / f"t{size}",
                    _Quiet(),
                ),
                text,
            )
            print(
                f"{size}×{size}: image-to-image {args.count / made:.2f} dreams/s; "
                f"text-to-image {args.count / texts:.2f} images/s; from the cache "
                f"{args.count / cached:.0f}/s ({made / cached:.0f}× faster than making them)."
            )


class _Quiet(LoggingProgress):
    def info(self, message: str) -> None:
        pass


if __name__ == "__main__":
    main()
