"""Bad and hostile inputs to CLIP classification and its embedding store: each gets a clear
error naming the input and what to do, or a per-point status; the rest completes; nothing
stored before is lost, and no damaged stored vector ever gives a score.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mus_qgis.engine.cli import main
from mus_qgis.engine.clip import classify as classify_module
from mus_qgis.engine.clip.classify import (
    classify_locations,
    rank_stored_embeddings,
    score_stored_embeddings,
    store_key,
)
from mus_qgis.engine.clip.embedding import Location
from mus_qgis.engine.clip.models import load_model
from mus_qgis.engine.clip.store import EmbeddingStore
from mus_qgis.engine.clip.views import decoded_photo
from mus_qgis.engine.imagery.panorama import ViewSetting
from mus_qgis.shared.errors import EmbeddingStoreError, LabelSetError, MusError
from mus_qgis.shared.labels import builtin_label_set, read_label_file
from mus_qgis.shared.progress import LoggingProgress
from tests.conftest import AREZZO_PHOTOS, ENGINE_PYTHON, ROOT, TINY_MODEL_CONFIG
from tests.engine.helpers import engine_cli_args, png_claiming

LABELS = "european_capitals"
PHOTOS = AREZZO_PHOTOS[:3]


@pytest.fixture(scope="module")
def tiny(tiny_spec):
    return load_model(tiny_spec)


@pytest.fixture(scope="module")
def classified(tiny, tmp_path_factory):
    """Three photos (copied, so a case may remove them) classified once into a store."""
    base = tmp_path_factory.mktemp("classified")
    images = base / "images"
    images.mkdir()
    paths = []
    for photo in PHOTOS:
        shutil.copy(photo, images / photo.name)
        paths.append(str(images / photo.name))
    run = classify_locations(
        [Location((p,)) for p in paths], builtin_label_set(LABELS), tiny.spec, cache_dir=base
    )
    return base, paths, run


@pytest.fixture
def copy_of_classified(classified, tmp_path):
    """A case's own copy of the images and the store, at the same image paths' names."""
    base, paths, run = classified
    cache = tmp_path / "cache"
    shutil.copytree(base / "embeddings", cache / "embeddings")
    return cache, paths, run


def store_file(cache: Path, model, setting=None, fast_decode=True) -> Path:
    setting = setting or ViewSetting()
    with EmbeddingStore.under(
        cache / "embeddings", model.identity, store_key(setting, fast_decode)
    ) as store:
        return store.path


def digest_of(path: str) -> str:
    import hashlib

    return hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()


def tamper(db_path: Path, key: str, how: str) -> None:
    with closing(sqlite3.connect(db_path)) as db, db:
        (blob,) = db.execute("SELECT vector FROM embeddings WHERE key = ?", (key,)).fetchone()
        if how == "zeros":
            new = bytes(len(blob))
        elif how == "nan":
            new = np.full(len(blob) // 4, np.nan, dtype="<f4").tobytes()
        elif how == "truncated":
            new = blob[: len(blob) // 2]
        elif how == "another unit vector":
            vector = np.frombuffer(blob, dtype="<f4")[::-1].copy()
            new = vector.tobytes()
        elif how == "swapped":
            (other,) = db.execute(
                "SELECT vector FROM embeddings WHERE key != ? LIMIT 1", (key,)
            ).fetchone()
            new = other
        db.execute("UPDATE embeddings SET vector = ? WHERE key = ?", (new, key))


def classify(tiny, paths, cache, progress=None, **options):
    return classify_locations(
        [Location((p,)) for p in paths],
        builtin_label_set(LABELS),
        tiny.spec,
        cache_dir=cache,
        progress=progress or LoggingProgress(),
        **options,
    )


# -- 1. a store that lies --------------------------------------------------------------------
@pytest.mark.parametrize("how", ["zeros", "nan", "truncated", "another unit vector", "swapped"])
def test_a_tampered_vector_is_detected_named_and_computed_again(tiny, copy_of_classified, how):
    cache, paths, first = copy_of_classified
    db_path = store_file(cache, tiny)
    tamper(db_path, digest_of(paths[1]), how)
    progress = LoggingProgress()
    run = classify(tiny, paths, cache, progress)
    assert run.embeddings.status == ["ok"] * 3
    # The same vectors and scores as before the store was damaged, not uniform probabilities.
    np.testing.assert_allclose(run.embeddings.vectors, first.embeddings.vectors, atol=1e-6)
    np.testing.assert_allclose(run.scores.probability, first.scores.probability, atol=1e-5)
    assert run.embeddings.counts["decoded"] == 1
    report = next(m for m in progress.messages if "damaged" in m)
    assert str(db_path) in report and paths[1] in report and paths[0] not in report
    # The store is mended: the next run decodes nothing.
    again = classify(tiny, paths, cache)
    assert (
        again.embeddings.counts["decoded"] == 0 and again.embeddings.counts["damaged in store"] == 0
    )


def test_a_tampered_vector_whose_image_is_gone_costs_its_point_only(tiny, copy_of_classified):
    cache, paths, first = copy_of_classified
    tamper(store_file(cache, tiny), digest_of(paths[1]), "zeros")
    moved = Path(paths[1]).with_suffix(".moved")
    Path(paths[1]).rename(moved)
    progress = LoggingProgress()
    try:
        run = classify(tiny, paths, cache, progress)
    finally:
        moved.rename(paths[1])
    status = run.embeddings.status
    assert status[0] == status[2] == "ok"
    assert status[1].startswith(f"error: the stored embedding of {paths[1]} is damaged")
    assert "does not exist" in status[1]
    assert run.scores.top_index[1, 0] == -1 and np.isnan(run.scores.probability[1]).all()
    np.testing.assert_allclose(run.scores.probability[[0, 2]], first.scores.probability[[0, 2]])
    # The log's count is the layer's count.
    assert any(m.startswith("2 of 3 locations classified, 1 not") for m in progress.messages)


def test_scoring_the_store_mends_damage_when_the_images_are_there(tiny, copy_of_classified):
    cache, paths, first = copy_of_classified
    tamper(store_file(cache, tiny), digest_of(paths[0]), "zeros")
    stored = score_stored_embeddings([builtin_label_set(LABELS)], tiny.spec, ViewSetting(), cache)
    order = [stored.paths.index(p) for p in paths]
    np.testing.assert_allclose(
        stored.scores[0].all_probability[order], first.scores.all_probability, atol=1e-5
    )


def test_the_store_read_in_chunks_mends_damage_and_gives_the_same_numbers(
    tiny, copy_of_classified, monkeypatch
):
    cache, paths, first = copy_of_classified
    tamper(store_file(cache, tiny), digest_of(paths[0]), "zeros")
    monkeypatch.setattr(classify_module, "CHUNK_ROWS", 2)  # several chunks of the 3 images
    label_set = builtin_label_set(LABELS)
    (ranking,) = rank_stored_embeddings([label_set], tiny.spec, ViewSetting(), cache).rankings
    assert ranking.count == len(paths)
    expected = first.scores.all_probability.astype(np.float64)
    np.testing.assert_allclose(ranking.mean_probability, expected.mean(axis=0), atol=1e-5)
    np.testing.assert_array_equal(
        ranking.first_places, np.bincount(first.scores.top_index[:, 0], minlength=len(label_set))
    )
    stored = score_stored_embeddings([label_set], tiny.spec, ViewSetting(), cache, top_k=2)
    order = [stored.paths.index(p) for p in paths]
    np.testing.assert_allclose(
        stored.scores[0].all_probability[order], first.scores.all_probability, atol=1e-5
    )
    assert stored.scores[0].top_index.shape == (len(paths), 2)


def shard_the_store(cache: Path, model, swap: tuple[str, str]) -> None:
    """Move the store's SQLite rows into an Arrow shard, as a cluster's run leaves them, then
    exchange two rows' vectors in the file, their checksums kept (a swapped row: both still
    unit vectors, so only the checksums can tell)."""
    import pyarrow as pa  # here: QGIS's tests import this module's image helpers, without Arrow
    import pyarrow.feather as feather

    setting_key = store_key(ViewSetting())
    with EmbeddingStore.under(cache / "embeddings", model.identity, setting_key) as store:
        keys, matrix, _ = store.all()
        views = dict(store._query("SELECT key, views FROM embeddings"))
        files = [(path, None, None, facts) for path, facts in store.files().items()]
        store.shards.write(
            [(key, vector, views[key]) for key, vector in zip(keys, matrix, strict=True)], files
        )
        path = store.shards.shard_paths()[0]
    table = feather.read_table(path, memory_map=False)
    order = table.column("key").to_pylist()
    vectors = table.column("vector").to_pylist()
    first, second = order.index(swap[0]), order.index(swap[1])
    vectors[first], vectors[second] = vectors[second], vectors[first]
    column = pa.array(vectors, table.schema.field("vector").type)
    table = table.set_column(table.column_names.index("vector"), "vector", column)
    feather.write_feather(table, path, compression="uncompressed")
    with closing(sqlite3.connect(store_file(cache, model))) as db, db:
        db.execute("DELETE FROM embeddings")
        db.execute("DELETE FROM files")


@pytest.mark.parametrize("images_there", [True, False])
def test_swapped_vectors_in_a_shard_are_caught_by_their_checksums(
    tiny, copy_of_classified, images_there
):
    cache, paths, first = copy_of_classified
    a, b = digest_of(paths[0]), digest_of(paths[1])
    shard_the_store(cache, tiny, swap=(a, b))
    label_set = builtin_label_set(LABELS)
    moved = [Path(p).with_suffix(".moved") for p in paths[:2]]
    if not images_there:
        for path, aside in zip(paths, moved):
            Path(path).rename(aside)
    try:
        if images_there:  # mended from the images: each image's own numbers again
            stored = score_stored_embeddings([label_set], tiny.spec, ViewSetting(), cache)
            order = [stored.paths.index(p) for p in paths]
            np.testing.assert_allclose(
                stored.scores[0].all_probability[order], first.scores.all_probability, atol=1e-5
            )
        else:
            for read in (rank_stored_embeddings, score_stored_embeddings):
                with pytest.raises(EmbeddingStoreError, match="checksum mismatch") as raised:
                    read([label_set], tiny.spec, ViewSetting(), cache)
                assert paths[0] in str(raised.value) and paths[1] in str(raised.value)
    finally:
        for path, aside in zip(paths, moved):
            if aside.exists():
                aside.rename(path)


@pytest.mark.parametrize("read", [score_stored_embeddings, rank_stored_embeddings])
def test_scoring_the_store_refuses_damage_it_cannot_mend(tiny, copy_of_classified, read):
    cache, paths, _ = copy_of_classified
    db_path = store_file(cache, tiny)
    tamper(db_path, digest_of(paths[0]), "nan")
    moved = Path(paths[0]).with_suffix(".moved")
    Path(paths[0]).rename(moved)
    try:
        with pytest.raises(EmbeddingStoreError) as raised:
            read([builtin_label_set(LABELS)], tiny.spec, ViewSetting(), cache)
    finally:
        moved.rename(paths[0])
    message = str(raised.value)
    assert str(db_path) in message and paths[0] in message
    assert "embed or classify those images again" in message and "move the store aside" in message


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_store_file_is_refused_with_what_to_do(tiny, copy_of_classified, damage):
    cache, paths, _ = copy_of_classified
    db_path = store_file(cache, tiny)
    data = db_path.read_bytes()
    if damage == "garbage":
        db_path.write_bytes(b"not a database at all" * 500)
    else:
        # Cut inside the table pages, past the header: SQLite opens it, reading fails.
        with closing(sqlite3.connect(db_path)) as db, db:
            page = db.execute("PRAGMA page_size").fetchone()[0]
        db_path.write_bytes(data[: 2 * page + 100])
    with pytest.raises(EmbeddingStoreError) as raised:
        classify(tiny, paths, cache)
    message = str(raised.value)
    assert f"The embedding store {db_path} is damaged" in message
    assert "Move it aside (or delete it) and run again" in message


def test_an_old_store_without_checksums_is_upgraded_and_its_bad_vector_redone(
    tiny, copy_of_classified
):
    cache, paths, first = copy_of_classified
    db_path = store_file(cache, tiny)
    with (
        closing(sqlite3.connect(db_path)) as db,
        db,
    ):  # the store as versions before checksums wrote it
        db.execute("ALTER TABLE embeddings DROP COLUMN checksum")
        db.execute("DELETE FROM meta WHERE name = 'checksums'")
    tamper(db_path, digest_of(paths[2]), "zeros")
    progress = LoggingProgress()
    run = classify(tiny, paths, cache, progress)
    assert run.embeddings.counts["decoded"] == 1  # only the bad one; the rest kept
    np.testing.assert_allclose(run.embeddings.vectors, first.embeddings.vectors, atol=1e-6)
    assert any(
        "written before stores kept checksums: 2 stored embeddings passed" in m
        for m in progress.messages
    )
    with closing(sqlite3.connect(db_path)) as db, db:
        assert db.execute("SELECT count(*) FROM embeddings WHERE checksum IS NULL").fetchone() == (
            0,
        )


def test_a_tampered_prompt_vector_is_encoded_again(tiny, copy_of_classified):
    cache, paths, first = copy_of_classified
    prompts = store_file(cache, tiny).parent / "prompts.sqlite"
    with closing(sqlite3.connect(prompts)) as db, db:
        db.execute("UPDATE texts SET vector = zeroblob(length(vector))")
    run = classify(tiny, paths, cache)
    np.testing.assert_allclose(run.scores.probability, first.scores.probability, atol=1e-5)


# -- 3, 4. settings out of range ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--top-k", "0", "argument --top-k: must be 1 or more, not 0"),
        ("--top-k", "-2", "argument --top-k: must be 1 or more, not -2"),
        ("--views", "0", "argument --views: A panorama gives 1 to 36 views, not 0."),
        ("--views", "-4", "argument --views: A panorama gives 1 to 36 views, not -4."),
        ("--fov", "0", "argument --fov: A view's field of view must be 10° to 150°, not 0.0°."),
        ("--fov", "720", "argument --fov: A view's field of view must be 10° to 150°"),
        ("--fov", "nan", "argument --fov: A view's field of view must be 10° to 150°"),
        ("--pitch", "120", "argument --pitch: The pitch must be within ±90°, not 120.0°."),
        ("--batch-size", "0", "argument --batch-size: must be 1 or more, not 0"),
        ("--workers", "-1", "argument --workers: must be 1 or more, not -1"),
    ],
)
def test_cli_settings_out_of_range_name_the_option_and_range(
    tmp_path, tiny_checkpoint, capsys, option, value, message
):
    args = ["score", str(PHOTOS[0]), "--labels", LABELS, option, value]
    with pytest.raises(SystemExit) as raised:
        main([*args, *engine_cli_args(tiny_checkpoint, tmp_path)])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "embeddings").exists()  # refused before any work


def test_the_engine_refuses_top_k_below_one(tiny, tmp_path):
    with pytest.raises(MusError, match=r"top k\) must be 1 or more, not 0 \(TOP_K in QGIS"):
        classify(tiny, [str(PHOTOS[0])], tmp_path, top_k=0)


# -- 5. cache and store folders, paths ---------------------------------------------------------
@pytest.mark.parametrize("where", ["the cache itself", "a folder above it"])
def test_a_cache_path_that_is_a_file_is_a_clear_error(tmp_path, tiny_checkpoint, capsys, where):
    blocking = tmp_path / "cache.txt"
    blocking.write_text("my notes", encoding="utf-8")
    cache = blocking if where == "the cache itself" else blocking / "cache"
    args = ["embed", str(PHOTOS[0]), *engine_cli_args(tiny_checkpoint, cache)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{blocking} is a file, not a folder" in err and "--cache-dir" in err
    assert blocking.read_text(encoding="utf-8") == "my notes"


def as_another_user() -> list[str]:
    """A prefix that runs a command as an unprivileged user: root ignores permission bits."""
    if os.name != "posix" or os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv (util-linux): no way to be refused a write")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture
def shared_tmp(tiny_checkpoint):
    """A folder another user can read (pytest's own tmp is private to root) with the weights."""
    folder = Path(tempfile.mkdtemp(prefix="mus clip ñ "))
    folder.chmod(0o755)
    shutil.copy(tiny_checkpoint, folder / "tiny.pt")
    yield folder
    for root, dirs, _ in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
    shutil.rmtree(folder)


def run_cli(args: list[str], home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*as_another_user(), ENGINE_PYTHON, "-m", "mus_qgis.engine", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(home), "HF_HUB_OFFLINE": "1"},
    )


