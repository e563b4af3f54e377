"""The demo's figures: the study's figure types laid out by mus:exportfigures.

Classifies the demo's images with the five planning indicators and the Italian architects (the
image embeddings are stored by then: only the prompts go through the model), then lays out and
exports the four figures as PNG and PDF into demo_output/figures, and says what each shows and
what it does not.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

# Indices in resources/labels/label_sets.json (append-only, so they stay valid).
PLANNING_SETS = {
    2: "planning_sustainability",
    3: "planning_resiliency",
    4: "planning_mobility",
    5: "planning_social_inclusion",
    6: "planning_urban_innovation",
}
ARCHITECTS_SET = 7
FIGURES = {
    "planning_indicators": "the five planning indicators' dot maps side by side",
    "land_use": "the land-use dot map over its void-free grid, with the Urban Atlas legend",
    "architects": "the architects' dot map, the most frequent in black, and its bar chart",
    "ranking": "the multiscale ranking, the targets in black",
}


def export_figures(model_parameters: list[str], untrained: bool, online: bool) -> Path:
    """Run the figures' classifications and mus:exportfigures through qgis_process; print what
    was written. Returns the figures' folder."""
    from scripts.demo_outputs import GPKG, OUT, layer, run_qgis_process, table

    folder = OUT / "figures"
    with tempfile.TemporaryDirectory(prefix="mus_demo_profile_") as name:
        profile = Path(name)
        run_qgis_process(profile, "plugins", "enable", "mus_qgis")

        def step(algorithm: str, *parameters: str) -> dict:
            out = run_qgis_process(profile, "--json", "run", algorithm, "--", *parameters)
            return json.loads(out[out.index("{") :])["results"]

        print("5. Figures: classifying the images with the planning indicators and architects ...")
        for index, name_in_gpkg in (*PLANNING_SETS.items(), (ARCHITECTS_SET, "architect_labels")):
            step(
                "mus:classifyclip",
                f"INPUT={layer('imagery')}",
                f"LABEL_SET={index}",
                *model_parameters,
                table(name_in_gpkg),
            )
        print("   laying out the study's figures (QGIS print layouts) ...")
        planning = [f"PLANNING={layer(name)}" for name in PLANNING_SETS.values()]
        result = step(
            "mus:exportfigures",
            *planning,
            f"LANDUSE={layer('landuse_labels')}",
            f"GRID={layer('label_grid')}",
            f"ARCHITECTS={layer('architect_labels')}",
            f"RANKING={OUT / 'label_ranking.csv'}",
            *([f"STREETS={layer('street_network')}"] if has_layer(GPKG, "street_network") else []),
            "DPI=150",
            f"OUTPUT_FOLDER={folder}",
        )
    print(f"Figures ({result['FIGURES']:.0f}, PNG and PDF) in {folder}:")
    for name, what in FIGURES.items():
        if (folder / f"{name}.png").exists():
            print(f"  {name}.png / .pdf: {what}.")
        else:
            print(f"  {name}: not made (its layers are missing).")
    if untrained:
        print(
            "  The figures say in red under their titles that the weights are random: their "
            "classes, the architect in black and the ranks say nothing about the streets."
        )
    if not online:
        print(
            "  No streets are drawn: the offline demo's images are in Arezzo and its street "
            "network (the OpenStreetMap extract) covers Rome; figures of a study whose network "
            "reaches its points draw it in grey under them."
        )
    return folder


def has_layer(gpkg: Path, name: str) -> bool:
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(gpkg)) as db:
        found = db.execute("SELECT 1 FROM gpkg_contents WHERE table_name = ?", (name,))
        return found.fetchone() is not None
