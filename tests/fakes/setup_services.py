"""What the engine set-up fetches from the internet, served from 127.0.0.1.

- a package index (PEP 691 JSON when asked for it, PEP 503 HTML otherwise) and a find-links page,
  holding the real uv wheel of this machine and any other wheels a test adds;
- python-build-standalone's part: a downloads list in uv's format and an ``install_only``
  archive in its layout (``python/bin/python3.X``, ``python/lib/python3.X/``) whose interpreter is
  a copy of this machine's Python: uv downloads, checks, unpacks and uses it as the real thing;
- PyTorch's index (``/pytorch/cpu/``), answering for the builds a test puts there.

Every request is logged (``served``), so a test can tell what came from where. ``stop()`` takes it
away, as a network that stops answering would.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import os
import platform
import sys
import sysconfig
import tarfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
# What python-build-standalone's install_only archives leave out of a full CPython, and what this
# machine's Debian standard library holds that the stand-in does not need.
_STDLIB_SKIPPED = {"__pycache__", "test", "dist-packages", "site-packages", "idlelib", "tkinter"}


@dataclass
class Served:
    """One project of an index: its files by name (bytes)."""

    files: dict[str, bytes] = field(default_factory=dict)


def tiny_wheel(name: str, version: str, padding: int = 0, requires: tuple[str, ...] = ()) -> tuple:
    """A valid pure-Python wheel (file name, bytes) of ``padding`` incompressible bytes."""
    dist = f"{name.replace('-', '_')}-{version}"
    filename = f"{dist}-py3-none-any.whl"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    files = {
        f"{name.replace('-', '_')}/__init__.py": b"",
        f"{name.replace('-', '_')}/padding.bin": os.urandom(padding),
        f"{dist}.dist-info/METADATA": metadata.encode(),
        f"{dist}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: mus-tests\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in files) + f"{dist}.dist-info/RECORD,,\n"
    files[f"{dist}.dist-info/RECORD"] = record.encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return filename, buffer.getvalue()


def standin_python_archive(folder: Path) -> tuple[Path, dict]:
    """An install_only archive of this machine's own CPython, and its entry in uv's downloads
    list (the version this Python is, for this platform)."""
    binary = Path(os.path.realpath(sys.executable))
    version = platform.python_version()
    minor = ".".join(version.split(".")[:2])
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    arch = platform.machine()
    archive = folder / f"cpython-{version}+20261206-{arch}-unknown-linux-gnu-install_only.tar.gz"

    def keep(info: tarfile.TarInfo):
        return None if _STDLIB_SKIPPED & set(Path(info.name).parts) else info

    # Links dereferenced: uv refuses an archive with absolute links (Debian's stdlib has some).
    with tarfile.open(archive, "w:gz", compresslevel=1, dereference=True) as tar:
        tar.add(binary, f"python/bin/python{minor}")
        for alias in ("python3", "python"):
            link = tarfile.TarInfo(f"python/bin/{alias}")
            link.type, link.linkname = tarfile.SYMTYPE, f"python{minor}"
            tar.addfile(link)
        tar.add(stdlib, f"python/lib/python{minor}", filter=keep)
    major, minor_number, patch = (int(part) for part in version.split(".")[:3])
    entry = {
        "name": "cpython",
        "arch": {"family": arch, "variant": None},
        "os": "linux",
        "libc": "gnu",
        "major": major,
        "minor": minor_number,
        "patch": patch,
        "prerelease": "",
        "url": "",  # the server fills in its own address
        "sha256": hashlib.sha256(archive.read_bytes()).hexdigest(),
        "variant": None,
        "build": "20261206",
    }
    return archive, {f"cpython-{version}-linux-{arch}-gnu": entry}


class FakeSetupServices:
    """The package index, find-links page, Python downloads and PyTorch index, in one server."""

    def __init__(self, python_archive: Path | None = None, python_entries: dict | None = None):
        self.projects: dict[str, Served] = {}
        self.pytorch: dict[str, Served] = {}
        self.find_links: dict[str, bytes] = {}
        self.python_archive = python_archive
        self.python_entries = python_entries or {}
        self.served: list[str] = []
        self.heads: list[str] = []
        self.sizes_in_index = True  # PEP 691 "size" keys, as PyPI gives; PyTorch's index has none
        self._server: ThreadingHTTPServer | None = None

    # -- what it holds --------------------------------------------------------------------------
    def add(self, project: str, filename: str, data: bytes, pytorch: bool = False) -> None:
        (self.pytorch if pytorch else self.projects).setdefault(project, Served()).files[
            filename
        ] = data

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def index_url(self) -> str:
        return f"{self.url}/simple"

    @property
    def find_links_url(self) -> str:
        return f"{self.url}/wheels/"

    @property
    def pytorch_url(self) -> str:
        return f"{self.url}/pytorch"

    @property
    def python_downloads_url(self) -> str:
        return f"{self.url}/python/downloads.json"

    # -- serving ----------------------------------------------------------------------------
    def start(self) -> FakeSetupServices:
        services = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, body: bytes, kind: str = "text/html") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_HEAD(self) -> None:
                services.heads.append(self.path)
                self.do_GET()

            def do_GET(self) -> None:
                services.served.append(self.path)
                parts = [p for p in self.path.split("?")[0].split("/") if p]
                if parts[:1] == ["simple"] and len(parts) == 2:
                    return self._project(services.projects.get(parts[1]), "files")
                if parts[:2] == ["pytorch", "cpu"] and len(parts) == 3:
                    # PyTorch's index speaks PEP 503 HTML only, without file sizes.
                    return self._project(
                        services.pytorch.get(parts[2]), "pytorch-files", html_only=True
                    )
                if parts[:1] == ["wheels"] and len(parts) == 1:
                    links = "".join(
                        f'<a href="/find-links/{name}">{html.escape(name)}</a><br>'
                        for name in services.find_links
                    )
                    return self._send(200, f"<html><body>{links}</body></html>".encode())
                if parts[:1] in (["files"], ["pytorch-files"], ["find-links"]) and len(parts) == 2:
                    return self._file(parts[0], parts[1])
                if parts == ["python", "downloads.json"]:
                    listing = {}
                    for key, entry in services.python_entries.items():
                        url = f"{services.url}/python/{services.python_archive.name}"
                        listing[key] = {**entry, "url": url.replace("+", "%2B")}
                    return self._send(200, json.dumps(listing).encode(), "application/json")
                if parts[:1] == ["python"] and services.python_archive is not None:
                    return self._send(200, services.python_archive.read_bytes(), "application/gzip")
                return self._send(404, b"not found")

            def _project(self, project: Served | None, route: str, html_only=False) -> None:
                if project is None:
                    return self._send(404, b"no such project")
                entries = [
                    (name, hashlib.sha256(data).hexdigest(), len(data))
                    for name, data in sorted(project.files.items())
                ]
                if SIMPLE_JSON in self.headers.get("Accept", "") and not html_only:
                    files = []
                    for name, digest, size in entries:
                        item = {"filename": name, "url": f"/{route}/{name}"}
                        item["hashes"] = {"sha256": digest}
                        if services.sizes_in_index:
                            item["size"] = size
                        files.append(item)
                    body = {"meta": {"api-version": "1.1"}, "name": "x", "files": files}
                    return self._send(200, json.dumps(body).encode(), SIMPLE_JSON)
                links = "".join(
                    f'<a href="/{route}/{name}#sha256={digest}">{html.escape(name)}</a><br>'
                    for name, digest, _size in entries
                )
                self._send(200, f"<html><body>{links}</body></html>".encode())

            def _file(self, route: str, name: str) -> None:
                if route == "find-links":
                    data = services.find_links.get(name)
                else:
                    pool = services.pytorch if route == "pytorch-files" else services.projects
                    data = next((p.files[name] for p in pool.values() if name in p.files), None)
                if data is None:
                    return self._send(404, b"no such file")
                self._send(200, data, "application/octet-stream")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Gone, as a network that stops answering: the port refuses from now on."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            time.sleep(0.1)
