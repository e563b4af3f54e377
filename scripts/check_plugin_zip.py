"""Check a plugin zip against the rules of the QGIS plugin repository (plugins.qgis.org).

    python scripts/check_plugin_zip.py dist/mus_qgis.zip [--package-name mus_qgis]

Prints each broken rule with what is wrong and where the rule comes from, and exits 1 when any
is broken. `make package` runs it on the zip it has just built.

Where the rules come from (QGIS-Django as of February 2025, qgis-plugin-ci 2.10.0):
- "validator": the upload validator of plugins.qgis.org, qgis/QGIS-Django,
  qgis-app/plugins/validator.py (with plugins/forms.py and plugins/models.py): what an upload is
  refused for.
- "guidelines": the repository's publishing page ("How to add your plugin to this repository",
  qgis-app/templates/flatpages/docs_publish.html): what a reviewer refuses or asks for.
- "qgis-plugin-ci": opengisch/qgis-plugin-ci 2.10.0 (qgispluginci/parameters.py): the release
  versions it accepts and the metadata it requires.
What cannot be checked offline: the validator also requests the tracker, repository and
homepage addresses and refuses any that does not answer; check those links by hand.

Standard library only (`make package` runs it with the system's Python 3).
"""

from __future__ import annotations

import argparse
import configparser
import re
import sys
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

PACKAGE_NAME = "mus_qgis"  # the plugin's folder, its package name on plugins.qgis.org

# The validator refuses more than 25,000,000 bytes (PLUGIN_MAX_UPLOAD_SIZE); the guidelines ask
# for no more than 20 MB. The stricter figure is checked.
MAX_SIZE_BYTES = 20_000_000
REQUIRED_METADATA = (
    "name",
    "description",
    "version",
    "qgisMinimumVersion",
    "author",
    "email",
    "about",
    "tracker",
    "repository",
)
URL_METADATA = {
    "tracker": "http://bugs",
    "repository": "http://repo",
    "homepage": "http://homepage",
}
BOOLEAN_METADATA = ("experimental", "deprecated", "server")
FORBIDDEN_FOLDERS = ("__MACOSX", ".git", "__pycache__")
BINARY_SUFFIXES = (".pyc", ".pyo", ".pyd", ".so", ".dll", ".exe", ".dylib", ".o", ".a", ".lib")
# The first bytes of executables and shared libraries: ELF (Linux), PE (Windows), Mach-O (macOS,
# thin in both byte orders and 32/64 bits, and universal).
EXECUTABLE_MAGIC = (
    b"\x7fELF",
    b"MZ",
    b"\xfe\xed\xfa\xce",
    b"\xfe\xed\xfa\xcf",
    b"\xce\xfa\xed\xfe",
    b"\xcf\xfa\xed\xfe",
    b"\xca\xfe\xba\xbe",
)
# qgis-plugin-ci's accepted release versions: semantic versioning (recommended), x.y, vx.y,
# vx.y.z.
VERSION_PATTERNS = (
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?",
    r"\d+\.\d+",
    r"v\d+\.\d+",
    r"v\d+\.\d+\.\d+",
)
QGIS_VERSION = r"\d+\.\d+(\.\d+)?"


@dataclass
class Plugin:
    """What the rules read from a zip; a field is None where the zip did not give it."""

    path: Path
    size: int
    names: list[str] = field(default_factory=list)
    contents: dict[str, bytes] = field(default_factory=dict)
    folder: str | None = None
    metadata: dict[str, str] | None = None
    unreadable: str | None = None
    metadata_error: str | None = None


@dataclass(frozen=True)
class Rule:
    name: str
    source: str
    what: str
    check: Callable[[Plugin, str], list[str]]


