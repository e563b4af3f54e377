"""The zip `make package` builds passes the QGIS plugin repository's rules, each checked on its
own, and each rule catches a zip that breaks it.

The rules are in scripts/check_plugin_zip.py (standard library: `make package` runs it too),
with where each comes from: the upload validator of plugins.qgis.org (qgis/QGIS-Django,
plugins/validator.py), the repository's publishing guidelines, and qgis-plugin-ci.

Why qgis-plugin-ci is not run here: it has no check of an existing zip. Its `package` command
builds its own archive from a clean git checkout (`git archive` of the committed tree, with
metadata.txt inside the plugin's folder, where this project keeps it at the top) and checks
only, on the way, that the release version has an accepted form and that metadata.txt has its
mandatory keys; both checks are among the rules here. It also needs PyQt5 from PyPI, which in
.venv (made over Debian's site packages) would shadow the PyQt5 QGIS is built against.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from scripts.check_plugin_zip import RULES, check_zip
from tests.conftest import ROOT

FOLDER = "mus_qgis"


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory) -> Path:
    """The zip as `make package` builds it, into a temporary folder."""
    target = tmp_path_factory.mktemp("package") / "mus_qgis.zip"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "package.py"), "--zip", str(target)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return target


@pytest.mark.parametrize("rule", RULES, ids=[rule.name for rule in RULES])
def test_the_package_passes_the_rule(built_zip, rule):
    broken = [problem for failed, problem in check_zip(built_zip) if failed is rule]
    assert not broken, f"rule {rule.name} ({rule.what}; from {rule.source}): {broken}"


def test_make_package_checks_what_it_builds(built_zip):
    """The same script `make package` runs after building: it passes, and says how many rules."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_plugin_zip.py"), str(built_zip)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )
    assert done.returncode == 0, done.stdout
    assert f"passes the {len(RULES)} rules" in done.stdout
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    package_target = makefile.split("\npackage:", 1)[1].split("\n\n", 1)[0]
    assert "scripts/check_plugin_zip.py dist/mus_qgis.zip" in package_target


def rewritten(source: Path, target: Path, drop=(), add=None, metadata=None) -> Path:
    """A copy of the zip without the names in ``drop``, with ``add`` {name: bytes} added and its
    metadata.txt passed through ``metadata`` (text -> text)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            if info.filename in drop:
                continue
            data = old.read(info)
            if metadata and info.filename == f"{FOLDER}/metadata.txt":
                data = metadata(data.decode("utf-8")).encode("utf-8")
            new.writestr(info, data)
        for name, data in (add or {}).items():
            new.writestr(name, data)
    return target


def without_key(key: str):
    return lambda text: re.sub(rf"^{key}=.*\n", "", text, flags=re.M)


def with_value(key: str, value: str):
    return lambda text: re.sub(rf"^{key}=.*$", f"{key}={value}", text, count=1, flags=re.M)


# rule -> how a zip breaks it (keyword arguments of rewritten()).
BREAKS = {
    "no-compiled-python": {"add": {f"{FOLDER}/plugin.cpython-311.pyc": b"\x00" * 16}},
    "no-binaries": {"add": {f"{FOLDER}/lib/_speedups.so": b"\x7fELF\x02\x01\x01"}},
    "no-forbidden-folders": {"add": {f"{FOLDER}/__pycache__/x.txt": b"cache"}},
    "safe-paths": {"add": {f"{FOLDER}/../escape.txt": b"outside"}},
    "one-top-folder": {"add": {"__MACOSX/._metadata.txt": b""}},
    "init-and-metadata": {"drop": {f"{FOLDER}/__init__.py"}},
    "metadata-parses": {"metadata": lambda text: text.replace("[general]", "[plugin]")},
    "required-metadata": {"metadata": without_key("email")},
    "homepage": {"metadata": without_key("homepage")},
    "urls": {"metadata": with_value("tracker", "http://bugs")},
    "icon": {"metadata": with_value("icon", "resources/icons/missing.svg")},
    "licence": {"drop": {f"{FOLDER}/LICENSE"}},
    "author": {"metadata": with_value("author", "Jane/John")},
    "version": {"metadata": with_value("version", "1.0.0 final")},
    "qgis-versions": {"metadata": with_value("qgisMaximumVersion", "3.10")},
    "boolean-metadata": {"metadata": with_value("experimental", "yes")},
    "changelog": {"metadata": with_value("version", "9.9.9")},
    "name-without-plugin": {"metadata": with_value("name", "Urban studies plugin")},
}


@pytest.mark.parametrize("rule_name", BREAKS, ids=list(BREAKS))
def test_a_zip_that_breaks_a_rule_fails_with_that_rule_named(built_zip, tmp_path, rule_name):
    broken = rewritten(built_zip, tmp_path / "broken.zip", **BREAKS[rule_name])
    failed = {rule.name for rule, _ in check_zip(broken)}
    assert rule_name in failed
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_plugin_zip.py"), str(broken)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )
    assert done.returncode == 1
    assert f"FAIL [{rule_name}]" in done.stdout


def test_each_rule_has_a_breaking_example():
    """Every rule but the three below is shown failing above; those three are shown here."""
    shown_elsewhere = {"size", "readable-zip", "folder-name"}
    assert {rule.name for rule in RULES} == set(BREAKS) | shown_elsewhere


def test_a_zip_over_the_size_limit_fails(built_zip, tmp_path):
    # Random bytes do not compress: the zip stays over 20 MB.
    noise = {f"{FOLDER}/resources/noise.dat": b"noise" + os.urandom(20_100_000)}
    broken = rewritten(built_zip, tmp_path / "big.zip", add=noise)
    assert {rule.name for rule, _ in check_zip(broken)} == {"size"}


def test_a_damaged_zip_fails(built_zip, tmp_path):
    # A byte in the middle of the largest member's compressed bytes: its CRC no longer holds.
    # (A fixed offset in the file could land in a local header's copy of the CRC, which zip
    # readers do not check, as the package's contents change.)
    with zipfile.ZipFile(built_zip) as archive:
        member = max(archive.infolist(), key=lambda info: info.compress_size)
    data = bytearray(built_zip.read_bytes())
    name_length, extra_length = struct.unpack(
        "<HH", data[member.header_offset + 26 : member.header_offset + 30]
    )
    start = member.header_offset + 30 + name_length + extra_length
    data[start + member.compress_size // 2] ^= 0xFF
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(bytes(data))
    assert "readable-zip" in {rule.name for rule, _ in check_zip(damaged)}


def test_a_renamed_folder_fails(built_zip, tmp_path):
    renamed = tmp_path / "renamed.zip"
    with zipfile.ZipFile(built_zip) as old, zipfile.ZipFile(renamed, "w") as new:
        for info in old.infolist():
            new.writestr(info.filename.replace(FOLDER, "Mus-QGIS", 1), old.read(info))
    problems = [problem for rule, problem in check_zip(renamed) if rule.name == "folder-name"]
    assert len(problems) == 2  # not the package name, and not a PEP 8 name
