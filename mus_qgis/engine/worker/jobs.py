"""The jobs the worker runs: one function per Processing algorithm's heavy work, plus status.

Each job takes the ``params`` of a job message (plain JSON) and a progress channel, reads its
inputs from the files the params name, writes its outputs next to them, and returns a small JSON
result. Heavy packages are imported inside the jobs, so that a worker answers "ready" at once and
a job pays only for what it uses.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path

from ..deps import require
from ..errors import MusError
from .environment import folder_size

JOBS: dict[str, Callable[[dict, object], dict]] = {}

# What a bug report needs to know; the engine's own packages, and those it relies on.
REPORTED_PACKAGES = (
    "torch",
    "torchvision",
    "open_clip_torch",
    "numpy",
    "pillow",
    "osmnx",
    "geopandas",
    "shapely",
    "pyproj",
    "pyogrio",
    "osmium",
    "networkx",
    "pandas",
    "requests",
    "huggingface_hub",
    "diffusers",
    "transformers",
)


def job(name: str):
    """Register a function as the job ``name``."""

    def register(function):
        JOBS[name] = function
        return function

    return register


# -- status ----------------------------------------------------------------------------------
def package_versions() -> dict[str, str | None]:
    from importlib import metadata

    versions = {}
    for name in REPORTED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_report() -> dict:
    """The device the engine will use: a CUDA device (name, memory), Apple's MPS, or the CPU."""
    report: dict = {"cpu_count": os.cpu_count()}
    try:
        import torch
    except ImportError as exc:
        report["device"] = "none (torch cannot be imported)"
        report["error"] = str(exc)
        return report
    from ..clip.models import resolve_device

    report["torch_threads"] = torch.get_num_threads()
    report["cuda_build"] = torch.version.cuda or ""
    device = resolve_device("auto")
    report["device"] = device
    if device == "cuda":
        properties = torch.cuda.get_device_properties(0)
        report["cuda_devices"] = [
            {
                "name": torch.cuda.get_device_name(i),
                "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1),
            }
            for i in range(torch.cuda.device_count())
        ]
        report["description"] = (
            f"CUDA: {properties.name}, {properties.total_memory / 2**30:.1f} GiB"
        )
    elif device == "mps":
        report["description"] = "Apple GPU (MPS)"
    else:
        report["description"] = f"CPU, {torch.get_num_threads()} threads"
    return report


@job("status")
def status(params: dict, progress) -> dict:
    """Python, packages, device, and the cache folders with their sizes."""
    from ..resources import plugin_version

    report = {
        "engine_python": sys.executable,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "plugin_version": plugin_version(),
        "packages": package_versions(),
        "device": device_report(),
        "worker_pid": os.getpid(),
        # Which copy of the plugin the worker runs (a profile's, a checkout's): for bug reports.
        "plugin_folder": str(Path(__file__).resolve().parents[2]),
    }
    cache = params.get("cache_dir")
    if cache:
        folders = {}
        for name in ("models", "embeddings", "imagery", "osmnx"):
            path = Path(cache) / name
            folders[name] = {"path": str(path), "bytes": folder_size(path) if path.is_dir() else 0}
        report["cache"] = folders
    return report


