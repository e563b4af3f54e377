"""Embeddings as Arrow shards: the store at scale, in a columnar format any tool reads.

Beside each SQLite store (``<view>.sqlite``) a folder ``<view>.shards`` may hold two datasets of
Arrow IPC files (Feather v2: pyarrow, polars, pandas, DuckDB, R read them): ``embeddings/`` (key,
model, view setting, views, vector as float32 list, checksum) and ``files/`` (the path → digest
table, so a store made on a cluster scores locations without their images). Every writer adds
its own files under a fresh name, written aside and renamed into place, so many writers (a Ray
run, several runs at once) add to one store and a reader never sees half a file.

Why Arrow rather than Parquet: a vector column is read memory-mapped, without decoding, so a
million 512-value vectors are re-scored at the speed of the arithmetic (Parquet spends longer
decoding the list than the scoring takes). Each row keeps the store's checksum of key, view count
and vector, which ``EmbeddingStore`` checks like its SQLite rows: row by row where it reads a few
(``get``), and once a file where it reads them all in chunks (``verify_shards``), which also
check every vector's length, finiteness and unit length. Memory stays at one chunk, and each key
comes once even when two writers stored the same image.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from ...shared.errors import EmbeddingStoreError
from ...shared.sequences import zip_same_length
from ..deps import require
from .checksums import vector_checksum
from .views import ImageFacts

ROW_GROUP_ROWS = 65_536  # one chunk of re-scoring: 128 MiB of 512-value vectors
SUFFIX = ".arrow"
_FILE_COLUMNS = ("path", "size", "mtime_ns", "digest", "kind", "width", "height", "heading")


def shard_folder_of(sqlite_path: Path) -> Path:
    return Path(sqlite_path).with_suffix(".shards")


class ShardFolder:
    """The Arrow shards of one model (``identity``) under one view setting (``view_key``)."""

    def __init__(self, folder: str | Path, identity: str, view_key: str) -> None:
        self.folder = Path(folder)
        self.identity = identity
        self.view_key = view_key

    # -- writing ---------------------------------------------------------------------------

    def write(
        self,
        rows: Iterable[tuple[str, object, int]],
        files: Iterable[tuple[str, int | None, int | None, ImageFacts]] = (),
    ) -> list[Path]:
        """Add (key, float32 vector, number of views) rows and file facts as new shard files."""
        require("pyarrow")
        import numpy as np
        import pyarrow as pa

        written = []
        rows = list(rows)
        if rows:
            vectors = [np.asarray(vector, dtype="<f4").ravel() for _, vector, _ in rows]
            if len({len(vector) for vector in vectors}) > 1:
                raise EmbeddingStoreError("Vectors of different lengths cannot share a shard.")
            written.append(
                self.write_matrix(
                    [key for key, _, _ in rows], np.stack(vectors), [n for _, _, n in rows]
                )
            )
        files = list(files)
        if files:
            columns = {name: [] for name in _FILE_COLUMNS}
            for path, size, mtime, facts in files:
                for name, value in zip(
                    _FILE_COLUMNS,
                    (path, size, mtime, facts.digest, facts.kind, facts.width, facts.height),
                ):
                    columns[name].append(value)
                columns["heading"].append(facts.heading)
            types = (pa.string(), pa.int64(), pa.int64(), pa.string(), pa.string())
            types += (pa.int32(), pa.int32(), pa.float64())
            table = pa.table(
                {
                    name: pa.array(values, kind)
                    for (name, values), kind in zip_same_length(columns.items(), types)
                }
            )
            written.append(self._write_table("files", table))
        return written

    def write_matrix(self, keys: list[str], matrix, views) -> Path:
        """Add one shard of N keys, their N×D vectors and view counts."""
        require("pyarrow")
        import numpy as np
        import pyarrow as pa

        matrix = np.ascontiguousarray(matrix, dtype="<f4")
        count, dim = matrix.shape
        views = np.broadcast_to(np.asarray(views, dtype=np.int16), (count,))
        raw = matrix.tobytes()
        step = 4 * dim
        checksums = [
            vector_checksum(key, int(n), raw[i * step : (i + 1) * step])
            for i, (key, n) in enumerate(zip_same_length(keys, views.tolist()))
        ]
        table = pa.table(
            {
                "key": pa.array(keys, pa.string()),
                "model": pa.array([self.identity] * count, pa.string()),
                "view_setting": pa.array([self.view_key] * count, pa.string()),
                "views": pa.array(views, pa.int16()),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(matrix.ravel()), dim),
                "checksum": pa.array(checksums, pa.string()),
            }
        )
        return self._write_table("embeddings", table)

    def _write_table(self, dataset: str, table) -> Path:
        import pyarrow as pa

        folder = self.folder / dataset
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EmbeddingStoreError(
                f"Cannot create the shard folder {folder} ({exc.strerror or exc}): choose a "
                "cache folder you can write to."
            ) from exc
        name = f"part-{uuid.uuid4().hex}{SUFFIX}"
        temporary = folder / f".{name}.tmp"  # a dot name: dataset readers skip it
        metadata = {
            b"mus_qgis.model": self.identity.encode(),
            b"mus_qgis.views": self.view_key.encode(),
        }
        table = table.replace_schema_metadata(metadata)
        try:
            with (
                pa.OSFile(str(temporary), "wb") as sink,
                pa.ipc.new_file(sink, table.schema) as writer,
            ):
                writer.write_table(table, max_chunksize=ROW_GROUP_ROWS)
            os.replace(temporary, folder / name)
        except (OSError, pa.ArrowException) as exc:
            temporary.unlink(missing_ok=True)
            raise EmbeddingStoreError(
                f"Cannot write to the embedding shards {folder} ({exc}). What was stored before "
                "is kept; free some disk space or choose another cache folder."
            ) from exc
        return folder / name

    # -- reading ---------------------------------------------------------------------------

    def exists(self) -> bool:
        return (self.folder / "embeddings").is_dir() or (self.folder / "files").is_dir()

    def shard_paths(self, dataset: str = "embeddings") -> list[Path]:
        folder = self.folder / dataset
        if not folder.is_dir():
            return []
        return sorted(folder.glob(f"part-*{SUFFIX}"))

    def _open(self, path: Path):
        """The file's reader (memory-mapped), once its model and view setting are checked."""
        import pyarrow as pa

        try:
            source = pa.memory_map(str(path))
            reader = pa.ipc.open_file(source)
        except (OSError, pa.ArrowException) as exc:
            raise self._damaged(path, exc) from exc
        metadata = reader.schema.metadata or {}
        for name, wanted in (("model", self.identity), ("views", self.view_key)):
            stored = metadata.get(f"mus_qgis.{name}".encode(), b"").decode()
            if stored != wanted:
                source.close()
                raise EmbeddingStoreError(
                    f"The embedding shard {path} holds {name} {stored!r}, not {wanted!r}: it "
                    f"belongs to another store; move it to the folder of that store."
                )
        return source, reader

    def _damaged(self, path: Path, exc: Exception) -> EmbeddingStoreError:
        return EmbeddingStoreError(
            f"The embedding shard {path} is damaged ({exc}). Move it aside (or delete it) and "
            "run again: its embeddings are then computed afresh from the images."
        )

    def _batches(
        self, dataset: str, columns: list[str], batch_rows: int = ROW_GROUP_ROWS, paths=None
    ):
        import pyarrow as pa

        paths = self.shard_paths(dataset) if paths is None else list(paths)
        for path in paths:
            # Memory-mapped, and read in the order of the file: the kernel's own read-ahead
            # serves a cold reading (a thread reading the next file ahead, and posix_fadvise,
            # were each measured slower: they take the processor from the arithmetic).
            source, reader = self._open(path)
            try:
                for index in range(reader.num_record_batches):
                    batch = reader.get_batch(index).select(columns)
                    batch.validate()
                    for start in range(0, batch.num_rows, batch_rows):
                        yield batch.slice(start, batch_rows)
            except (OSError, pa.ArrowException) as exc:
                raise self._damaged(path, exc) from exc
            finally:
                source.close()

    def keys(self) -> set[str]:
        keys: set[str] = set()
        for batch in self._batches("embeddings", ["key"]):
            keys.update(batch.column(0).to_pylist())
        return keys

    def rows(self, wanted: set[str] | None = None) -> list[tuple[str, int, bytes, str]]:
        """(key, views, vector bytes, checksum) rows, the form ``EmbeddingStore`` checks; all of
        them, or those of ``wanted`` keys. A key stored twice comes once."""
        found: dict[str, tuple[str, int, bytes, str]] = {}
        for batch in self.row_batches(wanted):
            for row in batch:
                found.setdefault(row[0], row)
        return list(found.values())

    def row_batches(self, wanted: set[str] | None = None, paths=None):
        """``rows``' rows a batch at a time, from every shard or those of ``paths`` (a key two
        writers stored comes twice)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        value_set = pa.array(sorted(wanted), pa.string()) if wanted is not None else None
        columns = ["key", "views", "vector", "checksum"]
        for batch in self._batches("embeddings", columns, paths=paths):
            if value_set is not None:
                batch = batch.filter(pc.is_in(batch.column(0), value_set=value_set))
            if not batch.num_rows:
                continue
            vectors = batch.column(2)
            dim = vectors.type.list_size
            flat = vectors.values.to_numpy(zero_copy_only=False)[
                vectors.offset * dim : (vectors.offset + len(vectors)) * dim
            ]
            raw = flat.astype("<f4", copy=False).tobytes()
            size = dim * 4
            yield [
                (key, views, raw[index * size : (index + 1) * size], checksum)
                for index, (key, views, checksum) in enumerate(
                    zip(
                        batch.column(0).to_pylist(),
                        batch.column(1).to_pylist(),
                        batch.column(3).to_pylist(),
                    )
                )
            ]

    def file_records(self) -> dict[str, tuple[int | None, int | None, ImageFacts]]:
        records = {}
        for batch in self._batches("files", list(_FILE_COLUMNS)):
            for row in zip(*(column.to_pylist() for column in batch.columns)):
                path, size, mtime, digest, kind, width, height, heading = row
                records[path] = (size, mtime, ImageFacts(digest, kind, width, height, heading))
        return records

    def iter_chunks(
        self, batch_rows: int = ROW_GROUP_ROWS, first_rows="find"
    ) -> Iterator[tuple[list, object]]:
        """(Arrow array of keys, N×D float32 matrix) per chunk of every stored vector.

        ``first_rows``: the mask of each key's first row (``first_occurrences``), None when no
        key repeats, or "find" to work it out here. Memory stays at one chunk (plus every key,
        once, to drop a key a second writer also stored). The caller checks each vector's
        length, finiteness and unit length.
        """
        import numpy as np
        import pyarrow as pa

        first = self.first_occurrences() if isinstance(first_rows, str) else first_rows
        start = 0
        for batch in self._batches("embeddings", ["key", "vector"], batch_rows):
            count = batch.num_rows
            keep = None if first is None else first[start : start + count]
            start += count
            if keep is not None and not keep.all():
                batch = batch.filter(pa.array(keep))
            vectors = batch.column(1)
            dim = vectors.type.list_size
            flat = _float_values(vectors.values)
            flat = flat[vectors.offset * dim : (vectors.offset + len(vectors)) * dim]
            yield batch.column(0), np.asarray(flat, dtype=np.float32).reshape(-1, dim)

    def fingerprint(self) -> str:
        """Which embedding files the folder holds, by name, size, modification time, inode and
        device: what a reading remembered of them holds while this is unchanged."""
        import hashlib

        digest = hashlib.blake2b(digest_size=16)
        for path in self.shard_paths("embeddings"):
            stat = path.stat()
            facts = (path.name, stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_dev)
            digest.update(repr(facts).encode())
        return digest.hexdigest()

    def first_occurrences(self):
        """A mask of each key's first row over all shards, or None when no key repeats."""
        import numpy as np

        paths = self.shard_paths("embeddings")
        if len(paths) < 2:
            return None  # one writer's file holds each key once
        keys: list[str] = []
        for batch in self._batches("embeddings", ["key"]):
            keys.extend(batch.column(0).to_pylist())
        if len(set(keys)) == len(keys):
            return None
        # Two writers stored the same image (rare): keep its first row.
        seen: set[str] = set()
        mask = np.zeros(len(keys), dtype=bool)
        for row, key in enumerate(keys):
            if key not in seen:
                seen.add(key)
                mask[row] = True
        return mask


def _float_values(values):
    """A float32 Arrow array as numpy, its own buffer where it has no nulls (pyarrow's
    ``to_numpy`` imports pandas even then: over a second on a first reading)."""
    import numpy as np

    if values.null_count or values.type.bit_width != 32:
        return values.to_numpy(zero_copy_only=False)  # damaged: the checks name the rows
    data = np.frombuffer(values.buffers()[1], dtype=np.float32)
    return data[values.offset : values.offset + len(values)]
