"""Locations from a table file (the fetch output), for embed with or without --ray."""

from __future__ import annotations

import os

from mus_qgis.engine import cli
from mus_qgis.engine.clip.location_table import read_location_table
from tests.conftest import AREZZO_PHOTOS, PANORAMAS, TINY_MODEL_CONFIG


def write_points(folder) -> os.PathLike:
    table = folder / "points.csv"
    photo = os.path.relpath(AREZZO_PHOTOS[0], folder)
    table.write_text(
        "fid,image_paths,bearing,image_heading\n"
        f"1,{photo};{PANORAMAS[0]},90,\n"
        f"2,{AREZZO_PHOTOS[1]},,\n"
        "3,,,\n",
        encoding="utf-8",
    )
    return table


def test_locations_from_the_fetch_output_table(tmp_path):
    ids, locations = read_location_table(write_points(tmp_path), id_field="fid")
    assert ids == ["1", "2", "3"]
    photo = os.path.join(str(tmp_path), os.path.relpath(AREZZO_PHOTOS[0], tmp_path))
    assert locations[0].paths == (photo, str(PANORAMAS[0]))
    assert locations[0].bearing == 90.0 and locations[0].heading is None
    assert locations[2].paths == ()


def test_embed_reads_a_location_table(tmp_path, tiny_checkpoint, capsys):
    model = ["--model", str(TINY_MODEL_CONFIG), "--checkpoint", str(tiny_checkpoint)]
    table = write_points(tmp_path)
    code = cli.main(["embed", str(table), *model, "--device", "cpu", "--cache-dir", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 0
    assert "2 of 3 locations embedded" in captured.out
    assert "(no image): no image" in captured.err
