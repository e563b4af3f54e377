"""Which pixels a provider's terms ask a study to delete once embedded, and only those."""

from __future__ import annotations

from mus_qgis.shared.imagery_terms import delete_pixels, pixels_to_delete


def test_only_embedded_street_view_files_the_fetch_wrote_are_chosen(tmp_path):
    fetched = tmp_path / "cache" / "imagery" / "streetview" / "ab" / "pano1"
    views = [str(fetched / f"h{h:05.1f}.jpg") for h in (0.0, 90.0)]
    rows = [
        ("streetview", views, "ok"),
        (
            "streetview",
            [str(tmp_path / "cache/imagery/streetview/cd/pano2/h000.0.jpg")],
            "error: x",
        ),
        ("streetview", [str(tmp_path / "my photos" / "street.jpg")], "ok"),  # not the fetch's
        ("mapillary", [str(tmp_path / "cache/imagery/mapillary/ef/1/panorama.jpg")], "ok"),
        ("local", [str(tmp_path / "photos/a.jpg")], "ok"),
        ("", [str(tmp_path / "x.jpg")], "ok"),
        ("streetview", views, "ok"),  # a second point on the same panorama
    ]
    assert pixels_to_delete(rows) == views


def test_deleting_removes_the_files_and_their_emptied_folder(tmp_path):
    folder = tmp_path / "imagery" / "streetview" / "ab" / "pano1"
    folder.mkdir(parents=True)
    paths = []
    for name in ("a.jpg", "b.jpg"):
        (folder / name).write_bytes(b"jpeg")
        paths.append(str(folder / name))
    deleted, failed = delete_pixels([*paths, str(folder / "gone.jpg")])
    assert (deleted, failed) == (2, [])
    assert not folder.exists() and folder.parent.exists()
    assert delete_pixels(paths) == (0, [])  # a second run: already gone
