"""The readings' jobs: rank, grid, agreement, and reading the city (clusters, discontinuities,
periods: PySAL, scipy). Inputs and outputs are NumPy and JSON files that the QGIS side writes
and reads."""

from __future__ import annotations

import json
import numbers
from dataclasses import fields
from pathlib import Path

from ...shared.errors import MusError
from ...shared.progress import warn
from ...shared.schemas.readings import (
    AgreementParams,
    AgreementResult,
    BoundariesParams,
    BoundariesResult,
    BoundaryAlignment,
    ClustersParams,
    ClustersResult,
    GridParams,
    GridResult,
    LabelChangeParams,
    LabelChangeResult,
    LabelJoinTest,
    PeriodCorrelation,
    PeriodsParams,
    PeriodsResult,
    RankEntry,
    RankParams,
    RankResult,
    RankSection,
    ScoreMoranTest,
)
from ..clip.jobs import label_set_from_spec, model_and_view
from ..deps import require
from ..jobs import job


def _float(value: float):
    """JSON has no NaN: None instead."""
    return None if value != value else float(value)


def _plain(value):
    """A NumPy or Python value as JSON carries it: bool, int, float with None for NaN, a list."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return _float(value)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _record(schema, found):
    """The schema filled from the engine result's attributes of the same names."""
    return schema(**{field.name: _plain(getattr(found, field.name)) for field in fields(schema)})


def _ranked_rows(ranked) -> list[RankEntry]:
    return [_record(RankEntry, entry) for entry in ranked]


def _rank_in_set(set_name, labels, first, probabilities, targets, groups, progress, mean=None):
    """Rank with the targets and groups that belong to this label set; say what was left out."""
    from .ranking import rank_labels

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
    from ...shared.errors import LabelSetError
    from .ranking import available_labels

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


@job("rank", params=RankParams, result=RankResult)
def rank(params: RankParams, progress) -> RankResult:
    """Rank labels of classified layers (arrays in NumPy files) and of label sets over the store."""
    require("numpy")
    import numpy as np

    from ...shared.labels import parse_groups

    targets = list(params.targets)
    groups = parse_groups(params.groups)
    sections = []
    universes = []  # (set name, labels) of every set ranked, to name what a target may be
    for layer in params.layers:
        arrays = np.load(layer.arrays, allow_pickle=False)
        probabilities = arrays["probabilities"] if layer.has_probabilities else None
        universes.append((layer.set_name, list(layer.labels)))
        ranked = _rank_in_set(
            layer.set_name,
            layer.labels,
            arrays["first"],
            probabilities,
            targets,
            groups,
            progress,
        )
        sections.append(RankSection(set_name=layer.set_name, entries=_ranked_rows(ranked)))
    untrained = ""
    model_used: dict = {}
    stored = params.stored
    if stored is not None and stored.label_sets:
        require("torch", "open_clip")
        from ..clip.classify import UNTRAINED_WARNING, rank_stored_embeddings

        label_sets = [label_set_from_spec(choice) for choice in stored.label_sets]
        spec, view = model_and_view(stored)
        result = rank_stored_embeddings(label_sets, spec, view, stored.cache_dir, progress=progress)
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
            sections.append(
                RankSection(set_name=set_name, title=title, entries=_ranked_rows(ranked))
            )
    _check_targets_known(targets, groups, universes, progress, strict=params.strict_targets)
    # The warning itself, so that the QGIS side need not import the CLIP modules to word it.
    return RankResult(sections=sections, untrained_warning=untrained, model=model_used)


@job("grid", params=GridParams, result=GridResult)
def grid(params: GridParams, progress) -> GridResult:
    """A void-free label grid from labelled points; cells go to a NumPy file."""
    require("numpy", "shapely")
    import numpy as np
    import shapely

    from .grid import resample_to_grid

    arrays = np.load(params.points, allow_pickle=False)
    area = shapely.from_wkt(params.area_wkt) if params.area_wkt else None
    try:
        result = resample_to_grid(
            arrays["x"],
            arrays["y"],
            arrays["label"],
            int(params.n_labels),
            float(params.cell_size),
            params.shape,
            weights=arrays["weight"] if params.weighted else None,
            scores=arrays["weight"],  # the points' scores break ties
            area=area,
            progress=progress,
        )
    except ValueError as exc:
        raise MusError(str(exc)) from exc
    rings = np.asarray([result.polygon(row) for row in range(len(result.label))], dtype=float)
    np.savez(
        params.output,
        index=np.asarray(result.index),
        label=np.asarray(result.label),
        points=np.asarray(result.points),
        share=np.asarray(result.share, dtype=float),
        entropy=np.asarray(result.entropy, dtype=float),
        filled=np.asarray(result.filled),
        fill_distance=np.asarray(result.fill_distance),
        rings=rings.reshape(len(result.label), -1, 2),
    )
    return GridResult(output=params.output, cells=len(result.label))


