"""Teach the model with a user's corrections: train a probe on stored embeddings, re-score all.

A classified layer's points name their images; the embedding store knows each image by path
(its digest) and holds its embedding under the key the classification used, so every point's
embedding is found again without reading an image. The corrected points train a probe
(``probe.py``); every point is then scored by it, except the corrected ones, which get the
scores of the cross-validation probe that did not see them, so no score on the layer comes from a
probe that was trained on that point.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ...shared.labels import LabelSet
from ...shared.progress import LoggingProgress, Progress, check_canceled, warn
from ..imagery.panorama import ViewSetting
from ..readings.ranking import available_labels
from .classify import model_cache_dir, open_stores, report_notes, store_key
from .embedding import Location
from .models import ModelSpec, load_model, precision_of
from .probe import DEFAULT_REGULARISATION, Probe, ProbeError, cross_validate, fit_weights
from .scoring import label_embeddings, scores_from_logits
from .store import slug
from .views import embedding_key

CHUNK = 20_000  # locations scored at a time: memory stays bounded however big the layer
SCORED_BY_PROBE = "probe"
SCORED_OUT_OF_FOLD = "cross-validation (trained without this point)"


@dataclass
class StoredVectors:
    vectors: object  # float32 N×D, NaN where the point has no stored embedding
    status: list[str]  # "ok", or why the point has none
    keys: list[list[str]]  # the store keys (image digest, and a panorama's yaw) of each point


def stored_vectors(locations: Sequence[Location], store, setting: ViewSetting, dimension: int):
    """Each location's embedding as the classification made it (mean of its images' stored
    embeddings, normalised), found by path and key in the store; no image is read."""
    import numpy as np

    facts = store.file_facts(path for location in locations for path in location.paths)
    wanted = []
    for location in locations:
        keys = []
        for path in location.paths:
            known = facts.get(path)
            keys.append(
                embedding_key(known[2], setting, location.bearing, location.heading)
                if known
                else None
            )
        wanted.append(keys)
    found, damaged = store.get(key for keys in wanted for key in keys if key)
    position = {key: index for index, key in enumerate(found)}
    matrix = np.stack(list(found.values())) if found else np.zeros((0, dimension), np.float32)
    rows, columns, status, used = [], [], [], []
    for row, (location, keys) in enumerate(zip(locations, wanted, strict=True)):
        good = [key for key in keys if key in position]
        used.append(good)
        rows += [row] * len(good)
        columns += [position[key] for key in good]
        if good:
            status.append("ok")
        elif not location.paths:
            status.append("no image")
        else:
            path, key = location.paths[0], keys[0]
            if key is None:
                why = "was never embedded with this model and these views (classify it first)"
            elif key in damaged:
                why = f"has a damaged stored embedding ({damaged[key]}): classify it again"
            else:
                why = "has no stored embedding for these views (classify it first)"
            status.append(f"error: image {path} {why}")
    # The mean of each point's image embeddings, normalised (as the classification pooled
    # them), for all points at once: a per-point loop costs more than the scoring itself.
    rows = np.asarray(rows, dtype=np.int64)  # non-decreasing: each point's images together
    vectors = np.full((len(locations), dimension), np.nan, dtype=np.float32)
    if len(rows):
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        means = matrix[np.asarray(columns, dtype=np.int64)]
        if len(starts) < len(rows):  # some points have several images
            means = np.add.reduceat(means, starts, axis=0)
            means /= np.diff(np.r_[starts, len(rows)])[:, None]
        norms = np.sqrt(np.einsum("ij,ij->i", means, means))[:, None]
        vectors[rows[starts]] = means / np.maximum(norms, 1e-12)
    return StoredVectors(vectors, status, used)


@dataclass
class ProbeRun:
    top_index: object  # int N×k (-1: not scored)
    logit: object  # float32 N×k
    probability: object  # float32 N×k
    margin: object  # float32 N
    status: list[str]  # per point: "ok" or why it has no probe score
    scored_by: list[str]  # SCORED_BY_PROBE, SCORED_OUT_OF_FOLD or ""
    probe: Probe
    probe_path: Path
    report: dict  # accuracies, counts, the points left out of training and why


def label_indices(user_labels: Sequence, label_set: LabelSet, point_ids: Sequence) -> list[int]:
    """Each point's corrected label as an index of the set, -1 where it has none; a value that
    is not a label of the set is an error naming it and the points that hold it."""
    position = {text: index for index, text in enumerate(label_set.texts)}
    indices, unknown = [], {}
    for value, point in zip(user_labels, point_ids, strict=True):
        text = "" if value is None else str(value).strip()
        if not text or text == "NULL":
            indices.append(-1)
        elif text in position:
            indices.append(position[text])
        else:
            unknown.setdefault(text, []).append(str(point))
            indices.append(-1)
    if unknown:
        named = "; ".join(
            f"{text!r} (point {', '.join(points[:5])}{' …' if len(points) > 5 else ''})"
            for text, points in unknown.items()
        )
        raise ProbeError(
            f"label_user holds values that are not labels of the set {label_set.name!r}: "
            f"{named}. {available_labels(label_set.texts)} Correct them (the names must match "
            "exactly, case included) or clear them."
        )
    return indices


def _require_two_classes(targets, label_set: LabelSet, what: str) -> None:
    classes = sorted(set(targets))
    if len(classes) < 2:
        named = f" (all {label_set.texts[classes[0]]!r})" if classes else ""
        raise ProbeError(
            f"A probe needs corrected points of at least two labels; {what} {len(targets)} "
            f"point(s){named}. Set label_user on points of another label too."
        )


def train_and_rescore(
    locations: Sequence[Location],
    user_labels: Sequence,
    point_ids: Sequence,
    label_set: LabelSet,
    spec: ModelSpec,
    setting: ViewSetting,
    cache_dir: str | Path,
    fast_decode: bool = True,
    regularisation: float = DEFAULT_REGULARISATION,
    top_k: int = 3,
    probe_path: str | Path | None = None,
    expected_identity: str = "",
    progress: Progress | None = None,
) -> ProbeRun:
    """Train a probe on the corrected points' stored embeddings, report its cross-validated
    accuracy beside zero-shot's, save it, and score every location with it."""
    import numpy as np

    progress = progress or LoggingProgress()
    targets_all = np.asarray(label_indices(user_labels, label_set, point_ids), dtype=np.int64)
    corrected = np.flatnonzero(targets_all >= 0)
    _require_two_classes(targets_all[corrected].tolist(), label_set, "the layer has")
    model = load_model(spec, model_cache_dir(cache_dir))
    if expected_identity and model.identity != expected_identity:
        raise ProbeError(
            f"The layer was classified with the model {expected_identity}, but {spec.describe()} "
            f"is {model.identity}: give the model and weights the classification used."
        )
    store, text_store = open_stores(cache_dir, model, setting, fast_decode)
    try:
        report_notes(progress, store)
        text_vectors = label_embeddings(model, label_set, text_store)
        dimension = text_vectors.shape[1]
        found = stored_vectors([locations[i] for i in corrected], store, setting, dimension)
        usable = np.asarray([s == "ok" for s in found.status], dtype=bool)
        left_out = [
            {"point": str(point_ids[row]), "why": why}
            for row, why, ok in zip(corrected, found.status, usable, strict=True)
            if not ok
        ]
        if left_out:
            warn(
                progress,
                f"{len(left_out)} corrected point(s) left out of training, having no stored "
                "embedding: "
                + "; ".join(f"point {item['point']}: {item['why']}" for item in left_out[:5])
                + (" …" if len(left_out) > 5 else ""),
            )
        rows = corrected[usable]
        targets, vectors = targets_all[rows], found.vectors[usable]
        _require_two_classes(targets.tolist(), label_set, "with a stored embedding there are")
        check_canceled(progress)
        validation = cross_validate(
            vectors, targets, text_vectors, model.logit_scale, regularisation
        )
        progress.info(
            f"Cross-validated ({validation.method}) on {len(rows)} corrected points: probe "
            f"{validation.probe_accuracy:.1%}, zero-shot {validation.zero_shot_accuracy:.1%}."
        )
        weights, bias = fit_weights(
            vectors, targets, text_vectors, model.logit_scale, regularisation
        )
        keys = [found.keys[i] for i in np.flatnonzero(usable)]
        trained_on = [
            {"point": str(point_ids[row]), "label": label_set.texts[target], "keys": point_keys}
            for row, target, point_keys in zip(rows, targets, keys, strict=True)
        ]
        view_key = store_key(setting, fast_decode)
        counts = np.bincount(targets, minlength=len(label_set))
        metadata = {
            "kind": "mus_qgis linear probe",
            "created_utc": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
            "label_set": label_set.name,
            "label_set_title": label_set.title,
            "label_set_hash": label_set.content_hash(),
            "labels": list(label_set.texts),
            "templates": list(label_set.templates),
            "model": spec.name,
            "model_identity": model.identity,
            "untrained": bool(model.untrained),
            "view_key": view_key,
            "logit_scale": float(model.logit_scale),
            "regularisation": float(regularisation),
            "penalty": "regularisation/2 * (||W - logit_scale*T||^2 + ||b||^2), summed CE",
            "examples_per_label": {label_set.texts[i]: int(n) for i, n in enumerate(counts) if n},
            "cross_validation": {
                "method": validation.method,
                "points": len(rows),
                "probe_accuracy": validation.probe_accuracy,
                "zero_shot_accuracy": validation.zero_shot_accuracy,
            },
            "trained_on": trained_on,
        }
        probe = Probe(weights, bias, metadata)
        path = Path(probe_path) if probe_path else default_probe_path(store.path, metadata)
        saved, _ = probe.save(path)
        progress.info(f"Probe saved to {saved}.")
        scored = rescore(locations, store, setting, probe, label_set, top_k, progress)
    finally:
        store.close()
        text_store.close()
    # The corrected points keep the scores of the probe that did not see them.
    scored_by = [SCORED_BY_PROBE if s == "ok" else "" for s in scored[4]]
    out_of_fold = scores_from_logits(validation.logits, validation.logits, label_set, top_k)
    top_index, logit, probability, margin, status = scored
    top_index[rows] = out_of_fold.top_index
    logit[rows] = out_of_fold.cosine
    probability[rows] = out_of_fold.probability
    margin[rows] = out_of_fold.margin
    for row in rows:
        scored_by[row] = SCORED_OUT_OF_FOLD
    report = {
        **metadata["cross_validation"],
        "corrected": len(corrected),
        "left_out": left_out,
        "scored": int(sum(1 for s in status if s == "ok")),
        "locations": len(locations),
        "untrained": bool(model.untrained),
        "model_identity": model.identity,
        "examples_per_label": metadata["examples_per_label"],
        "regularisation": float(regularisation),
    }
    return ProbeRun(top_index, logit, probability, margin, status, scored_by, probe, saved, report)


