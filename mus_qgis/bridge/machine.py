"""What computer the engine is set up on: operating system, processor, C library, Rosetta.

Standard library only, Python 3.9+: QGIS's process runs the set-up. Every platform decision of the
set-up (which uv wheel, which PyTorch build, where a virtual environment keeps its Python) takes
a :class:`Machine` rather than reading ``sys.platform`` itself, so that the tests can run the
Windows and macOS branches on Linux by handing them a Windows or macOS machine.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# platform.machine() spellings -> the names wheels and python-build-standalone use.
_ARCH_NAMES = {
    "amd64": "x86_64",
    "x86_64": "x86_64",
    "x64": "x86_64",
    "arm64": "aarch64",
    "aarch64": "aarch64",
    "armv8l": "aarch64",
    "i386": "i686",
    "i686": "i686",
    "x86": "i686",
    "armv7l": "armv7l",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}

# The longest path inside the engine environment, counted from the environment's folder
# (measured: a torch header under Lib\site-packages, 138 characters), plus a margin for the
# packages' next releases. Windows refuses longer paths unless long paths are enabled. (Compiled
# modules in __pycache__ go deeper, but Python only skips writing one it cannot: no failure.)
LONGEST_PATH_INSIDE_ENV = 150
WINDOWS_MAX_PATH = 259


@dataclass(frozen=True)
class Machine:
    """A computer as the set-up sees it.

    ``system``: "linux", "windows" or "darwin". ``arch``: x86_64, aarch64, i686, armv7l, ...
    ``libc``: "glibc" or "musl" on Linux, "" elsewhere, with ``libc_version`` (major, minor).
    ``translated``: a macOS program running under Rosetta (an Intel build of QGIS on Apple
    silicon): the engine, a process of its own, can run natively on the arm64 processor.
    ``long_paths``: Windows lets programs use paths longer than 260 characters.
    """

    system: str
    arch: str
    libc: str = ""
    libc_version: tuple[int, int] = (0, 0)
    translated: bool = False
    long_paths: bool = True

    @property
    def windows(self) -> bool:
        return self.system == "windows"

    @property
    def native_arch(self) -> str:
        """The processor's own architecture (arm64 under Rosetta, not the translated x86_64)."""
        return "aarch64" if self.translated else self.arch

    def describe(self) -> str:
        names = {"linux": "Linux", "windows": "Windows", "darwin": "macOS"}
        text = f"{names.get(self.system, self.system)} on {self.native_arch}"
        if self.libc == "musl":
            text += " (musl)"
        if self.translated:
            text += " (QGIS runs under Rosetta)"
        return text


def this_machine() -> Machine:
    """The machine this process runs on."""
    if sys.platform.startswith("win"):
        system = "windows"
    elif sys.platform == "darwin":
        system = "darwin"
    else:
        system = "linux"
    arch = _ARCH_NAMES.get(platform.machine().lower(), platform.machine().lower())
    libc, libc_version = "", (0, 0)
    if system == "linux":
        libc, libc_version = _linux_libc()
    return Machine(
        system=system,
        arch=arch,
        libc=libc,
        libc_version=libc_version,
        translated=system == "darwin" and _rosetta(),
        long_paths=system != "windows" or _windows_long_paths(),
    )


def _linux_libc() -> tuple[str, tuple[int, int]]:
    name, version = platform.libc_ver()
    if name == "glibc":
        parts = [*version.split("."), "0"][:2]
        try:
            return "glibc", (int(parts[0]), int(parts[1]))
        except ValueError:
            return "glibc", (2, 17)
    # platform.libc_ver() knows glibc only; musl announces itself in the loader's name.
    if any(Path("/lib").glob("ld-musl-*")):
        return "musl", (1, 2)
    return "glibc", (2, 17)


def _rosetta() -> bool:
    try:
        out = subprocess.run(
            ["sysctl", "-n", "sysctl.proc_translated"],
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.stdout.strip() == "1"


def _windows_long_paths() -> bool:
    try:
        import winreg
    except ImportError:
        return False
    try:
        with winreg.OpenKey(
            winreg.HKEY_LOCAL_MACHINE, r"SYSTEM\CurrentControlSet\Control\FileSystem"
        ) as key:
            value, _kind = winreg.QueryValueEx(key, "LongPathsEnabled")
    except OSError:
        return False
    return value == 1


def path_too_long(machine: Machine, env_dir: Path) -> str:
    """Why an environment folder is too deep for this Windows (or "" when it is fine)."""
    if not machine.windows or machine.long_paths:
        return ""
    longest = len(str(env_dir)) + 1 + LONGEST_PATH_INSIDE_ENV
    if longest <= WINDOWS_MAX_PATH:
        return ""
    return (
        f"The engine's folder {env_dir.parent.parent} is too deep for this Windows: files inside "
        f"the environment would reach {longest} characters, and Windows refuses paths longer "
        f"than 260 unless long paths are enabled. Choose a shorter folder (for example "
        r"C:\mus_engine) as the set-up's environment folder, or ask an administrator to enable "
        "long paths (Group Policy: Computer Configuration > Administrative Templates > System > "
        "Filesystem > Enable Win32 long paths)."
    )


def environment_python(machine: Machine, env_dir: Path) -> Path:
    """The Python of a virtual environment on ``machine``: Scripts\\python.exe on Windows."""
    if machine.windows:
        return env_dir / "Scripts" / "python.exe"
    return env_dir / "bin" / "python"


def executable_name(machine: Machine, name: str) -> str:
    return f"{name}.exe" if machine.windows else name


def default_uv_cache(root: Path) -> Path:
    """uv's cache for the engine: inside the engine folder, so that deleting the folder removes
    everything the set-up downloaded (uv links the environment's files to it)."""
    return Path(os.environ.get("MUS_UV_CACHE_DIR", "") or root / "cache" / "uv")


def default_engine_folder(machine: Machine, profile_folder: Path) -> Path:
    """Where the engine lives unless the user picks a folder: the plugin's folder in the QGIS
    profile; on Windows ``%LOCALAPPDATA%\\mus_qgis\\engine`` instead, because the profile lies
    under AppData\\Roaming, which a university's roaming profiles copy to and from a server at
    every log-in (gigabytes of engine), and whose depth leaves too little of Windows' 260
    characters for the environment's files."""
    local = os.environ.get("LOCALAPPDATA", "")
    if machine.windows and local:
        return Path(local) / "mus_qgis" / "engine"
    return Path(profile_folder) / "mus_qgis" / "engine"
