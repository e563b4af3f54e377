"""Command line: embed images on a GPU server, score label sets anywhere the store is.

python -m mus_qgis.engine embed IMAGES... [--model ViT-B-32 --pretrained TAG | --checkpoint F]
python -m mus_qgis.engine embed POINTS.gpkg --ray [auto | ray://HEAD:10001]   (on a Ray cluster)
python -m mus_qgis.engine score --labels urban_atlas_2018 [IMAGES...] --out scores.csv
python -m mus_qgis.engine rank --labels world_capitals --targets Rome \\
    --group "Rome + Vatican City = Rome; Vatican City"
python -m mus_qgis.engine labelsets | models | download --model M --pretrained TAG
python -m mus_qgis.engine status | selftest       (what the engine runs on; is it whole?)
python -m mus_qgis.engine worker                   (the process QGIS sends jobs to)
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from pathlib import Path

from ..shared.defaults import DEFAULT_PRECISION, PRECISIONS
from ..shared.errors import MusError
from ..shared.labels import builtin_label_set, builtin_label_sets, read_label_file
from ..shared.progress import LoggingProgress
from .clip.classify import (
    UNTRAINED_WARNING,
    check_cache_dir,
    classify_locations,
    iter_stored_scores,
    model_cache_dir,
    open_stores,
    rank_stored_embeddings,
    report_damaged,
    report_notes,
)
from .clip.embedding import Location, embed_locations
from .clip.models import DEFAULT_MODEL, DEFAULT_PRETRAINED, ModelSpec, load_model
from .imagery.panorama import ViewSetting

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp"}


def default_cache_dir() -> Path:
    configured = os.environ.get("MUS_QGIS_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "mus_qgis"


def image_paths(arguments: list[str]) -> list[str]:
    """Files as given, image files inside folders (recursively), and lines of .txt lists."""
    paths: list[str] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            paths += sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.suffix.lower() == ".txt" and path.is_file():
            try:
                lines = path.read_text(encoding="utf-8-sig").splitlines()
            except UnicodeDecodeError as exc:
                raise MusError(
                    f"The list of images {path} is not UTF-8 text ({exc.reason} at byte "
                    f"{exc.start}): save it as UTF-8."
                ) from exc
            paths += [line.strip() for line in lines if line.strip()]
        else:
            paths.append(argument)
    return paths


def positive_int(text: str) -> int:
    """An argparse type: a whole number of 1 or more (argparse names the option)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _view_value(field: str, convert):
    """An argparse type that checks one view setting against the ranges ViewSetting accepts."""

    def check(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None
        try:
            ViewSetting(**{field: value})
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    check.__name__ = field  # what argparse calls the type in its own messages
    return check


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="open_clip architecture, or an open_clip JSON config file",
    )
    parser.add_argument(
        "--pretrained", default=DEFAULT_PRETRAINED, help="pretrained tag; empty for random weights"
    )
    parser.add_argument("--checkpoint", default="", help="local weights file (wins over a tag)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=DEFAULT_PRECISION,
        help="the model's number format: fp32 (exact), bf16 (fast on CPUs with AMX and recent "
        "GPUs), fp16 (GPUs, Apple MPS); part of the model's identity in the store",
    )
    parser.add_argument(
        "--views", type=_view_value("count", int), default=4, help="views per panorama, 1 to 36"
    )
    parser.add_argument(
        "--fov", type=_view_value("fov", float), default=90.0, help="field of view, 10 to 150°"
    )
    parser.add_argument(
        "--pitch", type=_view_value("pitch", float), default=0.0, help="pitch of the views, ±90°"
    )
    parser.add_argument(
        "--centre-crop",
        action="store_true",
        help="CLIP's centre crop instead of views (for comparison only)",
    )
    parser.add_argument(
        "--full-decode",
        action="store_true",
        help="decode JPEGs at full resolution; by default they are decoded in draft mode (at "
        "1/2, 1/4 or 1/8 scale, still covering the model's input): several times faster, scores "
        "within about 1e-4 of a full decode. The two kinds are stored apart.",
    )
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--workers", type=positive_int, default=None)
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where weights and embeddings live (default $MUS_QGIS_CACHE or ~/.cache/mus_qgis)",
    )


