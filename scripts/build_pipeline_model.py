"""Write resources/models/mus_pipeline.model3: study area → sample → survey and fetch (across
sources, by date) → classify → grid, and, when asked, dreams and the mainstream image (after a
conditional branch).

The model file is data the provider ships; this script is how it is made, so that a change to an
algorithm's parameters is one edit here and one run: ``python scripts/build_pipeline_model.py``
(QGIS's Python, e.g. ``.venv/bin/python``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Qt writes an element's attributes in its hash order: a fixed seed keeps the file the same
# from one run to the next, so that a change to the model shows as a change in the file.
os.environ.setdefault("QT_HASH_SEED", "0")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUTPUT = ROOT / "resources" / "models" / "mus_pipeline.model3"
# The Modeler's canvas: one column per stage, left to right; the inputs above their stage, the
# outputs under it. Boxes are wide and tall enough for their names on two or three lines (the
# Modeler wraps a name inside its box and cuts what does not fit), with room between them.
STAGE_X0, STAGE_DX, CHILD_Y = 160.0, 320.0, 440.0
BOX_WIDTH, BOX_HEIGHT, OUTPUT_HEIGHT, ROW_DY = 250.0, 50.0, 30.0, 70.0


def build():
    from qgis.core import (
        QgsApplication,
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildDependency,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterAuthConfig,
        QgsProcessingParameterBoolean,
        QgsProcessingParameterDateTime,
        QgsProcessingParameterEnum,
        QgsProcessingParameterFile,
        QgsProcessingParameterNumber,
        QgsProcessingParameterString,
    )
    from qgis.PyQt.QtCore import QPointF, QSizeF

    from mus_qgis.bridge.qgis_enums import (
        DATE_ONLY,
        FILE_FOLDER,
        NUMBER_DOUBLE,
        NUMBER_INTEGER,
        PARAMETER_OPTIONAL,
    )
    from mus_qgis.shared.defaults import DEFAULT_DREAM_MODEL
    from mus_qgis.shared.imagery_sources import imagery_source_infos
    from mus_qgis.shared.labels import builtin_label_sets

    model = QgsProcessingModelAlgorithm("pipeline", "5 · Pipeline")
    model.setHelpContent(
        {
            "ALG_DESC": (
                "The whole study in one run, as in 'CLIP and the City': street centroids "
                "of a study area (a local OpenStreetMap file or a place name), one image "
                "per point from the chosen sources (nearest a target date, when one is "
                "given), a survey of what each source has near the points (metadata only: a "
                "report and the points without imagery), a CLIP classification against a "
                "label set, and the void-free grid of the most frequent label. Optional steps, "
                "off unless their box is ticked: dream the streets through a diffusion model "
                "and score them by the city's mainstream image (slow without a GPU)."
            )
        }
    )
    parameters = [
        QgsProcessingParameterFile(
            "osm_file",
            "Study area: a local OpenStreetMap file",
            optional=True,
            fileFilter="OpenStreetMap (*.osm *.osm.bz2 *.osm.pbf *.pbf)",
        ),
        QgsProcessingParameterString(
            "place", "Study area: a place name (without a file; needs internet)", optional=True
        ),
        QgsProcessingParameterEnum(
            "source",
            "Imagery: sources",
            options=[info.title for info in imagery_source_infos().values()],
            # Several: each point's image is picked across them. Panoramax needs no key.
            allowMultiple=True,
            defaultValue=[list(imagery_source_infos()).index("panoramax")],
        ),
        QgsProcessingParameterDateTime(
            "target_date",
            "Imagery: nearest to the date (one moment of the city)",
            type=DATE_ONLY,
            optional=True,
        ),
        QgsProcessingParameterAuthConfig(
            "auth", "Imagery: key or token (Street View, Mapillary)", optional=True
        ),
        QgsProcessingParameterFile(
            "photo_folder",
            "Imagery: folder of your geotagged photos (local photos)",
            behavior=FILE_FOLDER,
            optional=True,
        ),
        QgsProcessingParameterNumber(
            "radius",
            "Imagery: search radius (metres)",
            NUMBER_DOUBLE,
            defaultValue=25.0,
        ),
        QgsProcessingParameterEnum(
            "label_set",
            "CLIP: label set",
            options=[e.title for e in builtin_label_sets()],
            defaultValue=0,
        ),
        QgsProcessingParameterString("model", "CLIP: OpenCLIP model", defaultValue="ViT-B-32"),
        QgsProcessingParameterString(
            "pretrained",
            "CLIP: pretrained weights tag",
            defaultValue="laion2b_s34b_b79k",
            optional=True,
        ),
        QgsProcessingParameterFile(
            "checkpoint", "CLIP: local weights file (wins over the tag)", optional=True
        ),
        QgsProcessingParameterNumber(
            "cell_size",
            "Grid: cell size (metres)",
            NUMBER_DOUBLE,
            defaultValue=100.0,
        ),
        QgsProcessingParameterBoolean(
            "dream", "Dreams: dream the streets too (slow without a GPU)", defaultValue=False
        ),
        QgsProcessingParameterBoolean(
            "mainstream", "Dreams: score the city's mainstream image too", defaultValue=False
        ),
        QgsProcessingParameterString(
            "dream_model",
            "Dreams: diffusion model (diffusers model id or local folder)",
            defaultValue=DEFAULT_DREAM_MODEL,
        ),
        QgsProcessingParameterNumber(
            "dream_size",
            "Dreams: image size (pixels, a multiple of 8; smaller is faster)",
            NUMBER_INTEGER,
            defaultValue=512,
            minValue=64,
            maxValue=2048,
        ),
        QgsProcessingParameterString("city", "Dreams: city", defaultValue="Rome"),
    ]
    # Inputs in a column left of the stage that uses them, in the order a user fills them in.
    column = {
        "osm_file": 0,
        "place": 0,
        "source": 1,
        "target_date": 1,
        "auth": 1,
        "photo_folder": 1,
        "radius": 1,
        "label_set": 2,
        "model": 2,
        "pretrained": 2,
        "checkpoint": 2,
        "cell_size": 3,
        "dream": 4,
        "mainstream": 4,
        "dream_model": 5,
        "dream_size": 5,
        "city": 5,
    }
    rows: dict[int, int] = {}
    for parameter in parameters:
        component = QgsProcessingModelParameter(parameter.name())
        stage = column[parameter.name()]
        rows[stage] = rows.get(stage, 0) + 1
        component.setPosition(QPointF(STAGE_X0 + stage * STAGE_DX, ROW_DY * rows[stage]))
        component.setSize(QSizeF(BOX_WIDTH, BOX_HEIGHT))
        model.addModelParameter(parameter, component)
    model.setParameterOrder([parameter.name() for parameter in parameters])

    def source(name):
        return [QgsProcessingModelChildParameterSource.fromModelParameter(name)]

    def child_output(child_id, output="OUTPUT"):
        return [QgsProcessingModelChildParameterSource.fromChildOutput(child_id, output)]

    # (child id, algorithm, parameter sources, {model output: child output}); described for a
    # reader. The dream steps run only when their box is ticked: the conditional branch's
    # condition holds (a child that depends on a branch not taken is skipped, and said so).
    steps = [
        (
            "sample",
            "mus:samplestreetcentroids",
            {"OSM_FILE": source("osm_file"), "PLACE": source("place")},
            {},
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
                "TARGET_DATE": source("target_date"),
            },
            {},
        ),
        (
            # What each source has near the points (metadata only), beside the fetch: its lists
            # are remembered, and its report and gaps say what the study's imagery covers.
            "survey",
            "mus:surveyimagery",
            {
                "INPUT": child_output("sample"),
                "SOURCES": source("source"),
                "AUTH": source("auth"),
                "PHOTO_FOLDER": source("photo_folder"),
                "RADIUS": source("radius"),
            },
            {"Imagery survey report": "REPORT"},
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
            {"Classified points": "OUTPUT"},
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
            {"Label grid": "OUTPUT"},
        ),
        ("branch", "native:condition", {}, {}),
        (
            "dream",
            "mus:dreamstreets",
            {
                "INPUT": child_output("classify"),
                "PROMPT": [
                    QgsProcessingModelChildParameterSource.fromExpression("'a street in ' || @city")
                ],
                "DREAM_MODEL": source("dream_model"),
                "SIZE": source("dream_size"),
                "LABEL_SET": source("label_set"),
                "MODEL": source("model"),
                "PRETRAINED": source("pretrained"),
                "CHECKPOINT": source("checkpoint"),
            },
            {"Dreamed points": "OUTPUT"},
        ),
        (
            "mainstream",
            "mus:mainstreamimage",
            {
                "INPUT": child_output("classify"),
                "CITIES": source("city"),
                "DREAM_MODEL": source("dream_model"),
                "SIZE": source("dream_size"),
                "MODEL": source("model"),
                "PRETRAINED": source("pretrained"),
                "CHECKPOINT": source("checkpoint"),
            },
            {"Mainstream points": "OUTPUT", "Mainstream report": "REPORT"},
        ),
    ]
    # The two dream steps share a column, one above the other.
    # Each step's column, and its offset in it: the survey under the fetch (its outputs below
    # it), the two dream steps one above the other.
    places = {
        "sample": (0, 0.0),
        "fetch": (1, 0.0),
        "survey": (1, 2 * ROW_DY),
        "classify": (2, 0.0),
        "grid": (3, 0.0),
        "branch": (4, 0.0),
        "dream": (5, -70.0),
        "mainstream": (5, 2 * ROW_DY),
    }
    branches = {"dream": "dream", "mainstream": "mainstream"}
    registry = QgsApplication.processingRegistry()
    for child_id, algorithm_id, sources, outputs in steps:
        algorithm = registry.algorithmById(algorithm_id)
        child = QgsProcessingModelChildAlgorithm(algorithm_id)
        child.setChildId(child_id)
        stage, dy = places[child_id]
        child.setDescription(f"{stage + 1} · {algorithm.displayName()}")
        if child_id == "branch":
            child.setDescription("5 · Dreams only when their box is ticked")
            child.setConfiguration(
                {
                    "conditions": [
                        {"name": name, "expression": f"@{parameter}"}
                        for name, parameter in branches.items()
                    ]
                }
            )
        if child_id in branches:
            child.setDependencies([QgsProcessingModelChildDependency("branch", child_id)])
        child.setPosition(QPointF(STAGE_X0 + stage * STAGE_DX, CHILD_Y + dy))
        child.setSize(QSizeF(BOX_WIDTH, BOX_HEIGHT))
        for name, value in sources.items():
            child.addParameterSources(name, value)
        # Every other setting at the algorithm's own default, so the model validates and a
        # user changes any of them in the Modeler where they are.
        for definition in algorithm.parameterDefinitions():
            name = definition.name()
            if name in sources or definition.isDestination():
                continue
            if definition.flags() & PARAMETER_OPTIONAL and definition.defaultValue() is None:
                continue
            child.addParameterSources(
                name, [QgsProcessingModelChildParameterSource.fromStaticValue(default(definition))]
            )
        model_outputs = {}
        for row, (output_name, child_output_name) in enumerate(outputs.items()):
            output = QgsProcessingModelOutput(output_name, output_name)
            output.setChildOutputName(child_output_name)
            output.setChildId(child_id)
            # Under its step, one under the other.
            y = CHILD_Y + dy + (BOX_HEIGHT + OUTPUT_HEIGHT) / 2 + 20 + row * (OUTPUT_HEIGHT + 15)
            output.setPosition(QPointF(STAGE_X0 + stage * STAGE_DX + 20, y))
            output.setSize(QSizeF(BOX_WIDTH - 40, OUTPUT_HEIGHT))
            model_outputs[output_name] = output
        child.setModelOutputs(model_outputs)
        model.addChildAlgorithm(child)
    return model


def default(definition):
    """A parameter's default as a model stores it (an enum's list of choices as its first)."""
    value = definition.defaultValue()
    if value is None and definition.type() == "enum":
        return [0] if definition.allowMultiple() else 0
    return value


def main() -> None:
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    from qgis.analysis import QgsNativeAlgorithms

    from mus_qgis.processing.provider import MusProvider

    # The conditional branch before the dream steps is QGIS's own (native:condition).
    if not QgsApplication.processingRegistry().addProvider(QgsNativeAlgorithms()):
        sys.exit("could not register QGIS's native algorithms")
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
