"""What the services answered about each point, remembered in the cache folder.

A resumed fetch asks a service only about points it has not answered for, and a fetch by date
after a survey asks nothing again: the survey's lists of candidates are remembered here too. One
SQLite file per source (``<cache>/imagery/<source>/lookups.sqlite``), a JSON value per key.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import date
from pathlib import Path

from ...shared.errors import MusError
from .sources.base import Candidate


class LookupCache:
    """Remembers a source's answers: its pick for a point, or its list of candidates."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self._lock = threading.Lock()
        if read_only:  # an estimate: reads what is remembered, writes nothing, creates nothing
            if path.exists():
                self._db = sqlite3.connect(
                    f"{path.as_uri()}?mode=ro", uri=True, check_same_thread=False
                )
            else:  # nothing remembered yet
                self._db = sqlite3.connect(":memory:", check_same_thread=False)
                self._db.execute("CREATE TABLE lookups (key TEXT PRIMARY KEY, value TEXT)")
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(path), check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # Commits without fsync: a lookup lost to a power cut is simply asked again.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS lookups (key TEXT PRIMARY KEY, value TEXT)"
            )
        except sqlite3.DatabaseError as exc:
            raise MusError(
                f"The lookup cache {path} is damaged ({exc}): delete it and run again (the "
                "images in the cache are kept; only the lookups are asked again)."
            ) from None

    def __enter__(self) -> LookupCache:
        return self

    def __exit__(self, *exc) -> None:
        self._db.close()

    def _read(self, key: str):
        with self._lock:
            row = self._db.execute("SELECT value FROM lookups WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _write(self, key: str, value) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO lookups VALUES (?, ?)", (key, json.dumps(value))
            )

    def get(self, key: str):
        """The remembered candidate, {} for "nothing there", None when never looked up."""
        text = self._read(key)
        if text is None:
            return None
        try:
            value = json.loads(text)
            return candidate_from_dict(value) if value else {}
        except (ValueError, TypeError, KeyError, AttributeError):
            return None  # a damaged entry is a lookup never made: it is asked again

    def put(self, key: str, candidate: Candidate | None) -> None:
        self._write(key, {} if candidate is None else candidate_to_dict(candidate))

    def get_list(self, key: str) -> list[Candidate] | None:
        """The remembered list of candidates ([] for none there), None when never asked."""
        text = self._read(key)
        if text is None:
            return None
        try:
            value = json.loads(text)
            return [candidate_from_dict(item) for item in value]
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    def put_list(self, key: str, candidates: list[Candidate]) -> None:
        self._write(key, [candidate_to_dict(candidate) for candidate in candidates])


def candidate_to_dict(candidate: Candidate) -> dict:
    return {
        **candidate.__dict__,
        "captured": candidate.captured.isoformat() if candidate.captured else None,
    }


def candidate_from_dict(value: dict) -> Candidate:
    value = dict(value)
    captured = value.pop("captured")
    return Candidate(**value, captured=date.fromisoformat(captured) if captured else None)


def pick_key(source: str, settings, point) -> str:
    """The key of a source's pick for a point under a fetch's settings (``FetchSettings``)."""
    window = settings.window
    return json.dumps(
        [
            source,
            settings.url,
            settings.location,
            round(point.lon, 6),
            round(point.lat, 6),
            settings.radius_m,
            str(window.start),
            str(window.end),
        ]
    )


def list_key(source: str, url: str, point, radius_m: float) -> str:
    """The key of a source's list of candidates for a point, of every date (a window is applied
    to the list, so one listing serves any window)."""
    return json.dumps(["list", source, url, round(point.lon, 6), round(point.lat, 6), radius_m])
