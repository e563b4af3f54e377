"""mus_qgis: Multimodal Urban Studies for QGIS.

QGIS calls :func:`classFactory`; it imports only the light plugin shell, so that QGIS starts
fast and the plugin loads even where the engine's packages (osmnx, torch, open_clip) are missing.
"""


def classFactory(iface):
    """Create the plugin for QGIS."""
    from .plugin import MusPlugin

    return MusPlugin(iface)
