"""Image and text embeddings on disk, so that no image is decoded or encoded twice.

One SQLite file per model and view setting holds the image embeddings (keyed by the file's
content hash and, for panoramas, where the views point) and what is known of each file path, so a
later run, or QGIS on another machine, can score new labels without reading any image. Prompts
have their own file per model. Every batch is committed, so a killed run keeps what it finished.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from ..errors import EmbeddingStoreError
from .views import ImageFacts

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS embeddings (
    key TEXT PRIMARY KEY, vector BLOB NOT NULL, views INTEGER NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, digest TEXT NOT NULL,
    kind TEXT NOT NULL, width INTEGER, height INTEGER, heading REAL);
CREATE TABLE IF NOT EXISTS texts (prompt TEXT PRIMARY KEY, vector BLOB NOT NULL);
"""


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


class EmbeddingStore:
    """Embeddings of one model (``identity``) under one view setting (``view_key``)."""

    def __init__(self, path: str | Path, identity: str, view_key: str) -> None:
        self.path = Path(path)
        self.identity = identity
        self.view_key = view_key
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise EmbeddingStoreError(
                f"Cannot open the embedding store {self.path}: {exc}"
            ) from exc
        self._check_meta()

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
        with self._db:
            self._db.executemany(
                "INSERT OR IGNORE INTO meta(name, value) VALUES (?, ?)", wanted.items()
            )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> EmbeddingStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self._db.execute("SELECT count(*) FROM embeddings").fetchone()[0]

    def keys(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT key FROM embeddings")}

    def put(
        self,
        rows: Iterable[tuple[str, object, int]],
        files: Iterable[tuple[str, int, int, ImageFacts]] = (),
    ) -> None:
        """Store (key, float32 vector, number of views) rows and file facts in one commit."""
        import numpy as np

        now = time.time()
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO embeddings(key, vector, views, created) VALUES (?,?,?,?)",
                [
                    (key, np.asarray(vec, dtype="<f4").tobytes(), views, now)
                    for key, vec, views in rows
                ],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?)",
                [
                    (path, size, mtime, f.digest, f.kind, f.width, f.height, f.heading)
                    for path, size, mtime, f in files
                ],
            )

    def get(self, keys: Iterable[str]) -> dict[str, object]:
        import numpy as np

        wanted = list(dict.fromkeys(keys))
        found = {}
        for start in range(0, len(wanted), 900):
            chunk = wanted[start : start + 900]
            marks = ",".join("?" * len(chunk))
            for key, blob in self._db.execute(
                f"SELECT key, vector FROM embeddings WHERE key IN ({marks})", chunk
            ):
                found[key] = np.frombuffer(blob, dtype="<f4")
        return found

    def all(self):
        """Every stored key and its vector, as (list of keys, N×D array)."""
        import numpy as np

        keys, blobs = [], []
        for key, blob in self._db.execute("SELECT key, vector FROM embeddings ORDER BY key"):
            keys.append(key)
            blobs.append(blob)
        if not blobs:
            return keys, np.zeros((0, 0), dtype=np.float32)
        return keys, np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(keys), -1)

    def file_facts(self, paths: Iterable[str]) -> dict[str, tuple[int, int, ImageFacts]]:
        """What is known of each path: (size, mtime_ns, facts)."""
        wanted = list(dict.fromkeys(paths))
        known = {}
        for start in range(0, len(wanted), 900):
            chunk = wanted[start : start + 900]
            marks = ",".join("?" * len(chunk))
            for row in self._db.execute(f"SELECT * FROM files WHERE path IN ({marks})", chunk):
                path, size, mtime, digest, kind, width, height, heading = row
                known[path] = (size, mtime, ImageFacts(digest, kind, width, height, heading))
        return known

    def files(self) -> dict[str, ImageFacts]:
        return {row[0]: ImageFacts(*row[3:]) for row in self._db.execute("SELECT * FROM files")}


class TextStore:
    """Prompt embeddings of one model, so a label set is encoded once."""

    def __init__(self, root: str | Path, identity: str) -> None:
        self._store = EmbeddingStore(Path(root) / slug(identity) / "prompts.sqlite", identity, "")

    def get(self, prompts: list[str]) -> dict[str, object]:
        import numpy as np

        db = self._store._db
        found = {}
        for start in range(0, len(prompts), 900):
            chunk = prompts[start : start + 900]
            marks = ",".join("?" * len(chunk))
            for prompt, blob in db.execute(
                f"SELECT prompt, vector FROM texts WHERE prompt IN ({marks})", chunk
            ):
                found[prompt] = np.frombuffer(blob, dtype="<f4")
        return found

    def put(self, items: dict[str, object]) -> None:
        import numpy as np

        with self._store._db as db:
            db.executemany(
                "INSERT OR REPLACE INTO texts(prompt, vector) VALUES (?, ?)",
                [(p, np.asarray(v, dtype="<f4").tobytes()) for p, v in items.items()],
            )

    def close(self) -> None:
        self._store.close()
