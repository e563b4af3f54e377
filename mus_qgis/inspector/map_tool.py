"""The street inspector's map tool: a click shows the nearest point of a classified layer in the
dock; N (or space) and P (or backspace) step through the layer's points in the dock's order."""

from __future__ import annotations

from qgis.core import QgsFeatureRequest, QgsGeometry, QgsProject, QgsRectangle
from qgis.gui import QgsMapTool
from qgis.PyQt.QtCore import Qt

from .point import is_classified

# Not the arrow keys: the map canvas pans with them before a map tool sees them.
NEXT_KEYS = (Qt.Key.Key_N, Qt.Key.Key_Space)
PREVIOUS_KEYS = (Qt.Key.Key_P, Qt.Key.Key_Backspace)


def classified_layer(canvas, inspected=None):
    """The layer to inspect: the current one if classified, else the one inspected so far,
    else the first classified one on the map."""
    from qgis.utils import iface

    current = iface.activeLayer() if iface is not None else None
    if current is not None and is_classified(current):
        return current
    if inspected is not None and inspected.isValid():
        return inspected
    for layer in canvas.layers() or QgsProject.instance().mapLayers().values():
        if is_classified(layer):
            return layer
    return None


def nearest_feature(layer, map_point, canvas, radius_mu: float):
    """The id of the point of ``layer`` nearest ``map_point`` (canvas CRS) within the search
    radius, or None."""
    from qgis.core import QgsCoordinateTransform

    transform = QgsCoordinateTransform(
        canvas.mapSettings().destinationCrs(), layer.crs(), QgsProject.instance()
    )
    area = QgsRectangle(
        map_point.x() - radius_mu,
        map_point.y() - radius_mu,
        map_point.x() + radius_mu,
        map_point.y() + radius_mu,
    )
    area = transform.transformBoundingBox(area)
    here = QgsGeometry.fromPointXY(transform.transform(map_point))
    best = None
    for feature in layer.getFeatures(QgsFeatureRequest().setFilterRect(area)):
        distance = feature.geometry().distance(here)
        if best is None or distance < best[0]:
            best = (distance, feature.id())
    return None if best is None else best[1]


class InspectorMapTool(QgsMapTool):
    """Click: the nearest classified point in the dock. Keys step through the points."""

    def __init__(self, canvas, dock) -> None:
        super().__init__(canvas)
        self.dock = dock
        self.marker = None
        if canvas is not None:
            dock.shown.append(self.mark)

    def mark(self, layer, fid: int) -> None:
        """A ring on the map around the point the dock shows."""
        from qgis.core import QgsCoordinateTransform
        from qgis.gui import QgsVertexMarker
        from qgis.PyQt.QtGui import QColor

        geometry = layer.getFeature(fid).geometry()
        if geometry.isEmpty() or not self.isActive():
            return
        if self.marker is None:
            self.marker = QgsVertexMarker(self.canvas())
            self.marker.setIconType(QgsVertexMarker.IconType.ICON_CIRCLE)
            self.marker.setIconSize(18)
            self.marker.setPenWidth(3)
            self.marker.setColor(QColor("#d7191c"))  # noqa: QGS202 (returns nothing)
        transform = QgsCoordinateTransform(
            layer.crs(), self.canvas().mapSettings().destinationCrs(), QgsProject.instance()
        )
        self.marker.setCenter(transform.transform(geometry.centroid().asPoint()))
        self.marker.show()

    def deactivate(self) -> None:
        """Another tool takes the map: the ring goes (the canvas's scene would outlive it)."""
        if self.marker is not None:
            self.canvas().scene().removeItem(self.marker)
            self.marker = None
        super().deactivate()

    def canvasReleaseEvent(self, event) -> None:
        layer = classified_layer(self.canvas(), self.dock.layer)
        if layer is None:
            self.dock.show_message("No classified layer in the project: run CLIP-classify first.")
            return
        fid = nearest_feature(
            layer, event.mapPoint(), self.canvas(), QgsMapTool.searchRadiusMU(self.canvas())
        )
        if fid is None:
            return
        self.dock.show_point(layer, fid)
        self.dock.show()

    def keyPressEvent(self, event) -> None:
        if event.key() in NEXT_KEYS:
            self.dock.step(1)
        elif event.key() in PREVIOUS_KEYS:
            self.dock.step(-1)
        else:
            event.ignore()
            return
        event.accept()