def default_probe_path(store_path: Path, metadata: dict) -> Path:
    """Next to the store: probes/<store>_<label set>_<hash of what it was trained on>.npz."""
    fingerprint = hashlib.sha256(
        json.dumps(
            [metadata["label_set_hash"], metadata["regularisation"], metadata["trained_on"]],
            sort_keys=True,
        ).encode()
    ).hexdigest()[:10]
    name = f"{store_path.stem}_{slug(metadata['label_set'])}_{fingerprint}.npz"
    return store_path.parent / "probes" / name


def rescore(locations, store, setting, probe: Probe, label_set, top_k: int, progress):
    """Top-k labels of every location by the probe, from the store, CHUNK locations at a time:
    (top index, logits, probabilities, margin, status)."""
    import numpy as np

    count = len(locations)
    k = max(1, min(top_k, len(label_set)))
    top_index = np.full((count, k), -1, dtype=np.int64)
    logit = np.full((count, k), np.nan, dtype=np.float32)
    probability = np.full((count, k), np.nan, dtype=np.float32)
    margin = np.full(count, np.nan, dtype=np.float32)
    status: list[str] = []
    for start in range(0, count, CHUNK):
        check_canceled(progress)
        part = slice(start, min(start + CHUNK, count))
        found = stored_vectors(locations[part], store, setting, probe.weights.shape[1])
        scores = probe.scores(found.vectors, label_set, k)
        top_index[part], logit[part] = scores.top_index, scores.cosine
        probability[part], margin[part] = scores.probability, scores.margin
        status += found.status
        progress.set_progress(100.0 * part.stop / max(count, 1))
    return top_index, logit, probability, margin, status


