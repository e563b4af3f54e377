"""Which Python the engine environment is built on: the one the user named, a standalone CPython
uv downloads into the engine folder, or, where that download fails, one this machine has.

Standard library only, Python 3.9+: QGIS's process runs the set-up.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from ..shared.progress import warn
from .client import process_options, worker_environment
from .machine import Machine, executable_name, this_machine
from .setup_commands import SetupCanceledError, SetupError, run_command

# The engine's pins (numpy 2.3, pandas 3.0, networkx 3.6) need Python 3.11 or newer.
MIN_PYTHON = (3, 11)
# The standalone CPython uv downloads when the user names none: a release every pin has wheels for.
MANAGED_PYTHON = "3.12"


# -- Pythons -----------------------------------------------------------------------------------
def python_version(python: str) -> tuple[int, int] | None:
    """The (major, minor) version of a Python, or None if it does not run."""
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=30,
            check=False,
            env=worker_environment(),
            **process_options(),
        )
        major, minor = out.stdout.strip().split(".")
        return int(major), int(minor)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def _wanted() -> str:
    return ".".join(map(str, MIN_PYTHON))


def named_python(configured: str) -> str:
    """The Python the user named, if it can carry the engine; else a SetupError saying why."""
    if not Path(configured).is_file():
        raise SetupError(f"The Python {configured} given to create the engine from does not exist.")
    version = python_version(configured)
    if version is None or version < MIN_PYTHON:
        found = ".".join(map(str, version)) if version else "one that does not run"
        raise SetupError(f"The Python {configured} is {found}; the engine needs {_wanted()}+.")
    return configured


def system_python_candidates(machine: Machine) -> list[str]:
    """Pythons this machine may already have, best first (not QGIS's own on macOS: a venv made
    from the Python inside QGIS.app lacks parts of the standard library)."""
    candidates = []
    if machine.windows:
        # OSGeo4W and the standalone installer keep python.exe beside QGIS's Python library.
        prefix = Path(sys.base_prefix)
        candidates += [str(prefix / "python.exe"), str(prefix / "python3.exe")]
    # Inside QGIS sys.executable is QGIS itself; outside (make, a console) it is a Python.
    if Path(sys.executable).name.lower().startswith("python") and ".app/" not in sys.executable:
        candidates.append(sys.executable)
    names = ("python3.14", "python3.13", "python3.12", "python3.11", "python3", "python")
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        # Windows' "python.exe" in WindowsApps is a stub that opens the Store, not a Python.
        if folder and "WindowsApps" not in folder:
            candidates += [str(Path(folder) / executable_name(machine, n)) for n in names]
    return list(dict.fromkeys(c for c in candidates if c and Path(c).is_file()))


def search_system_python(machine: Machine | None = None) -> tuple[str, list[str]]:
    """A Python 3.11+ this machine has (or ""), and the ones found too old, as "path (3.9)"."""
    too_old = []
    for candidate in system_python_candidates(machine or this_machine()):
        version = python_version(candidate)
        if version is not None and version >= MIN_PYTHON:
            return candidate, too_old
        if version is not None:
            too_old.append(f"{candidate} ({version[0]}.{version[1]})")
    return "", too_old


def find_base_python(configured: str = "", machine: Machine | None = None) -> str:
    """A Python 3.11+ to create the environment from: the configured one, or one found here."""
    if configured:
        return named_python(configured)
    found, too_old = search_system_python(machine)
    if found:
        return found
    seen = f" Found only: {', '.join(too_old)}." if too_old else ""
    raise SetupError(
        f"No Python {_wanted()} or newer was found to create the engine environment from.{seen} "
        "Install one (python.org, or your system's packages) and name it in the set-up's "
        "advanced parameter."
    )


def choose_python(uv: Path, root: Path, options, progress, env) -> tuple[str, str]:
    """The Python to build the environment on, and where it came from (said in the record)."""
    if options.base_python:
        return named_python(options.base_python), "the Python you named"
    wanted = options.python_version or MANAGED_PYTHON
    managed = f"standalone CPython {wanted} in {root / 'python'}"
    find = [str(uv), "python", "find", wanted, "--managed-python", "--no-python-downloads"]
    with contextlib.suppress(SetupError):
        found = run_command(find, progress, "Finding a standalone Python", relay=False, env=env)
        return found[-1].strip(), managed
    reason = "an offline set-up downloads nothing"
    if not options.offline:
        progress.info(f"Downloading a standalone CPython {wanted} (about 30 MB, once)")
        try:
            run_command(
                [str(uv), "python", "install", wanted],
                progress,
                "Downloading a standalone Python",
                env=env,
            )
            found = run_command(find, progress, "Finding a standalone Python", relay=False, env=env)
        except SetupCanceledError:
            raise
        except SetupError as exc:
            reason = download_failure(str(exc))
        else:
            return found[-1].strip(), managed
    system, too_old = search_system_python()
    if not system:
        seen = f" (found only {', '.join(too_old)})" if too_old else ""
        raise SetupError(
            f"No Python {_wanted()}+ could be had for the engine: the standalone Python could "
            f"not be downloaded ({reason}), and this machine has no Python {_wanted()} or "
            f"newer{seen}. Nothing was installed, and the engine in use (if any) is unchanged. "
            "What to do: check the network (behind a proxy, set HTTPS_PROXY for QGIS; the download "
            "comes from GitHub, or from the mirror named by MUS_PYTHON_MIRROR); or install "
            f"Python {_wanted()}+ (python.org) and name it in the set-up's advanced parameter "
            "'Python to build on'."
        )
    warn(
        progress,
        f"No standalone Python could be downloaded ({reason}); the engine is built on this "
        f"machine's Python {system} instead, which serves as well: nothing needs doing. (Where "
        "GitHub cannot be reached, MUS_PYTHON_MIRROR names a mirror of python-build-standalone.)",
    )
    return system, "this machine's Python (the standalone download failed)"


def download_failure(text: str) -> str:
    """What uv's failed Python download comes to, in a line: the host and uv's last cause."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    cause = lines[-1] if lines else text
    for prefix in ("cause:", "Caused by:", "error:"):
        cause = cause[len(prefix) :].strip() if cause.startswith(prefix) else cause
    for line in lines:
        start = line.find("https://") if "https://" in line else line.find("http://")
        if start >= 0:
            host = line[start:].split("/")[2].rstrip("`'\"")
            return f"{host} did not serve it: {cause}"
    return cause
