"""The engine environment: a virtual environment with the engine's packages, set up by the plugin.

Standard library only, Python 3.9+: QGIS's Python runs this to create the environment the worker
runs in. Everything lives under one root folder (by default the plugin's folder in the QGIS
profile), so that deleting it removes all the set-up made::

    ROOT/envs/engine-YYYYmmdd-HHMMSS/   one virtual environment per set-up
    ROOT/current.json                   which one is in use, its versions and how it was made
    ROOT/env                            (POSIX) a link to the environment in use
    ROOT/tools/uv-VERSION/              the installer (uv) and the wheel it came from
    ROOT/python/                        standalone CPython builds uv downloaded
    ROOT/cache/uv/                      uv's cache (the environments' files are links into it)

The set-up (:func:`setup`), with the default installer, uv:

1. plans the PyTorch build for this machine and says which and why (:mod:`.torch_plan`);
2. fetches the pinned uv and checks its digest (:mod:`.uv_tool`);
3. takes a Python 3.11+: the one the user named, else a standalone CPython that uv downloads
   once into ROOT/python (no Python needs to be installed first), else, when that download
   fails, a Python 3.11+ this machine already has, said out loud;
4. creates the environment beside the one in use, resolves the engine's pinned requirements into
   a lock file, says how much that downloads, installs exactly the lock, and verifies the result
   (imports and a forward pass of a tiny CLIP model in the new Python);
5. only then switches ``current.json`` (and the link) with an atomic rename: a failed or
   canceled set-up leaves the previous environment in use.

It installs binary wheels only: outside QGIS's process no wheel can clash with QGIS's GEOS, PROJ,
GDAL or LLVM, so nothing needs compiling. (The plugin's earlier set-up, a venv from a Python found
here filled by pip, is measured against this one in scripts/bench_setup.py.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..shared.errors import MusError
from ..shared.folders import folder_size
from ..shared.resources import ENGINE_REQUIREMENTS
from ..shared.schemas.engine import SelftestResult
from . import client
from .client import NullProgress, engine_command, worker_environment
from .machine import (
    Machine,
    default_uv_cache,
    environment_python,
    path_too_long,
    this_machine,
)
from .pythons import MANAGED_PYTHON, choose_python, named_python
from .setup_commands import CANCELED, SetupCanceledError, SetupError, run_command
from .torch_plan import TORCH_CHOICES, TorchPlan, plan_torch
from .uv_tool import ensure_uv, is_url, package_index, pinned, remove_other_uv

__all__ = [
    "TORCH_CHOICES",
    "SetupCanceledError",
    "SetupError",
    "SetupOptions",
    "current_python",
    "read_current",
    "setup",
]

CURRENT = "current.json"
LOCK = ".setup.lock"
# The resolution, twice over: as a PEP 751 lock (it carries each file's size, for the announcement)
# and as pinned requirements with their hashes (what is installed: uv's cache serves those, while
# it fetches a lock's file URLs anew every time, 3.3 GB for each set-up).
LOCK_FILE = "pylock.engine.toml"
PINS_FILE = "requirements.lock.txt"
REPLACE_ATTEMPTS = 20


@dataclass
class SetupOptions:
    """How to set up the engine environment.

    ``torch``: ``auto`` (see :mod:`.torch_plan`), ``default`` (PyPI's build), ``cpu``, ``cuda``,
    or a build of PyTorch's index by name (``cu128``, ``rocm6.4``). ``torch_index`` names the
    index torch comes from instead. ``base_python``: the Python to build on (empty: a standalone
    CPython). ``index_url``: the package index (empty: PyPI, or the one uv or pip is told to
    use here). ``wheel_folder`` adds a local folder of wheels; with ``offline`` nothing else is
    asked for (a find-links URL works too). ``plan_only``: say what would be installed and how
    much it downloads, then stop. ``python_version``: the standalone CPython to download.
    """

    root: Path
    base_python: str = ""
    torch: str = "auto"
    torch_index: str = ""
    wheel_folder: str = ""
    offline: bool = False
    force: bool = False
    extra_requirements: list[str] = field(default_factory=list)
    index_url: str = ""
    cache_dir: str = ""
    plan_only: bool = False
    python_version: str = MANAGED_PYTHON


# -- where things are --------------------------------------------------------------------------
def env_python(env_dir: Path, machine: Machine | None = None) -> Path:
    """The Python of a virtual environment, on this platform (or the ``machine`` given)."""
    return environment_python(machine or this_machine(), Path(env_dir))


def read_current(root: Path) -> dict | None:
    """The record of the environment in use under ``root``, or None."""
    try:
        record = json.loads((Path(root) / CURRENT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def current_python(root: Path, machine: Machine | None = None) -> str | None:
    """The Python of the environment in use under ``root``, if it is there."""
    record = read_current(root)
    if record and record.get("env"):
        python = env_python(Path(root) / record["env"], machine)
        if python.exists():
            return str(python)
    return None


def megabytes(count: int) -> str:
    return f"{count / 1e9:.1f} GB" if count >= 1e9 else f"{count / 1e6:.0f} MB"


# -- requirements ------------------------------------------------------------------------------
def requirement_lines(extra: list[str] | tuple = ()) -> list[str]:
    lines = []
    for path in [ENGINE_REQUIREMENTS, *extra]:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            spec = line.split("#", 1)[0].strip()
            if spec and not spec.startswith("-"):
                lines.append(spec)
    return lines


def pinned_version(package: str) -> str:
    for line in requirement_lines():
        name, _, version = line.partition("==")
        if name.strip().lower() == package:
            return version.strip()
    return ""


def requirements_digest(options: SetupOptions) -> str:
    """What identifies a set-up: requirements, torch choice, installer and sources. Same
    digest, no redo."""
    text = json.dumps(
        [
            requirement_lines(options.extra_requirements),
            options.torch,
            options.torch_index,
            options.wheel_folder,
            options.offline,
            options.base_python,
            options.python_version or MANAGED_PYTHON,
        ]
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def verify(python: str, progress=None) -> SelftestResult:
    """Run the engine's self-test in ``python``; its report, or a SetupError saying what failed."""
    lines = run_command(
        engine_command(python, "selftest"),
        progress or NullProgress(),
        f"The engine's self-test in {python}",
        relay=False,
    )
    for line in reversed(lines):  # the report is the last JSON line; warnings may come before
        try:
            report = SelftestResult.from_dict(json.loads(line))
        except (ValueError, MusError):
            continue
        if report.ok:
            return report
    tail = "\n".join(lines[-12:])
    raise SetupError(f"The engine's self-test in {python} said nothing readable:\n{tail}")


# -- one set-up at a time, and the switch ----------------------------------------------------------
class _SetupLock:
    """One set-up at a time per folder (the menu clicked twice, or the menu and Processing)."""

    _held = threading.Lock()

    def __init__(self, root: Path) -> None:
        self.path = root / LOCK

    def __enter__(self):
        if not _SetupLock._held.acquire(blocking=False):
            raise SetupError("Another set-up of the engine is running in this QGIS; wait for it.")
        try:
            self._take()
        except BaseException:
            _SetupLock._held.release()
            raise
        return self

    def _take(self) -> None:
        for _ in range(2):
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if self._holder_alive():
                    raise SetupError(
                        f"Another set-up of the engine is running in {self.path.parent} "
                        f"(see {self.path}); wait for it, or remove that file if none runs."
                    ) from None
                with contextlib.suppress(OSError):
                    self.path.unlink()  # left by a set-up that was killed
                continue
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(str(os.getpid()))
            return
        raise SetupError(f"The set-up lock {self.path} cannot be taken.")

    def _holder_alive(self) -> bool:
        try:
            pid = int(self.path.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return False
        if pid == os.getpid():
            return True
        if not client.POSIX:
            # Windows' os.kill(pid, 0) would end the process: trust a lock younger than a set-up.
            return time.time() - self.path.stat().st_mtime < 3 * 3600
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()
        _SetupLock._held.release()


def replace_file(source: Path, target: Path, attempts: int = REPLACE_ATTEMPTS) -> None:
    """``os.replace``, patient with Windows: there a file another program holds open (a virus
    scanner, an indexer, a second QGIS reading it) cannot be replaced until it lets go."""
    for attempt in range(attempts):
        try:
            os.replace(source, target)
            return
        except PermissionError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.25)


def _switch(root: Path, record: dict) -> None:
    """Make ``record`` the environment in use, atomically (a rename), then drop the others."""
    staged = root / f".{CURRENT}.{uuid.uuid4().hex}"
    staged.write_text(json.dumps(record, indent=2), encoding="utf-8")
    try:
        replace_file(staged, root / CURRENT)
    except PermissionError as exc:
        with contextlib.suppress(OSError):
            staged.unlink()
        raise SetupError(
            f"{root / CURRENT} is held open by another program ({exc.strerror}), so the new "
            "environment could not be put in use; the previous one stays. Close what holds it "
            "(another QGIS, an editor) and set up again."
        ) from None
    if client.POSIX:
        # A link to the folder, not to the Python: a venv's Python finds its pyvenv.cfg one
        # level above the path it was started by, so ROOT/env/bin/python is the venv's.
        link = root / f".env.{uuid.uuid4().hex}"
        os.symlink(record["env"], link)
        os.replace(link, root / "env")


def remove_other_environments(root: Path, keep: str, in_use: set[str], progress) -> None:
    """Remove the environments no longer in use. One a worker of this QGIS still runs from waits
    for the next set-up (its lazy imports would fail half-way through a job); so does one that
    another program holds (Windows refuses to move a folder with a running Python in it)."""
    for env_dir in sorted((root / "envs").glob("engine-*")):
        if env_dir.name == Path(keep).name:
            continue
        if os.path.realpath(env_dir) in in_use:
            progress.info(
                f"Keeping {env_dir} until its running job ends; the next set-up removes it"
            )
            continue
        # Moved aside first, in one step: either it goes whole or it stays whole, never half.
        trash = root / "envs" / f".removing-{env_dir.name}-{uuid.uuid4().hex[:6]}"
        try:
            os.replace(env_dir, trash)
        except OSError:
            progress.info(f"Keeping {env_dir}: a program still uses it; the next set-up removes it")
            continue
        progress.info(f"Removing the previous environment {env_dir}")
        shutil.rmtree(trash, ignore_errors=True)
    for leftover in (root / "envs").glob(".removing-*"):
        shutil.rmtree(leftover, ignore_errors=True)


# -- the set-up ------------------------------------------------------------------------------------
def setup(
    options: SetupOptions,
    progress,
    in_use: set[str] | None = None,
    machine: Machine | None = None,
) -> dict:
    """Create, fill, verify and switch to a new engine environment; return its record.

    Idempotent: when the environment in use was made from the same requirements and choices and
    still passes its self-test, nothing is installed (unless ``force``). ``in_use``: environment
    folders that running workers use, left in place. ``machine``: this one unless a test
    simulates another.
    """
    from ..shared.folders import writable_folder

    wheels = options.wheel_folder
    if wheels and not is_url(wheels) and not Path(wheels).expanduser().is_dir():
        raise SetupError(
            f"The wheel folder {options.wheel_folder} does not exist (or is not a folder): give "
            "the folder the wheels were downloaded into (pip download -d FOLDER ...)."
        )
    if options.offline and not options.wheel_folder:
        raise SetupError("An offline set-up needs a folder of wheels to install from.")
    try:
        root = writable_folder(Path(options.root).expanduser().resolve(), "engine folder")
    except MusError as exc:
        raise SetupError(f"{exc} Nothing was installed.") from None
    with _SetupLock(root):
        return _setup(root, options, progress, in_use or set(), machine or this_machine())


def _setup(root: Path, options: SetupOptions, progress, in_use: set[str], machine: Machine) -> dict:
    digest = requirements_digest(options)
    record = read_current(root)
    if record and not options.force and not options.plan_only and record.get("digest") == digest:
        python = current_python(root, machine)
        if python:
            try:
                report = verify(python, progress)
            except SetupCanceledError:
                raise
            except SetupError as exc:
                progress.info(
                    f"The environment in use fails its self-test, so it is rebuilt: {exc}"
                )
            else:
                progress.info(f"The engine environment is already set up: {python}")
                progress.set_progress(100)
                return {**record, "unchanged": True, "device": report.device}
    if options.base_python:  # a wrong name is said before anything is fetched
        named_python(options.base_python)
    torch_version = pinned_version("torch")
    plan = plan_torch(options.torch, machine, torch_version, options.torch_index, options.offline)
    progress.info(f"This machine: {machine.describe()}")
    progress.info(plan.describe(torch_version))
    env_dir = root / "envs" / time.strftime("engine-%Y%m%d-%H%M%S")
    if env_dir.exists():
        env_dir = env_dir.with_name(f"{env_dir.name}-{uuid.uuid4().hex[:8]}")
    problem = path_too_long(machine, env_dir)
    if problem:
        raise SetupError(problem)
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        record = _build_with_uv(root, env_dir, options, plan, progress, machine)
        if options.plan_only:
            shutil.rmtree(env_dir, ignore_errors=True)
            progress.set_progress(100)
            return {**record, "plan_only": True, "unchanged": True}
        progress.set_progress(90)
        progress.info("Verifying the engine (imports, a tiny CLIP forward pass)")
        python = env_python(env_dir, machine)
        report = verify(str(python), progress)
        if progress.is_canceled():  # the last moment a cancel can still change nothing
            raise SetupCanceledError(CANCELED)
        record.update(
            {
                "env": env_dir.relative_to(root).as_posix(),
                "python": str(python),
                "digest": digest,
                "requirements": requirements_digest(SetupOptions(root)),
                "torch_build": plan.build,
                "torch_reason": plan.reason,
                "torch_index": plan.index_url,
                "torch_device": plan.device,
                "torch_label": plan.label,
                "installer": f"uv {pinned()['version']}",
                # What the menu's "Set up the engine" repeats (same choices, same digest).
                "options": {
                    "torch": options.torch,
                    "torch_index": options.torch_index,
                    "index_url": options.index_url,
                    "wheel_folder": options.wheel_folder,
                    "offline": options.offline,
                    "base_python": options.base_python,
                    "python_version": options.python_version,
                },
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "packages": report.packages,
                "size_bytes": folder_size(env_dir),
            }
        )
        _switch(root, record)
    except BaseException:
        shutil.rmtree(env_dir, ignore_errors=True)
        raise
    remove_other_environments(root, record["env"], in_use, progress)
    remove_other_uv(root)
    progress.set_progress(100)
    progress.info(f"The engine environment is ready: {python}")
    return {**record, "unchanged": False, "device": report.device}


# -- uv ------------------------------------------------------------------------------------------
def uv_environment(root: Path, options: SetupOptions) -> dict[str, str]:
    """What uv runs with: its cache and Pythons inside the engine folder, nothing written
    elsewhere (no python3.12 on the user's PATH, no entry in Windows' registry), no user uv
    configuration (the set-up's choices are the whole story), no progress bars in the log, and
    the system's certificates: a university's or company's proxy that inspects TLS has its
    authority there (where QGIS's own downloads find it), not in uv's built-in list."""
    env = worker_environment()
    env.update(
        {
            "UV_CACHE_DIR": str(options.cache_dir or default_uv_cache(root)),
            "UV_PYTHON_INSTALL_DIR": str(root / "python"),
            "UV_PYTHON_INSTALL_BIN": "0",
            "UV_PYTHON_INSTALL_REGISTRY": "0",
            "UV_NO_CONFIG": "1",
            "UV_NO_PROGRESS": "1",
            "UV_SYSTEM_CERTS": "1",
        }
    )
    # A mirror of python-build-standalone's releases, for networks that do not reach GitHub.
    mirror = os.environ.get("MUS_PYTHON_MIRROR", "").strip()
    if mirror:
        env["UV_PYTHON_INSTALL_MIRROR"] = mirror
    return env


def uv_sources(options: SetupOptions, plan: TorchPlan) -> list[str]:
    """Where uv takes packages from: the package index (or only the wheel folder, offline),
    and PyTorch's index for the torch build the plan chose."""
    sources = []
    wheels = options.wheel_folder
    if wheels:
        sources += ["--find-links", wheels if is_url(wheels) else str(Path(wheels).expanduser())]
    if options.offline:
        return [*sources, "--no-index", "--offline"]
    sources += ["--default-index", package_index(options.index_url)]
    if plan.index_url:
        # Best match across both: torch's "+cpu" (or "+cu128") release outranks PyPI's plain
        # one, while packages PyTorch's index mirrors at other versions still come from PyPI.
        sources += ["--index", plan.index_url, "--index-strategy", "unsafe-best-match"]
    return sources


def _build_with_uv(root, env_dir, options, plan, progress, machine) -> dict:
    progress.set_progress(2)
    uv = ensure_uv(
        root,
        machine,
        progress,
        index=options.index_url,
        wheel_folder=options.wheel_folder,
        offline=options.offline,
    )
    env = uv_environment(root, options)
    progress.set_progress(5)
    base, base_source = choose_python(uv, root, options, progress, env)
    progress.info(f"Python: {base}, {base_source}")
    progress.set_progress(10)
    create = [str(uv), "venv", str(env_dir), "--python", base, "--quiet"]
    if not options.offline:
        create.append("--seed")  # pip inside, for anyone who adds a package by hand later
    run_command(create, progress, "Creating the virtual environment", env=env)
    python = env_python(env_dir, machine)
    requirements = [str(ENGINE_REQUIREMENTS), *map(str, options.extra_requirements)]
    sources = uv_sources(options, plan)
    progress.info("Resolving the engine's packages")
    lock, pins = resolve(uv, python, requirements, sources, env_dir, progress, env)
    size = download_size(python, lock, progress, env)
    progress.info(_size_message(size, plan))
    record = {
        "base_python": base,
        "python_source": base_source,
        "uv": pinned()["version"],
        "download_bytes": size.get("bytes"),
        "download_packages": size.get("packages"),
    }
    if options.plan_only:
        return record
    progress.set_progress(15)
    progress.info("Installing (uv prints a line when it is done)")
    run_command(
        [str(uv), "pip", "install", "--python", str(python), "-r", str(pins), *sources],
        progress,
        "Installing the engine packages",
        env=env,
    )
    return record


def resolve(uv, python, requirements, sources, folder: Path, progress, env) -> tuple[Path, Path]:
    """The requirements resolved for ``python`` from ``sources``, written into ``folder`` twice
    (see PINS_FILE): the lock, and the pinned requirements with their hashes."""
    lock, pins = folder / LOCK_FILE, folder / PINS_FILE
    compile_ = [str(uv), "pip", "compile", *requirements, "--python", str(python), *sources]
    compile_ += ["--no-header", "--quiet"]
    for output, form in ((lock, "pylock.toml"), (pins, "requirements.txt")):
        extra = ["--generate-hashes"] if form == "requirements.txt" else []
        run_command(
            [*compile_, "--format", form, "--output-file", str(output), *extra],
            progress,
            "Resolving the engine's packages",
            env=env,
        )
    return lock, pins


def download_size(python: Path, lock: Path, progress, env) -> dict:
    script = Path(__file__).with_name("lock_size.py")
    lines = run_command(
        [str(python), str(script), str(lock)], progress, "Sizing the download", relay=False, env=env
    )
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        return {}


def _size_message(size: dict, plan: TorchPlan) -> str:
    if not size:
        return "Download: its size could not be told."
    largest = ", ".join(
        f"{name} {megabytes(count)}" for name, _version, count in size.get("largest", [])[:3]
    )
    unknown = size.get("unknown") or []
    text = (
        f"Download: at most {megabytes(size['bytes'])} for {size['packages']} packages "
        f"({largest}), with {plan.label or plan.build}; files already in the cache are not "
        "downloaded again."
    )
    if unknown:
        text += f" Not counted (the server did not say): {', '.join(unknown)}."
    return text