def read_only_tree(folder: Path) -> None:
    for root, dirs, files in os.walk(folder):
        for name in files:
            os.chmod(os.path.join(root, name), 0o444)
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o555)
    folder.chmod(0o555)


def test_a_read_only_store_is_used_and_left_as_it_was(shared_tmp):
    cache = shared_tmp / "cache"
    model = ["--model", str(TINY_MODEL_CONFIG), "--checkpoint", str(shared_tmp / "tiny.pt")]
    model += ["--device", "cpu", "--cache-dir", str(cache)]
    home = shared_tmp / "home"
    home.mkdir(mode=0o777)
    home.chmod(0o777)
    assert main(["embed", *map(str, PHOTOS[:2]), *model]) == 0  # by the store's owner
    store = next(cache.rglob("views4-*.sqlite"))
    before = {p: p.read_bytes() for p in cache.rglob("*") if p.is_file()}
    read_only_tree(cache)
    out = home / "scores.csv"
    done = run_cli(
        ["score", *map(str, PHOTOS), "--labels", LABELS, "--out", str(out), *model], home
    )
    assert done.returncode == 0, done.stderr
    assert f"The embedding store {store} is read-only" in done.stderr
    assert "new ones are computed but not saved" in done.stderr
    assert "prompts.sqlite" not in done.stderr
    rows = out.read_text(encoding="utf-8").splitlines()[1:]
    assert [line.split(",")[1] for line in rows] == ["ok"] * 3
    assert {p: p.read_bytes() for p in cache.rglob("*") if p.is_file()} == before


