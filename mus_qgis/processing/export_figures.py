"""Processing algorithm ``mus:exportfigures``."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterVectorLayer,
)

from ..bridge.qgis_enums import (
    ALGORITHM_NO_THREADING,
    NUMBER_INTEGER,
    VECTOR_ANY_GEOMETRY,
    VECTOR_LINE,
    VECTOR_POINT,
    VECTOR_POLYGON,
)
from .base import MusAlgorithm


class ExportFigures(MusAlgorithm):
    """The study's figures as QGIS print layouts, written as PNG and PDF."""

    NAME = "exportfigures"
    DISPLAY_NAME = "Export the study's figures"
    SHORT = "The study's figures as QGIS print layouts, each written as PNG and PDF."
    GROUP = "4 · Reading the results"
    GROUP_ID = "results"
    HELP = (
        "Lays out the figures of 'CLIP and the City' as QGIS print layouts and writes each as "
        "PNG and PDF into the output folder:\n"
        "- planning_indicators: the planning-indicator layers' dot maps side by side (one "
        "classified layer per indicator), each with its legend;\n"
        "- land_use: the land-use dot map over its void-free grid (Resample labels to a grid), "
        "with the label set's codes, names and official colours;\n"
        "- architects: the architects' dot map, the most frequent architect in black, the next "
        "seven in colours and the rest in grey, with a bar chart of first places;\n"
        "- ranking: the multiscale ranking (Rank labels' table), ten ranks per label set, the "
        "targets in black, beside a map of where the images were taken.\n\n"
        "Every map has a legend, a scale bar (in the points' UTM zone) and QGIS's north arrow; "
        "every page a title and the attribution: each imagery source and licence as Fetch "
        "panoramas recorded them in the points' source and licence fields, OpenStreetMap for "
        "the street network (drawn in grey as context where it reaches the map), the legend's "
        "nomenclature, the model. A classification made with random weights says so in red "
        "under the title.\n\n"
        "A figure whose layers are not given (or hold no classified point) is skipped, and the "
        "log says why; the others are written. Layers are copied for drawing: their styles in "
        "the project are left as they are."
    )

    PLANNING = "PLANNING"
    LANDUSE = "LANDUSE"
    GRID = "GRID"
    ARCHITECTS = "ARCHITECTS"
    RANKING = "RANKING"
    STREETS = "STREETS"
    DPI = "DPI"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"

    def flags(self):
        """Layouts are drawn on the main thread, where QGIS keeps the layers they draw."""
        return super().flags() | ALGORITHM_NO_THREADING

    def initAlgorithm(self, config=None) -> None:
        """Declare the parameters."""
        self.add_parameter(
            QgsProcessingParameterMultipleLayers(
                self.PLANNING,
                self.tr("Planning-indicator layers"),
                VECTOR_POINT,
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterVectorLayer(
                self.LANDUSE,
                self.tr("Land-use layer"),
                [VECTOR_POINT],
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterVectorLayer(
                self.GRID,
                self.tr("Label grid"),
                [VECTOR_POLYGON],
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterVectorLayer(
                self.ARCHITECTS,
                self.tr("Architects layer"),
                [VECTOR_POINT],
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterVectorLayer(
                self.RANKING,
                self.tr("Ranking table"),
                [VECTOR_ANY_GEOMETRY],
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterVectorLayer(
                self.STREETS,
                self.tr("Street network"),
                [VECTOR_LINE],
                optional=True,
            )
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.DPI,
                self.tr("PNG resolution (dots per inch)"),
                NUMBER_INTEGER,
                defaultValue=300,
                minValue=30,
                maxValue=1200,
            )
        )
        self.add_parameter(
            QgsProcessingParameterFolderDestination(self.OUTPUT_FOLDER, self.tr("Figures folder"))
        )
        self.add_output(QgsProcessingOutputNumber("FIGURES", self.tr("Figures written")))
        self.add_output(QgsProcessingOutputString("FILES", self.tr("Files written, ';'-joined")))

    def processAlgorithm(self, parameters, context, feedback):
        """Lay out each figure whose layers are given and export it."""
        from .figures import FIGURES, FigureInputs, export, legend_texts

        inputs = FigureInputs(
            planning=self.parameterAsLayerList(parameters, self.PLANNING, context),
            landuse=self._layer(parameters, self.LANDUSE, context),
            grid=self._layer(parameters, self.GRID, context),
            architects=self._layer(parameters, self.ARCHITECTS, context),
            ranking=self._layer(parameters, self.RANKING, context),
            streets=self._layer(parameters, self.STREETS, context),
        )
        # Not any(): a layer with no feature is false in Python, and is still given.
        single = (inputs.landuse, inputs.grid, inputs.architects, inputs.ranking)
        if not inputs.planning and all(layer is None for layer in single):
            raise QgsProcessingException(
                "Nothing to draw: give at least one classified layer (planning indicators, "
                "land use, architects), a label grid or a ranking table."
            )
        folder = Path(self.parameterAsString(parameters, self.OUTPUT_FOLDER, context))
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise QgsProcessingException(
                f"The figures folder {folder} cannot be made ({exc.strerror}): choose another."
            ) from None
        dpi = self.parameterAsInt(parameters, self.DPI, context)
        files = []
        for step, (what, build) in enumerate(FIGURES):
            if feedback.isCanceled():
                break
            figure = build(inputs)
            if isinstance(figure, str):
                feedback.pushInfo(f"Figure '{what}' skipped: {figure}.")
                continue
            try:
                written = export(figure, folder, dpi)
            except OSError as exc:
                raise QgsProcessingException(str(exc)) from None
            files += written
            entries = [text for legend in figure.legends for text in legend_texts(legend)]
            feedback.pushInfo(
                f"Figure '{what}': {', '.join(written)}"
                + (f" (legend: {'; '.join(entries)})" if entries else "")
            )
            for note in figure.notes:
                feedback.pushInfo(f"Figure '{what}': {note}.")
            feedback.setProgress(100 * (step + 1) / len(FIGURES))
        return {
            self.OUTPUT_FOLDER: str(folder),
            "FIGURES": len(files) // 2,
            "FILES": ";".join(files),
        }

    def _layer(self, parameters, name, context):
        if parameters.get(name) in (None, ""):
            return None
        layer = self.parameterAsVectorLayer(parameters, name, context)
        if layer is None or not layer.isValid():
            raise QgsProcessingException(
                f"'{self.parameterDefinition(name).description()}' could not be opened: "
                f"{parameters.get(name)}"
            )
        return layer
