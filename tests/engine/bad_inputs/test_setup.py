"""Bad places for the engine environment: said at once, before anything is installed, through
the command line the plugin and `make` use."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.folders import read_only


def setup_command(*arguments) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mus_qgis.bridge", "setup", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--root", "{file}"], "The engine folder {file} is a file, not a folder"),
        (["--root", "{file}/engine"], "The engine folder {file}/engine cannot be created"),
        (["--root", "{tmp}/e", "--wheel-folder", "{tmp}/no wheels"], "wheel folder .* not exist"),
    ],
)
def test_a_bad_engine_folder_is_refused_before_anything_is_installed(tmp_path, arguments, message):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine", encoding="utf-8")
    values = {"file": str(a_file), "tmp": str(tmp_path)}
    done = setup_command(*(a.format(**values) for a in arguments))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ")
    assert re.search(message.format(**values), done.stderr), done.stderr
    assert "Traceback" not in done.stderr
    assert a_file.read_text(encoding="utf-8") == "mine"
    assert not (tmp_path / "e").exists()


def test_a_read_only_engine_folder_is_refused_and_left_as_it_was(tmp_path):
    root = tmp_path / "engine"
    root.mkdir()
    (root / "mine.txt").write_text("kept", encoding="utf-8")
    with read_only(root):
        done = setup_command("--root", str(root))
    assert done.returncode == 2 and "cannot be written to" in done.stderr, done.stderr
    assert "Nothing was installed" in done.stderr
    assert [p.name for p in root.iterdir()] == ["mine.txt"]
