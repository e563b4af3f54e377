"""How a report names the layers it read and where they lie, so that a reader can tell which
study's data a table holds, whatever the file they came in is called."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCsException,
    QgsProject,
    QgsProviderRegistry,
)


def layer_title(layer) -> str:
    """The layer's name as the user sees it, except where QGIS made that name from a file that
    holds several layers: qgis_process names 'demo.gpkg|layername=label_grid' 'demo', which may
    be another study's name; the layer's own table then says which of them it is."""
    parts = QgsProviderRegistry.instance().decodeUri(layer.providerType(), layer.source())
    own, path = parts.get("layerName") or "", parts.get("path") or ""
    if own and path and layer.name() == Path(path).stem:
        return own
    return layer.name()


def where_words(layer) -> str:
    """'label_grid: 64 features, 11.8712–11.8790° E, 43.4601–43.4663° N': the layer, how many
    features, and the box they lie in, in degrees (the city a reader checks at a glance)."""
    count = layer.featureCount()
    words = f"{layer_title(layer)}: {count} feature{'' if count == 1 else 's'}"
    extent = layer.extent()
    if not layer.crs().isValid() or extent.isNull() or (extent.isEmpty() and count == 0):
        return words
    wgs84 = QgsCoordinateReferenceSystem("EPSG:4326")
    transform = QgsCoordinateTransform(layer.crs(), wgs84, QgsProject.instance())
    try:
        box = transform.transformBoundingBox(extent)
    except QgsCsException:
        return words
    return (
        f"{words}, {_degrees(box.xMinimum(), box.xMaximum(), 'E', 'W')}, "
        f"{_degrees(box.yMinimum(), box.yMaximum(), 'N', 'S')}"
    )


def _degrees(low: float, high: float, positive: str, negative: str) -> str:
    def one(value: float) -> str:
        return f"{abs(value):.4f}"

    if low >= 0 or high < 0:
        hemisphere = positive if low >= 0 else negative
        first, last = (low, high) if low >= 0 else (high, low)
        if one(first) == one(last):
            return f"{one(first)}° {hemisphere}"
        return f"{one(first)}–{one(last)}° {hemisphere}"
    return f"{one(low)}° {negative} – {one(high)}° {positive}"


def imagery_credits(layers) -> list:
    """Each feature's imagery source, licence and creator, from the fields Fetch panoramas
    writes (and every layer made from it keeps): what a report's attribution block credits."""
    from ..shared.attribution import Credit
    from .base import attribute_text as _text

    credits = []
    for layer in layers:
        if layer is None:
            continue
        names = layer.fields().names()
        if "source" not in names:
            continue
        for feature in layer.getFeatures():
            source = _text(feature["source"])
            if not source:
                continue
            credits.append(
                Credit(
                    source,
                    _text(feature["licence"]) if "licence" in names else "",
                    _text(feature["creator"]) if "creator" in names else "",
                )
            )
    return credits