def test_a_read_only_folder_without_a_store_is_a_clear_error(shared_tmp):
    cache = shared_tmp / "cache"
    cache.mkdir()
    read_only_tree(cache)
    # The store alone (no model to load): the error is the one the CLI and QGIS show.
    code = (
        "import sys\n"
        "from mus_qgis.engine.clip.store import EmbeddingStore\n"
        "from mus_qgis.shared.errors import EmbeddingStoreError\n"
        "try:\n"
        f"    EmbeddingStore.under({str(cache)!r}, 'model', 'views4')\n"
        "except EmbeddingStoreError as exc:\n"
        "    sys.exit(str(exc))\n"
    )
    done = subprocess.run(
        [*as_another_user(), ENGINE_PYTHON, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(f"Cannot create the folder {cache / 'model'} for the embedding")
    assert "(Permission denied). Choose a folder you can write to (CACHE_FOLDER" in done.stderr
    assert list(cache.iterdir()) == []


def test_unicode_and_spaces_in_every_path_just_work(tmp_path, tiny_checkpoint):
    base = tmp_path / "città vecchia ünï 東京"
    images = base / "foto di strada"
    images.mkdir(parents=True)
    for photo in PHOTOS[:2]:
        shutil.copy(photo, images / f"piazza grande {photo.name}")
    labels = base / "etichette città.txt"
    labels.write_text("una piazza\nuna chiesa\nun vicolo\n", encoding="utf-8")
    out = base / "punteggi finali.csv"
    cache = base / "cache ñ"
    args = ["score", str(images), "--labels", str(labels), "--out", str(out)]
    assert main([*args, *engine_cli_args(tiny_checkpoint, cache)]) == 0
    rows = out.read_text(encoding="utf-8").splitlines()[1:]
    assert len(rows) == 2 and all(",ok," in row for row in rows)
    assert any(cache.rglob("*.sqlite"))


def test_an_output_folder_that_does_not_exist_is_refused_before_any_work(
    tmp_path, tiny_checkpoint, capsys
):
    out = tmp_path / "no such folder" / "scores.csv"
    args = ["score", str(PHOTOS[0]), "--labels", LABELS, "--out", str(out)]
    assert main([*args, *engine_cli_args(tiny_checkpoint, tmp_path / "cache")]) == 2
    assert f"The folder of --out {out} does not exist" in capsys.readouterr().err


# -- 6. label sets ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", b"", "is empty (it holds no label)"),
        ("comments.txt", b"# only a comment\n\n", "is empty (it holds no label)"),
        ("header only.csv", b"label,code,colour\n", "is empty (it holds no label)"),
        ("one.txt", b"Rome\n", "has a single label ('Rome', line 1)"),
        (
            "dupes.txt",
            b"Rome\nParis\nrome \nParis\n",
            "repeats 'Rome' (lines 1, 3); 'Paris' (lines 2, 4)",
        ),
        ("latin1.txt", "Roma\nMünchen\n".encode("latin-1"), "is not UTF-8 text (line 2:"),
        (
            "colour.csv",
            b"label,colour\nRome,#ff0000\nParis,red\n",
            "line 3: label 'Paris' has the colour 'red'",
        ),
        ("blank label.csv", b"label,code\nRome,1\n,2\nParis,3\n", "no label text on line 3"),
    ],
)
def test_bad_label_files_name_the_file_and_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(LabelSetError) as raised:
        read_label_file(path)
    assert str(path) in str(raised.value) and message in str(raised.value)


