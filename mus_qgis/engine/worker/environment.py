"""The engine environment: a virtual environment with the engine's packages, set up by the plugin.

Standard library only: QGIS's Python runs this to create the environment the worker runs in. The
environment lives under a root folder (by default the plugin's folder in the QGIS profile)::

    ROOT/envs/engine-YYYYmmdd-HHMMSS/   one virtual environment per set-up
    ROOT/current.json                   which one is in use, its versions and how it was made
    ROOT/env                            (POSIX) a link to the environment in use: its Python is
                                        ROOT/env/bin/python for scripts and settings to name

A set-up builds a new environment beside the one in use, verifies it (imports and a forward pass
of a tiny CLIP model in the new Python), and only then switches ``current.json`` (and the link)
with an atomic rename: a failed or canceled set-up leaves the previous environment in use. It
installs from binary wheels only: outside QGIS's process no wheel can clash with QGIS's GEOS,
PROJ, GDAL or LLVM, so nothing needs compiling.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..deps import REQUIREMENTS
from .client import PLUGIN_PARENT, NullProgress, engine_command, process_options, worker_environment
from .jobs import folder_size

PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH_PACKAGES = ("torch", "torchvision")
TORCH_CHOICES = ("auto", "default", "cpu", "cuda")
CURRENT = "current.json"
LOCK = ".setup.lock"
# The engine's pins (numpy 2.3, pandas 3.0, networkx 3.6) need Python 3.11 or newer.
MIN_PYTHON = (3, 11)


class SetupError(Exception):
    """The engine environment could not be set up; the previous one (if any) stays in use."""


class SetupCanceledError(SetupError):
    """The user canceled the set-up."""


@dataclass
class SetupOptions:
    """How to set up the engine environment.

    ``torch``: ``auto`` picks a CUDA build where an NVIDIA GPU is present, else PyTorch's CPU
    build from PyTorch's own index when it answers (a few hundred MB instead of several GB), else
    the default build; ``default`` takes PyPI's build, ``cpu`` and ``cuda`` force one.
    ``torch_index`` overrides the index torch comes from. ``wheel_folder`` adds a local folder of
    wheels; with ``offline`` nothing else is asked for (no index at all).
    """

    root: Path
    base_python: str = ""
    torch: str = "auto"
    torch_index: str = ""
    wheel_folder: str = ""
    offline: bool = False
    force: bool = False
    extra_requirements: list[str] = field(default_factory=list)


@dataclass
class TorchPlan:
    build: str  # "cuda", "cpu" or "default"
    index_url: str  # "" for the ordinary index
    reason: str


# -- where things are --------------------------------------------------------------------------
def env_python(env_dir: Path) -> Path:
    """The Python of a virtual environment, on this platform."""
    if sys.platform.startswith("win"):
        return env_dir / "Scripts" / "python.exe"
    return env_dir / "bin" / "python"


def read_current(root: Path) -> dict | None:
    """The record of the environment in use under ``root``, or None."""
    try:
        record = json.loads((Path(root) / CURRENT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def current_python(root: Path) -> str | None:
    """The Python of the environment in use under ``root``, if it is there."""
    record = read_current(root)
    if record and record.get("env"):
        python = env_python(Path(root) / record["env"])
        if python.exists():
            return str(python)
    return None


def python_version(python: str) -> tuple[int, int] | None:
    """The (major, minor) version of a Python, or None if it does not run."""
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env=worker_environment(),
            **process_options(),
        )
        major, minor = out.stdout.strip().split(".")
        return int(major), int(minor)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def find_base_python(configured: str = "") -> str:
    """A Python 3.11+ to create the environment from: the configured one, or the platform's."""
    wanted = ".".join(map(str, MIN_PYTHON))
    if configured:
        if not Path(configured).is_file():
            raise SetupError(
                f"The Python {configured} given to create the engine from does not exist."
            )
        version = python_version(configured)
        if version is None or version < MIN_PYTHON:
            found = ".".join(map(str, version)) if version else "one that does not run"
            raise SetupError(f"The Python {configured} is {found}; the engine needs {wanted}+.")
        return configured
    candidates = []
    if sys.platform.startswith("win"):
        # OSGeo4W and the standalone installer keep python.exe beside QGIS's Python library.
        prefix = Path(sys.base_prefix)
        candidates += [str(prefix / "python.exe"), str(prefix / "python3.exe")]
    elif sys.platform == "darwin":
        prefix = Path(sys.base_prefix)
        candidates += [str(prefix / "bin" / "python3"), "/usr/local/bin/python3"]
    else:
        candidates += ["/usr/bin/python3"]
    # Inside QGIS sys.executable is QGIS itself; outside (make, a console) it is a Python.
    if Path(sys.executable).name.lower().startswith("python"):
        candidates.append(sys.executable)
    for name in ("python3.13", "python3.12", "python3.11", "python3", "python"):
        candidates.append(shutil.which(name) or "")
    too_old = []
    for candidate in dict.fromkeys(c for c in candidates if c and Path(c).is_file()):
        version = python_version(candidate)
        if version is not None and version >= MIN_PYTHON:
            return candidate
        if version is not None:
            too_old.append(f"{candidate} ({version[0]}.{version[1]})")
    seen = f" Found only: {', '.join(too_old)}." if too_old else ""
    raise SetupError(
        f"No Python {wanted} or newer was found to create the engine environment from.{seen} "
        "Install one (python.org, or your system's packages) and name it in the set-up's "
        "advanced parameter."
    )


