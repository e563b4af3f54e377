"""Folders that refuse writes, for the tests of read-only caches, stores and outputs."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path


@contextlib.contextmanager
def read_only(folder: Path):
    """Make ``folder`` refuse new files while held, also for root (who ignores permissions:
    the folder is made immutable instead)."""
    if os.name == "posix" and os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(folder)], check=True)
        try:
            yield folder
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
