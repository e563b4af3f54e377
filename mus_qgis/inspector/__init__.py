"""The street inspector: a point's views and the model's reading of them, on the map.

``point`` reads what a classified layer holds about a point, ``view_scores`` asks the engine for
each view's reading, ``correction`` stores the user's label; ``dock`` and ``map_tool`` are the
thin GUI over them.
"""