def test_a_label_file_that_is_a_folder(tmp_path):
    with pytest.raises(LabelSetError, match="is a folder, not a file"):
        read_label_file(tmp_path)


def test_html_in_labels_is_kept_as_text(tmp_path):
    path = tmp_path / "hostile.txt"
    path.write_text("<script>alert(1)</script>\n<b onmouseover=x>Rome</b>\n", encoding="utf-8")
    assert read_label_file(path).texts == ["<script>alert(1)</script>", "<b onmouseover=x>Rome</b>"]


# -- 7. images reaching the classifier ---------------------------------------------------------


def write_image(folder: Path, name: str) -> Path:
    path = folder / name
    photo = Image.open(PHOTOS[0])
    if name == "empty.jpg":
        path.write_bytes(b"")
    elif name == "truncated.jpg":
        data = PHOTOS[0].read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif name == "page.jpg":
        path.write_text("<html><body>Too many requests</body></html>", encoding="utf-8")
    elif name == "bomb.png":
        path.write_bytes(png_claiming(30000, 30000))
    elif name == "a folder.jpg":
        path.mkdir()
    elif name == "cmyk.jpg":
        photo.convert("CMYK").save(path)
    elif name == "grey16.png":
        Image.fromarray(np.asarray(photo.convert("L"), dtype=np.uint16) * 257).save(path)
    elif name == "alpha.png":
        rgba = photo.convert("RGBA")
        rgba.putalpha(100)
        rgba.save(path)
    elif name == "palette.png":
        photo.convert("P").save(path)
    return path


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("empty.jpg", "error: image {path} is empty (0 bytes)"),
        ("truncated.jpg", "error: image {path} is truncated or corrupt"),
        ("page.jpg", "error: image {path} is not a readable image (unknown format)"),
        (
            "bomb.png",
            "error: image {path} is larger than Pillow's decompression-bomb limit of "
            "178,956,970 pixels",
        ),
        ("a folder.jpg", "error: image {path} is a folder, not a file"),
        ("missing.jpg", "error: image {path} does not exist"),
        ("cmyk.jpg", "ok"),
        ("grey16.png", "ok"),
        ("alpha.png", "ok"),
        ("palette.png", "ok"),
    ],
)
def test_each_image_gets_its_status_and_nothing_stored_is_lost(
    tiny, copy_of_classified, name, status
):
    cache, paths, first = copy_of_classified
    db_path = store_file(cache, tiny)
    with closing(sqlite3.connect(db_path)) as db, db:
        stored_before = dict(db.execute("SELECT key, vector FROM embeddings"))
    bad = write_image(cache.parent, name)
    run = classify(tiny, [paths[0], str(bad), paths[2]], cache)
    expected = status.format(path=bad)
    assert run.embeddings.status[1].startswith(expected), run.embeddings.status[1]
    assert run.embeddings.status[0] == run.embeddings.status[2] == "ok"
    assert (run.scores.top_index[1, 0] >= 0) == (status == "ok")
    np.testing.assert_allclose(run.scores.probability[0], first.scores.probability[0], atol=1e-6)
    with closing(sqlite3.connect(db_path)) as db, db:
        stored_after = dict(db.execute("SELECT key, vector FROM embeddings"))
    assert {k: stored_after[k] for k in stored_before} == stored_before


