"""Ready for QGIS 4 (Qt 6, PyQt6) while running on QGIS 3.22-3.44 (PyQt5).

PyQt6 accepts only scoped enum access (``QgsFeatureSink.Flag.FastInsert``); PyQt5 accepts both,
so a test suite run on QGIS 3 cannot see an unscoped access fail. This check reads the source
instead: every ``Owner.member`` attribute access in the QGIS side's code whose owner is a name
imported from ``qgis.*`` or ``PyQt*`` is resolved in the running QGIS, and it fails when

- the value is an enum member and the owner is not its enum type (unscoped: ``Qt.AlignLeft``), or
- the owner is an enum type but the access goes through an alias QGIS keeps only for QGIS 3
  (a member renamed or moved into ``Qgis``: ``QgsSymbolLayer.Property.PropertyFillColor`` or
  ``QgsProcessing.SourceType.TypeVectorPoint`` on QGIS 3.36+). Older QGIS have no aliases to see;
  the trixie (3.40) and sid (3.44) fresh checks run this test there.

What it cannot catch: enum members reached through a variable or an instance (``self.Flag``,
``layer.Something``), ``getattr`` with a string, names imported with ``import qgis.core`` or under
a module alias, members of enums that only a newer QGIS has, and Qt 6 removals that are not enums
(flake8-qgis's QGS4xx rules in ``make lint`` cover those).
"""

from __future__ import annotations

import ast
import configparser
import enum
import importlib
from pathlib import Path

from tests.conftest import ROOT

ENUMS_MODULE = ROOT / "mus_qgis" / "bridge" / "qgis_enums.py"


def qgis_side_files() -> list[Path]:
    """Every file that runs inside QGIS: the plugin (not its engine), the scripts and the tests
    that import QGIS."""
    files = [
        path
        for path in (ROOT / "mus_qgis").rglob("*.py")
        if "engine" not in path.relative_to(ROOT / "mus_qgis").parts[:1]
    ]
    for folder in (ROOT / "scripts", ROOT / "tests"):
        for path in folder.rglob("*.py"):
            if "engine" in path.relative_to(ROOT).parts:
                continue
            if "qgis" in path.read_text(encoding="utf-8"):
                files.append(path)
    return sorted(set(files))


def is_enum_type(value) -> bool:
    """A Python enum class, or a PyQt5 sip enum type (whose metatype sip does not export)."""
    if isinstance(value, type) and issubclass(value, enum.Enum):
        return True
    return type(value).__name__ == "enumtype"


def is_enum_member(value) -> bool:
    return is_enum_type(type(value))


def imported_names(tree: ast.AST) -> dict[str, object]:
    """Names bound by ``from qgis… import X`` / ``from PyQt… import X`` anywhere in the file."""
    names = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or not node.module:
            continue
        if node.module.split(".")[0] not in ("qgis", "PyQt5", "PyQt6"):
            continue
        try:
            module = importlib.import_module(node.module)
        except ImportError:
            continue
        for alias in node.names:
            value = getattr(module, alias.name, None)
            if value is None:
                try:
                    value = importlib.import_module(f"{node.module}.{alias.name}")
                except ImportError:
                    continue
            names[alias.asname or alias.name] = value
    return names


def resolve(node: ast.AST, names: dict[str, object]):
    """The object an attribute chain rooted in an imported name stands for, or None."""
    if isinstance(node, ast.Name):
        return names.get(node.id)
    if isinstance(node, ast.Attribute):
        owner = resolve(node.value, names)
        return None if owner is None else getattr(owner, node.attr, None)
    return None


def enum_access_problem(node: ast.Attribute, names: dict[str, object]) -> str | None:
    """Why this ``Owner.member`` access would break on QGIS 4, or None."""
    owner = resolve(node.value, names)
    if owner is None:
        return None
    value = getattr(owner, node.attr, None)
    if not is_enum_member(value):
        return None
    owner_text = ast.unparse(node.value)
    if not is_enum_type(owner):
        return f"unscoped enum: {owner_text}.{node.attr} (write {type(value).__qualname__}.…)"
    member_name = getattr(value, "name", node.attr)
    if member_name != node.attr:
        return f"renamed enum member: {owner_text}.{node.attr} is {owner_text}.{member_name}"
    if owner.__qualname__.split(".")[-1] != owner_text.split(".")[-1]:
        return f"moved enum: {owner_text}.{node.attr} is {owner.__qualname__}.{node.attr}"
    return None