def read_plugin(path: Path) -> Plugin:
    plugin = Plugin(path=path, size=path.stat().st_size)
    try:
        with zipfile.ZipFile(path) as archive:
            plugin.names = archive.namelist()
            bad = archive.testzip()
            if bad:
                plugin.unreadable = f"bad CRC in {bad}"
                return plugin
            plugin.contents = {
                info.filename: archive.read(info)
                for info in archive.infolist()
                if not info.is_dir()
            }
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as error:
        plugin.unreadable = str(error)
        return plugin
    if plugin.names and "/" in plugin.names[0]:
        plugin.folder = plugin.names[0].split("/", 1)[0]  # as the validator takes it
    metadata = plugin.contents.get(f"{plugin.folder}/metadata.txt")
    if metadata is not None:
        parser = configparser.ConfigParser(interpolation=None)
        parser.optionxform = str  # keys keep their case: qgisMinimumVersion
        try:
            parser.read_string(metadata.decode("utf-8"))
            plugin.metadata = dict(parser.items("general"))
        except (UnicodeDecodeError, configparser.Error) as error:
            plugin.metadata_error = str(error).splitlines()[0]
    return plugin


# -- the rules -------------------------------------------------------------------------------
def size(plugin: Plugin, _: str) -> list[str]:
    if plugin.size > MAX_SIZE_BYTES:
        return [f"the zip is {plugin.size:,} bytes, over {MAX_SIZE_BYTES:,}"]
    return []


def readable(plugin: Plugin, _: str) -> list[str]:
    return [f"the zip cannot be read: {plugin.unreadable}"] if plugin.unreadable else []


def safe_paths(plugin: Plugin, _: str) -> list[str]:
    return [
        f"{name}: a name may hold no '..' and may not start with '/'"
        for name in plugin.names
        if ".." in name or name.startswith("/")
    ]


def no_compiled_python(plugin: Plugin, _: str) -> list[str]:
    return [f"{name}: compiled Python (.pyc)" for name in plugin.names if ".pyc" in name]


def no_binaries(plugin: Plugin, _: str) -> list[str]:
    problems = []
    for name, data in plugin.contents.items():
        suffix = Path(name).suffix
        if suffix in BINARY_SUFFIXES or re.search(r"\.so(\.\d+)+$", name):
            problems.append(f"{name}: a binary file ({suffix})")
        elif data.startswith(EXECUTABLE_MAGIC):
            problems.append(f"{name}: an executable or library (its first bytes say so)")
    return problems


def no_forbidden_folders(plugin: Plugin, _: str) -> list[str]:
    problems = []
    for name in plugin.names:
        folders = name.split("/")[:-1]
        for forbidden in FORBIDDEN_FOLDERS:
            if forbidden in folders:
                problems.append(f"{name}: inside a {forbidden} folder")
        hidden = [part for part in folders if part.startswith(".") and part not in (".", "..")]
        if hidden and not set(hidden) & set(FORBIDDEN_FOLDERS):
            problems.append(f"{name}: inside a hidden folder ({hidden[0]})")
    return problems


def one_top_folder(plugin: Plugin, _: str) -> list[str]:
    if not plugin.names:
        return ["the zip is empty"] if not plugin.unreadable else []
    if plugin.folder is None:
        return [f"the first entry, {plugin.names[0]}, is not inside a folder"]
    tops = sorted({name.split("/", 1)[0] for name in plugin.names})
    if tops != [plugin.folder]:
        return [f"more than one top-level entry: {', '.join(tops)}"]
    return []


def folder_name(plugin: Plugin, expected: str) -> list[str]:
    folder = plugin.folder
    if folder is None:
        return []
    problems = []
    if folder != expected:
        problems.append(f"the folder is {folder!r}, the plugin's package name is {expected!r}")
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", folder):
        problems.append(f"{folder!r} is not a lowercase PEP 8 name ([a-z_][a-z0-9_]*)")
    if "plugin" in folder.lower():
        problems.append(f"{folder!r} repeats the word 'plugin'")
    return problems


def init_and_metadata(plugin: Plugin, _: str) -> list[str]:
    if plugin.folder is None:
        return []
    return [
        f"no {plugin.folder}/{name}"
        for name in ("__init__.py", "metadata.txt")
        if f"{plugin.folder}/{name}" not in plugin.names
    ]


def metadata_parses(plugin: Plugin, _: str) -> list[str]:
    if plugin.metadata_error:
        return [f"metadata.txt: {plugin.metadata_error}"]
    return []


def required_metadata(plugin: Plugin, _: str) -> list[str]:
    if plugin.metadata is None:
        return []
    problems = []
    for key in REQUIRED_METADATA:
        if key not in plugin.metadata:
            problems.append(f"metadata.txt has no {key}")
        elif not plugin.metadata[key].strip():
            problems.append(f"metadata.txt: {key} is empty")
    return problems