# -- 8. JPEG draft-mode decoding: a setting, recorded and switchable ---------------------------
def test_full_decode_switch_changes_the_decode_the_store_and_the_run_settings(tiny, tmp_path):
    photo = Image.open(PHOTOS[0])
    assert decoded_photo(Image.open(PHOTOS[0]), 224, fast_decode=True).size == (320, 240)
    assert decoded_photo(Image.open(PHOTOS[0]), 224, fast_decode=False).size == photo.size
    fast = classify(tiny, [str(PHOTOS[0])], tmp_path)
    full = classify(tiny, [str(PHOTOS[0])], tmp_path, fast_decode=False)
    assert (
        fast.metadata["jpeg_draft_decode"] is True and full.metadata["jpeg_draft_decode"] is False
    )
    assert full.embeddings.counts["decoded"] == 1  # not taken from the draft-mode store
    assert not np.array_equal(fast.embeddings.vectors, full.embeddings.vectors)
    assert (
        store_file(tmp_path, tiny, fast_decode=False).name
        == "views4-fov90-pitch0-full-decode.sqlite"
    )
    assert store_file(tmp_path, tiny).name == "views4-fov90-pitch0.sqlite"


def test_cli_full_decode_flag(tmp_path, tiny_checkpoint):
    args = ["embed", str(PHOTOS[0]), "--full-decode", *engine_cli_args(tiny_checkpoint, tmp_path)]
    assert main(args) == 0
    assert [p.name for p in tmp_path.rglob("views4-*.sqlite")] == [
        "views4-fov90-pitch0-full-decode.sqlite"
    ]


