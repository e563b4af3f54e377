"""Stand-in for QGIS 4's ``qgis.utils``: only ``iface``, which the smoke harness sets to its
stand-in interface (QGIS sets it to the desktop's)."""

iface = None
