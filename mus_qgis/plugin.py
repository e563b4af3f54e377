"""The plugin shell: registers the Processing provider, and nothing heavier."""

from __future__ import annotations

from qgis.core import QgsApplication

from .processing.provider import MusProvider


class MusPlugin:
    """What QGIS loads: its only job is to add the ``mus`` Processing provider."""

    def __init__(self, iface=None) -> None:
        self.iface = iface
        self.provider: MusProvider | None = None

    def initProcessing(self) -> None:
        """Register the provider (also called by qgis_process, which has no GUI)."""
        if self.provider is None:
            self.provider = MusProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        """Set up the plugin in the QGIS desktop."""
        self.initProcessing()

    def unload(self) -> None:
        """Remove the provider when the plugin is unloaded or reloaded."""
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
