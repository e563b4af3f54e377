"""How far bf16 (or fp16 on a GPU) moves CLIP's answers from fp32, on real street photos.

For each image's views, embedded by the same model in fp32 and in the faster format: the
smallest cosine between a view's two embeddings, and per label set the largest difference of
any label's probability and the share of views whose first label is the same. With the model's
real weights (cached, downloadable, or --checkpoint) the figures say what a study would see;
without them the script says so and measures random weights, which only checks the arithmetic.

    .engine/env/bin/python scripts/precision_fidelity.py [--precision bf16] [--checkpoint FILE]
        [--images FOLDER_OR_FILES ...] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mus_qgis.engine.cli import default_cache_dir  # noqa: E402
from mus_qgis.engine.clip.classify import model_cache_dir  # noqa: E402
from mus_qgis.engine.clip.fidelity import precision_fidelity  # noqa: E402
from mus_qgis.engine.clip.models import ModelSpec, weights_problem  # noqa: E402
from mus_qgis.shared.defaults import DEFAULT_MODEL, DEFAULT_PRETRAINED  # noqa: E402
from mus_qgis.shared.labels import builtin_label_sets  # noqa: E402

PHOTOS = ROOT.parent / "shared" / "data" / "images"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def image_paths(given: list[Path]) -> list[str]:
    paths = []
    for item in given:
        if item.is_dir():
            paths += sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths.append(item)
    return [str(p) for p in paths]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--pretrained", default=DEFAULT_PRETRAINED)
    parser.add_argument("--checkpoint", default="")
    parser.add_argument("--precision", choices=("bf16", "fp16"), default="bf16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=Path, nargs="+", default=[PHOTOS])
    args = parser.parse_args()
    cache = model_cache_dir(default_cache_dir())
    pretrained = args.pretrained
    if not args.checkpoint and pretrained:
        problem = weights_problem(args.model, pretrained, cache)
        if problem:
            print(f"No real weights here ({problem.splitlines()[0]})")
            print("Measuring RANDOM weights instead: this checks the arithmetic, not a study.")
            pretrained = ""
    spec = ModelSpec(args.model, pretrained, args.checkpoint, args.device)
    paths = image_paths(args.images)
    fidelity = precision_fidelity(
        paths, spec, args.precision, list(every_builtin_label_set()), cache_dir=cache
    )
    print(
        f"{fidelity.model}: {args.precision} against fp32 on {fidelity.images} images "
        f"({fidelity.views} views)"
    )
    print(f"smallest cosine between a view's two embeddings: {fidelity.smallest_cosine:.6f}")
    print(f"{'label set':28} {'labels':>6} {'largest prob. difference':>25} {'same first':>11}")
    for entry in fidelity.label_sets:
        print(
            f"{entry.name:28} {entry.labels:6d} {entry.largest_score_difference:25.6f} "
            f"{entry.top1_agreement:11.1%}"
        )
    return 0


def every_builtin_label_set():
    from mus_qgis.shared.labels import builtin_label_set

    for entry in builtin_label_sets():
        yield builtin_label_set(entry.name)


if __name__ == "__main__":
    sys.exit(main())