def _ray_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("location tables and Ray clusters")
    group.add_argument("--paths-field", default="image_paths", help="a table's image paths field")
    group.add_argument("--bearing-field", default="bearing", help="a table's street bearing")
    group.add_argument("--heading-field", default="image_heading", help="a panorama's heading")
    group.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="embed on a Ray cluster (needs requirements-ray.txt): auto, ray://HEAD:10001, or "
        "nothing for a local cluster; the embeddings go to Parquet shards beside the store",
    )
    group.add_argument("--actors", type=positive_int, default=1, help="model copies (Ray)")
    group.add_argument("--cpus-per-actor", type=float, default=1.0, help="CPUs per model (Ray)")
    group.add_argument(
        "--gpus-per-actor",
        type=float,
        default=None,
        help="GPUs per model (Ray); default 1 when the cluster has GPUs, else 0",
    )


def _spec(args) -> ModelSpec:
    return ModelSpec(args.model, args.pretrained, args.checkpoint, args.device, args.precision)


def _setting(args) -> ViewSetting:
    return ViewSetting(args.views, args.fov, args.pitch, args.centre_crop)


def _label_set(args):
    templates = args.template or None
    if Path(args.labels).is_file():
        return read_label_file(args.labels, templates)
    return builtin_label_set(args.labels, templates)


def _is_table(args) -> bool:
    from .clip.location_table import is_location_table

    return len(args.images) == 1 and is_location_table(args.images[0])


def _embed_locations(args) -> list[Location]:
    """A location table (the fetch output: GeoPackage, CSV, Parquet), or images one by one."""
    from .clip.location_table import read_location_table

    if _is_table(args):
        return read_location_table(
            args.images[0], args.paths_field, args.bearing_field, args.heading_field
        )[1]
    return [Location((path,)) for path in image_paths(args.images)]


def cmd_embed(args) -> int:
    spec, setting = _spec(args), _setting(args)
    check_cache_dir(args.cache_dir)
    if args.ray is not None:
        return _embed_on_ray(args, spec, setting)
    model = load_model(spec, model_cache_dir(args.cache_dir))
    if model.untrained:
        print(UNTRAINED_WARNING, file=sys.stderr)
    locations = _embed_locations(args)
    fast_decode = not args.full_decode
    store, text_store = open_stores(args.cache_dir, model, setting, fast_decode)
    progress = LoggingProgress()
    result = None
    try:
        result = embed_locations(
            locations,
            model,
            setting,
            store,
            progress,
            args.batch_size,
            args.workers,
            fast_decode,
        )
    finally:
        report_notes(_StderrProgress(), store)
        report_damaged(_StderrProgress(), store, text_store, result)
        store.close()
        text_store.close()
    for location, status in zip(locations, result.status, strict=True):
        if status != "ok":
            print(f"{';'.join(location.paths) or '(no image)'}: {status}", file=sys.stderr)
    what = "locations" if _is_table(args) else "images"
    print(
        f"{result.counts.get('locations ok', 0)} of {len(locations)} {what} embedded into "
        f"{store.path} ({result.counts})"
    )
    return 0 if result.counts.get("locations ok", 0) else 1


def _embed_on_ray(args, spec: ModelSpec, setting: ViewSetting) -> int:
    from .clip.ray_embed import embed_with_ray, require_ray

    require_ray()  # before anything is read: a clear word when Ray is not installed
    locations = _embed_locations(args)
    result = embed_with_ray(
        locations,
        spec,
        setting,
        args.cache_dir,
        address=args.ray or None,
        actors=args.actors,
        cpus_per_actor=args.cpus_per_actor,
        gpus_per_actor=args.gpus_per_actor,
        batch_size=args.batch_size,
        fast_decode=not args.full_decode,
        progress=_StderrProgress(),
    )
    for path, status in sorted(result.statuses.items()):
        if status not in ("ok", "cached"):
            print(f"{path}: {status}", file=sys.stderr)
    counts = {k: v for k, v in result.counts.items() if k != "encoder processes"}
    print(f"Ray: images embedded into {result.store_path.with_suffix('.shards')} ({counts})")
    usable = result.counts["images"] - result.counts["failed"]
    return 0 if usable else 1


