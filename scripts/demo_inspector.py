"""The demo's street inspector note: where the inspector starts on the demo project, and how to
open it (the inspector is a desktop tool: qgis_process has no part in it)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path


def least_certain_point(gpkg: Path, table: str) -> tuple | None:
    """The classified point with the lowest margin between its first two labels."""
    with closing(sqlite3.connect(f"file:{gpkg}?mode=ro", uri=True)) as db:
        return db.execute(
            f'SELECT fid, label_1, prob_1, label_2, prob_2, margin FROM "{table}" '
            "WHERE margin IS NOT NULL ORDER BY margin, fid LIMIT 1"
        ).fetchone()


def print_inspector_note(gpkg: Path, table: str, title: str, project: Path) -> None:
    point = least_certain_point(gpkg, table)
    print(
        f"Street inspector: open {project} in QGIS, click 'Street inspector' on the Multimodal "
        f"Urban Studies toolbar, then a point of '{title}' (hover a point for its map tip; turn "
        "map tips on in View ▸ Map Tips); N and P step through the points, lowest margin first."
    )
    if point is not None:
        fid, first, p1, second, p2, margin = point
        print(
            f"  It starts at point {fid}, the least certain: {first} ({p1:.0%}) against "
            f"{second} ({p2:.0%}), margin {margin:.3f}; the dock's 'Right label' stores a "
            "correction in the layer's label_user field (undo with Ctrl+Z)."
        )
