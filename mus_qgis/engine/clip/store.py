"""Image and text embeddings on disk, so that no image is decoded or encoded twice.

One SQLite file per model and view setting holds the image embeddings (keyed by the file's
content hash and, for panoramas, where the views point) and what is known of each file path, so a
later run, or QGIS on another machine, can score new labels without reading any image. Prompts
have their own file per model. Every batch is committed, so a killed run keeps what it finished.

Every vector carries a checksum of its key, view count and bytes, and is checked again whenever it
is read (checksum, length, finite, unit length): a store damaged on disk or edited by hand never
gives a score. A damaged vector is reported by key (its caller names the image) and is computed
again from its image when the image is at hand. A store written before checksums existed is
upgraded when first opened for writing: each old vector that passes the other checks gets its
checksum (recomputing them all would need every image, which may be on another machine), and one
that fails is reported as damaged like any other.

Embeddings made elsewhere at scale (a Ray cluster, ``ray_embed``) live beside the SQLite file as
Arrow shards (``shards.py``); the store reads them as its own: keys, vectors, file facts. What
the SQLite file holds wins over a shard's row for the same key (a mended vector is saved there).
A whole-store reading (``iter_chunks``, for ranking and scoring a store of millions) checks each
row's length, finiteness and unit length as it goes, and each shard file's checksums once on
this machine (``verify_shards``), not at every reading.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

from ...shared.errors import EmbeddingStoreError
from ...shared.progress import check_canceled
from .checksums import vector_checksum
from .shards import ROW_GROUP_ROWS, ShardFolder, shard_folder_of
from .views import ImageFacts

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS embeddings (
    key TEXT PRIMARY KEY, vector BLOB NOT NULL, views INTEGER NOT NULL, created REAL NOT NULL,
    checksum TEXT);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, digest TEXT NOT NULL,
    kind TEXT NOT NULL, width INTEGER, height INTEGER, heading REAL);
CREATE TABLE IF NOT EXISTS texts (prompt TEXT PRIMARY KEY, vector BLOB NOT NULL, checksum TEXT);
CREATE TABLE IF NOT EXISTS verified_shards (
    name TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL, device INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS distinct_shard_sets (fingerprint TEXT PRIMARY KEY);
"""

# A stored vector is a normalised embedding; a little float32 rounding is all it may show.
UNIT_TOLERANCE = 1e-3
WHERE_TO_CHOOSE = "CACHE_FOLDER in QGIS, --cache-dir on the command line"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def damaged_store_error(path: Path, exc: Exception) -> EmbeddingStoreError:
    return EmbeddingStoreError(
        f"The embedding store {path} is damaged ({exc}). Move it aside (or delete it) and run "
        "again: its embeddings are then computed afresh from the images. Nothing else in the "
        "cache is affected."
    )