class _StderrProgress(LoggingProgress):
    """Warnings on stderr, always (stdout carries the results); the rest is logged (-v)."""

    def warning(self, message: str) -> None:
        self.messages.append(message)
        print(message, file=sys.stderr)


class _ToldProgress(_StderrProgress):
    """Every line on stderr: a download says how far it has come."""

    def info(self, message: str) -> None:
        super().info(message)
        print(message, file=sys.stderr)


def cmd_score(args) -> int:
    spec, setting, label_set = _spec(args), _setting(args), _label_set(args)
    if args.out is not None and not args.out.parent.is_dir():
        raise MusError(
            f"The folder of --out {args.out} does not exist: create it or write elsewhere."
        )
    if args.images:
        paths = image_paths(args.images)
        run = classify_locations(
            [Location((p,)) for p in paths],
            label_set,
            spec,
            setting,
            args.top_k,
            args.cache_dir,
            _StderrProgress(),
            args.batch_size,
            args.workers,
            not args.full_decode,
        )
        _write_scores(args.out, args.top_k, label_set, [(paths, run.embeddings.status, run.scores)])
        return 0
    # Every stored image, chunk by chunk: a store of millions is written in bounded memory.
    with iter_stored_scores(
        [label_set],
        spec,
        setting,
        args.cache_dir,
        args.top_k,
        _StderrProgress(),
        not args.full_decode,
    ) as stored:
        chunks = ((paths, ["ok"] * len(paths), scores) for paths, (scores,) in stored)
        _write_scores(args.out, args.top_k, label_set, chunks)
    return 0


def cmd_rank(args) -> int:
    """Rank every label over all stored embeddings, with exact mean probabilities."""
    from ..shared.labels import parse_groups
    from .readings.ranking import rank_labels

    label_set = _label_set(args)
    groups = parse_groups(args.group or [])
    targets = [t.strip() for t in (args.targets or "").split(",") if t.strip()]
    (ranking,) = rank_stored_embeddings(
        [label_set],
        _spec(args),
        _setting(args),
        args.cache_dir,
        progress=_StderrProgress(),
        fast_decode=not args.full_decode,
    ).rankings
    ranked = rank_labels(
        label_set.texts, ranking.first, None, targets, groups, ranking.mean_probability
    )
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["rank", "label", "first_places", "share", "mean_probability", "target"])
    for entry in ranked:
        writer.writerow(
            [
                entry.rank,
                entry.label,
                entry.first_places,
                f"{entry.share:.6f}",
                f"{entry.mean_probability:.6f}",
                int(entry.target),
            ]
        )
    return 0


def _write_scores(out, top_k: int, label_set, chunks) -> None:
    """A CSV row per image: (paths, statuses, Scores) per chunk. A file is written aside and
    renamed into place once whole: a run stopped halfway leaves no table that looks complete."""
    k = max(1, min(top_k, len(label_set)))
    header = ["path", "status"]
    for name in ("label", "score", "prob"):
        header += [f"{name}_{i}" for i in range(1, k + 1)]
    header.append("margin")
    partial = out.with_name(f".{out.name}.partial") if out else None
    try:
        handle = open(partial, "w", newline="", encoding="utf-8") if out else sys.stdout  # noqa: SIM115
    except OSError as exc:
        raise MusError(
            f"Cannot write --out {out} ({exc.strerror or exc}): choose a file in a folder you "
            "can write to."
        ) from exc
    try:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for paths, status, scores in chunks:
            for row, path in enumerate(paths):
                labels = [label or "" for label in scores.top_labels(row)]
                cos = [_number(v) for v in scores.cosine[row]]
                prob = [_number(v) for v in scores.probability[row]]
                margin = _number(scores.margin[row])
                writer.writerow([path, status[row], *labels, *cos, *prob, margin])
        if out:
            handle.close()
            os.replace(partial, out)
    finally:
        if out and not handle.closed:
            handle.close()
            partial.unlink(missing_ok=True)


