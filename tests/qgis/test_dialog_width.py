"""Every algorithm's dialog shows its parameters without a horizontal scroll bar at QGIS's
default size: labels stay short (the detail is in each parameter's help, shown as its tooltip and
on the Help page), and so do the choices of every list."""

from __future__ import annotations

import pytest
from qgis.core import QgsApplication

DEFAULT_SIZE = (688, 523)  # QGIS's size for an algorithm dialog opened the first time
# Room left for fonts a little wider than this machine's (Windows' Segoe UI, macOS's SF).
MARGIN = 0.94


def mus_algorithm_ids():
    return sorted(
        a.id()
        for a in QgsApplication.processingRegistry().algorithms()
        if a.provider().id() == "mus" and a.id() != "mus:pipeline"
    )


@pytest.fixture
def dialog_iface(qgis_iface, monkeypatch):
    """The file and layer widgets ask the iface for the browser's model, which pytest-qgis's
    stand-in iface lacks."""
    from qgis.gui import QgsBrowserGuiModel

    model = QgsBrowserGuiModel()
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: model, raising=False)
    return qgis_iface


def open_at_default_size(algorithm_id):
    from processing.gui.AlgorithmDialog import AlgorithmDialog

    algorithm = QgsApplication.processingRegistry().createAlgorithmById(algorithm_id)
    dialog = AlgorithmDialog(algorithm)
    dialog.resize(*DEFAULT_SIZE)
    dialog.show()
    for _ in range(3):  # the panel's layout settles over a few rounds of events
        QgsApplication.processEvents()
    return dialog


def parameters_area(dialog):
    from qgis.PyQt.QtWidgets import QScrollArea

    areas = [area for area in dialog.findChildren(QScrollArea) if area.isVisible()]
    assert areas, "the dialog shows no parameters panel"
    return max(areas, key=lambda area: area.viewport().width())


def one_line_width(widget) -> int:
    """The width a label or list asks for when kept on one line. QGIS 3.40 and later let labels
    wrap (their size hint then says little about the text), 3.22 does not: the text's own width,
    measured with the label's font, is the same test on both."""
    from qgis.PyQt.QtWidgets import QLabel

    width = widget.minimumSizeHint().width()
    if isinstance(widget, QLabel) and widget.text():
        width = max(width, widget.fontMetrics().horizontalAdvance(widget.text()))
    return width


def too_wide(dialog) -> list:
    """The parameters' labels and lists wider than the panel leaves them (with the margin)."""
    from qgis.PyQt.QtWidgets import QComboBox, QLabel

    area = parameters_area(dialog)
    room = area.viewport().width() * MARGIN
    widgets = area.widget().findChildren(QLabel) + area.widget().findChildren(QComboBox)
    widths = [(one_line_width(widget), widget) for widget in widgets if widget.isVisible()]
    return sorted(
        (width, widget.text() if isinstance(widget, QLabel) else "")
        for width, widget in widths
        if width > room
    )


def test_no_algorithm_dialog_scrolls_sideways_at_its_default_size(mus_provider, dialog_iface):
    scrolling, crowded = {}, {}
    for algorithm_id in mus_algorithm_ids():
        dialog = open_at_default_size(algorithm_id)
        try:
            if parameters_area(dialog).horizontalScrollBar().isVisible():
                scrolling[algorithm_id] = parameters_area(dialog).viewport().width()
            if too_wide(dialog):
                crowded[algorithm_id] = too_wide(dialog)
        finally:
            dialog.close()
            dialog.deleteLater()
            QgsApplication.processEvents()
    assert not scrolling, scrolling
    assert not crowded, crowded


def test_a_label_too_long_for_the_dialog_is_caught(mus_provider, dialog_iface, monkeypatch):
    """The check above can fail: a label of the old length is caught."""
    from mus_qgis.processing.resample_to_grid import ResampleToGrid

    initialise = ResampleToGrid.initAlgorithm

    def with_a_long_label(self, config=None):
        initialise(self, config)
        self.parameterDefinition("AREA").setDescription(
            "Study area (empty: the points' extent, or any polygon layer you choose here)"
        )

    monkeypatch.setattr(ResampleToGrid, "initAlgorithm", with_a_long_label)
    dialog = open_at_default_size("mus:resampletogrid")
    try:
        assert [text for _, text in too_wide(dialog)] == [
            "Study area (empty: the points' extent, or any polygon layer you choose here) "
            "[optional]"
        ]
    finally:
        dialog.close()
        dialog.deleteLater()


def test_every_parameter_help_names_a_parameter_that_exists(mus_provider):
    """The help kept as data (resources/help/parameters.json) is for parameters that exist, and
    every label the dialogs shortened kept its detail there."""
    from mus_qgis.processing.base import _parameter_helps

    registry = QgsApplication.processingRegistry()
    every_name = set()
    for algorithm_name, helps in _parameter_helps().items():
        if algorithm_name.startswith("_") or algorithm_name == "*":
            continue
        algorithm = registry.algorithmById(f"mus:{algorithm_name}")
        names = {d.name() for d in algorithm.parameterDefinitions()}
        assert set(helps) <= names, (algorithm_name, set(helps) - names)
    for algorithm_id in mus_algorithm_ids():
        algorithm = registry.algorithmById(algorithm_id)
        every_name |= {d.name() for d in algorithm.parameterDefinitions()}
    assert set(_parameter_helps()["*"]) <= every_name
    classify = registry.algorithmById("mus:classifyclip")
    assert "{label}" in classify.parameterDefinition("TEMPLATES").help()
    assert (
        "Service keys"
        in registry.algorithmById("mus:fetchpanoramas").parameterDefinition("AUTH").help()
    )
    assert (
        "one of these four"
        in registry.algorithmById("mus:samplestreetcentroids").parameterDefinition("PLACE").help()
    )