@job("agreement", params=AgreementParams, result=AgreementResult)
def agreement_job(params: AgreementParams, progress) -> AgreementResult:
    """Agreement of predicted codes with reference codes (confusion matrix, accuracy, kappa)."""
    require("numpy")
    from ...shared.labels import builtin_label_set
    from .agreement import agreement, land_use_code_problem

    with open(params.pairs, encoding="utf-8") as handle:
        pairs = json.load(handle)
    known = {str(code) for code in pairs["reference"]}
    for legend in ("urban_atlas_2018", "corine_land_cover"):
        known |= {label.code for label in builtin_label_set(legend).labels if label.code}
    error, warning = land_use_code_problem(pairs["predicted"], known)
    if error:
        raise MusError(error)
    if warning:
        warn(progress, warning)
    found = agreement(pairs["reference"], pairs["predicted"], pairs.get("classes"))
    return AgreementResult(
        classes=list(found.classes),
        matrix=found.matrix.tolist(),
        overall_accuracy=float(found.overall_accuracy),
        kappa=float(found.kappa),
        precision=found.precision.tolist(),
        recall=found.recall.tolist(),
        f1=found.f1.tolist(),
        support=found.support.tolist(),
    )


@job("clusters", params=ClustersParams, result=ClustersResult)
def clusters(params: ClustersParams, progress) -> ClustersResult:
    """Join counts per label and Moran's I of a score; per-feature results to a NumPy file."""
    require("numpy", "libpysal", "esda")
    import numpy as np

    from ...shared.sequences import zip_same_length
    from .clusters import hotspot_name, label_clusters

    with np.load(params.features, allow_pickle=False) as arrays:
        data = dict(arrays)
    result = label_clusters(
        data["x"],
        data["y"],
        data["label"],
        int(params.n_labels),
        data.get("score"),
        kind=params.kind,
        k=int(params.k),
        distance_m=float(params.distance_m),
        permutations=int(params.permutations),
        alpha=float(params.alpha),
        seed=int(params.seed),
        progress=progress,
    )
    n = len(data["label"])
    quadrant = result.quadrant if result.quadrant is not None else np.zeros(n, dtype=int)
    hotspot = result.hotspot if result.hotspot is not None else np.zeros(n, dtype=bool)
    np.savez(
        params.output,
        local_count=result.local_count,
        local_p=result.local_p,
        in_cluster=result.in_cluster,
        local_i=result.local_i if result.local_i is not None else np.full(n, np.nan),
        local_i_p=result.local_i_p if result.local_i_p is not None else np.full(n, np.nan),
        quadrant=quadrant,
        hotspot=hotspot,
        # The words the layer shows ("high-high", …, "not significant"), named here, where the
        # statistic is.
        hotspot_name=np.asarray(
            [hotspot_name(q, bool(h)) for q, h in zip_same_length(quadrant, hotspot)], dtype=str
        ),
    )
    for note in result.notes:
        warn(progress, note)
    return ClustersResult(
        output=params.output,
        neighbours=result.neighbours,
        notes=list(result.notes),
        labels=[_record(LabelJoinTest, test) for test in result.labels],
        scores=_record(ScoreMoranTest, result.scores) if result.scores is not None else None,
    )


@job("boundaries", params=BoundariesParams, result=BoundariesResult)
def boundaries(params: BoundariesParams, progress) -> BoundariesResult:
    """Discontinuity lines of a label grid and, with a reference, their alignment with it."""
    require("numpy", "shapely", "libpysal")
    import numpy as np
    import shapely

    from .boundaries import alignment_test, label_boundaries, shares_from_points

    with np.load(params.cells, allow_pickle=False) as arrays:
        data = dict(arrays)
    shares = None
    if "point_label" in data:
        shares = shares_from_points(
            data["rings"],
            data["point_x"],
            data["point_y"],
            data["point_label"],
            data["label"],
            int(params.n_labels),
        )
    result = label_boundaries(
        data["rings"], data["label"], shares=shares, majority_share=data["share"]
    )
    lines = [
        {
            "wkt": line["geometry"].wkt,
            "labels": list(line["labels"]),
            "length_m": line["length_m"],
            "strength": line["strength"],
            "edges": line["edges"],
        }
        for line in result.lines
    ]
    with open(params.output, "w", encoding="utf-8") as handle:
        json.dump(lines, handle)
    alignment = None
    reference = params.reference_wkt
    if reference and not result.edges:
        warn(progress, "No two neighbouring cells differ in label: no alignment to test.")
    elif reference:
        rings = data["rings"]
        extent = (
            float(rings[..., 0].min()),
            float(rings[..., 1].min()),
            float(rings[..., 0].max()),
            float(rings[..., 1].max()),
        )
        aligned = alignment_test(
            result.edges,
            [shapely.from_wkt(text) for text in reference],
            float(params.buffer_m),
            extent,
            int(params.permutations),
            int(params.seed),
            progress,
        )
        alignment = BoundaryAlignment(
            observed=float(aligned.observed),
            expected=float(aligned.expected),
            p_value=float(aligned.p_value),
            permutations=int(aligned.permutations),
            buffer_m=float(aligned.buffer_m),
        )
    return BoundariesResult(
        output=params.output,
        edges=len(result.edges),
        neighbour_pairs=int(result.neighbour_pairs),
        total_length=float(result.total_length),
        alignment=alignment,
    )