def nvidia_gpus() -> list[str]:
    """NVIDIA GPUs the driver reports (``nvidia-smi -L``), or none."""
    tool = shutil.which("nvidia-smi")
    if not tool:
        return []
    try:
        out = subprocess.run(
            [tool, "-L"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            **process_options(),
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.startswith("GPU")]


def index_answers(url: str, timeout_s: float = 5.0) -> bool:
    """Whether a package index answers for torch (a refused or closed network answers no)."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/torch/", timeout=timeout_s) as answer:
            return answer.status == 200
    except (OSError, urllib.error.URLError, ValueError):
        return False


def plan_torch(options: SetupOptions) -> TorchPlan:
    """Which torch build to install, from where, and why."""
    if options.torch_index:
        return TorchPlan("custom", options.torch_index, "the torch index set in the options")
    choice = options.torch if options.torch in TORCH_CHOICES else "auto"
    if options.offline:
        return TorchPlan("default", "", "offline: the wheels in the local folder")
    if choice == "default":
        return TorchPlan("default", "", "the default build, as chosen")
    gpus = nvidia_gpus() if choice in ("auto", "cuda") else []
    if choice == "cuda" or gpus:
        why = "chosen" if choice == "cuda" else f"an NVIDIA GPU is present ({gpus[0]})"
        if sys.platform.startswith("linux"):
            return TorchPlan("cuda", "", f"CUDA build (PyPI's Linux build): {why}")
        return TorchPlan(
            "default", "", f"{why}, but only Linux gets PyPI's CUDA build: set a torch index"
        )
    if sys.platform == "darwin":
        return TorchPlan("default", "", "macOS: PyPI's build (CPU and Apple GPU)")
    if index_answers(PYTORCH_CPU_INDEX):
        return TorchPlan("cpu", PYTORCH_CPU_INDEX, "no NVIDIA GPU: PyTorch's CPU build")
    return TorchPlan(
        "default", "", "no NVIDIA GPU, but PyTorch's CPU index does not answer: default build"
    )


def requirement_lines(extra: list[str] | tuple = ()) -> list[str]:
    lines = []
    for path in [REQUIREMENTS, *extra]:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            spec = line.split("#", 1)[0].strip()
            if spec and not spec.startswith("-"):
                lines.append(spec)
    return lines


def requirements_digest(options: SetupOptions) -> str:
    """What identifies a set-up: requirements, torch choice and sources. Same digest, no redo."""
    text = json.dumps(
        [
            requirement_lines(options.extra_requirements),
            options.torch,
            options.torch_index,
            options.wheel_folder,
            options.offline,
        ]
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# -- running commands ---------------------------------------------------------------------------
def _run(command: list[str], progress, what: str, relay: bool = True) -> list[str]:
    """Run a command, relaying its lines; stop it on cancel. Returns its output lines."""
    posix = not sys.platform.startswith("win")
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=worker_environment(),  # not QGIS's PYTHONPATH: pip must see what the worker sees
        cwd=str(PLUGIN_PARENT),
        # On POSIX its own process group, so that a cancel also stops what it started (venv runs
        # ensurepip as a child, which would otherwise go on writing into the folder).
        **process_options(),
    )
    lines: list[str] = []

    def read() -> None:
        for raw in process.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip()
            if line:
                lines.append(line)
                if relay and not line.startswith(" "):
                    progress.info(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while process.poll() is None:
        if progress.is_canceled():
            _stop(process, posix)
            reader.join(timeout=5)
            raise SetupCanceledError("The engine set-up was canceled; nothing was changed.")
        time.sleep(0.2)
    reader.join(timeout=5)
    if process.returncode != 0:
        tail = "\n".join(lines[-15:])
        raise SetupError(f"{what} failed (exit code {process.returncode}):\n{tail}")
    return lines


def _stop(process: subprocess.Popen, posix: bool) -> None:
    """Stop a command and everything it started; wait until they are gone."""
    if posix:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    else:
        process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        if posix:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.kill()
        process.wait(timeout=10)
    if posix:  # children may outlive the leader for a moment
        for _ in range(50):
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)


def _pip_install(python: Path, arguments: list[str], options: SetupOptions) -> list[str]:
    command = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    command += ["--only-binary=:all:", "--progress-bar", "off", "--no-input"]
    if options.wheel_folder:
        command += ["--find-links", options.wheel_folder]
    if options.offline:
        command.append("--no-index")
    return command + arguments


def verify(python: str, progress=None) -> dict:
    """Run the engine's self-test in ``python``; its report, or a SetupError saying what failed."""
    lines = _run(
        engine_command(python, "selftest"),
        progress or NullProgress(),
        f"The engine's self-test in {python}",
        relay=False,
    )
    for line in reversed(lines):  # the report is the last JSON line; warnings may come before
        try:
            report = json.loads(line)
        except ValueError:
            continue
        if isinstance(report, dict) and report.get("ok"):
            return report
    tail = "\n".join(lines[-12:])
    raise SetupError(f"The engine's self-test in {python} said nothing readable:\n{tail}")


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
            with os.fdopen(handle, "w") as out:
                out.write(str(os.getpid()))
            return
        raise SetupError(f"The set-up lock {self.path} cannot be taken.")

    def _holder_alive(self) -> bool:
        try:
            pid = int(self.path.read_text().strip())
        except (OSError, ValueError):
            return False
        if pid == os.getpid():
            return True
        if sys.platform.startswith("win"):
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


def _switch(root: Path, record: dict) -> None:
    """Make ``record`` the environment in use, atomically (a rename), then drop the others."""
    staged = root / f".{CURRENT}.{uuid.uuid4().hex}"
    staged.write_text(json.dumps(record, indent=2), encoding="utf-8")
    os.replace(staged, root / CURRENT)
    if not sys.platform.startswith("win"):
        # A link to the folder, not to the Python: a venv's Python finds its pyvenv.cfg one
        # level above the path it was started by, so ROOT/env/bin/python is the venv's.
        link = root / f".env.{uuid.uuid4().hex}"
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(record["env"], link)
        os.replace(link, root / "env")


def remove_other_environments(root: Path, keep: str, in_use: set[str], progress) -> None:
    """Remove the environments no longer in use; one a worker still runs from waits for the next
    set-up (its lazy imports would fail half-way through a job)."""
    for env_dir in sorted((root / "envs").glob("engine-*")):
        if env_dir.name == Path(keep).name:
            continue
        if os.path.realpath(env_dir) in in_use:
            progress.info(
                f"Keeping {env_dir} until its running job ends; the next set-up removes it"
            )
            continue
        progress.info(f"Removing the previous environment {env_dir}")
        shutil.rmtree(env_dir, ignore_errors=True)


# -- the set-up ------------------------------------------------------------------------------------
def setup(options: SetupOptions, progress, in_use: set[str] | None = None) -> dict:
    """Create, fill, verify and switch to a new engine environment; return its record.

    Idempotent: when the environment in use was made from the same requirements and choices and
    still passes its self-test, nothing is installed (unless ``force``). ``in_use``: environment
    folders that running workers use, left in place.
    """
    from ..errors import MusError
    from ..folders import writable_folder

    if options.wheel_folder and not Path(options.wheel_folder).expanduser().is_dir():
        raise SetupError(
            f"The wheel folder {options.wheel_folder} does not exist (or is not a folder): give "
            "the folder the wheels were downloaded into (pip download -d FOLDER ...)."
        )
    try:
        root = writable_folder(Path(options.root).expanduser().resolve(), "engine folder")
    except MusError as exc:
        raise SetupError(f"{exc} Nothing was installed.") from None
    with _SetupLock(root):
        return _setup(root, options, progress, in_use or set())


def _setup(root: Path, options: SetupOptions, progress, in_use: set[str]) -> dict:
    digest = requirements_digest(options)
    record = read_current(root)
    if record and not options.force and record.get("digest") == digest:
        python = current_python(root)
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
                return {**record, "unchanged": True, "device": report.get("device", {})}
    base = find_base_python(options.base_python)
    plan = plan_torch(options)
    progress.info(f"Base Python: {base}")
    progress.info(f"torch: {plan.reason}")
    env_dir = root / "envs" / time.strftime("engine-%Y%m%d-%H%M%S")
    if env_dir.exists():
        env_dir = env_dir.with_name(f"{env_dir.name}-{uuid.uuid4().hex[:8]}")
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        progress.set_progress(2)
        _run([base, "-m", "venv", str(env_dir)], progress, "Creating the virtual environment")
        python = env_python(env_dir)
        pins = {line.split("==")[0].lower(): line for line in requirement_lines()}
        torch_pins = [pins[name] for name in TORCH_PACKAGES if name in pins]
        progress.set_progress(5)
        # The other pins constrain what torch pulls in (numpy), so nothing is installed twice.
        arguments = [*torch_pins, "-c", str(REQUIREMENTS)]
        if plan.index_url:
            arguments += ["--index-url", plan.index_url]
        if plan.build == "cpu":  # torch's own dependencies (numpy at its pin) from PyPI
            arguments += ["--extra-index-url", "https://pypi.org/simple"]
        _run(_pip_install(python, arguments, options), progress, "Installing torch")
        progress.set_progress(55)
        arguments = ["-r", str(REQUIREMENTS)]
        for extra in options.extra_requirements:
            arguments += ["-r", str(extra)]
        _run(_pip_install(python, arguments, options), progress, "Installing the engine packages")
        progress.set_progress(90)
        progress.info("Verifying the engine (imports, a tiny CLIP forward pass)")
        report = verify(str(python), progress)
        if progress.is_canceled():  # the last moment a cancel can still change nothing
            raise SetupCanceledError("The engine set-up was canceled; nothing was changed.")
        record = {
            "env": env_dir.relative_to(root).as_posix(),
            "python": str(python),
            "base_python": base,
            "digest": digest,
            "requirements": requirements_digest(SetupOptions(root)),
            "torch_build": plan.build,
            "torch_reason": plan.reason,
            "torch_index": plan.index_url,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "packages": report.get("packages", {}),
            "size_bytes": folder_size(env_dir),
        }
        _switch(root, record)
    except BaseException:
        shutil.rmtree(env_dir, ignore_errors=True)
        raise
    remove_other_environments(root, record["env"], in_use, progress)
    progress.set_progress(100)
    progress.info(f"The engine environment is ready: {python}")
    return {**record, "unchanged": False, "device": report.get("device", {})}
