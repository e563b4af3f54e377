"""uv, the installer of the engine set-up: one pinned release, fetched once per engine folder.

uv (Astral) ships as one static binary per platform inside a PyPI wheel. The set-up takes the
wheel for this machine from the package index (PyPI unless the user names another), or from the
folder of wheels of an offline machine, checks its SHA-256 against ``resources/engine/uv.json``
(whoever served it), and unpacks the binary into ``ROOT/tools/uv-VERSION/``. The verified wheel
stays beside it: copied into an offline machine's wheel folder, it serves there too.

Standard library only, Python 3.9+: QGIS's process runs the set-up.
"""

from __future__ import annotations

import contextlib
import hashlib
import html.parser
import json
import os
import shutil
import stat
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from functools import lru_cache
from pathlib import Path

from ..shared.resources import resource_path
from .machine import Machine, executable_name
from .setup_commands import CANCELED, SetupCanceledError, SetupError, run_command

PYPI = "https://pypi.org/simple"
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
DOWNLOAD_TIMEOUT_S = 60
CHUNK = 1 << 20


@lru_cache(maxsize=1)
def pinned() -> dict:
    """The pinned uv release: ``{"version": ..., "wheels": {filename: {sha256, size}}}``."""
    return json.loads(resource_path("engine", "uv.json").read_text(encoding="utf-8"))


def package_index(configured: str = "") -> str:
    """The package index the set-up uses: the one named, else the one uv or pip is told to use
    on this machine (an institution's mirror), else PyPI."""
    for value in (
        configured,
        os.environ.get("UV_DEFAULT_INDEX", ""),
        os.environ.get("UV_INDEX_URL", ""),
        os.environ.get("PIP_INDEX_URL", ""),
    ):
        if value.strip():
            return value.strip().rstrip("/")
    return PYPI


# -- which wheel -------------------------------------------------------------------------------
def wheel_platforms(machine: Machine) -> list[str]:
    """The wheel platform tags a uv binary for ``machine`` may carry, best first."""
    arch = machine.native_arch
    if machine.system == "windows":
        return [{"x86_64": "win_amd64", "aarch64": "win_arm64", "i686": "win32"}.get(arch, "")]
    if machine.system == "darwin":
        return ["macosx_11_0_arm64"] if arch == "aarch64" else ["macosx_10_12_x86_64"]
    major, minor = machine.libc_version
    if machine.libc == "musl":
        return [f"musllinux_1_{m}_{arch}" for m in range(minor, 0, -1)]
    if (major, minor) < (2, 17):  # older than every manylinux build
        return []
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 16, -1)]
    return [*tags, f"manylinux2014_{arch}"]


def pick_wheel(machine: Machine, filenames) -> str:
    """The uv wheel among ``filenames`` that runs on ``machine``, or ""."""
    for wanted in wheel_platforms(machine):
        for name in sorted(filenames):
            platforms = name[: -len(".whl")].split("-")[-1].split(".")
            if wanted and wanted in platforms:
                return name
    return ""


# -- fetching ------------------------------------------------------------------------------------
class _Links(html.parser.HTMLParser):
    """The anchors of a PEP 503 project page: {file name: href}."""

    def __init__(self) -> None:
        super().__init__()
        self.links: dict[str, str] = {}
        self._href = ""

    def handle_starttag(self, tag, attrs) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href") or ""

    def handle_data(self, data) -> None:
        if self._href and data.strip():
            self.links[data.strip()] = self._href
            self._href = ""


def _open(url: str, accept: str = "*/*"):
    request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "mus_qgis"})
    return urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S)


def is_url(source: str) -> bool:
    return source.split(":", 1)[0].lower() in ("http", "https", "file")


def page_links(page: str) -> dict[str, str]:
    """{file name: absolute URL} of an index's project page (PEP 691 JSON, else PEP 503 HTML)
    or of a find-links page (a plain HTML list of files, as pip and uv read it)."""
    with _open(page, f"{SIMPLE_JSON}, text/html;q=0.5") as answer:
        body = answer.read()
        kind = answer.headers.get("Content-Type", "")
        base = answer.geturl()
    if SIMPLE_JSON in kind:
        links = {entry["filename"]: entry["url"] for entry in json.loads(body)["files"]}
    else:
        parser = _Links()
        parser.feed(body.decode("utf-8", errors="replace"))
        links = parser.links
    return {name: urllib.parse.urljoin(base, href.split("#", 1)[0]) for name, href in links.items()}


def wheel_url(index: str, filename: str) -> str:
    """Where ``index`` serves ``filename`` of the project uv."""
    links = page_links(f"{index.rstrip('/')}/uv/")
    if filename not in links:
        raise SetupError(
            f"The package index {index} has no {filename}: it may mirror only part of PyPI. "
            "Name an index that has uv's wheels, or put that file into a folder of wheels and "
            "give the folder to the set-up."
        )
    return links[filename]