def view_setting_from_key(key: str) -> ViewSetting:
    """The view setting a store key names ('views4-fov90-pitch0', 'centre-crop')."""
    import re

    if key == "centre-crop":
        return ViewSetting(centre_crop=True)
    match = re.fullmatch(r"views(\d+)-fov([-\d.]+)-pitch([-\d.]+)", key or "")
    if not match:
        raise ProbeError(
            f"The layer's run settings name the views {key!r}, which this version cannot read: "
            "classify the layer again with CLIP-classify."
        )
    return ViewSetting(int(match[1]), float(match[2]), float(match[3]))


def classification_of(
    settings: dict, label_file: str = "", checkpoint: str = "", device: str = "auto"
):
    """The label set, model, views and decoding a classified layer's run settings record, as
    the engine needs them: (label set, model spec, view setting, fast decode).

    A built-in label set and a pretrained tag are found from the settings alone; a label file or
    a checkpoint file must be given again (the settings keep only their names), and is checked
    against what the settings recorded.
    """
    from ...shared.errors import LabelSetError
    from ...shared.labels import builtin_label_set, read_label_file

    if not settings or "label_set_hash" not in settings:
        raise ProbeError(
            "The layer carries no CLIP-classify run settings (label set, model, views): train "
            "the probe on a layer that CLIP-classify wrote, or on a copy saved as GeoPackage."
        )
    templates = settings.get("templates") or None
    if label_file:
        label_set = read_label_file(label_file, templates)
    else:
        try:
            label_set = builtin_label_set(settings["label_set"], templates)
        except LabelSetError as exc:
            raise ProbeError(
                f"The layer was classified with the label file {settings['label_set']!r}: give "
                "that file again (Label file)."
            ) from exc
    if label_set.content_hash() != settings["label_set_hash"]:
        raise ProbeError(
            f"The label set {label_set.name!r} is not the one the layer was classified with "
            f"(its labels, order or templates differ: hash {label_set.content_hash()}, the "
            f"layer's {settings['label_set_hash']}). Give the label file the classification used."
        )
    if settings.get("checkpoint") and not checkpoint:
        raise ProbeError(
            f"The layer was classified with weights from the checkpoint file "
            f"{settings['checkpoint']!r}: give that file again (Checkpoint file)."
        )
    spec = ModelSpec(
        settings.get("model", ""),
        "" if checkpoint else settings.get("pretrained", ""),
        checkpoint,
        device,
        precision_of(settings),
    )
    setting = view_setting_from_key(settings.get("views", ""))
    return label_set, spec, setting, bool(settings.get("jpeg_draft_decode", True))
