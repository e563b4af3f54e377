"""What a run left on a layer: the settings a classification recorded, read by every reading,
the inspector and the figures."""

from __future__ import annotations

import json


def classification_settings(layer) -> dict:
    """The run settings this algorithm left on a layer (as written by style_classified_layer and
    _layer_metadata); {} for a layer it did not make."""
    settings = layer.customProperty("mus_qgis/classification")
    if not settings:
        keywords = layer.metadata().keywords().get("mus_qgis") or []
        settings = keywords[0] if keywords else ""
    try:
        value = json.loads(settings) if settings else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