def problems_in(source: str, names: dict[str, object] | None = None) -> list[str]:
    tree = ast.parse(source)
    names = imported_names(tree) if names is None else names
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            problem = enum_access_problem(node, names)
            if problem:
                found.append(f"line {node.lineno}: {problem}")
    return found


def newest_spellings_in_use(tree: ast.AST) -> list[ast.Lambda]:
    """In qgis_enums.py, the spelling each ``newest(...)`` call takes on this QGIS (its first
    lambda that resolves)."""
    names = imported_names(tree)
    chosen = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "newest":
            for spelling in node.args:
                if resolve(spelling.body, names) is not None:
                    chosen.append(spelling)
                    break
    return chosen


def test_the_checker_finds_unscoped_moved_and_renamed_enums():
    """The check can fail: an unscoped access put back is found, its scoped form is not."""
    unscoped = (
        "from qgis.core import QgsFeatureSink\n"
        "from qgis.PyQt.QtCore import Qt\n"
        "flags = QgsFeatureSink.FastInsert\n"
        "align = Qt.AlignLeft\n"
    )
    found = problems_in(unscoped)
    assert len(found) == 2, found
    assert "QgsFeatureSink.FastInsert" in found[0] and "QgsFeatureSink.Flag" in found[0]
    scoped = (
        "from qgis.core import QgsFeatureSink\n"
        "from qgis.PyQt.QtCore import Qt\n"
        "flags = QgsFeatureSink.Flag.FastInsert\n"
        "align = Qt.AlignmentFlag.AlignLeft\n"
        "version = QgsFeatureSink.__name__\n"
    )
    assert problems_in(scoped) == []


def test_the_qgis_side_uses_only_scoped_enums():
    found = []
    for path in qgis_side_files():
        if path == ENUMS_MODULE:
            continue  # its old spellings are reached only where the new ones do not exist
        for problem in problems_in(path.read_text(encoding="utf-8")):
            found.append(f"{path.relative_to(ROOT)} {problem}")
    assert found == [], "\n".join(found)


def test_each_enum_value_comes_from_the_newest_home_this_qgis_has():
    """qgis_enums.py takes the first spelling that exists: listing an old one first would pick a
    QGIS 3 alias on 3.36+ (the check above sees that) and fail on QGIS 4."""
    tree = ast.parse(ENUMS_MODULE.read_text(encoding="utf-8"))
    names = imported_names(tree)
    chosen = newest_spellings_in_use(tree)
    assert len(chosen) >= 18
    found = []
    for spelling in chosen:
        for node in ast.walk(spelling.body):
            if isinstance(node, ast.Attribute):
                problem = enum_access_problem(node, names)
                if problem:
                    found.append(f"line {node.lineno}: {problem}")
    assert found == [], "\n".join(found)
    from mus_qgis.bridge import qgis_enums

    for name in ("VECTOR_POINT", "NUMBER_DOUBLE", "WKB_POINT", "SYMBOL_FILL_COLOR"):
        assert is_enum_member(getattr(qgis_enums, name)), name


def test_fields_get_a_type_this_qgis_accepts():
    """QVariant.Type before QGIS 3.38, QMetaType.Type after (the only one on Qt 6): the same
    numbers, and QGIS reads them as the intended field types."""
    from mus_qgis.bridge.qgis_enums import make_field

    # QMetaType/QVariant numbers: Int 2, LongLong 4, Double 6, QString 10.
    for kind, number in (("int", 2), ("int64", 4), ("double", 6), ("string", 10)):
        field = make_field("x", kind)
        assert int(field.type()) == number, kind
    assert make_field("n", "double").isNumeric()
    assert not make_field("label", "string").isNumeric()


def test_metadata_declares_qgis_3_22_to_4():
    metadata = configparser.ConfigParser()
    metadata.read(ROOT / "metadata.txt", encoding="utf-8")
    general = metadata["general"]
    assert general["qgisMinimumVersion"] == "3.22"
    assert general["qgisMaximumVersion"] == "4.99"
