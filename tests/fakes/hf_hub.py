"""Hugging Face's file endpoint (``/{repo}/resolve/{revision}/{file}``), served from 127.0.0.1.

It answers as the Hub does for what ``huggingface_hub.hf_hub_download`` asks: a HEAD with the
commit (``X-Repo-Commit``), the ETag and the size, then a GET of the bytes, sent in pieces with a
pause between them so that a download has a course to report; a file the repository does not
hold is a 404 with ``X-Error-Code: EntryNotFound``. Every request is logged (``served``).
"""

from __future__ import annotations

import hashlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    """``files``: {(repo, filename): bytes}. Use as a context manager; ``endpoint`` is its URL."""

    def __init__(
        self, files: dict[tuple[str, str], bytes], pieces: int = 20, pause_s: float = 0.01
    ):
        self.files = files
        self.pieces, self.pause_s = pieces, pause_s
        self.served: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _found(self):
                parts = self.path.split("?")[0].strip("/").split("/")
                # org/name/resolve/revision/filename
                if len(parts) < 5 or parts[2] != "resolve":
                    return None, None
                repo, filename = "/".join(parts[:2]), "/".join(parts[4:])
                return (repo, filename), hub.files.get((repo, filename))

            def _head(self, body: bytes | None) -> bool:
                if body is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("X-Error-Message", "Entry not found")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return False
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                return True

            def do_HEAD(self):
                _, body = self._found()
                hub.served.append(("HEAD", self.path))
                self._head(body)

            def do_GET(self):
                _, body = self._found()
                hub.served.append(("GET", self.path))
                if not self._head(body):
                    return
                step = max(1, len(body) // hub.pieces)
                for start in range(0, len(body), step):
                    self.wfile.write(body[start : start + step])
                    self.wfile.flush()
                    time.sleep(hub.pause_s)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