def _number(value) -> str:
    return "" if value != value else f"{float(value):.6f}"


def cmd_labelsets(_args) -> int:
    # The index is what Processing takes for LABEL_SET / STORED_LABEL_SETS in qgis_process.
    for index, entry in enumerate(builtin_label_sets()):
        count = len(builtin_label_set(entry.name))
        print(f"{index:2}  {entry.name:28} {count:4} labels  {entry.title}")
    return 0


def cmd_models(args) -> int:
    import open_clip

    for name, tag in open_clip.list_pretrained():
        if not args.filter or args.filter.lower() in name.lower():
            print(f"{name:40} {tag}")
    return 0


def cmd_download(args) -> int:
    from .clip.models import download_weights

    path, size, cached = download_weights(
        args.model, args.pretrained, model_cache_dir(args.cache_dir), _ToldProgress()
    )
    print(f"{path} ({size / 1e6:.0f} MB){' was in the cache already' if cached else ''}")
    return 0


def cmd_selftest(_args) -> int:
    from ..shared.schemas.engine import SelftestParams
    from .status import selftest

    # The last line is the report as JSON: the set-up reads it.
    print(json.dumps(selftest(SelftestParams(), None).to_dict()))
    return 0


def cmd_status(args) -> int:
    from ..shared.schemas.engine import StatusParams
    from .status import status

    print(json.dumps(status(StatusParams(str(args.cache_dir)), None).to_dict(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mus_qgis.engine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)

    embed = commands.add_parser("embed", help="embed images into the store")
    embed.add_argument(
        "images",
        nargs="+",
        help="image files, folders or .txt lists of paths; or one location table (.gpkg, .csv, "
        ".parquet: the fetch output)",
    )
    _model_arguments(embed)
    _ray_arguments(embed)
    embed.set_defaults(run=cmd_embed)

    scorer = commands.add_parser("score", help="score images (or the whole store) on labels")
    scorer.add_argument("images", nargs="*", help="images; none scores every stored embedding")
    scorer.add_argument("--labels", required=True, help="built-in set name or a .txt/.csv file")
    scorer.add_argument(
        "--template", action="append", help="prompt template with {label}; repeat for an ensemble"
    )
    scorer.add_argument(
        "--top-k", type=positive_int, default=3, help="labels kept per image (1 or more)"
    )
    scorer.add_argument("--out", type=Path, default=None, help="CSV file (default: stdout)")
    _model_arguments(scorer)
    scorer.set_defaults(run=cmd_score)

    ranker = commands.add_parser("rank", help="rank labels over every stored embedding")
    ranker.add_argument("--labels", required=True, help="built-in set name or a .txt/.csv file")
    ranker.add_argument("--template", action="append", help="prompt template with {label}")
    ranker.add_argument("--targets", default="", help="labels to mark, comma-separated")
    ranker.add_argument(
        "--group", action="append", help="labels summed into one entry: 'name = label; label'"
    )
    _model_arguments(ranker)
    ranker.set_defaults(run=cmd_rank)

    commands.add_parser("labelsets", help="list the built-in label sets").set_defaults(
        run=cmd_labelsets
    )
    models = commands.add_parser("models", help="list open_clip models and pretrained tags")
    models.add_argument("filter", nargs="?", default="")
    models.set_defaults(run=cmd_models)
    download = commands.add_parser("download", help="download pretrained weights into the cache")
    download.add_argument("--model", default=DEFAULT_MODEL)
    download.add_argument("--pretrained", default=DEFAULT_PRETRAINED)
    download.add_argument("--cache-dir", type=Path, default=None)
    download.set_defaults(run=cmd_download)
    commands.add_parser(
        "selftest", help="import the engine's packages, run a tiny CLIP"
    ).set_defaults(run=cmd_selftest)
    status = commands.add_parser("status", help="Python, packages, device and caches, as JSON")
    status.add_argument("--cache-dir", type=Path, default=None)
    status.set_defaults(run=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    if getattr(args, "cache_dir", None) is None and hasattr(args, "cache_dir"):
        args.cache_dir = default_cache_dir()
    try:
        return args.run(args)
    except MusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
