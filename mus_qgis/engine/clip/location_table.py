"""Locations from a table file: GeoPackage, CSV or Parquet with image paths (the fetch output).

The fields are those CLIP-classify reads: ``image_paths`` (one path or several joined by ``;``),
and where present the street ``bearing`` and the panorama's ``image_heading`` that aim the views.
Relative paths are taken relative to the table's folder.
"""

from __future__ import annotations

from pathlib import Path

from ...shared.errors import MusError
from ...shared.image_paths import parse_image_paths
from .embedding import Location

TABLE_SUFFIXES = {".gpkg", ".csv", ".parquet"}


def is_location_table(path: str) -> bool:
    return Path(path).suffix.lower() in TABLE_SUFFIXES and Path(path).is_file()


def read_location_table(
    path: str | Path,
    paths_field: str = "image_paths",
    bearing_field: str = "bearing",
    heading_field: str = "image_heading",
    id_field: str = "",
) -> tuple[list[str], list[Location]]:
    """(ids, locations) of every row; a row without images is a location with none."""
    path = Path(path)
    frame = _read(path)
    if paths_field not in frame.columns:
        raise MusError(
            f"The location table {path} has no field {paths_field!r} with image paths (fields: "
            f"{', '.join(map(str, frame.columns))}): name the field with --paths-field."
        )
    if id_field and id_field not in frame.columns:
        raise MusError(f"The location table {path} has no id field {id_field!r}.")
    ids = [str(value) for value in frame[id_field]] if id_field else [str(i) for i in frame.index]
    folder = str(path.parent)
    bearings = _angles(frame, bearing_field)
    headings = _angles(frame, heading_field)
    locations = [
        Location(parse_image_paths(value, folder), bearing, heading)
        for value, bearing, heading in zip(frame[paths_field], bearings, headings, strict=True)
    ]
    return ids, locations


def _read(path: Path):
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".gpkg":
            import pyogrio

            return pyogrio.read_dataframe(path, read_geometry=False)
    except MusError:
        raise
    except Exception as exc:
        raise MusError(f"Cannot read the location table {path} ({exc}).") from exc
    raise MusError(
        f"The location table {path} is not a GeoPackage, CSV or Parquet file (.gpkg, .csv, "
        ".parquet)."
    )


def _angles(frame, field: str) -> list[float | None]:
    if field not in frame.columns:
        return [None] * len(frame)
    angles = []
    for value in frame[field]:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        angles.append(None if number != number else number)
    return angles