TINY_CLIP_CONFIG = {
    # A 2-layer, 64-wide CLIP: enough to run every layer type of the real ones in a fraction of
    # a second, so a set-up can prove that torch and open_clip work without any weights.
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@job("selftest")
def selftest(params: dict, progress) -> dict:
    """Import every engine package and run a forward pass of a tiny CLIP: is the engine whole?"""
    import importlib
    import tempfile

    modules = ("numpy", "PIL", "requests", "shapely", "pyproj", "pyogrio", "geopandas")
    modules += ("osmium", "osmnx", "torch", "torchvision", "open_clip")
    for module in modules:
        importlib.import_module(module)
    import open_clip
    import torch

    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "mus-selftest-clip.json"
        config.write_text(json.dumps(TINY_CLIP_CONFIG), encoding="utf-8")
        open_clip.add_model_config(config)
        model = open_clip.create_model("mus-selftest-clip")
    tokenizer = open_clip.get_tokenizer("mus-selftest-clip")
    with torch.no_grad():
        image = model.encode_image(torch.zeros(1, 3, 32, 32))
        text = model.encode_text(tokenizer(["a street"]))
    if image.shape != text.shape:
        raise MusError(f"The test model gave image {tuple(image.shape)}, text {tuple(text.shape)}")
    return {"ok": True, "packages": package_versions(), "device": device_report()}


# -- 1. streets --------------------------------------------------------------------------------
@job("sample_streets")
def sample_streets(params: dict, progress) -> dict:
    """Street centroids of a study area, written as a GeoPackage layer (EPSG:4326)."""
    require("shapely", "osmnx", "geopandas", "pyogrio", "osmium")
    import shapely

    from ..streets.centroids import StudyArea, sample_street_centroids
    from ..streets.osm_source import NetworkServices

    services = NetworkServices(**params["services"])
    polygon = shapely.from_wkt(params["polygon_wkt"]) if params.get("polygon_wkt") else None
    area = StudyArea(
        place=params.get("place") or None,
        polygon=polygon,
        osm_file=Path(params["osm_file"]) if params.get("osm_file") else None,
    )
    result = sample_street_centroids(
        area,
        classes=params["classes"],
        merge_distance_m=float(params["merge_distance_m"]),
        projected_crs=params.get("projected_crs") or None,
        services=services,
        progress=progress,
    )
    output = params["output"]
    # GeoPackage 1.2: QGIS 3.22's GDAL warns about the 1.4 that pyogrio writes by default.
    result.points.to_file(
        output,
        layer="points",
        driver="GPKG",
        engine="pyogrio",
        dataset_options={"VERSION": "1.2"},
    )
    return {
        "output": output,
        "layer": "points",
        "segments_total": result.segments_total,
        "segments_selected": result.segments_selected,
        "segments_excluded": result.segments_excluded,
        "locations": result.locations,
        "excluded_by_class": result.excluded_by_class,
        "areas_selected": result.areas_selected,
        "directed_edges": result.directed_edges,
    }


# -- 2. imagery --------------------------------------------------------------------------------
@job("fetch_imagery")
def fetch_imagery_job(params: dict, progress) -> dict:
    """Look up and download imagery for points; the outcomes go to a JSON file."""
    require("PIL", "numpy")
    from datetime import date

    from ..imagery.fetch import FetchSettings, fetch_imagery
    from ..imagery.sources.base import Credentials, DateWindow, FetchPoint, ViewPlan

    with open(params["points"], encoding="utf-8") as handle:
        points = [FetchPoint(*row) for row in json.load(handle)]
    window = params.get("window") or {}
    settings = FetchSettings(
        params["source"],
        radius_m=float(params["radius_m"]),
        plan=ViewPlan(**params["plan"]),
        window=DateWindow(
            *(date.fromisoformat(window[k]) if window.get(k) else None for k in ("start", "end"))
        ),
        concurrency=int(params["concurrency"]),
        url=params.get("url", ""),
        location=params.get("location", ""),
        estimate_only=bool(params.get("estimate_only")),
        price_per_1000=params.get("price_per_1000"),
    )
    credentials = Credentials(**(params.get("credentials") or {}))
    estimates: list = []
    outcomes = fetch_imagery(
        points,
        settings,
        params["cache_dir"],
        credentials,
        progress,
        params.get("proxies"),
        on_estimate=estimates.append,
    )
    rows = []
    for outcome in outcomes:
        row = dict(vars(outcome))
        row["captured"] = outcome.captured.isoformat() if outcome.captured else None
        rows.append(row)
    with open(params["output"], "w", encoding="utf-8") as handle:
        json.dump(rows, handle)
    estimate = estimates[0].as_dict() if estimates else None
    return {"output": params["output"], "count": len(rows), "estimate": estimate}


# -- 3. CLIP -----------------------------------------------------------------------------------
def _label_set(spec: dict):
    from ..clip.labels import builtin_label_set, read_label_file

    templates = spec.get("templates") or None
    if spec.get("file"):
        return read_label_file(spec["file"], templates)
    return builtin_label_set(spec["builtin"], templates)


def _model_and_view(params: dict):
    from ..clip.models import ModelSpec
    from ..imagery.panorama import ViewSetting

    return ModelSpec(**params["model"]), ViewSetting(**params["view"])


@job("classify")
def classify(params: dict, progress) -> dict:
    """Classify locations' images; scores go to a NumPy file, row for row with the input."""
    require("numpy", "PIL", "torch", "open_clip")
    import numpy as np

    from ..clip.classify import classify_locations
    from ..clip.embedding import Location

    with open(params["locations"], encoding="utf-8") as handle:
        rows = json.load(handle)
    locations = [Location(tuple(paths), bearing, heading) for paths, bearing, heading in rows]
    spec, view = _model_and_view(params)
    probe = None
    if params.get("probe"):
        from ..clip.probe import load_probe

        probe = load_probe(params["probe"])
    try:
        run = classify_locations(
            locations,
            _label_set(params["label_set"]),
            spec,
            view,
            int(params["top_k"]),
            params["cache_dir"],
            progress,
            int(params["batch_size"]),
            fast_decode=not params.get("full_decode", False),
            probe=probe,
        )
    except ValueError as exc:  # a setting the engine refuses (e.g. a view it cannot cut)
        raise MusError(str(exc)) from exc
    scores = run.scores
    np.savez(
        params["output"],
        top_index=scores.top_index,
        cosine=scores.cosine,
        probability=scores.probability,
        margin=scores.margin,
        images_used=np.asarray(run.embeddings.images_used, dtype=np.int64),
        status=np.asarray(run.embeddings.status, dtype=str),
    )
    return {
        "output": params["output"],
        "metadata": run.metadata,
        "untrained": bool(run.model.untrained),
        "counts": run.embeddings.counts,
    }


# -- 4. readings -------------------------------------------------------------------------------
def _ranked_rows(ranked) -> list[dict]:
    return [
        {
            "rank": entry.rank,
            "label": entry.label,
            "first_places": entry.first_places,
            "share": entry.share,
            "mean_probability": entry.mean_probability,
            "target": bool(entry.target),
            "members": list(entry.members),
        }
        for entry in ranked
    ]


def _rank_in_set(set_name, labels, first, probabilities, targets, groups, progress, mean=None):
    """Rank with the targets and groups that belong to this label set; say what was left out."""
    from ..readings.ranking import rank_labels

    present = set(labels)
    wanted_targets = [t for t in targets if t in present]
    wanted_groups = {
        name: members for name, members in groups.items() if all(m in present for m in members)
    }
    if len(wanted_targets) + len(wanted_groups) < len(targets) + len(groups):
        progress.info(f"{set_name}: labels not in this set are left out of targets and groups.")
    return rank_labels(labels, first, probabilities, wanted_targets, wanted_groups, mean)


def _check_targets_known(targets, groups, universes, progress, strict=True) -> None:
    """A target or group found in no label set ranked is a typo: an error when nothing asked
    for is found anywhere (the ranking would mark nothing), else a warning naming each. Not
    ``strict`` (targets the user left at their suggested default): a warning only."""
    from ..errors import LabelSetError
    from ..progress import warn
    from ..readings.ranking import available_labels

    everywhere = {label for _, labels in universes for label in labels}
    lost_targets = [t for t in targets if t not in everywhere and t not in groups]
    lost_groups = [
        name for name, members in groups.items() if not all(m in everywhere for m in members)
    ]
    if not lost_targets and not lost_groups:
        return
    lost = [repr(t) for t in lost_targets] + [f"group {g!r}" for g in lost_groups]
    sets = " ".join(f"{name}: {available_labels(labels)}" for name, labels in universes)
    message = (
        f"Not a label of any label set ranked: {', '.join(lost)}. {sets} Check the spelling "
        "(labels are case-sensitive)."
    )
    if strict and len(lost_targets) + len(lost_groups) == len(targets) + len(groups):
        raise LabelSetError(message)
    warn(progress, message)


@job("rank")
def rank(params: dict, progress) -> dict:
    """Rank labels of classified layers (arrays in NumPy files) and of label sets over the store."""
    require("numpy")
    import numpy as np

    from ..readings.ranking import parse_groups

    targets = list(params.get("targets") or [])
    groups = parse_groups(params.get("groups") or [])
    sections = []
    universes = []  # (set name, labels) of every set ranked, to name what a target may be
    for layer in params.get("layers") or []:
        arrays = np.load(layer["arrays"], allow_pickle=False)
        probabilities = arrays["probabilities"] if layer.get("has_probabilities") else None
        universes.append((layer["set_name"], list(layer["labels"])))
        ranked = _rank_in_set(
            layer["set_name"],
            layer["labels"],
            arrays["first"],
            probabilities,
            targets,
            groups,
            progress,
        )
        sections.append({"set_name": layer["set_name"], "entries": _ranked_rows(ranked)})
    untrained = ""
    model_used: dict = {}
    stored = params.get("stored")
    if stored and stored.get("label_sets"):
        require("torch", "open_clip")
        from ..clip.classify import UNTRAINED_WARNING, rank_stored_embeddings

        label_sets = [_label_set(spec) for spec in stored["label_sets"]]
        spec, view = _model_and_view(stored)
        result = rank_stored_embeddings(
            label_sets, spec, view, stored["cache_dir"], progress=progress
        )
        untrained = UNTRAINED_WARNING if result.model.untrained else ""
        model_used = {
            "model": spec.name,
            "pretrained": spec.pretrained,
            "checkpoint": Path(spec.checkpoint).name if spec.checkpoint else "",
            "untrained": bool(result.model.untrained),
        }
        for label_set, ranking in zip(label_sets, result.rankings, strict=True):
            set_name = f"{label_set.name} (all {result.count} stored images)"
            title = f"{label_set.title or label_set.name} (all {result.count} stored images)"
            universes.append((set_name, list(label_set.texts)))
            ranked = _rank_in_set(
                set_name,
                label_set.texts,
                ranking.first,
                None,
                targets,
                groups,
                progress,
                ranking.mean_probability,
            )
            sections.append({"set_name": set_name, "title": title, "entries": _ranked_rows(ranked)})
    _check_targets_known(
        targets, groups, universes, progress, strict=params.get("strict_targets", True)
    )
    # The warning itself, so that the QGIS side need not import the CLIP modules to word it.
    return {"sections": sections, "untrained_warning": untrained, "model": model_used}


@job("grid")
def grid(params: dict, progress) -> dict:
    """A void-free label grid from labelled points; cells go to a NumPy file."""
    require("numpy", "shapely")
    import numpy as np
    import shapely

    from ..readings.grid import resample_to_grid

    arrays = np.load(params["points"], allow_pickle=False)
    area = shapely.from_wkt(params["area_wkt"]) if params.get("area_wkt") else None
    try:
        result = resample_to_grid(
            arrays["x"],
            arrays["y"],
            arrays["label"],
            int(params["n_labels"]),
            float(params["cell_size"]),
            params["shape"],
            weights=arrays["weight"] if params.get("weighted") else None,
            scores=arrays["weight"],  # the points' scores break ties
            area=area,
            progress=progress,
        )
    except ValueError as exc:
        raise MusError(str(exc)) from exc
    rings = np.asarray([result.polygon(row) for row in range(len(result.label))], dtype=float)
    np.savez(
        params["output"],
        index=np.asarray(result.index),
        label=np.asarray(result.label),
        points=np.asarray(result.points),
        share=np.asarray(result.share, dtype=float),
        entropy=np.asarray(result.entropy, dtype=float),
        filled=np.asarray(result.filled),
        fill_distance=np.asarray(result.fill_distance),
        rings=rings.reshape(len(result.label), -1, 2),
    )
    return {"output": params["output"], "cells": len(result.label)}


@job("agreement")
def agreement_job(params: dict, progress) -> dict:
    """Agreement of predicted codes with reference codes (confusion matrix, accuracy, kappa)."""
    require("numpy")
    from ..clip.labels import builtin_label_set
    from ..progress import warn
    from ..readings.agreement import agreement, land_use_code_problem

    with open(params["pairs"], encoding="utf-8") as handle:
        pairs = json.load(handle)
    known = {str(code) for code in pairs["reference"]}
    for legend in ("urban_atlas_2018", "corine_land_cover"):
        known |= {label.code for label in builtin_label_set(legend).labels if label.code}
    error, warning = land_use_code_problem(pairs["predicted"], known)
    if error:
        raise MusError(error)
    if warning:
        warn(progress, warning)
    result = agreement(pairs["reference"], pairs["predicted"], pairs.get("classes"))
    return {
        "classes": list(result.classes),
        "matrix": [[int(v) for v in row] for row in result.matrix],
        "overall_accuracy": float(result.overall_accuracy),
        "kappa": float(result.kappa),
        "precision": [float(v) for v in result.precision],
        "recall": [float(v) for v in result.recall],
        "f1": [float(v) for v in result.f1],
        "support": [int(v) for v in result.support],
        "total": int(result.total),
    }


# -- 5. reading the city (spatial statistics) ----------------------------------------------------
from . import reading_jobs  # noqa: E402,F401  (registers its jobs)


# -- 6. teaching: a probe trained on corrected points ------------------------------------------
@job("train_probe")
def train_probe_job(params: dict, progress) -> dict:
    """Train a probe on a classified layer's corrected points and score every point with it;
    the scores go to a NumPy file, row for row with the input."""
    require("numpy", "torch", "open_clip")
    import numpy as np

    from ..clip.embedding import Location
    from ..clip.teach import classification_of, train_and_rescore

    with open(params["points"], encoding="utf-8") as handle:
        points = json.load(handle)
    settings = params["settings"]
    label_set, spec, view, fast_decode = classification_of(
        settings, params.get("label_file", ""), params.get("checkpoint", ""), params["device"]
    )
    run = train_and_rescore(
        [Location(tuple(paths), bearing, heading) for paths, bearing, heading in points["rows"]],
        points["labels"],
        points["ids"],
        label_set,
        spec,
        view,
        params["cache_dir"],
        fast_decode,
        float(params["regularisation"]),
        int(params["top_k"]),
        params.get("probe") or None,
        settings.get("model_identity", ""),
        progress,
    )
    np.savez(
        params["output"],
        top_index=run.top_index,
        probability=run.probability,
        margin=run.margin,
        status=np.asarray(run.status, dtype=str),
        scored_by=np.asarray(run.scored_by, dtype=str),
    )
    return {
        "output": params["output"],
        "probe": str(run.probe_path),
        "report": run.report,
        "summary": run.probe.summary() | {"file": str(run.probe_path)},
    }


# -- the street inspector ----------------------------------------------------------------------
@job("view_scores")
def view_scores_job(params: dict, progress) -> dict:
    """Each view's top labels and the pooled ones, from the stores a classification filled."""
    require("numpy")
    from ..clip.embedding import Location
    from ..clip.view_scores import score_views

    with open(params["locations"], encoding="utf-8") as handle:
        rows = json.load(handle)
    locations = [Location(tuple(paths), bearing, heading) for paths, bearing, heading in rows]
    readings = score_views(
        locations,
        _label_set(params["label_set"]),
        params["model_identity"],
        params["store"],
        params["cache_dir"],
        float(params["logit_scale"]),
        int(params.get("top_k", 3)),
    )
    with open(params["output"], "w", encoding="utf-8") as handle:
        json.dump(readings, handle)
    return {"output": params["output"], "count": len(readings)}


# -- 8. dreams (their own module; imported last, it registers its jobs here) -------------------
from ..dreams import jobs as _dream_jobs  # noqa: E402, F401
