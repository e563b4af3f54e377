"""The study's figures as QGIS print layouts: what mus:exportfigures draws.

Each figure is a QgsPrintLayout over a project of its own (copies of the layers it draws, styled
here), so the user's project and layers are left as they were. Everything on the page is a
layout item QGIS draws itself, the same in the PNG and in the (vector) PDF: maps, legends, scale
bars, a north arrow (QGIS's own layout north arrow), labels, and bar charts made of rectangle
shapes and labels (QGIS 3.22's layouts have no chart item, and a picture or HTML item would be
drawn by another engine, rasterised in the PDF).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeatureRequest,
    QgsFillSymbol,
    QgsLayoutExporter,
    QgsLayoutItemLabel,
    QgsLayoutItemLegend,
    QgsLayoutItemMap,
    QgsLayoutItemPicture,
    QgsLayoutItemScaleBar,
    QgsLayoutItemShape,
    QgsLegendRenderer,
    QgsLineSymbol,
    QgsMapLayerLegendUtils,
    QgsPrintLayout,
    QgsProject,
    QgsRectangle,
    QgsRendererCategory,
    QgsSingleSymbolRenderer,
    QgsSymbolLayerUtils,
    QgsTextFormat,
    QgsUnitTypes,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QFile, QRectF, QSize, Qt
from qgis.PyQt.QtGui import QColor, QFont, QFontMetricsF

from ..bridge.layer_settings import classification_settings
from ..bridge.qgis_enums import (
    LEGEND_HIDDEN,
    LEGEND_SUBGROUP,
    LEGEND_SYMBOL_LABEL,
    LEGEND_TITLE,
    NO_GEOMETRY_REQUEST,
)
from ..shared.attribution import attribution_lines
from ..shared.errors import LabelSetError
from ..shared.labels import builtin_label_set, generated_palette
from ..shared.reports import model_words
from .base import dot_symbol
from .classify_clip import NO_LABEL_COLOUR, style_classified_layer
from .rank_labels import set_title
from .report_layers import imagery_credits
from .resample_to_grid import style_grid_layer

# QGIS's own layout north arrow (the layout designer's "Add North Arrow"), else one of its SVGs.
NORTH_ARROW = ":/images/north_arrows/layout_default_north_arrow.svg"
NORTH_ARROW_SVG = "arrows/NorthArrow_02.svg"
MARGIN = 10.0  # mm
SCALE_ROW = 9.0  # mm: the north arrow and scale bar under the maps
RANDOM_WEIGHTS_NOTE = (
    "RANDOM WEIGHTS: the model that labelled these images is untrained; the labels mean nothing."
)
WARNING_RED = "#c62828"
HIGHLIGHT = "#000000"  # the most frequent architect, the ranking's targets
OTHER_GREY = "#b0b0b0"
STREET_GREY = "#c8c8c8"
DOT_RIM = "#303030"
# Architects after the most frequent one: ColorBrewer's Dark2, then the rest in grey.
ARCHITECT_COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d")
BAR_ROWS = 15  # bars in the architects' chart
RANK_ROWS = 10  # ranks shown per label set (targets below them are added)
OTHER_KEY = "\u2026 other"  # the catch-all category's value: no label is spelt so
OSM_ATTRIBUTION = "Streets © OpenStreetMap contributors (ODbL)"


@dataclass
class Figure:
    """A laid-out figure, ready to export (its project holds the layers it draws)."""

    name: str
    layout: QgsPrintLayout
    project: QgsProject
    legends: list = field(default_factory=list)
    notes: list = field(default_factory=list)  # what the log should say about it


@dataclass
class Bar:
    """One bar of a chart."""

    label: str
    value: float
    colour: str
    value_text: str
    marked: bool = False


@dataclass
class FigureInputs:
    """What the figures draw from; any of it may be missing."""

    planning: list = field(default_factory=list)
    landuse: QgsVectorLayer | None = None
    grid: QgsVectorLayer | None = None
    architects: QgsVectorLayer | None = None
    ranking: QgsVectorLayer | None = None
    streets: QgsVectorLayer | None = None


class Sheet:
    """One page: its project, its layout, and helpers that place items in millimetres."""

    def __init__(self, name: str, title: str, width: float, height: float) -> None:
        self.project = QgsProject()
        self.layout = QgsPrintLayout(self.project)
        self.layout.initializeDefaults()
        self.layout.setName(title)
        page = self.layout.pageCollection().page(0)
        page.setPageSize(_size(width, height))
        self.name, self.width, self.height = name, width, height
        self.legends: list = []
        self.notes: list[str] = []

    def figure(self) -> Figure:
        return Figure(self.name, self.layout, self.project, self.legends, self.notes)

    def add_layer(self, layer, in_legend: bool = True):
        if self.project.addMapLayer(layer, in_legend) is None:
            raise RuntimeError(f"cannot add {layer.name()} to the figure's project")
        return layer

    def text(self, x, y, width, height, text, size=8.0, *, bold=False, colour="#000000",
             align=Qt.AlignmentFlag.AlignLeft) -> QgsLayoutItemLabel:  # fmt: skip
        label = QgsLayoutItemLabel(self.layout)
        label.setText(text)
        font = QFont()
        font.setPointSizeF(size)
        font.setBold(bold)
        if hasattr(label, "setTextFormat"):  # QGIS 3.24+; setFont is deprecated there
            text_format = QgsTextFormat.fromQFont(font)
            text_format.setColor(QColor(colour))  # noqa: QGS202 (a QgsTextFormat, no flag)
            label.setTextFormat(text_format)
        else:
            label.setFont(font)
            label.setFontColor(QColor(colour))
        label.setHAlign(align)
        label.setVAlign(Qt.AlignmentFlag.AlignVCenter)
        label.setMarginX(0.5)
        label.setMarginY(0.0)
        label.attemptSetSceneRect(QRectF(x, y, width, height))
        self.layout.addLayoutItem(label)
        return label

    def box(self, x, y, width, height, colour) -> QgsLayoutItemShape:
        shape = QgsLayoutItemShape(self.layout)
        shape.setShapeType(QgsLayoutItemShape.Shape.Rectangle)
        shape.setSymbol(QgsFillSymbol.createSimple({"color": colour, "outline_style": "no"}))
        shape.attemptSetSceneRect(QRectF(x, y, width, height))
        self.layout.addLayoutItem(shape)
        return shape

    def header(self, title: str, subtitle: str, untrained: bool) -> float:
        """Title, subtitle and, for random weights, the warning; returns where the body starts."""
        usable = self.width - 2 * MARGIN
        self.text(MARGIN, MARGIN - 2, usable, 9, title, 16, bold=True)
        y = MARGIN + 7
        self.text(MARGIN, y, usable, 6, subtitle, 9, colour="#333333")
        y += 6
        if untrained:
            self.text(MARGIN, y, usable, 6, RANDOM_WEIGHTS_NOTE, 9, bold=True, colour=WARNING_RED)
            y += 6
        return y + 3

    def map(self, x, y, width, height, layers, extent, crs) -> QgsLayoutItemMap:
        item = QgsLayoutItemMap(self.layout)
        item.attemptSetSceneRect(QRectF(x, y, width, height))
        item.setFrameEnabled(True)
        item.setCrs(crs)
        item.setLayers(layers)  # the first is drawn on top
        item.setKeepLayerSet(True)
        self.layout.addLayoutItem(item)
        item.zoomToExtent(extent)
        return item

    def scale_and_north(self, item: QgsLayoutItemMap, x: float, y: float) -> None:
        """QGIS's north arrow and a scale bar in metres, both linked to the map, in the row of
        height SCALE_ROW that starts at y."""
        arrow = QgsLayoutItemPicture(self.layout)
        arrow.setPicturePath(north_arrow_path())
        arrow.setLinkedMap(item)  # grid north of the map, turning with it
        arrow.attemptSetSceneRect(QRectF(x, y, 6, SCALE_ROW - 1))
        self.layout.addLayoutItem(arrow)
        bar = QgsLayoutItemScaleBar(self.layout)
        bar.setStyle("Single Box")
        bar.setLinkedMap(item)
        bar.applyDefaultSize()  # metres or kilometres, a round length for the map's width
        bar.setNumberOfSegmentsLeft(0)
        bar.setNumberOfSegments(2)
        bar.setHeight(1.5)
        text_format = QgsTextFormat()
        text_format.setSize(7)
        bar.setTextFormat(text_format)
        self.layout.addLayoutItem(bar)
        bar.attemptMove(_point(x + 9, y + 1))

    def legend(self, x, y, layers, title="", *, hide_layer_titles=False, size=7.0):
        """A legend of ``layers`` only (their classes as their styles list them)."""
        legend = QgsLayoutItemLegend(self.layout)
        legend.setTitle(title)
        self.layout.addLayoutItem(legend)
        legend.setAutoUpdateModel(False)  # its own copy of the layer tree, trimmed below
        root = legend.model().rootGroup()
        wanted = {layer.id() for layer in layers}
        for node in root.findLayers():
            if node.layerId() not in wanted:
                root.removeChildNode(node)
            elif hide_layer_titles:
                QgsLegendRenderer.setNodeLegendStyle(node, LEGEND_HIDDEN)
        _legend_font(legend, LEGEND_TITLE, size + 1, bold=True)
        _legend_font(legend, LEGEND_SYMBOL_LABEL, size)
        _legend_font(legend, LEGEND_SUBGROUP, size + 0.5, bold=True)
        legend.setSymbolWidth(4)
        legend.setSymbolHeight(3)
        legend.setBoxSpace(1)
        legend.attemptMove(_point(x, y))
        self.fit(legend)
        self.legends.append(legend)
        return legend

    def fit(self, legend) -> None:
        """Size a legend to its entries now. QGIS sizes a legend only once it has been drawn
        (it needs the drawing's DPI), so a corner of it is drawn, tiny, first."""
        exporter = QgsLayoutExporter(self.layout)
        corner = QRectF(legend.pos().x(), legend.pos().y(), 1, 1)
        exporter.renderRegionToImage(corner, QSize(4, 4))
        legend.adjustBoxSize()

    def bar_chart(self, x, y, width, rows, *, row_height=4.2, label_width=None, size=6.5):
        """Horizontal bars, one per Bar, the longest for the largest value; a marked bar's
        label in bold and at least a sliver of its bar drawn. Returns the height used."""
        label_width = label_width if label_width is not None else width * 0.45
        bar_room = width - label_width - 14
        top = max((row.value for row in rows), default=0) or 1
        for index, row in enumerate(rows):
            row_y = y + index * row_height
            label = _elide(row.label, label_width - 1, size, bold=row.marked)
            self.text(x, row_y, label_width - 1, row_height, label, size, bold=row.marked,
                      align=Qt.AlignmentFlag.AlignRight)  # fmt: skip
            length = max(bar_room * row.value / top, 0.6 if row.marked else 0.0)
            if length > 0.05:
                self.box(x + label_width, row_y + 0.6, length, row_height - 1.2, row.colour)
            self.text(x + label_width + length + 0.5, row_y, 14, row_height, row.value_text, size)
        return len(rows) * row_height

    def footer(self, lines: list[str], body_end: float | None = None) -> float:
        """The notes and attribution at the foot of the page; returns where the scale bar's row
        starts (above them), the bottom of the maps. With ``body_end`` the page is cut to end
        under a body that ends there."""
        height = 3.2 * len(lines)
        if body_end is not None:
            self.height = body_end + SCALE_ROW + 5 + height + MARGIN
            self.layout.pageCollection().page(0).setPageSize(_size(self.width, self.height))
        top = self.height - MARGIN - height
        self.text(MARGIN, top, self.width - 2 * MARGIN, height, "\n".join(lines), 6.5,
                  colour="#444444")  # fmt: skip
        return top - SCALE_ROW - 1


def export(figure: Figure, folder, dpi: float) -> list[str]:
    """The figure as ``name.png`` and ``name.pdf`` in ``folder``; returns the two paths."""
    exporter = QgsLayoutExporter(figure.layout)
    png, pdf = str(folder / f"{figure.name}.png"), str(folder / f"{figure.name}.pdf")
    image = QgsLayoutExporter.ImageExportSettings()
    image.dpi = dpi
    image.exportMetadata = False
    result = exporter.exportToImage(png, image)
    if result != QgsLayoutExporter.ExportResult.Success:
        raise OSError(f"QGIS could not write {png} ({exporter.errorFile() or result})")
    document = QgsLayoutExporter.PdfExportSettings()
    document.dpi = dpi
    document.rasterizeWholeImage = False  # vector maps and text
    result = exporter.exportToPdf(pdf, document)
    if result != QgsLayoutExporter.ExportResult.Success:
        raise OSError(f"QGIS could not write {pdf} ({exporter.errorFile() or result})")
    return [png, pdf]


def north_arrow_path() -> str:
    if QFile.exists(NORTH_ARROW):
        return NORTH_ARROW
    from qgis.core import QgsPathResolver

    return QgsSymbolLayerUtils.svgSymbolNameToPath(NORTH_ARROW_SVG, QgsPathResolver())


# ---- the four figures ---------------------------------------------------------------------


def planning_figure(inputs: FigureInputs) -> Figure | str:
    """(a) The planning indicators' dot maps side by side, one legend under each."""
    layers = [layer for layer in inputs.planning if layer is not None]
    if not layers:
        return "no planning-indicator layer was given"
    problem = _unclassified(layers)
    if problem:
        return problem
    count = len(layers)
    gap, panel = 4.0, 76.0
    width = max(2 * MARGIN + count * panel + (count - 1) * gap, 200.0)
    sheet = Sheet("planning_indicators", "Planning indicators", width, 200.0)
    settings = [classification_settings(layer) for layer in layers]
    plural = "s" if count > 1 else ""
    top = sheet.header(
        "Planning indicators read from street images",
        f"Each location's most probable level of {count} planning indicator{plural}, by CLIP "
        "(dot size: its score).",
        any(run.get("untrained") for run in settings),
    )
    crs, extent = _frame(layers)
    streets = _streets(sheet, inputs.streets, extent, crs)
    maps, legend_end = [], 0.0
    for index, (layer, run) in enumerate(zip(layers, settings)):
        x = MARGIN + index * (panel + gap)
        name = _indicator_name(layer, run)
        copy = sheet.add_layer(_copy(layer, name))
        _style_points(copy, run)
        sheet.text(x, top, panel, 6, name, 10, bold=True)
        maps.append(sheet.map(x, top + 7, panel, panel, [copy, *streets], extent, crs))
        legend = sheet.legend(x, top + panel + 10, [copy], hide_layer_titles=True, size=7)
        legend.setLinkedMap(maps[-1])
        legend_end = max(legend_end, top + panel + 10 + legend.rect().height())
    bottom = sheet.footer(_attribution(layers, streets, settings), body_end=legend_end)
    sheet.scale_and_north(maps[0], MARGIN, bottom)
    return sheet.figure()


def landuse_figure(inputs: FigureInputs) -> Figure | str:
    """(b) The land-use dot map over its void-free grid, with the official legend."""
    layer, grid = inputs.landuse, inputs.grid
    if layer is None and grid is None:
        return "neither a land-use point layer nor a label grid was given"
    problem = _unclassified([layer] if layer is not None else [])
    if problem:
        return problem
    settings = classification_settings(layer) if layer is not None else {}
    label_set = _label_set(settings.get("label_set") or "urban_atlas_2018")
    sheet = Sheet("land_use", "Land use", 297.0, 210.0)
    cell = _cell_size(grid)
    what = []
    if layer is not None:
        what.append("each image's most probable class (dots)")
    if grid is not None:
        what.append(f"the most frequent class per {cell} cell, every cell filled (squares)")
    top = sheet.header(
        "Land use read from street images",
        f"{label_set.title if label_set else 'Land use'}: " + " and ".join(what) + ".",
        bool(settings.get("untrained")),
    )
    crs, extent = _frame([x for x in (layer, grid) if x is not None])
    streets = _streets(sheet, inputs.streets, extent, crs)
    drawn = []
    if layer is not None:
        points = sheet.add_layer(_copy(layer, "Street images: CLIP's class"))
        _style_points(points, settings)
        drawn.append(points)
    if grid is not None:
        cells = sheet.add_layer(_copy(grid, f"Grid cells ({cell}): most frequent class"))
        _style_grid(cells, label_set)
        drawn.append(cells)
    notes = []
    if grid is not None:
        notes.append(
            "Filled: a cell with no street image, labelled by its nearest observed cells "
            "(lighter shade)."
        )
    images = [layer] if layer is not None else []
    bottom = sheet.footer(notes + _attribution(images, streets, [settings], label_set))
    legend = sheet.legend(MARGIN, top, drawn)
    if grid is not None:
        _short_filled_entries(legend, cells)
    # A study with many classes: the legend in more columns, smaller, rather than off the page.
    for columns, size in ((1, 7.0), (2, 6.0), (3, 5.0)):
        legend.setColumnCount(columns)
        legend.setSplitLayer(columns > 1)
        _legend_font(legend, LEGEND_SYMBOL_LABEL, size)
        sheet.fit(legend)
        if legend.rect().height() <= bottom - top - 3:
            break
    legend_width = min(legend.rect().width(), sheet.width * 0.55)
    map_width = sheet.width - 2 * MARGIN - legend_width - 5
    item = sheet.map(MARGIN, top, map_width, bottom - top - 3, [*drawn, *streets], extent, crs)
    legend.setLinkedMap(item)
    legend.attemptMove(_point(MARGIN + map_width + 5, top))
    sheet.scale_and_north(item, MARGIN, bottom)
    return sheet.figure()


def architects_figure(inputs: FigureInputs) -> Figure | str:
    """(c) The architects' dot map, the most frequent one in black, and a bar chart of how
    often each architect is the first label."""
    layer = inputs.architects
    if layer is None:
        return "no architects layer was given"
    problem = _unclassified([layer])
    if problem:
        return problem
    counts = Counter(v for v in _first_labels(layer) if v)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    total = sum(counts.values())
    settings = classification_settings(layer)
    first, first_count = ranked[0]
    ties = [name for name, n in ranked[1:] if n == first_count]
    colours = {first: HIGHLIGHT}
    for (name, _), colour in zip(ranked[1:], ARCHITECT_COLOURS):
        colours[name] = colour
    sheet = Sheet("architects", "Architects", 297.0, 210.0)
    tie_words = f"; tied with {', '.join(ties)}" if ties else ""
    top = sheet.header(
        "Architects read from street images",
        f"Each location's most probable architect, by CLIP. In black, the most frequent: "
        f"{first} ({first_count} of {total} locations{tie_words}).",
        bool(settings.get("untrained")),
    )
    crs, extent = _frame([layer])
    streets = _streets(sheet, inputs.streets, extent, crs)
    bottom = sheet.footer(_attribution([layer], streets, [settings]))
    points = sheet.add_layer(_copy(layer, "Most probable architect"))
    _style_highlighted(points, colours, counts, len(ranked))
    map_width = 165.0
    item = sheet.map(MARGIN, top, map_width, bottom - top - 3, [points, *streets], extent, crs)
    sheet.scale_and_north(item, MARGIN, bottom)
    chart_x = MARGIN + map_width + 6
    chart_width = sheet.width - MARGIN - chart_x
    legend = sheet.legend(chart_x, top, [points], size=7)
    legend.setLinkedMap(item)
    chart_y = top + legend.rect().height() + 5
    sheet.text(chart_x, chart_y, chart_width, 5, "First places per architect", 8, bold=True)
    rows = [
        Bar(name, n, colours.get(name, OTHER_GREY), f"{n} ({n / total:.0%})")
        for name, n in ranked[:BAR_ROWS]
    ]
    height = sheet.bar_chart(chart_x, chart_y + 6, chart_width, rows)
    if len(ranked) > BAR_ROWS:
        sheet.text(
            chart_x, chart_y + 7 + height, chart_width, 4,
            f"{len(ranked) - BAR_ROWS} more architects with fewer first places.", 6.5,
        )  # fmt: skip
    return sheet.figure()


def ranking_figure(inputs: FigureInputs) -> Figure | str:
    """(d) The multiscale ranking: per label set, the labels with most first places, the
    targets in black; beside it, where the ranked images were taken."""
    table = inputs.ranking
    if table is None:
        return "no ranking table was given"
    sections = _ranking_sections(table)
    if not sections:
        return f"the ranking table {table.name()} has no row with label_set, label, share, rank"
    classified = [x for x in (inputs.landuse, inputs.architects, *inputs.planning) if x is not None]
    runs = [classification_settings(x) for x in classified]
    targets = sorted({row["label"] for rows in sections.values() for row in rows if row["target"]})
    sheet = Sheet("ranking", "Multiscale ranking", 297.0, 210.0)
    top = sheet.header(
        "Multiscale ranking of the street images",
        "Share of the images whose most probable label it is, per label set"
        + (f"; in black: {', '.join(targets)}." if targets else "; no target was named."),
        any(run.get("untrained") for run in runs),
    )
    x, streets, body_end = MARGIN, [], top
    if classified:
        crs, extent = _frame(classified[:1])
        streets = _streets(sheet, inputs.streets, extent, crs)
        copy = sheet.add_layer(_copy(classified[0], "Street images ranked"))
        copy.setRenderer(QgsSingleSymbolRenderer(dot_symbol(HIGHLIGHT, 1.8)))
        sheet.text(MARGIN, top, 62, 5, "Where the images were taken", 8, bold=True)
        item = sheet.map(MARGIN, top + 6, 62, 62, [copy, *streets], extent, crs)
        sheet.scale_and_north(item, MARGIN, top + 70)
        x, body_end = MARGIN + 68, top + 70 + SCALE_ROW
    count = len(sections)
    gap = 5.0
    panel = (sheet.width - MARGIN - x - gap * (count - 1)) / count
    charts_end = top
    for index, (set_name, rows) in enumerate(sections.items()):
        panel_x = x + index * (panel + gap)
        title, scope = _section_words(set_name)
        sheet.text(panel_x, top - 1, panel, 5, _elide(title, panel, 8, bold=True), 8, bold=True)
        sheet.text(panel_x, top + 3, panel, 3.5, _elide(scope, panel, 6.5), 6.5, colour="#555555")
        shown = [row for row in rows if row["rank"] <= RANK_ROWS]
        shown += [row for row in rows if row["rank"] > RANK_ROWS and row["target"]]
        bars = [
            Bar(
                f"{row['rank']}. {row['label']}",
                row["share"],
                HIGHLIGHT if row["target"] else OTHER_GREY,
                f"{row['share']:.0%}",
                marked=row["target"],
            )
            for row in shown
        ]
        height = sheet.bar_chart(panel_x, top + 8, panel, bars, label_width=panel * 0.62)
        sheet.text(
            panel_x, top + 9 + height, panel, 4, f"{len(rows)} labels ranked", 6.5,
            colour="#555555",
        )  # fmt: skip
        charts_end = max(charts_end, top + 14 + height)
    key_y = charts_end + 3
    sheet.box(x, key_y + 1, 4, 3, HIGHLIGHT)
    sheet.text(x + 5, key_y, 80, 5, "target named in the ranking (label in bold)", 7)
    sheet.box(x, key_y + 6, 4, 3, OTHER_GREY)
    sheet.text(x + 5, key_y + 5, 80, 5, "other labels", 7)
    sheet.footer(_attribution(classified[:1], streets, runs), max(body_end, key_y + 10) - SCALE_ROW)
    return sheet.figure()


FIGURES: tuple[tuple[str, Callable[[FigureInputs], Figure | str]], ...] = (
    ("planning indicators", planning_figure),
    ("land use", landuse_figure),
    ("architects", architects_figure),
    ("ranking", ranking_figure),
)


# ---- helpers ------------------------------------------------------------------------------


def _size(width, height):
    from qgis.core import QgsLayoutSize

    return QgsLayoutSize(width, height)  # millimetres, the default unit


def _point(x, y):
    from qgis.core import QgsLayoutPoint

    return QgsLayoutPoint(x, y)


def _legend_font(legend, style, size: float, bold: bool = False) -> None:
    font = QFont()
    font.setPointSizeF(size)
    font.setBold(bold)
    component = legend.rstyle(style)
    if hasattr(component, "setTextFormat"):  # QGIS 3.30+; setFont is deprecated there
        component.setTextFormat(QgsTextFormat.fromQFont(font))
    else:
        component.setFont(font)


def _copy(layer, name: str) -> QgsVectorLayer:
    """The figure's own copy of a layer (a memory layer's features copied, a file re-opened),
    so that styling it leaves the user's layer alone."""
    if layer.providerType() == "memory":
        copy = layer.materialize(QgsFeatureRequest())
    else:
        copy = QgsVectorLayer(layer.source(), name, layer.providerType())
    copy.setName(name)
    return copy


def _unclassified(layers) -> str:
    for layer in layers:
        if "label_1" not in layer.fields().names():
            return f"{layer.name()} has no label_1 field: classify it with 'CLIP-classify' first"
        if not any(_first_labels(layer)):
            return f"{layer.name()} has no classified point (label_1 is empty everywhere)"
    return ""


def _first_labels(layer) -> list[str]:
    index = layer.fields().lookupField("label_1")
    request = QgsFeatureRequest().setSubsetOfAttributes([index]).setFlags(NO_GEOMETRY_REQUEST)
    return [_text(f[index]) for f in layer.getFeatures(request)]


def _values(layer, name: str) -> set[str]:
    index = layer.fields().lookupField(name)
    return {_text(v) for v in layer.uniqueValues(index)} - {""} if index >= 0 else set()


def _text(value) -> str:
    return "" if value is None or str(value) == "NULL" else str(value)


def _label_set(name: str):
    try:
        return builtin_label_set(name) if name else None
    except (LabelSetError, KeyError, ValueError):
        return None


def _style_points(layer, settings: dict) -> None:
    """The classified layer's own style (its label set's colours, size by score); a layer of an
    unknown set gets generated colours over the labels it holds."""
    label_set = _label_set(settings.get("label_set", ""))
    if label_set is None:
        from ..shared.labels import Label, LabelSet

        found = sorted(_values(layer, "label_1"))
        colours = generated_palette(len(found))
        labels = tuple(Label(text, colour=c) for text, c in zip(found, colours))
        label_set = LabelSet("found", labels, ("{label}",))
    style_classified_layer(layer, label_set)
    _one_line_legend(layer)
    # A dark rim: a dot reads apart from a grid cell of its own colour under it.
    renderer = layer.renderer()
    for index, category in enumerate(renderer.categories()):
        symbol = category.symbol().clone()
        symbol.symbolLayer(0).setStrokeColor(QColor(DOT_RIM))
        symbol.symbolLayer(0).setStrokeWidth(0.2)
        renderer.updateCategorySymbol(index, symbol)


def _section_words(set_name: str) -> tuple[str, str]:
    """A ranking section as a panel names it: the label set's short title ('European
    capitals'), and what was ranked ('all 9 stored images', else 'the classified points')."""
    name, _, scope = set_name.partition(" (")
    title = set_title(name).split(" (")[0]
    return title, scope.rstrip(")") or "the classified points"


def _style_highlighted(layer, colours: dict, counts: Counter, distinct: int) -> None:
    """The first label in black, a few more in colours, every other label in grey."""
    named = list(colours)
    quoted = ", ".join("'" + name.replace("'", "''") + "'" for name in named)
    key = (
        f'CASE WHEN "label_1" IN ({quoted}) THEN "label_1" '
        f"WHEN \"label_1\" IS NULL OR \"label_1\" = '' THEN '' ELSE '{OTHER_KEY}' END"
    )
    categories = [
        QgsRendererCategory(name, dot_symbol(colours[name], 2.6), f"{name} ({counts[name]})")
        for name in named
    ]
    others = distinct - len(named)
    if others:
        rest = sum(counts.values()) - sum(counts[name] for name in named)
        categories.append(
            QgsRendererCategory(
                OTHER_KEY, dot_symbol(OTHER_GREY, 2.0), f"{others} other architects ({rest})"
            )
        )
    if "" in _first_labels(layer):
        categories.append(
            QgsRendererCategory("", dot_symbol(NO_LABEL_COLOUR, 1.2), "no usable image")
        )
    layer.setRenderer(QgsCategorizedSymbolRenderer(key, categories))


def _frame(layers) -> tuple[QgsCoordinateReferenceSystem, QgsRectangle]:
    """The layers' UTM zone (metres for the scale bar; north up) and their common extent there,
    with a margin; a single point gets 200 m around it."""
    wgs84 = QgsCoordinateReferenceSystem("EPSG:4326")
    first = layers[0]
    to_wgs84 = QgsCoordinateTransform(first.crs(), wgs84, QgsProject.instance())
    centre = to_wgs84.transformBoundingBox(first.extent()).center()
    zone = math.floor((centre.x() + 180) / 6) % 60 + 1
    crs = QgsCoordinateReferenceSystem(f"EPSG:{(32600 if centre.y() >= 0 else 32700) + zone}")
    extent = QgsRectangle()
    extent.setMinimal()
    for layer in layers:
        transform = QgsCoordinateTransform(layer.crs(), crs, QgsProject.instance())
        extent.combineExtentWith(transform.transformBoundingBox(layer.extent()))
    grow = max(extent.width(), extent.height()) * 0.08
    extent.grow(max(grow, 100.0 if max(extent.width(), extent.height()) < 200 else 0))
    return crs, extent


def _streets(sheet: Sheet, streets, extent, crs) -> list:
    """The street network as grey context lines, when it reaches into the map."""
    if streets is None:
        return []
    transform = QgsCoordinateTransform(streets.crs(), crs, QgsProject.instance())
    if not transform.transformBoundingBox(streets.extent()).intersects(extent):
        sheet.notes.append(f"the street network {streets.name()} does not reach the map: not drawn")
        return []
    copy = sheet.add_layer(_copy(streets, "Street network"), in_legend=False)
    copy.setRenderer(QgsSingleSymbolRenderer(QgsLineSymbol.createSimple({"color": STREET_GREY})))
    copy.renderer().symbol().setWidth(0.25)
    return [copy]


def _style_grid(cells, label_set) -> None:
    """The grid in its label set's order and colours (labels outside it in generated ones)."""
    found = sorted(_values(cells, "label"))
    if label_set is None:
        style_grid_layer(cells, found, generated_palette(len(found)))
    else:
        names, colours = list(label_set.texts), list(label_set.colours())
        codes = [label.code for label in label_set.labels]
        extra = [name for name in found if name not in set(names)]
        names += extra
        colours += generated_palette(len(extra))
        codes += [""] * len(extra)
        style_grid_layer(cells, names, colours, codes)
    _one_line_legend(cells)


def _one_line_legend(layer) -> None:
    """A figure's legend has the room that the Layers panel lacks: each entry on one line again
    (the layer styles break long entries for the panel)."""
    renderer = layer.renderer()
    for index, category in enumerate(renderer.categories()):
        renderer.updateCategoryLabel(index, " ".join(category.label().split()))


def _cell_size(grid) -> str:
    if grid is None:
        return ""
    feature = next(grid.getFeatures(), None)
    if feature is None or feature.geometry().isNull():
        return "grid"
    side = math.sqrt(feature.geometry().area())
    # The unit's name, not its enum, which moved between QGIS versions.
    metres = QgsUnitTypes.encodeUnit(grid.crs().mapUnits()) == "meters"
    return f"{side:.0f} m" if metres else "grid"


def _short_filled_entries(legend, cells) -> None:
    """'(filled: no point in the cell)' as '(filled)': the note under the map says what it is."""
    for node in legend.model().rootGroup().findLayers():
        if node.layer() is not cells:
            continue
        nodes = legend.model().layerLegendNodes(node)
        for index, legend_node in enumerate(nodes):
            text = str(legend_node.data(Qt.ItemDataRole.DisplayRole) or "")
            if text.endswith("(filled: no point in the cell)"):
                short = text.replace("(filled: no point in the cell)", "(filled)")
                QgsMapLayerLegendUtils.setLegendNodeUserLabel(node, index, short)
        legend.model().refreshLayerLegend(node)
    legend.adjustBoxSize()


def _indicator_name(layer, settings: dict) -> str:
    title = settings.get("label_set_title") or layer.name()
    # Layers classified before the titles were shortened say "Planning indicator: … (five levels)".
    return re.sub(r"^Planning( indicator)?: | \((5|five) levels\)$", "", title).capitalize()


def _models(settings: list[dict]) -> str:
    """The models and weights, as a reader names them ('ViT-B-32, laion2b_s34b_b79k weights';
    a weights file by its name, not its folder)."""
    words = []
    for run in settings:
        if run:
            short = {k: Path(v).name if k in ("model", "checkpoint") else v for k, v in run.items()}
            words.append(model_words(short))
    return "; ".join(dict.fromkeys(words)) or "model not recorded"


def _attribution(points, streets, settings, label_set=None) -> list[str]:
    """Who the picture owes: the imagery (source and licence as fetch recorded them), the
    streets (OpenStreetMap), the legend's nomenclature, the model."""
    # The imagery's sources, creators and licences, as the licences ask them credited.
    lines = attribution_lines(imagery_credits(points))
    osm_points = any("osm_ids" in layer.fields().names() for layer in points)
    if streets or osm_points:
        lines.append(OSM_ATTRIBUTION + ("" if streets else ": the sampled street centroids") + ".")
    if label_set is not None and label_set.source:
        lines.append(f"Legend: {label_set.source}.")
    models = _models(list(settings))
    lines.append(f"Labels: CLIP, {models}; made with mus_qgis (QGIS).")
    return lines


def _ranking_sections(table) -> dict[str, list[dict]]:
    names = table.fields().names()
    if not {"label_set", "label", "share", "rank"} <= set(names):
        return {}
    sections: dict[str, list[dict]] = {}
    for feature in table.getFeatures():
        try:
            row = {
                "label": _text(feature["label"]),
                "share": float(feature["share"]),
                "rank": int(feature["rank"]),
                "target": "target" in names and str(feature["target"]) in ("1", "true", "True"),
            }
        except (TypeError, ValueError):
            continue
        sections.setdefault(_text(feature["label_set"]), []).append(row)
    for rows in sections.values():
        rows.sort(key=lambda row: row["rank"])
    return sections


def _elide(text: str, width_mm: float, size: float, bold: bool = False) -> str:
    """``text`` cut with an ellipsis to fit ``width_mm`` at ``size`` points (a layout label
    does not wrap a line: it would spill over its neighbour)."""
    font = QFont()
    font.setPointSizeF(size)
    font.setBold(bold)
    metrics = QFontMetricsF(font)
    # The metrics measure in pixels at the screen's DPI; the layout draws points as 1/72 inch.
    # A margin: a label wraps at a word a little before its measured width.
    room = width_mm / 25.4 * metrics.fontDpi() * 0.85
    return metrics.elidedText(text, Qt.TextElideMode.ElideRight, room)


def legend_texts(legend) -> list[str]:
    """Every entry a legend shows (for tests and for the log)."""
    model = legend.model()
    texts = []
    for node in model.rootGroup().findLayers():
        for legend_node in model.layerLegendNodes(node):
            texts.append(str(legend_node.data(Qt.ItemDataRole.DisplayRole) or ""))
    return texts


__all__ = ["FIGURES", "Figure", "FigureInputs", "export", "legend_texts"]