def homepage(plugin: Plugin, _: str) -> list[str]:
    if plugin.metadata is None or plugin.metadata.get("homepage", "").strip():
        return []
    return ["metadata.txt has no homepage"]


def urls(plugin: Plugin, _: str) -> list[str]:
    if plugin.metadata is None:
        return []
    problems = []
    for key, placeholder in URL_METADATA.items():
        url = plugin.metadata.get(key, "").strip()
        if not url:
            continue  # required_metadata and homepage say so
        parsed = urlparse(url)
        if url == placeholder or parsed.scheme not in ("http", "https") or not parsed.netloc:
            problems.append(f"{key}={url} is not a web address")
    return problems


def icon(plugin: Plugin, _: str) -> list[str]:
    if plugin.metadata is None:
        return []
    path = plugin.metadata.get("icon", "").strip()
    if not path:
        return ["metadata.txt has no icon"]
    inside = f"{plugin.folder}/{path[2:] if path.startswith('./') else path}"
    if not plugin.contents.get(inside):
        return [f"icon={path}: {inside} is not in the zip (or is empty)"]
    return []


def licence(plugin: Plugin, _: str) -> list[str]:
    if plugin.folder is None or plugin.contents.get(f"{plugin.folder}/LICENSE"):
        return []
    return [f"no {plugin.folder}/LICENSE"]


def author(plugin: Plugin, _: str) -> list[str]:
    if plugin.metadata and "/" in plugin.metadata.get("author", ""):
        return ["author may not hold a slash"]
    return []


def version(plugin: Plugin, _: str) -> list[str]:
    if plugin.metadata is None or "version" not in plugin.metadata:
        return []
    value = plugin.metadata["version"].strip()
    if not any(re.fullmatch(pattern, value) for pattern in VERSION_PATTERNS):
        return [f"version={value} is not like 1.0.0 (semantic versioning), 1.0, v1.0 or v1.0.0"]
    return []


def qgis_versions(plugin: Plugin, _: str) -> list[str]:
    if plugin.metadata is None:
        return []
    problems, found = [], {}
    for key in ("qgisMinimumVersion", "qgisMaximumVersion"):
        value = plugin.metadata.get(key, "").strip()
        if value and not re.fullmatch(QGIS_VERSION, value):
            problems.append(f"{key}={value} is not a QGIS version like 3.22")
        elif value:
            found[key] = tuple(int(part) for part in value.split("."))
    low, high = found.get("qgisMinimumVersion"), found.get("qgisMaximumVersion")
    if low and high and low > high:
        problems.append("qgisMinimumVersion is above qgisMaximumVersion")
    return problems


def boolean_metadata(plugin: Plugin, _: str) -> list[str]:
    if plugin.metadata is None:
        return []
    return [
        f"{key}={plugin.metadata[key]} is read as False: write True or False"
        for key in BOOLEAN_METADATA
        if key in plugin.metadata
        and plugin.metadata[key].strip().lower() not in ("true", "false", "1", "0")
    ]


def changelog(plugin: Plugin, _: str) -> list[str]:
    if plugin.metadata is None:
        return []
    text = plugin.metadata.get("changelog", "").strip()
    if not text:
        return ["metadata.txt has no changelog"]
    current = plugin.metadata.get("version", "").strip()
    entry = re.compile(rf"v?{re.escape(current)}(?![\w.])")
    if current and not any(entry.match(line.strip()) for line in text.splitlines()):
        return [f"the changelog has no entry for version {current} (a line starting {current})"]
    return []


def name_without_plugin(plugin: Plugin, _: str) -> list[str]:
    if plugin.metadata and re.search(r"\bplugin\b", plugin.metadata.get("name", ""), re.I):
        return [f"name={plugin.metadata['name']} repeats the word 'plugin'"]
    return []


