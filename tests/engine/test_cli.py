"""The command line: embed on one machine, score the store anywhere."""

from __future__ import annotations

import csv
import subprocess
import sys

from mus_qgis.engine.cli import main
from tests.conftest import AREZZO_PHOTOS, IMAGES, ROOT
from tests.engine.helpers import engine_cli_args


def test_embed_a_folder_then_score_the_store_without_images(
    tmp_path, tiny_checkpoint, capsys, monkeypatch
):
    from mus_qgis.engine.clip import classify

    args = engine_cli_args(tiny_checkpoint, tmp_path / "cache")
    assert main(["embed", str(IMAGES / "arezzo"), *args]) == 0
    assert "9 of 9 images embedded" in capsys.readouterr().out
    monkeypatch.setattr(classify, "CHUNK_ROWS", 4)  # written chunk by chunk, as a big store is

    out = tmp_path / "scores.csv"
    assert (
        main(["score", "--labels", "european_capitals", "--top-k", "2", "--out", str(out), *args])
        == 0
    )
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in AREZZO_PHOTOS)
    assert {"label_1", "label_2", "score_1", "prob_2", "margin"} <= rows[0].keys()
    assert all(float(r["score_1"]) >= float(r["score_2"]) for r in rows)


def test_score_images_with_own_labels_and_templates(tmp_path, tiny_checkpoint):
    labels = tmp_path / "mine.txt"
    labels.write_text("a market\na church\na bridge\n", encoding="utf-8")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{AREZZO_PHOTOS[0]}\n{tmp_path / 'missing.jpg'}\n", encoding="utf-8")
    out = tmp_path / "scores.csv"
    code = main(
        [
            "score",
            str(listing),
            "--labels",
            str(labels),
            "--template",
            "a photo of {label}",
            "--template",
            "a street near {label}",
            "--out",
            str(out),
            *engine_cli_args(tiny_checkpoint, tmp_path / "cache"),
        ]
    )
    assert code == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["status"] for r in rows] == [
        "ok",
        f"error: image {tmp_path / 'missing.jpg'} does not exist",
    ]
    assert rows[0]["label_1"] in {"a market", "a church", "a bridge"} and rows[1]["label_1"] == ""


def test_errors_are_one_clear_line(tmp_path, tiny_checkpoint, capsys):
    code = main(["score", "--labels", "no_such_set", *engine_cli_args(tiny_checkpoint, tmp_path)])
    assert code == 2
    assert "No built-in label set is called 'no_such_set'" in capsys.readouterr().err


def test_module_entry_point_lists_label_sets():
    done = subprocess.run(
        [sys.executable, "-m", "mus_qgis.engine", "labelsets"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=True,
    )
    assert "urban_atlas_2018" in done.stdout and "27 labels" in done.stdout
    # Each line starts with the index Processing takes for the set (LABEL_SET=10 in qgis_process).
    assert done.stdout.splitlines()[10].split()[:2] == ["10", "world_capitals"]


def test_rank_every_stored_embedding_with_groups(tmp_path, tiny_checkpoint, capsys):
    args = engine_cli_args(tiny_checkpoint, tmp_path / "cache")
    assert main(["embed", str(IMAGES / "arezzo"), *args]) == 0
    capsys.readouterr()
    code = main(
        [
            "rank",
            "--labels",
            "european_capitals",
            "--targets",
            "Rome",
            "--group",
            "Rome + Vatican City = Rome; Vatican City",
            *args,
        ]
    )
    assert code == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert len(rows) == 45 - 1  # Rome and Vatican City summed into one entry
    assert sum(int(r["first_places"]) for r in rows) == 9
    assert [int(r["rank"]) for r in rows] == list(range(1, 45))
    group = next(r for r in rows if r["label"] == "Rome + Vatican City")
    assert group["target"] == "1"
    total_probability = sum(float(r["mean_probability"]) for r in rows)
    assert abs(total_probability - 1.0) < 1e-4  # exact probabilities over the whole set


def test_ranking_an_empty_store_says_what_to_do_first(tmp_path, tiny_checkpoint, capsys):
    code = main(
        ["rank", "--labels", "european_capitals", *engine_cli_args(tiny_checkpoint, tmp_path / "c")]
    )
    assert code == 2
    assert "embed or classify images first" in capsys.readouterr().err
