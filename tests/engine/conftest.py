"""Engine tests run without QGIS: importing qgis or Qt from here on fails loudly."""

import sys

for _name in ("qgis", "PyQt5", "PyQt6", "sip"):
    sys.modules[_name] = None  # type: ignore[assignment]
