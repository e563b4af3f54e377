"""The store's Arrow shards: read as the store's own, checked, and re-scored in chunks."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pyarrow.feather as feather
import pytest

from mus_qgis.engine.clip.rescore import BLOCK_ROWS, rank_chunks, rank_chunks_by_set
from mus_qgis.engine.clip.scoring import score
from mus_qgis.engine.clip.store import EmbeddingStore, row_norms
from mus_qgis.engine.clip.views import ImageFacts
from mus_qgis.shared.errors import EmbeddingStoreError
from mus_qgis.shared.labels import builtin_label_set

IDENTITY, VIEWS = "ViT-B-32/test", "views4-fov90-pitch0"


def unit_rows(count: int, dim: int = 16, seed: int = 0):
    matrix = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


@pytest.fixture
def store(tmp_path):
    opened = EmbeddingStore.under(tmp_path, IDENTITY, VIEWS)
    yield opened
    opened.close()


def test_shards_and_sqlite_read_as_one_store(store, tmp_path):
    vectors = unit_rows(5)
    store.put(
        [("a", vectors[0], 1)], [("/img/a.jpg", 10, 20, ImageFacts("a", "photo", 4, 3, None))]
    )
    # Two writers; the second stored "c" again, and "a" too (which the SQLite file holds).
    store.shards.write(
        [("b", vectors[1], 4), ("c", vectors[2], 1)],
        [("/img/b.jpg", None, None, ImageFacts("b", "panorama", 8, 4, 90.0))],
    )
    store.shards.write([("c", vectors[2], 1), ("a", vectors[3], 1), ("d", vectors[4], 1)])
    assert store.keys() == {"a", "b", "c", "d"} and len(store) == 4
    keys, matrix, damaged = store.all()
    assert keys == ["a", "b", "c", "d"] and not damaged
    np.testing.assert_array_equal(matrix[0], vectors[0])  # the SQLite row wins
    found, damaged = store.get(["b", "d", "missing"])
    assert set(found) == {"b", "d"} and not damaged
    assert store.files()["/img/b.jpg"] == ImageFacts("b", "panorama", 8, 4, 90.0)
    assert store.file_facts(["/img/b.jpg"])["/img/b.jpg"][0] is None
    # Chunked reading keeps each key once across writers.
    chunked = [
        key for chunk, _ in store.shards.iter_chunks(batch_rows=1) for key in chunk.to_pylist()
    ]
    assert sorted(chunked) == ["a", "b", "c", "d"]
    # Any Arrow (Feather) reader reads the shards: key, model, views, vector, checksum.
    table = feather.read_table(store.shards.shard_paths()[0])
    assert table.column_names == ["key", "model", "view_setting", "views", "vector", "checksum"]
    assert set(table.column("model").to_pylist()) == {IDENTITY}


def test_a_damaged_or_foreign_shard_is_refused_by_name(store, tmp_path):
    vectors = unit_rows(3)
    (path,) = store.shards.write([("a", vectors[0], 1), ("b", vectors[1], 1)])
    path.write_bytes(path.read_bytes()[:-100])  # cut short, as by a full disk or a lost copy
    with pytest.raises(EmbeddingStoreError, match="is damaged") as caught:
        store.all()
    assert str(path) in str(caught.value)
    path.unlink()

    other = EmbeddingStore.under(tmp_path, "RN50/openai", VIEWS)
    other.close()
    (foreign,) = type(store.shards)(other.shards.folder, "RN50/openai", VIEWS).write(
        [("a", vectors[2], 1)]
    )
    foreign.rename(store.shards.folder / "embeddings" / foreign.name)
    with pytest.raises(EmbeddingStoreError, match="holds model 'RN50/openai'"):
        store.keys()


def test_a_vector_edited_in_a_shard_fails_its_checksum(store):
    vectors = unit_rows(2)
    (path,) = store.shards.write([("a", vectors[0], 1), ("b", vectors[1], 1)])
    table = feather.read_table(path, memory_map=False)
    swapped = table.set_column(5, "checksum", table.column("checksum").take([1, 0]))
    feather.write_feather(swapped, path, compression="uncompressed")
    found, damaged = store.get(["a", "b"])
    assert not found and damaged == {"a": "checksum mismatch", "b": "checksum mismatch"}
    # The chunked reading cannot tell (both are unit vectors); the once-a-file check can.
    assert all(not chunk_damaged for _, _, chunk_damaged in store.iter_chunks())
    assert store.verify_shards() == {"a": "checksum mismatch", "b": "checksum mismatch"}
    assert store.verify_shards()  # a damaged file is not remembered as checked


def test_a_shard_checked_once_is_not_hashed_again_unless_it_is_another_copy(store, tmp_path):
    vectors = unit_rows(2)
    (path,) = store.shards.write([("a", vectors[0], 1), ("b", vectors[1], 1)])
    assert store.verify_shards() == {}
    table = feather.read_table(path, memory_map=False)
    stat = path.stat()
    # Damage that keeps the size and the modification time, in place (same inode): remembered
    # as checked, so not hashed again (what makes the second reading of a million rows quick).
    swapped = table.set_column(5, "checksum", table.column("checksum").take([1, 0]))
    with path.open("r+b") as handle:
        feather.write_feather(swapped, handle, compression="uncompressed")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_ino == stat.st_ino and path.stat().st_size == stat.st_size
    assert store.verify_shards() == {}
    # The same file copied in (as from a cluster, times kept: another inode) is checked again.
    copy = path.with_name("copy.tmp")
    shutil.copy2(path, copy)
    copy.replace(path)
    assert store.verify_shards() == {"a": "checksum mismatch", "b": "checksum mismatch"}


def test_chunked_ranking_equals_scoring_everything_at_once(store):
    label_set = builtin_label_set("urban_atlas_2018")
    texts = unit_rows(len(label_set), seed=1)
    vectors = unit_rows(300, seed=2)
    for start in (0, 120):  # two writers
        part = vectors[start : start + 180]
        store.shards.write_matrix([f"k{start + i:04d}" for i in range(len(part))], part, 1)
    ranking = rank_chunks(store.shards.iter_chunks(batch_rows=64), texts, 100.0)
    assert ranking.count == 300 and not ranking.damaged
    _, matrix, _ = store.all()
    reference = score(matrix, texts, label_set, 100.0, 1)
    np.testing.assert_array_equal(
        np.sort(ranking.first_places),
        np.sort(np.bincount(reference.top_index[:, 0], minlength=len(texts))),
    )
    np.testing.assert_allclose(
        ranking.mean_probability,
        reference.all_probability.astype(np.float64).mean(axis=0),
        atol=1e-6,
    )
    # A vector that is not unit length is damaged, not scored.
    bad = ranking_of_one(store, np.full(16, 0.5, dtype=np.float32), texts)
    assert bad.damaged == 1 and bad.count == 0


def ranking_of_one(store, vector, texts):
    return rank_chunks([vector[None, :]], texts, 100.0)


def test_the_store_reads_in_bounded_chunks_sqlite_first_damage_named(store):
    vectors = unit_rows(4)
    store.put([("a", vectors[0], 1)])
    store.shards.write([("a", vectors[1], 1), ("b", vectors[2], 1), ("c", vectors[3], 1)])
    store.shards.write([("d", np.full(16, 0.5, dtype=np.float32), 1)])  # not unit length
    chunks = list(store.iter_chunks(rows=1))
    assert all(len(keys) == len(matrix) <= 1 for keys, matrix, _ in chunks)
    keys = [key for chunk, _, _ in chunks for key in list(chunk)]
    keys = [key.as_py() if hasattr(key, "as_py") else key for key in keys]
    assert sorted(keys) == ["a", "b", "c"]
    np.testing.assert_array_equal(chunks[0][1][0], vectors[0])  # the SQLite row wins
    damaged = {key: why for _, _, found in chunks for key, why in found.items()}
    assert list(damaged) == ["d"] and damaged["d"].startswith("not unit length")


def softmax_by_definition(logits):
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def test_ranking_across_blocks_within_a_chunk_is_the_softmax_by_definition():
    # One chunk larger than BLOCK_ROWS (so it is scored in three blocks), two label sets; the
    # reference is the definition in float64, the whole matrix at once.
    vectors = unit_rows(2 * BLOCK_ROWS + 1_000, dim=32, seed=5)
    small, large = unit_rows(3, dim=32, seed=6), unit_rows(40, dim=32, seed=7)
    rankings = rank_chunks_by_set([vectors], [small, large], 50.0)
    for texts, ranking in zip((small, large), rankings):
        logits = vectors.astype(np.float64) @ texts.T.astype(np.float64) * 50.0
        reference = softmax_by_definition(logits)
        assert ranking.count == len(vectors) and not ranking.damaged
        near_tie = np.sort(logits, axis=1)[:, -1] - np.sort(logits, axis=1)[:, -2] < 1e-4
        agree = ranking.first == logits.argmax(axis=1)
        assert agree[~near_tie].all()
        np.testing.assert_allclose(ranking.mean_probability, reference.mean(axis=0), atol=1e-6)
        assert ranking.probability_sum.sum() == pytest.approx(len(vectors), rel=1e-6)


def test_unchecked_chunks_leave_out_what_is_not_a_unit_vector():
    vectors = unit_rows(10, seed=8)
    vectors[2] = np.nan
    vectors[5] *= 2.0
    ranking = rank_chunks([vectors, unit_rows(3, dim=8)], unit_rows(4, seed=9), 100.0)
    assert ranking.count == 8 and ranking.damaged == 2 + 3  # and a chunk of another length


def test_a_set_of_shards_repeating_no_key_is_remembered_until_it_changes(store, monkeypatch):
    store.shards.write_matrix(["a", "b"], unit_rows(2), 1)
    store.shards.write_matrix(["c"], unit_rows(1, seed=1), 1)
    assert sorted(key for key, _, _ in rows_of(store)) == ["a", "b", "c"]
    # Remembered: the next reading does not read every key to look for repeats.
    read_keys = []
    looked = store.shards.first_occurrences
    monkeypatch.setattr(store.shards, "first_occurrences", lambda: read_keys.append(1) or looked())
    assert len(rows_of(store)) == 3 and read_keys == []
    # A third writer stores "b" again: the files changed, so repeats are looked for (and the
    # copy dropped) at once.
    store.shards.write_matrix(["b", "d"], unit_rows(2, seed=2), 1)
    assert sorted(key for key, _, _ in rows_of(store)) == ["a", "b", "c", "d"]
    assert read_keys == [1]


def rows_of(store):
    return [
        (key, row, chunk_damaged)
        for keys, matrix, chunk_damaged in store.iter_chunks(rows=2)
        for key, row in zip(keys if isinstance(keys, list) else keys.to_pylist(), matrix)
    ]


def test_row_norms_split_between_threads_are_numpys(store):
    matrix = unit_rows(10_001, dim=8, seed=11)
    matrix[7_000] = np.inf
    matrix[9_999] *= 3.0
    norms = row_norms(matrix)
    np.testing.assert_allclose(norms, np.linalg.norm(matrix.astype(np.float64), axis=1), rtol=1e-6)
    # A whole-store reading names the damaged rows of the second half as of the first.
    matrix[12] = np.nan
    store.shards.write_matrix([f"k{i:05d}" for i in range(len(matrix))], matrix, 1)
    damaged = {}
    for _, trusted, chunk_damaged in store.iter_chunks(rows=65_536):
        damaged.update(chunk_damaged)
        assert len(trusted) == len(matrix) - 3
    assert damaged == {
        "k00012": "not a finite vector",
        "k07000": "not a finite vector",
        "k09999": "not unit length (norm 3)",
    }


def test_read_ahead_keeps_order_hands_over_errors_and_stops_with_its_caller():
    import threading

    from mus_qgis.engine.clip.rescore import read_ahead

    assert list(read_ahead(iter(range(100)), depth=2)) == list(range(100))
    assert list(read_ahead(iter([]))) == []

    def failing():
        yield 1
        raise OSError("the disk went away")

    got = []
    with pytest.raises(OSError, match="the disk went away"):
        for item in read_ahead(failing()):
            got.append(item)
    assert got == [1]  # what came before the error arrived first
    read = []

    def endless():
        number = 0
        while True:
            read.append(number)
            yield number
            number += 1

    chunks = read_ahead(endless(), depth=1)
    assert [next(chunks) for _ in range(3)] == [0, 1, 2]
    chunks.close()  # the caller stops: so does the reading, a chunk or two ahead at most
    assert not any(t.name == "mus-read-ahead" for t in threading.enumerate())
    assert len(read) <= 3 + 2
