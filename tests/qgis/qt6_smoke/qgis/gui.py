"""Stand-in for QGIS 4's ``qgis.gui``: the three canvas classes the plugin's map tool needs, each
on the real PyQt6 class QGIS's own derives from, so that Qt checks what the plugin hands them.

- ``QgsMapCanvas``: a ``QGraphicsView`` with a scene, holding one map tool at a time
  (``setMapTool`` deactivates the previous tool and activates the new one, as QGIS's does).
- ``QgsMapTool``: a ``QObject`` owned by its canvas; ``activate``/``deactivate`` check and
  uncheck its action, ``isActive`` says whether the canvas holds it.
- ``QgsVertexMarker``: a ``QGraphicsRectItem`` in the canvas's scene; ``IconType`` is a scoped
  Python enum as PyQt6 bindings make it (``QgsVertexMarker.ICON_CIRCLE`` fails, as on QGIS 4), and
  the setters refuse values of the wrong type as the bindings would.
"""

from __future__ import annotations

import enum

from qgis.PyQt.QtCore import QObject, QRectF
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import QGraphicsRectItem, QGraphicsScene, QGraphicsView


class QgsMapCanvas(QGraphicsView):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self._tool = None

    def mapTool(self):
        return self._tool

    def setMapTool(self, tool) -> None:
        if self._tool is tool:
            return
        if self._tool is not None:
            self._tool.deactivate()
        self._tool = tool
        tool.activate()

    def unsetMapTool(self, tool) -> None:
        if self._tool is tool:
            tool.deactivate()
            self._tool = None

    def mapSettings(self):
        from qgis.core import QgsMapSettings

        return QgsMapSettings()

    def layers(self) -> list:
        return []


class QgsMapTool(QObject):
    def __init__(self, canvas) -> None:
        super().__init__(canvas)
        self._canvas, self._action = canvas, None

    def canvas(self):
        return self._canvas

    def setAction(self, action) -> None:
        self._action = action

    def action(self):
        return self._action

    def isActive(self) -> bool:
        return self._canvas is not None and self._canvas.mapTool() is self

    def activate(self) -> None:
        if self._action is not None:
            self._action.setChecked(True)

    def deactivate(self) -> None:
        if self._action is not None:
            self._action.setChecked(False)

    @staticmethod
    def searchRadiusMU(canvas) -> float:
        return 1.0


class QgsVertexMarker(QGraphicsRectItem):
    class IconType(enum.IntEnum):
        ICON_NONE = 0
        ICON_CROSS = 1
        ICON_X = 2
        ICON_BOX = 3
        ICON_CIRCLE = 4
        ICON_DOUBLE_TRIANGLE = 5

    def __init__(self, canvas) -> None:
        super().__init__(QRectF(-5, -5, 10, 10))
        canvas.scene().addItem(self)

    def setIconType(self, kind) -> None:
        if not isinstance(kind, QgsVertexMarker.IconType):
            raise TypeError(f"setIconType() takes a QgsVertexMarker.IconType, not {kind!r}")

    def setIconSize(self, size: int) -> None:
        self.setRect(QRectF(-size / 2, -size / 2, size, size))

    def setPenWidth(self, width: int) -> None:
        if not isinstance(width, int):
            raise TypeError(f"setPenWidth() takes an int, not {width!r}")

    def setColor(self, colour) -> None:
        if not isinstance(colour, QColor):
            raise TypeError(f"setColor() takes a QColor, not {colour!r}")

    def setCenter(self, point) -> None:
        pass
