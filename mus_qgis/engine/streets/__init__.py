"""Stage 1: street sample points of a study area (osmnx, shapely, pyproj)."""
