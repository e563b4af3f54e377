"""Plain data and helpers both sides read: the QGIS side (Python 3.9+, nothing heavy) and the
engine. Held to the QGIS side's rules: the standard library only, no QGIS, no engine import.
"""
