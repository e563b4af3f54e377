"""Stage 5: the worker, the process QGIS sends jobs to, and the environment it runs in.

``protocol`` defines the JSON lines both ends speak, ``server`` is the worker's loop (run by
``python -m mus_qgis.engine worker`` in the engine environment), ``jobs`` the work it can do,
``client`` the QGIS end (standard library only, so QGIS's process can import it) and
``environment`` the set-up of the engine's virtual environment (standard library only, for the same
reason: QGIS's Python creates it).
"""
