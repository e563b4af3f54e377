"""Stand-in for QGIS 4's ``qgis`` package, for the PyQt6 smoke test only (see
tests/qgis/test_pyqt6_smoke.py for what each part replaces and why).

``qgis.PyQt`` hands out PyQt6's own modules as QGIS 4's shim does; ``qgis.core``, ``qgis.gui``
and ``qgis.utils`` are thin stand-ins for the QGIS classes the plugin's Qt modules import. This
folder is put first on ``sys.path`` of the smoke test's subprocess, never of a QGIS process.
"""
