"""The mus_qgis engine: the science of the plugin, in plain Python.

Nothing in this package imports QGIS or Qt, so it runs inside QGIS, from the command line on a
server, or in a test. Heavy packages (osmnx, torch, open_clip) are imported by the modules that need
them, never here, so that importing the engine is cheap.
"""
