"""The protocol between QGIS (the client) and the engine worker: JSON lines on stdin and stdout.

One JSON object per line, UTF-8, each with a ``type``. Features, arrays and embeddings never go
through the pipe: a job names files (GeoPackage, NumPy ``.npz``, JSON) in a folder the client owns,
usually Processing's temporary folder, and the worker writes its results next to them.

Client to worker
    ``{"type": "job", "id": ID, "job": NAME, "params": {...}}``   run job NAME (see ``jobs.JOBS``)
    ``{"type": "cancel", "id": ID}``                               stop job ID as soon as it can
    ``{"type": "shutdown"}``                                       finish and exit

Worker to client
    ``{"type": "ready", "protocol": 1, "pid": N, "python": PATH, "version": V}``  once, at start
    ``{"type": "progress", "id": ID, "percent": P}``
    ``{"type": "log", "id": ID, "level": "info"|"warning"|"error", "message": TEXT}``
    ``{"type": "result", "id": ID, "result": {...}}``              the job finished
    ``{"type": "error", "id": ID, "error": CLASS, "message": TEXT, "user_error": BOOL,
       "traceback": TEXT}``                                        the job failed

The worker runs one job at a time; a job sent while another runs waits. It exits on ``shutdown``,
when its stdin closes (QGIS has gone), or after an idle timeout. Anything a library prints goes to
the worker's stderr, never into the protocol stream; the client keeps the last stderr lines to
explain a worker that died.
"""

from __future__ import annotations

import json

PROTOCOL_VERSION = 1


def encode(message: dict) -> bytes:
    """One message as a line of UTF-8 JSON."""
    return (json.dumps(message, ensure_ascii=False, allow_nan=True) + "\n").encode("utf-8")


def decode(line: bytes | str) -> dict | None:
    """The message on a line, or None for a blank or garbled line."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    line = line.strip()
    if not line:
        return None
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) and "type" in message else None


# A worker idle this long exits, freeing the memory a loaded model holds (a setting in QGIS).
DEFAULT_IDLE_TIMEOUT_S = 15 * 60