# -- 9. checkpoint files: what the file is, and which model its weights fit ---------------------
def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _safetensors(checkpoint: Path, path: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    save_file(torch.load(checkpoint, weights_only=True), str(path))
    return path


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (
            lambda ck, d: _write(d / "vuoto.pt", b""),
            "is empty (0 bytes): its download or copy did not finish. Download it again.",
        ),
        (
            lambda ck, d: _write(d / "note.pt", b"weights: see the model page\n"),
            "is a text file (it begins 'weights: see the model page'), not a PyTorch checkpoint.",
        ),
        (
            lambda ck, d: _write(
                d / "open_clip_pytorch_model.bin",
                b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head></html>",
            ),
            "is an HTML page, not a PyTorch checkpoint: a web page (a sign-in, error or download "
            "page) was saved instead of the file.",
        ),
        (
            lambda ck, d: _write(
                d / "open_clip_model.safetensors",
                b"version https://git-lfs.github.com/spec/v1\noid sha256:4b3c\nsize 605219813\n",
            ),
            "is a Git LFS pointer (a small text file that stands for the weights), not the weights",
        ),
        (
            lambda ck, d: _write(d / "cut.pt", ck.read_bytes()[: ck.stat().st_size // 2]),
            "is cut short or damaged (",
        ),
        (
            lambda ck, d: _write(
                d / "cut.safetensors",
                _safetensors(ck, d / "whole.safetensors").read_bytes()[:-1000],
            ),
            "is cut short (",
        ),
        (
            lambda ck, d: _write(d / "bytes.pt", bytes(range(256)) * 4),
            "is not a PyTorch checkpoint: it is neither in PyTorch's format",
        ),
    ],
    ids=["empty", "text", "html-page", "git-lfs-pointer", "truncated", "safetensors-cut", "junk"],
)
def test_a_checkpoint_file_that_is_not_one_says_what_it_is(tiny_checkpoint, tmp_path, make, says):
    from mus_qgis.engine.clip.models import ModelSpec
    from mus_qgis.shared.errors import ModelError

    path = make(tiny_checkpoint, tmp_path)
    with pytest.raises(ModelError) as raised:
        load_model(ModelSpec(str(TINY_MODEL_CONFIG), "", str(path), "cpu"))
    assert str(raised.value).startswith(f"The checkpoint file {path} {says}"), str(raised.value)


def test_a_safetensors_file_named_bin_is_told_to_be_renamed_and_then_loads(
    tiny_checkpoint, tmp_path
):
    from mus_qgis.engine.clip.models import ModelSpec
    from mus_qgis.shared.errors import ModelError

    path = _safetensors(tiny_checkpoint, tmp_path / "open_clip_model.bin")
    with pytest.raises(ModelError) as raised:
        load_model(ModelSpec(str(TINY_MODEL_CONFIG), "", str(path), "cpu"))
    assert str(raised.value) == (
        f"The checkpoint file {path} is a safetensors file, which open_clip reads only under a "
        "name that ends in .safetensors: rename it to open_clip_model.safetensors."
    )
    renamed = path.rename(tmp_path / "open_clip_model.safetensors")
    assert load_model(ModelSpec(str(TINY_MODEL_CONFIG), "", str(renamed), "cpu")).model


def test_a_checkpoint_of_another_architecture_names_the_one_it_fits(tiny_checkpoint, tmp_path):
    """The tiny checkpoint given with a second tiny config whose image tower is twice as wide,
    and with ViT-B-32: each message says what the weights are, where the model differs, and
    which architecture open_clip knows they fit."""
    import open_clip

    from mus_qgis.engine.clip.models import ModelSpec
    from mus_qgis.shared.errors import ModelError

    open_clip.add_model_config(TINY_MODEL_CONFIG)  # mus-tiny-vit, known as a user's config is
    wide = tmp_path / "mus-tiny-wide.json"
    config = TINY_MODEL_CONFIG.read_text(encoding="utf-8")
    wide.write_text(
        config.replace('64,\n        "head_width"', '128,\n        "head_width"'), encoding="utf-8"
    )
    with pytest.raises(ModelError) as raised:
        load_model(ModelSpec(str(wide), "", str(tiny_checkpoint), "cpu"))
    assert str(raised.value) == (
        f"The checkpoint file {tiny_checkpoint} holds the weights of another architecture than "
        "mus-tiny-wide: a ViT image tower of width 64, 2 layers, 32-pixel patches, 224-pixel "
        "images (mus-tiny-wide: width 128), a text tower of width 64, 2 layers, 77 tokens, a "
        "vocabulary of 49,408, embeddings of 64 numbers. It fits open_clip's mus-tiny-vit: give "
        "that as the model (MODEL in QGIS, --model on the command line), or a checkpoint of "
        "mus-tiny-wide."
    )
    with pytest.raises(ModelError) as raised:
        load_model(ModelSpec("ViT-B-32", "", str(tiny_checkpoint), "cpu"))
    message = str(raised.value)
    assert "(ViT-B-32: width 768, 12 layers)" in message and "(ViT-B-32: 512 numbers)" in message
    assert "It fits open_clip's mus-tiny-vit: give that as the model" in message
    for internal in ("pos_embed", "pop from empty list", "size mismatch"):
        assert internal not in message


def test_a_checkpoint_that_fits_no_known_model_says_so(tmp_path):
    import json

    import torch
    from open_clip.model import CLIP

    from mus_qgis.engine.clip.models import ModelSpec
    from mus_qgis.shared.errors import ModelError

    config = json.loads(TINY_MODEL_CONFIG.read_text(encoding="utf-8"))
    config["vision_cfg"]["layers"] = 3  # an architecture of its own, registered nowhere
    checkpoint = tmp_path / "own.pt"
    torch.save(CLIP(**config).state_dict(), checkpoint)
    with pytest.raises(ModelError) as raised:
        load_model(ModelSpec(str(TINY_MODEL_CONFIG), "", str(checkpoint), "cpu"))
    message = str(raised.value)
    assert message.startswith(
        f"The checkpoint file {checkpoint} holds the weights of another architecture than "
        "mus-tiny-vit: a ViT image tower of width 64, 3 layers, 32-pixel patches, 224-pixel "
        "images (mus-tiny-vit: 2 layers)"
    ), message
    assert "No model open_clip knows here has these shapes: give the architecture" in message
