"""The street inspector's dock: a point's views, the model's reading, where the images come from,
and the user's own label. GUI only: what it shows comes from ``point``, ``view_scores`` and
``correction``."""

from __future__ import annotations

import html
from pathlib import Path

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QPixmap
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..bridge.layer_settings import classification_settings
from ..shared.errors import MusError
from .correction import LABEL_USER, label_choices, set_user_label
from .point import LOWEST_MARGIN, InspectedPoint, read_point, step_order
from .thumbnails import Prefetch, thumbnail
from .view_scores import ViewScores

STRIP_WIDTH = 460  # px: the whole panorama (or first image) across the dock
VIEW_WIDTH = 200  # px: each view's thumbnail
PREFETCH = 3  # points ahead in the order whose images are made ready in the background
PANORAMA_ASPECT = 1.9  # width / height from which an image is a 360° strip
ORDER_LOWEST_MARGIN = "lowest margin first"


def scaled_image(path: str, width: int) -> QPixmap | None:
    """The image at ``width`` px, from its stored small copy; None when it cannot be read."""
    image = thumbnail(path, width)
    return None if image.isNull() else QPixmap.fromImage(image)


def _reading_html(labels, probabilities) -> str:
    rows = []
    for label, chance in zip(labels, probabilities):
        if label is None:
            continue
        shown = "" if chance is None else f"{100 * chance:.0f} %"
        rows.append(f"<tr><td>{html.escape(label)}</td><td align='right'>{shown}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


class InspectorDock(QDockWidget):
    """Shows one point of a classified layer; steps through the layer in a chosen order."""

    def __init__(self, parent=None) -> None:
        super().__init__("Street inspector", parent)
        self.setObjectName("MusStreetInspector")
        self.layer = None
        self.point: InspectedPoint | None = None
        self.order: list[int] = []
        self.view_scores = ViewScores(self._readings_arrived)
        self.prefetch = Prefetch()
        self._settings: dict = {}
        self._layer_id = ""

        body = QWidget()
        layout = QVBoxLayout(body)
        steps = QHBoxLayout()
        self.order_box = QComboBox()
        self.order_box.setToolTip("The order ◀ ▶ (keys P and N on the map) step through the points")
        self.order_box.currentIndexChanged.connect(self._order_changed)
        self.previous_button = QToolButton()
        self.previous_button.setText("◀")
        self.previous_button.setToolTip("Previous point (P on the map)")
        self.previous_button.clicked.connect(lambda: self.step(-1))
        self.next_button = QToolButton()
        self.next_button.setText("▶")
        self.next_button.setToolTip("Next point (N on the map)")
        self.next_button.clicked.connect(lambda: self.step(1))
        self.position = QLabel()
        steps.addWidget(QLabel("Order:"))
        steps.addWidget(self.order_box, 1)
        steps.addWidget(self.previous_button)
        steps.addWidget(self.next_button)
        steps.addWidget(self.position)
        layout.addLayout(steps)

        self.status = QLabel()
        # Always read as HTML: what it shows is escaped, and an escaped plain message would
        # otherwise show its entities (&#x27;) to the user.
        self.status.setTextFormat(Qt.TextFormat.RichText)
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.strip = QLabel()
        self.strip.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(self.strip)
        self.views_row = QHBoxLayout()
        views = QWidget()
        views.setLayout(self.views_row)
        scroll = QScrollArea()
        scroll.setWidget(views)
        scroll.setWidgetResizable(True)
        scroll.setMinimumHeight(300)
        layout.addWidget(scroll)
        self.view_images: list[QLabel] = []
        self.view_texts: list[QLabel] = []

        self.details = QTextBrowser()
        self.details.setOpenExternalLinks(True)
        layout.addWidget(self.details, 1)

        correct = QHBoxLayout()
        self.label_box = QComboBox()
        self.label_box.setToolTip(f"The right label for this point (stored in {LABEL_USER})")
        self.set_button = QPushButton("Set label")
        self.set_button.clicked.connect(self.set_label)
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(lambda: self.set_label(clear=True))
        correct.addWidget(QLabel("Right label:"))
        correct.addWidget(self.label_box, 1)
        correct.addWidget(self.set_button)
        correct.addWidget(self.clear_button)
        layout.addLayout(correct)
        body.setMinimumWidth(2 * VIEW_WIDTH + 80)  # two views side by side
        self.setWidget(body)
        self.shown = []  # callables(layer, fid) told of each point shown (the map's marker)
        self.show_message("Click a point of a classified layer with the inspector's map tool.")

    # -- what is shown ---------------------------------------------------------------------------
    def set_layer(self, layer) -> None:
        """Inspect ``layer``: its label set offered, its orders, each view's reading asked."""
        if layer is self.layer:
            return
        if self.layer is not None:
            self.layer.willBeDeleted.disconnect(self._layer_gone)
        # Emitted as the layer is destroyed: its id is kept now, the layer cannot be asked then.
        self.layer, self._layer_id = layer, layer.id()
        layer.willBeDeleted.connect(self._layer_gone)
        self._settings = classification_settings(layer)
        self.order_box.blockSignals(True)
        self.order_box.clear()
        self.order_box.addItem(ORDER_LOWEST_MARGIN, (LOWEST_MARGIN, False))
        for field in layer.fields():
            if field.isNumeric() and field.name() != LOWEST_MARGIN:
                self.order_box.addItem(f"{field.name()} ↑", (field.name(), False))
                self.order_box.addItem(f"{field.name()} ↓", (field.name(), True))
        self.order_box.blockSignals(False)
        self._order_changed()
        self.label_box.clear()
        self.label_box.addItems(label_choices(layer))
        self.view_scores.ask(layer)

    def _layer_gone(self) -> None:
        """The layer left the project: nothing of it is kept or shown."""
        self.view_scores.forget(self._layer_id)
        self._layer_id = ""
        self.layer, self.point, self.order = None, None, []
        self._show_images(InspectedPoint(fid=-1, status=""))
        self.show_message("The layer was removed: click a point of a classified layer.")

    def show_point(self, layer, fid: int) -> None:
        """Show point ``fid`` of ``layer`` (from the cache: the layer, the images on disk, and
        each view's readings once they have arrived)."""
        self.set_layer(layer)
        self.point = point = read_point(layer, fid, self._settings)
        if fid in self.order:
            self.position.setText(f"{self.order.index(fid) + 1} / {len(self.order)}")
        ok = point.status == "ok"
        self.status.setText(
            f"<b>Point {fid}</b>: {html.escape(point.status)}"
            if ok
            else f"<b>Point {fid}</b>: <span style='color:#b00020'>"
            f"{html.escape(point.status)}</span>"
        )
        self._show_images(point)
        self._show_details()
        if point.label_user:
            self.label_box.setCurrentText(point.label_user)
        elif point.pooled:
            self.label_box.setCurrentText(point.pooled[0][0])
        self.set_button.setEnabled(True)
        for tell in self.shown:
            tell(layer, fid)
        self._prefetch_next()

    def _prefetch_next(self) -> None:
        if self.point is None or self.point.fid not in self.order:
            return
        at = self.order.index(self.point.fid)
        ahead = [self.order[(at + step) % len(self.order)] for step in range(1, PREFETCH + 1)]
        jobs = []
        for fid in ahead:
            paths = read_point(self.layer, fid, self._settings).paths
            jobs += [(path, STRIP_WIDTH) for path in paths[:1]]
            jobs += [(path, VIEW_WIDTH) for path in paths[1:]]
        self.prefetch.ask(jobs)

    def show_message(self, text: str) -> None:
        self.status.setText(text)
        self.strip.clear()
        self.details.clear()
        self.set_button.setEnabled(False)

    def _show_images(self, point: InspectedPoint) -> None:
        for widget in self.view_images + self.view_texts:
            self.views_row.removeWidget(widget)
            widget.deleteLater()
        self.view_images, self.view_texts = [], []
        first = scaled_image(point.paths[0], STRIP_WIDTH) if point.paths else None
        # The strip shows a whole panorama; photos are their own views below.
        panorama = first is not None and first.width() >= PANORAMA_ASPECT * first.height()
        self.strip.setVisible(first is None or panorama)
        if first is None:
            self.strip.setPixmap(QPixmap())
            self.strip.setText("no image in the cache" if point.paths else "no imagery")
        else:
            self.strip.setPixmap(first)
        for index, path in enumerate(point.paths):
            column = QVBoxLayout()
            picture = QLabel()
            small = first.scaledToWidth(VIEW_WIDTH) if index == 0 and first else None
            small = small or scaled_image(path, VIEW_WIDTH)
            if small is None:
                picture.setText(f"{Path(path).name}\nnot readable")
            else:
                picture.setPixmap(small)
            picture.setToolTip(path)
            text = QLabel()
            text.setTextFormat(Qt.TextFormat.RichText)  # escaped messages, as the status line
            text.setWordWrap(True)
            text.setMaximumWidth(VIEW_WIDTH)
            holder = QWidget()
            holder.setLayout(column)
            column.addWidget(picture)
            column.addWidget(text)
            self.views_row.addWidget(holder)
            self.view_images.append(holder)
            self.view_texts.append(text)

    def _show_details(self) -> None:
        point = self.point
        if point is None:
            return
        parts = []
        readings = self.view_scores.readings.get(self.layer.id(), {}).get(point.fid)
        if point.pooled:
            parts.append("<h4>Pooled reading (all views)</h4>")
            parts.append(_reading_html(*zip(*point.pooled)))
            if point.margin is not None:
                parts.append(f"<p>Margin (first − second): {point.margin:.3f}</p>")
        for index, text in enumerate(self.view_texts):
            view = (readings or {}).get("views", [])
            if index < len(view):
                if view[index]["status"] == "ok":
                    text.setText(_reading_html(view[index]["labels"], view[index]["probabilities"]))
                else:
                    text.setText(html.escape(view[index]["status"]))
            else:
                text.setText(self._readings_state())
        if point.paths:
            names = ", ".join(html.escape(Path(p).name) for p in point.paths)
            parts.append(f"<p><b>Views</b> ({len(point.paths)}): {names}</p>")
        facts = [
            ("Captured", point.captured),
            ("Source", point.source),
            ("Licence", point.licence),
            ("Attribution", point.creator),
            ("Image id", point.image_id),
            ("Your label", point.label_user),
        ]
        parts.append(
            "<p>" + "<br/>".join(f"<b>{k}</b>: {html.escape(v)}" for k, v in facts if v) + "</p>"
        )
        if point.link:
            link = html.escape(point.link, quote=True)
            words = html.escape(point.link_text)
            parts.append(f"<p><a href='{link}'>{words}</a></p>")
        if self._settings.get("untrained"):
            parts.append("<p><i>Random, untrained weights: the labels mean nothing.</i></p>")
        self.details.setHtml("".join(parts))  # noqa: QGS202 (a QTextBrowser returns nothing)

    def _readings_state(self) -> str:
        layer_id = self.layer.id() if self.layer is not None else ""
        if layer_id in self.view_scores.errors:
            return html.escape(self.view_scores.errors[layer_id])
        return "reading…" if self.view_scores.pending(layer_id) else ""

    def _readings_arrived(self, layer_id: str) -> None:
        if self.layer is not None and self.layer.id() == layer_id:
            self._show_details()

    def stop_tasks(self) -> None:
        """End the background work (before the dock or QGIS goes)."""
        self.prefetch.stop()
        self.view_scores.stop()

    # -- stepping --------------------------------------------------------------------------------
    def _order_changed(self, *_) -> None:
        chosen = self.order_box.currentData()
        if self.layer is None or chosen is None:
            return
        self.order = step_order(self.layer, *chosen)

    def step(self, offset: int) -> int | None:
        """Show the next (``offset`` 1) or previous (-1) point in the chosen order."""
        if self.layer is None or not self.order:
            return None
        if self.point is None or self.point.fid not in self.order:
            position = 0 if offset > 0 else len(self.order) - 1
        else:
            position = (self.order.index(self.point.fid) + offset) % len(self.order)
        self.show_point(self.layer, self.order[position])
        return self.order[position]

    # -- correcting ------------------------------------------------------------------------------
    def set_label(self, clear: bool = False) -> None:
        """Store the chosen label (or none) as the point's label_user: one undoable edit."""
        if self.layer is None or self.point is None:
            return
        label = None if clear else self.label_box.currentText()
        try:
            set_user_label(self.layer, self.point.fid, label)
        except MusError as exc:
            self.status.setText(html.escape(str(exc)))
            return
        self.show_point(self.layer, self.point.fid)