def download(url: str, target: Path, size: int, progress) -> None:
    """Fetch ``url`` into ``target``, saying how far it got; a cancel stops it."""
    done, told = 0, 0
    with _open(url) as answer, open(target, "wb") as out:
        while True:
            if progress.is_canceled():
                raise SetupCanceledError(CANCELED)
            chunk = answer.read(CHUNK)
            if not chunk:
                break
            out.write(chunk)
            done += len(chunk)
            if size and done * 4 // size > told:
                told = done * 4 // size
                progress.info(f"uv: {done / 1e6:.0f} of {size / 1e6:.0f} MB")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        for block in iter(lambda: data.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


# -- the tool ------------------------------------------------------------------------------------
def uv_folder(root: Path) -> Path:
    return Path(root) / "tools" / f"uv-{pinned()['version']}"


def installed_uv(root: Path, machine: Machine) -> Path | None:
    """The pinned uv in this engine folder, if it is there and runs."""
    binary = uv_folder(root) / executable_name(machine, "uv")
    if not binary.is_file():
        return None
    try:
        lines = run_command([str(binary), "--version"], _Quiet(), "uv", relay=False)
    except SetupError:
        return None
    return binary if any(pinned()["version"] in line for line in lines) else None


def ensure_uv(
    root: Path,
    machine: Machine,
    progress,
    index: str = "",
    wheel_folder: str = "",
    offline: bool = False,
) -> Path:
    """The pinned uv for this machine under ``root``: already there, from the wheel folder, or
    (unless ``offline``) downloaded from the package index; verified in every case."""
    present = installed_uv(root, machine)
    if present:
        return present
    version, wheels = pinned()["version"], pinned()["wheels"]
    filename = pick_wheel(machine, wheels)
    if not filename:
        raise SetupError(
            f"uv {version}, the installer the set-up uses, has no build for {machine.describe()}. "
            "Name a Python that already has the engine's packages in Processing ▸ Options ▸ "
            "Providers ▸ Multimodal Urban Studies ▸ Engine Python, or choose the pip installer."
        )
    expected = wheels[filename]
    tools = uv_folder(root).parent
    tools.mkdir(parents=True, exist_ok=True)
    staging = tools / f".uv-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        wheel = staging / filename
        _fetch_uv_wheel(filename, expected["size"], wheel, progress, index, wheel_folder, offline)
        found = sha256_of(wheel)
        if found != expected["sha256"]:
            raise SetupError(
                f"{filename} does not match the uv release the plugin was made with (SHA-256 "
                f"{found[:16]}…, expected {expected['sha256'][:16]}…): it was damaged or altered "
                "on its way. Nothing was installed. Try again; if it persists, the index or proxy "
                "serves another file under that name."
            )
        _unpack(wheel, staging, machine, version)
        target = uv_folder(root)
        if target.exists():  # a damaged earlier copy: the verified one replaces it
            shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    binary = installed_uv(root, machine)
    if binary is None:
        raise SetupError(f"uv {version} was unpacked into {uv_folder(root)} but does not run.")
    return binary


def _fetch_uv_wheel(filename, size, wheel, progress, index, wheel_folder, offline) -> None:
    """The uv wheel into ``wheel``: from the wheel folder (a folder, or a find-links page), else
    from the package index unless offline."""
    version = pinned()["version"]
    if wheel_folder and is_url(wheel_folder):
        try:
            links = page_links(wheel_folder)
        except (OSError, urllib.error.URLError, ValueError) as exc:
            if offline:
                raise SetupError(_unreachable(wheel_folder, filename, exc)) from None
            links = {}
        if filename in links:
            progress.info(f"uv {version}: from {wheel_folder}")
            _download_or_explain(links[filename], wheel, size, progress, wheel_folder, filename)
            return
    elif wheel_folder:
        local = Path(wheel_folder).expanduser() / filename
        if local.is_file():
            progress.info(f"uv {version}: from the wheel folder ({local})")
            shutil.copyfile(local, wheel)
            return
    if offline:
        raise SetupError(
            f"The wheel folder {wheel_folder} has no {filename} (uv {version} for this "
            "machine), and an offline set-up downloads nothing. Copy that file from PyPI "
            "(https://pypi.org/project/uv/#files) into the folder."
        )
    source = package_index(index)
    progress.info(f"uv {version}: downloading {filename} ({size / 1e6:.0f} MB) from {source}")
    try:
        url = wheel_url(source, filename)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        raise SetupError(_unreachable(source, filename, exc)) from None
    _download_or_explain(url, wheel, size, progress, source, filename)


def _download_or_explain(url, wheel, size, progress, source, filename) -> None:
    try:
        download(url, wheel, size, progress)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        raise SetupError(_unreachable(source, filename, exc)) from None


def _unpack(wheel: Path, folder: Path, machine: Machine, version: str) -> None:
    name = executable_name(machine, "uv")
    member = f"uv-{version}.data/scripts/{name}"
    with zipfile.ZipFile(wheel) as archive, archive.open(member) as packed:
        (folder / name).write_bytes(packed.read())
    if not machine.windows:
        mode = (folder / name).stat().st_mode
        (folder / name).chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _unreachable(index: str, filename: str, exc: Exception) -> str:
    reason = getattr(exc, "reason", None) or exc
    return (
        f"The set-up could not download uv ({filename}) from {index}: {reason}. Nothing was "
        "installed, and the engine in use (if any) is unchanged. What to do: check the network "
        "(behind a proxy, set HTTPS_PROXY for QGIS); or name your institution's package index "
        "in the set-up's advanced parameters; or, on a machine without internet, download the "
        "engine's wheels and this file elsewhere into a folder and give it as 'Folder of wheels' "
        "with 'Offline'."
    )


class _Quiet:
    def info(self, message: str) -> None:
        pass

    def is_canceled(self) -> bool:
        return False


def remove_other_uv(root: Path) -> None:
    """Drop uv releases an older plugin fetched (a set-up of this release no longer uses them)."""
    current = uv_folder(root).name
    for folder in (Path(root) / "tools").glob("uv-*"):
        if folder.name != current:
            with contextlib.suppress(OSError):
                shutil.rmtree(folder)
