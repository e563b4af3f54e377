"""Demo step: a few corrections teach the model (mus:trainprobe), called from demo.py.

A researcher would set the right label of a few points in the street inspector (the layer's
label_user field). Offline there is no one to look at the photos, so this script sets them
itself, and says so: a handful of points of the Urban Atlas layer get one of two labels by a
fixed rule (their order in the layer), not by what their photos show. The probe is trained on
their stored embeddings, its cross-validated accuracy is printed beside zero-shot's on the same
points, and every point is re-scored into a new layer.
"""

from __future__ import annotations

from pathlib import Path

CORRECTED = 8


def demo_labels() -> tuple[str, str]:
    """Two Urban Atlas 2018 labels, as the set spells them, to alternate over the points."""
    from mus_qgis.shared.labels import builtin_label_set

    texts = builtin_label_set("urban_atlas_2018").texts
    return texts[0], next(text for text in texts if text.lower().startswith("green urban"))


def set_demo_corrections(gpkg: Path, table: str) -> int:
    """Add label_user to the classified table and fill it on the first points with a label.

    Through GDAL: a GeoPackage's spatial-index triggers call functions plain SQLite lacks."""
    from osgeo import ogr

    ogr.UseExceptions()
    source = ogr.Open(str(gpkg), update=1)
    layer = source.GetLayerByName(table)
    if layer.GetLayerDefn().GetFieldIndex("label_user") < 0:
        layer.CreateField(ogr.FieldDefn("label_user", ogr.OFTString))
    layer.SetAttributeFilter("label_1 IS NOT NULL")
    fids = sorted(feature.GetFID() for feature in layer)[:CORRECTED]
    labels = demo_labels()
    for position, fid in enumerate(fids):
        feature = layer.GetFeature(fid)
        feature.SetField("label_user", labels[position % len(labels)])
        layer.SetFeature(feature)
    source = None  # closes the file, written
    return len(fids)


def model_only(parameters: list[str]) -> list[str]:
    """Of CLIP-classify's model parameters, those mus:trainprobe takes (the rest it reads from
    the layer's run settings)."""
    return [p for p in parameters if p.startswith(("CHECKPOINT=", "CACHE_FOLDER="))]


def teach(step, gpkg: Path, table: str, parameters, out: Path) -> dict:
    """Corrections set on ``table``, probe trained, every point re-scored into the table
    probe_labels; returns the algorithm's results, with CORRECTED and REPORT."""
    corrected = set_demo_corrections(gpkg, table)
    first, second = demo_labels()
    print(
        f"5. Teaching the model: label_user set on {corrected} points BY THIS SCRIPT (alternately "
        f"{first!r} and {second!r}, by their order in the layer, not by their photos), then "
        "mus:trainprobe ..."
    )
    report = out / "probe.html"
    results = step(
        "mus:trainprobe",
        f"INPUT={gpkg}|layername={table}",
        *model_only(parameters),
        f"OUTPUT=ogr:dbname='{gpkg}' table=\"probe_labels\" (geom)",
        f"REPORT={report}",
    )
    return {**results, "CORRECTED": corrected, "REPORT": str(report)}


def summary(results: dict) -> str:
    """What the step found, in the words the demo prints."""
    lines = [
        f"Probe trained on {results['CORRECTED']} corrected points: cross-validated accuracy "
        f"{results['PROBE_ACCURACY']:.0%}, zero-shot {results['ZERO_SHOT_ACCURACY']:.0%} on the "
        f"same points (report: {results['REPORT']}; probe: {results['PROBE_FILE']})."
    ]
    if results["UNTRAINED"]:
        lines.append(
            "With random weights these accuracies mean nothing: the corrections were set by a "
            "rule, and the embeddings they were learnt from describe no image. The step shows "
            "the plumbing (corrections → probe → every point re-scored), not a result."
        )
    return "\n".join(lines)