class EmbeddingStore:
    """Embeddings of one model (``identity``) under one view setting (``view_key``).

    ``notes`` collects what the caller should tell the user (a read-only store, an upgrade).
    """

    def __init__(self, path: str | Path, identity: str, view_key: str) -> None:
        self.path = Path(path)
        self.identity = identity
        self.view_key = view_key
        self.writable = True
        self.notes: list[str] = []
        self._dimension: int | None = None
        self.shards = ShardFolder(shard_folder_of(self.path), identity, view_key)
        try:
            self._db = self._open()
            self._checksum_column = {
                table: "checksum"
                in {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
                for table in ("embeddings", "texts")
            }
            self._check_meta()
            if self.writable:
                self._upgrade()
        except sqlite3.DatabaseError as exc:
            raise damaged_store_error(self.path, exc) from exc

    def _open(self) -> sqlite3.Connection:
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            blocking = _first_file_on_the_way(folder)
            raise EmbeddingStoreError(
                f"The cache folder cannot hold the embedding store {self.path}: {blocking} is a "
                f"file, not a folder. Choose a folder ({WHERE_TO_CHOOSE})."
            ) from exc
        except OSError as exc:
            raise EmbeddingStoreError(
                f"Cannot create the folder {folder} for the embedding store "
                f"({exc.strerror or exc}). Choose a folder you can write to ({WHERE_TO_CHOOSE})."
            ) from exc
        if self.path.is_dir():
            raise EmbeddingStoreError(
                f"The embedding store {self.path} is a folder, not a file: move it away or "
                f"choose another cache folder ({WHERE_TO_CHOOSE})."
            )
        db = None
        try:
            db = sqlite3.connect(str(self.path), check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            # SQLite opens a file it may not write without a word: ask for a write lock now.
            db.execute("BEGIN IMMEDIATE")
            db.rollback()
            return db
        except sqlite3.OperationalError as exc:
            if db is not None:
                db.close()
            if not self.path.is_file():
                raise EmbeddingStoreError(
                    f"Cannot create the embedding store {self.path} ({exc}): is {folder} "
                    f"writable? Make it writable or choose another cache folder "
                    f"({WHERE_TO_CHOOSE})."
                ) from exc
        # An existing store we may not write (a read-only folder or file, a store shared from
        # another machine): what is stored is used, nothing new is saved.
        db = _open_read_only(self.path)
        self.writable = False
        self.notes.append(
            f"The embedding store {self.path} is read-only: its embeddings are used, new ones are "
            "computed but not saved. Make it (and its folder) writable, or choose another cache "
            f"folder ({WHERE_TO_CHOOSE}), to keep them."
        )
        return db

    @classmethod
    def under(cls, root: str | Path, identity: str, view_key: str) -> EmbeddingStore:
        """The store for a model and view setting inside a cache folder."""
        return cls(Path(root) / slug(identity) / f"{slug(view_key)}.sqlite", identity, view_key)

    def _check_meta(self) -> None:
        stored = dict(self._db.execute("SELECT name, value FROM meta"))
        wanted = {"model": self.identity, "views": self.view_key}
        for name, value in wanted.items():
            if name in stored and stored[name] != value:
                raise EmbeddingStoreError(
                    f"The embedding store {self.path} holds {name} {stored[name]!r}, "
                    f"not {value!r}: choose another store."
                )
        if self.writable:
            with self._db:
                self._db.executemany(
                    "INSERT OR IGNORE INTO meta(name, value) VALUES (?, ?)", wanted.items()
                )

    def _upgrade(self) -> None:
        """Give checksums to the vectors of a store written before they existed (once: the
        meta table remembers it, so a big store is not scanned at every opening)."""
        done = self._db.execute("SELECT 1 FROM meta WHERE name = 'checksums'").fetchone()
        if done and all(self._checksum_column.values()):
            return
        for table, key_column, extra in (
            ("embeddings", "key", "views"),
            ("texts", "prompt", "0"),
        ):
            if not self._checksum_column[table]:
                with self._db:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN checksum TEXT")
                self._checksum_column[table] = True
            legacy = self._db.execute(
                f"SELECT {key_column}, {extra}, vector FROM {table} WHERE checksum IS NULL"
            ).fetchall()
            if not legacy:
                continue
            trusted, failed = self._checked(
                [(key, views, blob, None) for key, views, blob in legacy]
            )
            # A vector that fails is left without a checksum: reported wherever it is read.
            damaged = len(failed)
            sums = [
                (vector_checksum(key, views, blob), key)
                for key, views, blob in legacy
                if key in trusted
            ]
            with self._db:
                self._db.executemany(
                    f"UPDATE {table} SET checksum = ? WHERE {key_column} = ?", sums
                )
            if table == "embeddings":
                note = (
                    f"The embedding store {self.path} was written before stores kept checksums: "
                    f"{len(sums)} stored embeddings passed the checks (finite, unit length) and "
                    "now have one"
                )
                if damaged:
                    note += f"; {damaged} failed and will be computed again from their images"
                self.notes.append(note + ".")
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO meta(name, value) VALUES ('checksums', '1')")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> EmbeddingStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        if self.shards.exists():
            return len(self.keys())
        return self._query("SELECT count(*) FROM embeddings")[0][0]

    def _query(self, sql: str, parameters=()) -> list:
        try:
            return self._db.execute(sql, parameters).fetchall()
        except sqlite3.DatabaseError as exc:
            raise damaged_store_error(self.path, exc) from exc

    def _select_in(self, select: str, values: Iterable) -> list:
        """The rows of ``select`` (ending in "WHERE column") IN ``values``, asked 900 values at a
        time: SQLite bounds the parameters of one statement."""
        values, rows = list(values), []
        for start in range(0, len(values), 900):
            chunk = values[start : start + 900]
            rows += self._query(f"{select} IN ({','.join('?' * len(chunk))})", chunk)
        return rows

    def checksum_column(self, table: str) -> str:
        """What to select for a vector's checksum (an old read-only store has none to read)."""
        return "checksum" if self._checksum_column[table] else "NULL"

    def keys(self) -> set[str]:
        keys = {row[0] for row in self._query("SELECT key FROM embeddings")}
        if self.shards.exists():
            keys |= self.shards.keys()
        return keys

    def put(
        self,
        rows: Iterable[tuple[str, object, int]],
        files: Iterable[tuple[str, int, int, ImageFacts]] = (),
    ) -> None:
        """Store (key, float32 vector, number of views) rows and file facts in one commit.

        A read-only store saves nothing (its ``notes`` say so once).
        """
        import numpy as np

        if not self.writable:
            return
        now = time.time()
        records = []
        for key, vec, views in rows:
            blob = np.asarray(vec, dtype="<f4").tobytes()
            records.append((key, blob, views, now, vector_checksum(key, views, blob)))
        try:
            with self._db:
                self._db.executemany(
                    "INSERT OR REPLACE INTO embeddings(key, vector, views, created, checksum) "
                    "VALUES (?,?,?,?,?)",
                    records,
                )
                self._db.executemany(
                    "INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?)",
                    [
                        (path, size, mtime, f.digest, f.kind, f.width, f.height, f.heading)
                        for path, size, mtime, f in files
                    ],
                )
        except sqlite3.OperationalError as exc:
            raise EmbeddingStoreError(
                f"Cannot write to the embedding store {self.path} ({exc}). What was stored "
                "before is kept; free some disk space or choose another cache folder "
                f"({WHERE_TO_CHOOSE})."
            ) from exc
        except sqlite3.DatabaseError as exc:
            raise damaged_store_error(self.path, exc) from exc

    def get(self, keys: Iterable[str]) -> tuple[dict[str, object], dict[str, str]]:
        """The trusted vectors of ``keys``, and, for each damaged one, what is wrong with it."""
        wanted = list(dict.fromkeys(keys))
        rows = self._select_in(
            f"SELECT key, views, vector, {self.checksum_column('embeddings')} FROM embeddings "
            "WHERE key",
            wanted,
        )
        if self.shards.exists():
            missing = set(wanted) - {row[0] for row in rows}
            if missing:
                rows += self.shards.rows(missing)
        return self._checked(rows)

    def all(self):
        """Every trusted key and its vector, as (list of keys, N×D array, {damaged key: why})."""
        import numpy as np

        rows = self._query(
            f"SELECT key, views, vector, {self.checksum_column('embeddings')} FROM embeddings "
            "ORDER BY key"
        )
        if self.shards.exists():
            held = {row[0] for row in rows}
            rows += [row for row in self.shards.rows() if row[0] not in held]
            rows.sort(key=lambda row: row[0])
        found, damaged = self._checked(rows)
        keys = list(found)
        if not keys:
            return keys, np.zeros((0, 0), dtype=np.float32), damaged
        return keys, np.stack([found[key] for key in keys]), damaged

    def verify_shards(self, progress=None) -> dict[str, str]:
        """Check the checksum of every row of each shard file not yet checked on this machine;
        return the damaged keys ({key: why}) that SQLite does not hold in their place.

        ``iter_chunks`` checks a shard row's length, finiteness and unit length, which a swapped
        row or a flipped low bit pass; a checksum catches them. Hashing a million rows takes
        seconds, so a file whose every row passed is remembered (name, size, modification time,
        inode and device: a copy brought from a cluster, even one keeping the times, is another
        inode, so it is checked again) and not hashed at the next reading. A read-only store
        remembers nothing and checks at every reading.
        """
        if not self.shards.exists():
            return {}
        try:
            verified = {
                name: tuple(rest)
                for name, *rest in self._db.execute(
                    "SELECT name, size, mtime_ns, inode, device FROM verified_shards"
                )
            }
        except sqlite3.OperationalError:  # a read-only store from before the table existed
            verified = {}
        damaged: dict[str, str] = {}
        for path in self.shards.shard_paths():
            stat = path.stat()
            identity = (stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_dev)
            if verified.get(path.name) == identity:
                continue
            failed = {}
            for batch in self.shards.row_batches(paths=[path]):
                if progress is not None:
                    check_canceled(progress)
                for key, views, blob, checksum in batch:
                    if checksum != vector_checksum(key, views, blob):
                        failed[key] = "checksum mismatch"
            if failed:  # a key SQLite holds is read from there: its shard row is moot
                held = self.sqlite_keys(failed)
                failed = {key: why for key, why in failed.items() if key not in held}
            damaged.update(failed)
            if not failed and self.writable:
                with self._db:
                    self._db.execute(
                        "INSERT OR REPLACE INTO verified_shards VALUES (?, ?, ?, ?, ?)",
                        (path.name, *identity),
                    )
        return damaged

    def sqlite_keys(self, keys: Iterable[str]) -> set[str]:
        """Those of ``keys`` the SQLite file holds (whatever a shard holds of them)."""
        return {row[0] for row in self._select_in("SELECT key FROM embeddings WHERE key", keys)}

    def iter_chunks(self, rows: int = ROW_GROUP_ROWS):
        """(keys, N×D float32 matrix of trusted vectors, {damaged key: why}) per chunk of every
        stored embedding: the store read in bounded memory, however many rows it holds.

        The SQLite rows come first (checked as ``all`` checks them), then the shards' rows whose
        keys SQLite does not hold, checked for length, finiteness and unit length at once over
        the chunk; their checksums are ``verify_shards``' (once a file, not at every reading: a
        hash per row costs more than the scoring), which a whole-store reading calls first.
        Memory: one chunk of vectors, plus every SQLite key (to leave out the shards' copies).
        """
        import numpy as np

        held: set[str] = set()
        try:
            cursor = self._db.execute(
                f"SELECT key, views, vector, {self.checksum_column('embeddings')} "
                "FROM embeddings ORDER BY key"
            )
            while batch := cursor.fetchmany(rows):
                held.update(row[0] for row in batch)
                found, damaged = self._checked(batch)
                keys = list(found)
                matrix = (
                    np.stack([found[key] for key in keys])
                    if keys
                    else np.zeros((0, self._dimension or 0), dtype=np.float32)
                )
                yield keys, matrix, damaged
        except sqlite3.DatabaseError as exc:
            raise damaged_store_error(self.path, exc) from exc
        if not self.shards.exists():
            return
        import pyarrow as pa
        import pyarrow.compute as pc

        held_keys = pa.array(sorted(held), pa.string()) if held else None
        for keys, matrix in self.shards.iter_chunks(rows, self._shard_first_rows()):
            if held_keys is not None:  # what SQLite holds wins (a mended vector is saved there)
                fresh = pc.invert(pc.is_in(keys, value_set=held_keys))
                keys, matrix = keys.filter(fresh), matrix[np.asarray(fresh)]
            yield self._checked_matrix(keys, matrix)

    def _shard_first_rows(self):
        """The shards' mask of each key's first row (``ShardFolder.first_occurrences``), or None
        when every key is stored once. Finding out reads every key (about half a second a
        million); a set of files found to repeat none is remembered by its fingerprint, as
        ``verify_shards`` remembers checked files, and not read again while it is unchanged."""
        fingerprint = self.shards.fingerprint()
        try:
            known = self._db.execute(
                "SELECT 1 FROM distinct_shard_sets WHERE fingerprint = ?", (fingerprint,)
            ).fetchone()
        except sqlite3.OperationalError:  # a read-only store from before the table existed
            known = None
        if known:
            return None
        first = self.shards.first_occurrences()
        if first is None and self.writable:
            with self._db:
                self._db.execute("DELETE FROM distinct_shard_sets")  # only the latest matters
                self._db.execute("INSERT INTO distinct_shard_sets VALUES (?)", (fingerprint,))
        return first

    def _checked_matrix(self, keys, matrix):
        """A shard chunk's trusted rows and its damaged keys (only those are named one by one)."""
        import numpy as np

        if self._dimension is not None and matrix.shape[1] != self._dimension:
            reason = f"{matrix.shape[1]} values where the others have {self._dimension}"
            damaged = dict.fromkeys(keys.to_pylist(), reason)
            return [], np.zeros((0, self._dimension), dtype=np.float32), damaged
        # One pass, no copy: a NaN or infinite value makes its row's norm fail the test too.
        norms = row_norms(matrix)
        good = np.abs(norms - 1.0) <= UNIT_TOLERANCE
        damaged = {}
        if not good.all():
            for row in np.flatnonzero(~good):
                damaged[keys[int(row)].as_py()] = (
                    f"not unit length (norm {norms[row]:.3g})"
                    if np.isfinite(matrix[row]).all()
                    else "not a finite vector"
                )
            keys, matrix = keys.filter(good), matrix[good]
        if len(keys):
            self._dimension = matrix.shape[1]
        return keys, matrix, damaged

    def _checked(self, rows) -> tuple[dict[str, object], dict[str, str]]:
        """Split rows into trusted vectors and damaged keys (checksums per row; the other checks
        at once over all rows of the common length, which keeps a big store quick to read)."""
        import numpy as np

        damaged = {}
        by_length: dict[int, list[tuple[str, bytes]]] = {}
        for key, views, blob, checksum in rows:
            if checksum is not None and checksum != vector_checksum(key, views, blob):
                damaged[key] = "checksum mismatch"
            elif not blob or len(blob) % 4:
                damaged[key] = f"cut short ({len(blob)} bytes)"
            else:
                by_length.setdefault(len(blob) // 4, []).append((key, blob))
        if not by_length:
            return {}, damaged
        # Vectors of another length than the store's own (the most common) are cut or foreign.
        common = self._dimension or max(by_length, key=lambda n: len(by_length[n]))
        for length, entries in by_length.items():
            if length != common:
                damaged.update(
                    (key, f"{length} values where the others have {common}") for key, _ in entries
                )
        entries = by_length.get(common, [])
        found = {}
        if entries:
            matrix = np.frombuffer(b"".join(blob for _, blob in entries), dtype="<f4")
            matrix = matrix.reshape(len(entries), common)
            finite = np.isfinite(matrix).all(axis=1)
            norms = np.linalg.norm(
                np.where(finite[:, None], matrix, 0.0).astype(np.float64), axis=1
            )
            for (key, _), row, is_finite, norm in zip(entries, matrix, finite, norms):
                if not is_finite:
                    damaged[key] = "not a finite vector"
                elif abs(norm - 1.0) > UNIT_TOLERANCE:
                    damaged[key] = f"not unit length (norm {norm:.3g})"
                else:
                    found[key] = row
        if found:  # the store's length, learnt only from vectors that pass every check
            self._dimension = common
        return found, damaged

    def file_facts(self, paths: Iterable[str]) -> dict[str, tuple[int, int, ImageFacts]]:
        """What is known of each path: (size, mtime_ns, facts)."""
        wanted = list(dict.fromkeys(paths))
        known = {}
        for row in self._select_in("SELECT * FROM files WHERE path", wanted):
            path, size, mtime, digest, kind, width, height, heading = row
            known[path] = (size, mtime, ImageFacts(digest, kind, width, height, heading))
        if self.shards.exists() and len(known) < len(wanted):
            records = self.shards.file_records()
            known.update(
                (path, records[path]) for path in wanted if path not in known and path in records
            )
        return known

    def files(self) -> dict[str, ImageFacts]:
        found = {}
        if self.shards.exists():
            found = {path: facts for path, (_, _, facts) in self.shards.file_records().items()}
        found.update((row[0], ImageFacts(*row[3:])) for row in self._query("SELECT * FROM files"))
        return found


def _open_read_only(path: Path) -> sqlite3.Connection:
    uri = f"file:{quote(str(path.resolve()))}"
    try:
        db = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False)
        db.execute("SELECT count(*) FROM meta").fetchall()
        return db
    except sqlite3.OperationalError:
        # A WAL store in a folder we may not write cannot make its shared-memory file; read it
        # as a file nobody changes meanwhile.
        db = sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False)
        db.execute("SELECT count(*) FROM meta").fetchall()
        return db


def _first_file_on_the_way(folder: Path) -> Path:
    for candidate in (*reversed(folder.parents), folder):
        if candidate.exists() and not candidate.is_dir():
            return candidate
    return folder


class TextStore:
    """Prompt embeddings of one model, so a label set is encoded once.

    A damaged prompt vector is treated as missing: it is encoded again and replaced.
    """

    def __init__(self, root: str | Path, identity: str) -> None:
        self._store = EmbeddingStore(Path(root) / slug(identity) / "prompts.sqlite", identity, "")
        self.damaged = 0

    def get(self, prompts: list[str]) -> dict[str, object]:

        found = {}
        for start in range(0, len(prompts), 900):
            chunk = prompts[start : start + 900]
            marks = ",".join("?" * len(chunk))
            rows = self._store._query(
                f"SELECT prompt, 0, vector, {self._store.checksum_column('texts')} FROM texts "
                f"WHERE prompt IN ({marks})",
                chunk,
            )
            trusted, failed = self._store._checked(rows)
            self.damaged += len(failed)
            found.update(trusted)
        return found

    def put(self, items: dict[str, object]) -> None:
        import numpy as np

        if not self._store.writable:
            return
        rows = []
        for prompt, vector in items.items():
            blob = np.asarray(vector, dtype="<f4").tobytes()
            rows.append((prompt, blob, vector_checksum(prompt, 0, blob)))
        try:
            with self._store._db as db:
                db.executemany(
                    "INSERT OR REPLACE INTO texts(prompt, vector, checksum) VALUES (?, ?, ?)",
                    rows,
                )
        except sqlite3.DatabaseError as exc:
            raise damaged_store_error(self._store.path, exc) from exc

    def close(self) -> None:
        self._store.close()


@functools.cache
def _norm_threads():
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(2, thread_name_prefix="mus-norms")


def row_norms(matrix):
    """Each row's Euclidean norm, the rows split between two threads. Over a memory-mapped shard
    this is the first touch of its pages: cold from disk, two threads fault pages in at two
    places at once and keep the disk busier than one (NumPy lets go of the GIL in einsum; 4.8 s
    against 5.8 s for the cold re-scoring of a million, BENCHMARKS.md)."""
    import numpy as np

    if matrix.shape[0] < 4_096:
        return np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
    half = matrix.shape[0] // 2
    parts = _norm_threads().map(
        lambda part: np.einsum("ij,ij->i", part, part), (matrix[:half], matrix[half:])
    )
    return np.sqrt(np.concatenate(list(parts)))