@job("periods", params=PeriodsParams, result=PeriodsResult)
def periods(params: PeriodsParams, progress) -> PeriodsResult:
    """Each location's expected year from every label's probability (the images' embeddings are
    scored again from the store, so the whole probability vector is there, not only the top k);
    with reference years, Spearman's rho and its permutation p-value."""
    require("numpy", "scipy", "PIL", "torch", "open_clip")
    import numpy as np

    from ...shared.labels import label_years
    from ..clip.classify import classify_locations
    from ..clip.embedding import Location
    from .periods import correlate_with_reference, expected_periods

    label_set = label_set_from_spec(params.label_set)
    years = label_years(label_set)  # a set without dates stops here, before the model loads
    with open(params.locations, encoding="utf-8") as handle:
        rows = json.load(handle)
    locations = [Location(tuple(paths), bearing, heading) for paths, bearing, heading in rows]
    spec, view = model_and_view(params)
    try:
        run = classify_locations(
            locations,
            label_set,
            spec,
            view,
            1,
            params.cache_dir,
            progress,
            fast_decode=not params.full_decode,
        )
    except ValueError as exc:
        raise MusError(str(exc)) from exc
    mean, spread, dated = expected_periods(run.scores.all_probability, years)
    n = len(locations)
    nearest = distance = np.full(n, np.nan)
    correlation = None
    if params.reference:
        with np.load(params.points, allow_pickle=False) as points:
            x, y = points["x"], points["y"]
        with np.load(params.reference, allow_pickle=False) as reference:
            found = correlate_with_reference(
                mean,
                x,
                y,
                reference["x"],
                reference["y"],
                reference["year"],
                float(params.max_distance_m),
                int(params.permutations),
                int(params.seed),
            )
        nearest, distance = found.nearest_year, found.distance_m
        correlation = PeriodCorrelation(
            rho=float(found.rho),
            p_value=float(found.p_value),
            pairs=int(found.pairs),
            permutations=int(found.permutations),
        )
    np.savez(
        params.output,
        year=mean,
        spread=spread,
        dated=dated,
        top_index=run.scores.top_index[:, 0],
        probability=run.scores.probability[:, 0],
        status=np.asarray(run.embeddings.status, dtype=str),
        nearest_year=nearest,
        distance=distance,
    )
    return PeriodsResult(
        output=params.output,
        correlation=correlation,
        untrained=bool(run.model.untrained),
        metadata=run.metadata,
        dated_labels=int(sum(y == y for y in years)),
        labels=len(years),
    )


@job("label_change", params=LabelChangeParams, result=LabelChangeResult)
def label_change_job(params: LabelChangeParams, progress) -> LabelChangeResult:
    """Where the label changed between two moments, and each moment's labels."""
    from dataclasses import asdict

    from ...shared.schemas.readings import MomentLabelShare
    from .change import (
        MomentReading,
        label_changes,
        moment_summary,
        moments_of,
        write_change_report,
    )

    with open(params.readings, encoding="utf-8") as handle:
        readings = [
            MomentReading(str(point), str(moment or ""), str(label or ""), probability, image)
            for point, moment, label, probability, image in json.load(handle)
        ]
    moments = moments_of(readings)
    if len(moments) < 2:
        raise MusError(
            f"The layer holds {len(moments)} moment{'s' if len(moments) != 1 else ''} "
            f"({', '.join(moments) or 'none'}): a change needs the same points read at two. "
            "Fetch panoramas with 'Moments' (e.g. every year), then CLIP-classify the result."
        )
    moment_a = params.moment_a or moments[0]
    moment_b = params.moment_b or moments[-1]
    changes = label_changes(readings, moment_a, moment_b)
    summary = moment_summary(readings)
    with open(params.output, "w", encoding="utf-8") as handle:
        json.dump([asdict(change) for change in changes], handle)
    if params.report:
        write_change_report(
            params.report,
            changes,
            summary,
            moment_a,
            moment_b,
            list(params.runs),
            list(params.data),
            params.attribution,
        )
    progress.info(
        f"{len(changes)} points read at {moment_a} and {moment_b}; the label changed at "
        f"{sum(c.changed for c in changes)}."
    )
    return LabelChangeResult(
        moment_a=moment_a,
        moment_b=moment_b,
        moments=moments,
        compared=len(changes),
        changed=sum(1 for c in changes if c.changed),
        same_image=sum(1 for c in changes if c.same_image),
        summary=[MomentLabelShare(**asdict(row)) for row in summary],
    )