VALIDATOR = "validator (qgis/QGIS-Django, qgis-app/plugins/validator.py)"
GUIDELINES = "guidelines (plugins.qgis.org, How to add your plugin to this repository)"
RULES = (
    Rule("size", f"{GUIDELINES}: 20 MB; {VALIDATOR}: 25,000,000 bytes", "size", size),
    Rule("readable-zip", VALIDATOR, "the zip opens and every CRC is right", readable),
    Rule("safe-paths", VALIDATOR, "no '..' and no leading '/' in a name", safe_paths),
    Rule("no-compiled-python", VALIDATOR, "no .pyc anywhere in a name", no_compiled_python),
    Rule(
        "no-binaries",
        f"{GUIDELINES}: Don't include binaries",
        "no compiled code: .so .dll .exe .dylib .pyd ..., nor any file that is an executable",
        no_binaries,
    ),
    Rule(
        "no-forbidden-folders",
        f"{VALIDATOR}: __MACOSX .git __pycache__; {GUIDELINES}: no other hidden directories",
        "no __MACOSX, .git, __pycache__ or hidden folder",
        no_forbidden_folders,
    ),
    Rule(
        "one-top-folder",
        f"{VALIDATOR}: the package name is the first entry's folder, several warn",
        "every entry inside one top folder",
        one_top_folder,
    ),
    Rule(
        "folder-name",
        f"{VALIDATOR}: PEP 8 name for a new plugin, the same folder for each new version; "
        f"{GUIDELINES}: the folder name does not repeat 'plugin'",
        "the folder is the plugin's package name",
        folder_name,
    ),
    Rule(
        "init-and-metadata",
        VALIDATOR,
        "__init__.py and metadata.txt in the folder",
        init_and_metadata,
    ),
    Rule(
        "metadata-parses",
        VALIDATOR,
        "metadata.txt is UTF-8 with a [general] section",
        metadata_parses,
    ),
    Rule(
        "required-metadata",
        f"{VALIDATOR} (PLUGIN_REQUIRED_METADATA); qgis-plugin-ci: an empty key is missing",
        ", ".join(REQUIRED_METADATA),
        required_metadata,
    ),
    Rule(
        "homepage",
        f"{GUIDELINES}: a valid link to the homepage; qgis-plugin-ci warns without one",
        "homepage set",
        homepage,
    ),
    Rule(
        "urls",
        f"{VALIDATOR} (_check_url_link; reachability is not checked offline)",
        "tracker, repository, homepage are http(s) addresses, not placeholders",
        urls,
    ),
    Rule("icon", VALIDATOR, "icon= names a file inside the plugin's folder", icon),
    Rule(
        "licence",
        f"{VALIDATOR}: LICENSE mandatory since June 2024",
        "LICENSE in the folder",
        licence,
    ),
    Rule("author", VALIDATOR, "the author holds no slash", author),
    Rule(
        "version",
        "qgis-plugin-ci (release version patterns); validator keeps only the last word",
        "version like 1.0.0",
        version,
    ),
    Rule(
        "qgis-versions",
        VALIDATOR,
        "qgisMinimum/MaximumVersion like 3.22, min <= max",
        qgis_versions,
    ),
    Rule(
        "boolean-metadata",
        f"{VALIDATOR}: only 'true' or '1' reads as True",
        "experimental, deprecated, server are True or False",
        boolean_metadata,
    ),
    Rule(
        "changelog",
        f"{GUIDELINES}: update metadata to include a changelog for each new version",
        "a changelog with an entry for this version",
        changelog,
    ),
    Rule(
        "name-without-plugin",
        f"{GUIDELINES}: the name does not repeat the word 'plugin'",
        "the name does not say 'plugin'",
        name_without_plugin,
    ),
)


def check_zip(path: Path, package_name: str = PACKAGE_NAME) -> list[tuple[Rule, str]]:
    """(rule, problem) for every broken rule of the zip at ``path``; empty when it passes."""
    plugin = read_plugin(Path(path))
    return [(rule, problem) for rule in RULES for problem in rule.check(plugin, package_name)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zip", type=Path)
    parser.add_argument("--package-name", default=PACKAGE_NAME)
    args = parser.parse_args(argv)
    failures = check_zip(args.zip, args.package_name)
    for rule, problem in failures:
        print(f"FAIL [{rule.name}] {problem}  (rule: {rule.what}; from {rule.source})")
    if failures:
        print(f"{args.zip}: {len(failures)} problem(s) for the QGIS plugin repository")
        return 1
    print(f"{args.zip}: passes the {len(RULES)} rules of the QGIS plugin repository checked here")
    return 0


if __name__ == "__main__":
    sys.exit(main())
