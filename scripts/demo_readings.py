"""The demo's reading of the city (issue 14): clusters, discontinuities and periods.

Runs mus:labelclusters, mus:labelboundaries and mus:labelperiods through qgis_process on the
demo's own output (the classified photos and the land-use grid in demo_output/rome_monti.gpkg),
offline, and says what each result means and what it does not. Called from scripts/demo.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

ARCHITECTS_SET = 7  # index in resources/labels/label_sets.json
LAYERS = {
    "label_clusters": "Land-use clusters (join counts, FDR)",
    "label_boundaries": "Land-use discontinuities",
    "architect_periods": "Expected period (architects' years)",
}


def run_readings(
    run_qgis_process: Callable[..., str], gpkg: Path, out: Path, pipeline: dict
) -> dict:
    """Each reading algorithm on the demo's layers (``pipeline``: the demo's results, with the
    model's parameters); returns each one's results."""

    def step(algorithm: str, *parameters: str) -> dict:
        text = run_qgis_process("--json", "run", algorithm, "--", *parameters)
        return json.loads(text[text.index("{") :])["results"]

    def table(name: str) -> str:
        return f"OUTPUT=ogr:dbname='{gpkg}' table=\"{name}\" (geom)"

    def layer(name: str) -> str:
        return f"{gpkg}|layername={name}"

    print("5. Reading the city: clusters, discontinuities, periods ...")
    results = {}
    results["clusters"] = step(
        "mus:labelclusters",
        f"INPUT={layer('landuse_labels')}",
        "NEIGHBOURS=0",
        "K=3",
        "PERMUTATIONS=999",
        table("label_clusters"),
        f"TABLE={out / 'label_clusters.csv'}",
        f"REPORT={out / 'label_clusters.html'}",
    )
    results["boundaries"] = step(
        "mus:labelboundaries",
        f"INPUT={layer('label_grid')}",
        f"POINTS={layer('landuse_labels')}",
        table("label_boundaries"),
    )
    results["periods"] = step(
        "mus:labelperiods",
        f"INPUT={layer('imagery')}",
        f"LABEL_SET={ARCHITECTS_SET}",
        *pipeline["model_parameters"],
        table("architect_periods"),
    )
    return results


def print_readings(results: dict, out: Path, random_weights: bool) -> None:
    """What each reading found, what it means and what it does not."""
    import csv

    from mus_qgis.shared.labels import builtin_label_set, label_years

    with (out / "label_clusters.csv").open(encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["test"] == "join count"]
    verdicts = [row["verdict"] for row in rows]
    tested = [v for v in verdicts if not v.startswith("not tested")]
    print(
        f"Label clusters (join counts over each photo's 3 nearest): {len(tested)} of "
        f"{len(rows)} land-use labels tested, {verdicts.count('clustered')} clustered, "
        f"{verdicts.count('dispersed')} dispersed, "
        f"{int(results['clusters']['IN_CLUSTERS'])} photos in a local cluster after the false "
        f"discovery rate cut-off; report {out / 'label_clusters.html'}. A 'clustered' label "
        "would say its photos neighbour each other more than any relabelling of the same "
        "photos; with 9 photos the tests have little power, and a label held by one photo is "
        "not tested."
    )
    boundaries = results["boundaries"]
    print(
        f"Discontinuities of the land-use grid: {int(boundaries['EDGES'])} cell edges between "
        f"different labels, {boundaries['LENGTH_M']:.0f} m of boundary line. Their alignment "
        "with administrative boundaries (the study's Rioni) is not computed: no such layer is "
        "available offline; give REFERENCE=<boundaries> to mus:labelboundaries for the measured "
        "answer and its p-value. Most of this grid is filled from the nearest photos, so its "
        "boundaries are mostly where the nearest photo changes."
    )
    years = [y for y in label_years(builtin_label_set("italian_architects")) if y == y]
    mean_year = results["periods"].get("MEAN_YEAR")
    print(
        f"Expected period from the Italian architects' years: mean {mean_year:.0f} over "
        f"{int(results['periods']['CLASSIFIED'])} photos (each weighted by CLIP's probability of "
        f"all 291 architects; the architects' own years average {sum(years) / len(years):.0f}). "
        "No reference layer with construction years is available offline, so no correlation "
        "is computed; give REFERENCE and YEAR_FIELD to mus:labelperiods for Spearman's rho."
        if mean_year is not None
        else "Expected period: no photo could be dated."
    )
    if random_weights:
        print(
            "These readings come from a model with RANDOM weights: its labels and probabilities "
            "are noise, so any 'clustered' label here is a false positive (expected at the "
            "stated 5 % rate), the boundaries follow noise, and the expected years sit near the "
            "architects' average because near-uniform probabilities weight every architect "
            "alike. They show the method running, not the city."
        )
