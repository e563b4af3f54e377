"""scripts/check_portability.py (run by `make lint`): each rule catches its sample, the guarded
and explicit forms pass, and the repository passes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from scripts.check_portability import ROOT, check_paths, check_source


def findings(code: str) -> list[tuple[int, str]]:
    return [(f.line, f.rule) for f in check_source(textwrap.dedent(code), "sample.py")]


# (rule, a sample that breaks it): the finding is expected on the sample's last line.
CAUGHT = [
    ("text-encoding", 'open("notes.txt")'),
    ("text-encoding", 'open("notes.txt", "w")'),
    ("text-encoding", 'open("notes.txt", mode="a+")'),
    ("text-encoding", 'import io\nio.open("notes.txt", "rt")'),
    ("text-encoding", 'import os\nos.fdopen(fd, "w")'),
    ("text-encoding", "path.read_text()"),
    ("text-encoding", 'path.read_text(errors="replace")'),
    ("text-encoding", 'path.write_text("text")'),
    ("text-encoding", 'path.open("w")'),
    ("text-encoding", 'path.open(newline="")'),
    ("text-encoding", "from pathlib import Path\nPath(name).open()"),
    ("text-encoding", '(folder / "a.csv").open()'),
    ("text-encoding", 'from tests.conftest import MODEL_CONFIG\nMODEL_CONFIG.open("r")'),
    ("text-encoding", "import subprocess\nsubprocess.run(command, text=True)"),
    ("text-encoding", "import subprocess\nsubprocess.check_output(cmd, universal_newlines=True)"),
    ("text-encoding", "import subprocess as sp\nsp.Popen(command, stdout=sp.PIPE, text=True)"),
    ("text-encoding", "from subprocess import run\nrun(command, capture_output=True, text=True)"),
    ("text-encoding", "import subprocess\nsubprocess.getoutput(command)"),
    ("text-encoding", 'import tempfile\ntempfile.NamedTemporaryFile("w")'),
    ("text-encoding", 'import gzip\ngzip.open(path, "rt")'),
    ("text-encoding", "import logging\nlogging.FileHandler(path)"),
    ("posix-only-name", "import os\nos.killpg(pid, 15)"),
    ("posix-only-name", "import os\nos.getpgid(pid)"),
    ("posix-only-name", "import os\nos.setsid()"),
    ("posix-only-name", "import os\nos.fork()"),
    ("posix-only-name", "import os\nos.getuid()"),
    ("posix-only-name", "import os\nos.geteuid()"),
    ("posix-only-name", "import os\nos.symlink(target, link)"),
    ("posix-only-name", "import os as system\nsystem.killpg(pid, 9)"),
    ("posix-only-name", "from os import killpg"),
    ("posix-only-name", "import os, signal\nos.kill(pid, signal.SIGKILL)"),
    ("posix-only-name", "import signal\nsignal.signal(signal.SIGHUP, handler)"),
    ("posix-only-name", "import signal\nsignal.alarm(5)"),
    ("posix-only-name", "from signal import SIGUSR1"),
    ("posix-only-module", "import fcntl"),
    ("posix-only-module", "import pwd"),
    ("posix-only-module", "import grp"),
    ("posix-only-module", "import resource"),
    ("posix-only-module", "import termios"),
    ("posix-only-module", "from fcntl import flock"),
    ("posix-only-option", "import subprocess\nsubprocess.Popen(command, preexec_fn=os.setpgrp)"),
    ("posix-only-option", "import subprocess\nsubprocess.Popen(command, start_new_session=True)"),
    ("posix-only-option", "import subprocess\nsubprocess.Popen(command, pass_fds=(3,))"),
    # An except that catches everything is no platform test.
    ("posix-only-name", "import os\ntry:\n    os.killpg(pid, 9)\nexcept Exception:\n    pass"),
    # A test on something else guards nothing.
    ("posix-only-name", "import os\nif verbose:\n    os.killpg(pid, 9)"),
]


@pytest.mark.parametrize(("rule", "code"), CAUGHT, ids=[c for _, c in CAUGHT])
def test_each_rule_catches_its_sample(rule, code):
    found = findings(code)
    assert rule in {r for _, r in found}, found
    lines = code.splitlines()
    expected_line = next(i for i in range(len(lines), 0, -1) if lines[i - 1].strip() != "pass")
    if "try:" not in code:
        assert any(line == expected_line for line, _ in found), found


# The explicit and the guarded forms: no finding.
ACCEPTED = {
    "binary open": 'open("a.bin", "rb"); open(path, "wb"); open(path, mode="ab+")',
    "open with encoding": 'open("a.txt", encoding="utf-8"); open("a.txt", "w", -1, "utf-8")',
    "a computed mode is not judged": "open(path, mode)",
    "**kwargs may hold the encoding": 'open(path, "w", **options)',
    "Path text with encoding": (
        'path.read_text(encoding="utf-8"); path.read_text("utf-8"); '
        'path.write_text(text, "utf-8"); path.write_text(text, encoding="utf-8"); '
        'path.open("w", encoding="utf-8"); path.open("rb"); path.read_bytes()'
    ),
    "other objects' open()": (
        "from PIL import Image\nImage.open(path)\nimport webbrowser\nwebbrowser.open(url)\n"
        'archive.open("member.txt")\ndialog.open()'
    ),
    "subprocess text with encoding": (
        "import subprocess\n"
        'subprocess.run(command, text=True, encoding="utf-8")\n'
        "subprocess.run(command, capture_output=True)\n"
        "subprocess.run(command, text=False)"
    ),
    "tempfile and gzip binary by default": (
        "import gzip, tempfile\n"
        'tempfile.NamedTemporaryFile()\ngzip.open(path)\ngzip.open(path, "wb")'
    ),
    "SIGTERM and getattr are portable": (
        "import os, signal\n"
        'os.kill(pid, signal.SIGTERM)\nos.kill(pid, getattr(signal, "SIGKILL", 15))'
    ),
    "if sys.platform": "import os, sys\nif sys.platform != 'win32':\n    os.killpg(pid, 9)",
    "else of a platform test": (
        "import os, sys\nif sys.platform.startswith('win'):\n    process.kill()\n"
        "else:\n    os.killpg(pid, 9)"
    ),
    "elif of a platform test": (
        "import os\nif os.name == 'nt':\n    pass\nelif verbose:\n    os.killpg(pid, 9)"
    ),
    "platform.system()": "import os, platform\nif platform.system() == 'Linux':\n    os.setsid()",
    "from sys import platform": (
        "import os\nfrom sys import platform\nif platform == 'linux':\n    os.fork()"
    ),
    "a module-level boolean": (
        "import os, sys\nPOSIX = not sys.platform.startswith('win')\n"
        "def stop(pid):\n    if POSIX:\n        os.killpg(pid, 9)"
    ),
    "a boolean derived from another": (
        "import os\nWINDOWS = os.name == 'nt'\nPOSIX = not WINDOWS\n"
        "if POSIX:\n    os.killpg(pid, 9)"
    ),
    "a conditional expression": "import os\nuid = os.getuid() if os.name == 'posix' else 0",
    "after the test in and/or": (
        "import os\nroot = os.name == 'posix' and os.geteuid() == 0\n"
        "user = os.name != 'posix' or os.getuid() != 0"
    ),
    "after an early return": (
        "import os, sys\ndef stop(process):\n    if sys.platform == 'win32':\n"
        "        process.kill()\n        return\n    os.killpg(process.pid, 9)"
    ),
    "after a module-level skip": (
        "import os, sys, pytest\nif sys.platform == 'win32':\n"
        "    pytest.skip('X11 only', allow_module_level=True)\nos.setsid()"
    ),
    "hasattr": "import os\nif hasattr(os, 'killpg'):\n    os.killpg(pid, 9)",
    "try/except ImportError": "try:\n    import fcntl\nexcept ImportError:\n    fcntl = None",
    "try/except (ImportError, AttributeError)": (
        "import os\ntry:\n    import resource\n    os.getuid()\n"
        "except (ModuleNotFoundError, AttributeError):\n    pass"
    ),
    "a skipif test": (
        "import os, signal, sys, pytest\n"
        "@pytest.mark.skipif(sys.platform == 'win32', reason='POSIX signals')\n"
        "def test_kill():\n    os.kill(pid, signal.SIGKILL)"
    ),
    "a skipif module": (
        "import os, sys, pytest\npytestmark = [pytest.mark.skipif(sys.platform == 'win32', "
        "reason='POSIX')]\ndef test_group():\n    os.killpg(pid, 9)"
    ),
    "guarded Popen options": (
        "import subprocess, sys\nif sys.platform != 'win32':\n"
        "    subprocess.Popen(command, start_new_session=True)"
    ),
}


@pytest.mark.parametrize("code", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_explicit_and_guarded_forms_pass(code):
    assert findings(code) == []


def test_the_guard_still_checks_encodings():
    code = "import sys\nif sys.platform == 'win32':\n    open('a.txt', 'w')"
    assert findings(code) == [(3, "text-encoding")]


def test_a_guard_imported_from_another_module_counts(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "platforms.py").write_text(
        "import sys\nWINDOWS = sys.platform == 'win32'\n", encoding="utf-8"
    )
    (package / "stop.py").write_text(
        "import os\nfrom .platforms import WINDOWS\nif not WINDOWS:\n    os.killpg(1, 9)\n",
        encoding="utf-8",
    )
    # A guard derived from another module's, read through the module.
    (package / "derived.py").write_text(
        "from pkg import platforms\nPOSIX = not platforms.WINDOWS\n", encoding="utf-8"
    )
    (package / "through_module.py").write_text(
        "import os\nfrom . import derived\nif derived.POSIX:\n    os.setsid()\n",
        encoding="utf-8",
    )
    (package / "unguarded.py").write_text("import os\nos.killpg(1, 9)\n", encoding="utf-8")
    found = check_paths([tmp_path], root=tmp_path)
    assert [(f.path, f.line, f.rule) for f in found] == [("pkg/unguarded.py", 2, "posix-only-name")]


def test_a_file_that_does_not_parse_is_a_finding(tmp_path):
    (tmp_path / "broken.py").write_text("def (:\n", encoding="utf-8")
    assert [f.rule for f in check_paths([tmp_path], root=tmp_path)] == ["syntax"]


def test_a_finding_names_the_file_the_line_and_the_fix(tmp_path):
    (tmp_path / "tool.py").write_text("import os\n\nos.killpg(1, 9)\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_portability.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )
    assert done.returncode == 1
    assert "tool.py:3: [posix-only-name] os.killpg is POSIX-only. Fix: " in done.stdout


def test_the_repository_passes():
    """What `make lint` runs: every .py file but environments and build outputs."""
    assert [str(f) for f in check_paths([ROOT])] == []
