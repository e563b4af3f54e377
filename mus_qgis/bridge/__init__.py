"""The QGIS side's shared room and its one way to the engine.

``engine`` runs a job in the engine's worker with Processing's feedback (and knows which Python
runs it, and the plugin's cache folder); ``layer_settings`` reads the run settings a
classification left on a layer; ``qgis_enums`` names QGIS's enums as QGIS 3 and 4 both spell
them. The processing algorithms and the inspector share code through here, never through each
other.
"""
