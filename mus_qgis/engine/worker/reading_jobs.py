"""The worker's jobs for reading the city: clusters, discontinuities, periods (PySAL, scipy).

Registered by importing this module (jobs.py does, at its end). Inputs and outputs are NumPy
files, as for the grid job.
"""

from __future__ import annotations

import json

from ..deps import require
from ..errors import MusError
from ..progress import warn
from .jobs import _label_set, _model_and_view, job


def _float(value: float):
    """JSON has no NaN: None instead."""
    return None if value != value else float(value)


@job("clusters")
def clusters(params: dict, progress) -> dict:
    """Join counts per label and Moran's I of a score; per-feature results to a NumPy file."""
    require("numpy", "libpysal", "esda")
    import numpy as np

    from ..readings.clusters import label_clusters

    with np.load(params["features"], allow_pickle=False) as arrays:
        data = dict(arrays)
    result = label_clusters(
        data["x"],
        data["y"],
        data["label"],
        int(params["n_labels"]),
        data.get("score"),
        kind=params["kind"],
        k=int(params.get("k", 8)),
        distance_m=float(params.get("distance_m", 0.0)),
        permutations=int(params["permutations"]),
        alpha=float(params["alpha"]),
        seed=int(params.get("seed", 0)),
        progress=progress,
    )
    n = len(data["label"])
    np.savez(
        params["output"],
        local_count=result.local_count,
        local_p=result.local_p,
        in_cluster=result.in_cluster,
        local_i=result.local_i if result.local_i is not None else np.full(n, np.nan),
        local_i_p=result.local_i_p if result.local_i_p is not None else np.full(n, np.nan),
        quadrant=result.quadrant if result.quadrant is not None else np.zeros(n, dtype=int),
        hotspot=result.hotspot if result.hotspot is not None else np.zeros(n, dtype=bool),
    )
    for note in result.notes:
        warn(progress, note)
    scores = None
    if result.scores is not None:
        s = result.scores
        scores = {
            "count": s.count,
            "moran_i": _float(s.moran_i),
            "expected_i": _float(s.expected_i),
            "z_sim": _float(s.z_sim),
            "p_value": _float(s.p_value),
            "local_significant": s.local_significant,
            "verdict": s.verdict,
        }
    return {
        "output": params["output"],
        "neighbours": result.neighbours,
        "notes": result.notes,
        "labels": [
            {
                "label": t.label,
                "count": t.count,
                "bb": _float(t.bb),
                "expected_bb": _float(t.expected_bb),
                "p_clustered": _float(t.p_clustered),
                "bw": _float(t.bw),
                "expected_bw": _float(t.expected_bw),
                "p_dispersed": _float(t.p_dispersed),
                "local_significant": t.local_significant,
                "verdict": t.verdict,
            }
            for t in result.labels
        ],
        "scores": scores,
    }


@job("boundaries")
def boundaries(params: dict, progress) -> dict:
    """Discontinuity lines of a label grid and, with a reference, their alignment with it."""
    require("numpy", "shapely", "libpysal")
    import numpy as np
    import shapely

    from ..readings.boundaries import alignment_test, label_boundaries, shares_from_points

    with np.load(params["cells"], allow_pickle=False) as arrays:
        data = dict(arrays)
    shares = None
    if "point_label" in data:
        shares = shares_from_points(
            data["rings"],
            data["point_x"],
            data["point_y"],
            data["point_label"],
            data["label"],
            int(params["n_labels"]),
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
    with open(params["output"], "w", encoding="utf-8") as handle:
        json.dump(lines, handle)
    answer = {
        "output": params["output"],
        "edges": len(result.edges),
        "neighbour_pairs": result.neighbour_pairs,
        "total_length": result.total_length,
        "alignment": None,
    }
    reference = params.get("reference_wkt") or []
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
            float(params["buffer_m"]),
            extent,
            int(params["permutations"]),
            int(params.get("seed", 0)),
            progress,
        )
        answer["alignment"] = {
            "observed": aligned.observed,
            "expected": aligned.expected,
            "p_value": aligned.p_value,
            "permutations": aligned.permutations,
            "buffer_m": aligned.buffer_m,
        }
    return answer


@job("periods")
def periods(params: dict, progress) -> dict:
    """Each location's expected year from every label's probability (the images' embeddings are
    scored again from the store, so the whole probability vector is there, not only the top k);
    with reference years, Spearman's rho and its permutation p-value."""
    require("numpy", "scipy", "PIL", "torch", "open_clip")
    import numpy as np

    from ..clip.classify import classify_locations
    from ..clip.embedding import Location
    from ..readings.periods import correlate_with_reference, expected_periods, label_years

    label_set = _label_set(params["label_set"])
    years = label_years(label_set)  # a set without dates stops here, before the model loads
    with open(params["locations"], encoding="utf-8") as handle:
        rows = json.load(handle)
    locations = [Location(tuple(paths), bearing, heading) for paths, bearing, heading in rows]
    spec, view = _model_and_view(params)
    try:
        run = classify_locations(
            locations,
            label_set,
            spec,
            view,
            1,
            params["cache_dir"],
            progress,
            fast_decode=not params.get("full_decode", False),
        )
    except ValueError as exc:
        raise MusError(str(exc)) from exc
    mean, spread, dated = expected_periods(run.scores.all_probability, years)
    n = len(locations)
    nearest = distance = np.full(n, np.nan)
    correlation = None
    if params.get("reference"):
        with np.load(params["points"], allow_pickle=False) as points:
            x, y = points["x"], points["y"]
        with np.load(params["reference"], allow_pickle=False) as reference:
            found = correlate_with_reference(
                mean,
                x,
                y,
                reference["x"],
                reference["y"],
                reference["year"],
                float(params.get("max_distance_m", 0.0)),
                int(params["permutations"]),
                int(params.get("seed", 0)),
            )
        nearest, distance = found.nearest_year, found.distance_m
        correlation = {
            "rho": found.rho,
            "p_value": found.p_value,
            "pairs": found.pairs,
            "permutations": found.permutations,
        }
    np.savez(
        params["output"],
        year=mean,
        spread=spread,
        dated=dated,
        top_index=run.scores.top_index[:, 0],
        probability=run.scores.probability[:, 0],
        status=np.asarray(run.embeddings.status, dtype=str),
        nearest_year=nearest,
        distance=distance,
    )
    return {
        "output": params["output"],
        "correlation": correlation,
        "untrained": bool(run.model.untrained),
        "metadata": run.metadata,
        "dated_labels": int(sum(y == y for y in years)),
        "labels": len(years),
    }
