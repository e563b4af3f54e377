"""Write resources/models/mus_pipeline.model3: study area → sample → fetch → classify → grid.

The model file is data the provider ships; this script is how it is made, so that a change to an
algorithm's parameters is one edit here and one run: ``python scripts/build_pipeline_model.py``
(QGIS's Python, e.g. ``.venv/bin/python``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUTPUT = ROOT / "resources" / "models" / "mus_pipeline.model3"


def build():
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterAuthConfig,
        QgsProcessingParameterEnum,
        QgsProcessingParameterFile,
        QgsProcessingParameterNumber,
        QgsProcessingParameterString,
    )

    from mus_qgis.engine.clip.labels import builtin_label_sets
    from mus_qgis.engine.imagery.sources import imagery_sources
    from mus_qgis.processing.qgis_enums import FILE_FOLDER, NUMBER_DOUBLE

    model = QgsProcessingModelAlgorithm("pipeline", "5 · Pipeline")
    model.setHelpContent(
        {
            "ALG_DESC": (
                "The whole study in one run, as in 'CLIP and the City': street centroids "
                "of a study area (a local OpenStreetMap file or a place name), one image "
                "per point from the chosen source, a CLIP classification against a label "
                "set, and the void-free grid of the most frequent label."
            )
        }
    )
    parameters = [
        QgsProcessingParameterFile(
            "osm_file",
            "Local OpenStreetMap file",
            optional=True,
            fileFilter="OpenStreetMap (*.osm *.osm.bz2 *.osm.pbf *.pbf)",
        ),
        QgsProcessingParameterString("place", "Place name", optional=True),
        QgsProcessingParameterEnum(
            "source",
            "Imagery source",
            options=[c.title for c in imagery_sources().values()],
            defaultValue=1,
        ),
        QgsProcessingParameterAuthConfig("auth", "Key or token", optional=True),
        QgsProcessingParameterFile(
            "photo_folder",
            "Local photos folder",
            behavior=FILE_FOLDER,
            optional=True,
        ),
        QgsProcessingParameterNumber(
            "radius",
            "Search radius (metres)",
            NUMBER_DOUBLE,
            defaultValue=25.0,
        ),
        QgsProcessingParameterEnum(
            "label_set",
            "Label set",
            options=[e.title for e in builtin_label_sets()],
            defaultValue=0,
        ),
        QgsProcessingParameterString("model", "OpenCLIP model", defaultValue="ViT-B-32"),
        QgsProcessingParameterString(
            "pretrained", "Pretrained tag", defaultValue="laion2b_s34b_b79k", optional=True
        ),
        QgsProcessingParameterFile("checkpoint", "Local checkpoint file", optional=True),
        QgsProcessingParameterNumber(
            "cell_size",
            "Grid cell size (metres)",
            NUMBER_DOUBLE,
            defaultValue=100.0,
        ),
    ]
    for parameter in parameters:
        model.addModelParameter(parameter, QgsProcessingModelParameter(parameter.name()))

    def source(name):
        return [QgsProcessingModelChildParameterSource.fromModelParameter(name)]

    def child_output(child_id, output="OUTPUT"):
        return [QgsProcessingModelChildParameterSource.fromChildOutput(child_id, output)]

    steps = [
        (
            "sample",
            "mus:samplestreetcentroids",
            {"OSM_FILE": source("osm_file"), "PLACE": source("place")},
            None,
        ),
        (
            "fetch",
            "mus:fetchpanoramas",
            {
                "INPUT": child_output("sample"),
                "SOURCE": source("source"),
                "AUTH": source("auth"),
                "PHOTO_FOLDER": source("photo_folder"),
                "RADIUS": source("radius"),
            },
            None,
        ),
        (
            "classify",
            "mus:classifyclip",
            {
                "INPUT": child_output("fetch"),
                "LABEL_SET": source("label_set"),
                "MODEL": source("model"),
                "PRETRAINED": source("pretrained"),
                "CHECKPOINT": source("checkpoint"),
            },
            "Classified points",
        ),
        (
            "grid",
            "mus:resampletogrid",
            {
                "INPUT": child_output("classify"),
                "CELL_SIZE": source("cell_size"),
                # The grid's first colour choice is "the labels found"; the sets follow.
                "LABEL_SET": [
                    QgsProcessingModelChildParameterSource.fromExpression("@label_set + 1")
                ],
            },
            "Label grid",
        ),
    ]
    for child_id, algorithm, sources, output_name in steps:
        child = QgsProcessingModelChildAlgorithm(algorithm)
        child.setChildId(child_id)
        child.setDescription(child_id)
        for name, value in sources.items():
            child.addParameterSources(name, value)
        if output_name:
            output = QgsProcessingModelOutput(output_name, output_name)
            output.setChildOutputName("OUTPUT")
            output.setChildId(child_id)
            child.setModelOutputs({output_name: output})
        model.addChildAlgorithm(child)
    return model


def main() -> None:
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    from mus_qgis.processing.provider import MusProvider

    provider = MusProvider()
    if not QgsApplication.processingRegistry().addProvider(provider):
        sys.exit("could not register the mus provider")
    model = build()
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    if not model.toFile(str(OUTPUT)):
        sys.exit(f"could not write {OUTPUT}")
    print(f"wrote {OUTPUT}")
    QgsApplication.processingRegistry().removeProvider(provider)  # noqa: QGS202 (at exit)
    app.exitQgis()


if __name__ == "__main__":
    main()
