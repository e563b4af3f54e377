"""The streets' job: street centroids of a study area."""

from __future__ import annotations

from pathlib import Path

from ...shared.schemas.streets import SampleStreetsParams, SampleStreetsResult
from ..deps import require
from ..jobs import job


@job("sample_streets", params=SampleStreetsParams, result=SampleStreetsResult)
def sample_streets(params: SampleStreetsParams, progress) -> SampleStreetsResult:
    """Street centroids of a study area, written as a GeoPackage layer (EPSG:4326)."""
    require("shapely", "osmnx", "geopandas", "pyogrio", "osmium")
    import shapely

    from .centroids import StudyArea, sample_street_centroids
    from .osm_source import NetworkServices

    services = NetworkServices(**params.services.to_dict())
    area = StudyArea(
        place=params.place or None,
        polygon=shapely.from_wkt(params.polygon_wkt) if params.polygon_wkt else None,
        osm_file=Path(params.osm_file) if params.osm_file else None,
    )
    result = sample_street_centroids(
        area,
        classes=params.classes,
        merge_distance_m=float(params.merge_distance_m),
        projected_crs=params.projected_crs or None,
        services=services,
        progress=progress,
    )
    output = params.output
    # GeoPackage 1.2: QGIS 3.22's GDAL warns about the 1.4 that pyogrio writes by default.
    result.points.to_file(
        output,
        layer="points",
        driver="GPKG",
        engine="pyogrio",
        dataset_options={"VERSION": "1.2"},
    )
    return SampleStreetsResult(
        output=output,
        layer="points",
        segments_total=result.segments_total,
        segments_selected=result.segments_selected,
        segments_excluded=result.segments_excluded,
        locations=result.locations,
        excluded_by_class=dict(result.excluded_by_class),
        areas_selected=result.areas_selected,
        directed_edges=result.directed_edges,
    )
