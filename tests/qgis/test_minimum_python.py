"""The QGIS side runs on every Python that QGIS builds bring: 3.9 to 3.14.

QGIS's macOS LTR installers and its 3.22/3.28 Windows builds bring Python 3.9, Ubuntu 22.04's QGIS
3.10; only the engine, in its own environment, needs 3.11. What runs in QGIS's process is found by
loading the plugin as QGIS does (every algorithm's definition and help, the plugin entry, and the
plugin modules that the plugin's own code imports when it runs an algorithm or opens the street
inspector), never listed by hand. Every file found is then

- checked by vermin for anything newer than Python 3.9, on every machine;
- compiled, and imported where it needs nothing outside the standard library (QGIS, Qt, numpy), by
  a real Python 3.9 and 3.10 where the machine has one (pyenv's, on the developers' machines; a
  fresh CI machine has none, and skips only that part).

vermin's flags: ``-t=3.9-`` (nothing may need more than 3.9), ``--violations`` with the parsable
format (only what breaks the target, one ``file:line:col:py2:py3:feature`` line each),
``--pessimistic`` (a file the running Python cannot parse counts against it: syntax newer than the
test's own Python), ``--no-backport`` (QGIS's Python has no typing_extensions or other backport
to count on), ``--no-config-file`` (no stray setup.cfg changes the rules). ``--eval-annotations``
only for files without ``from __future__ import annotations``: there Python evaluates annotations
when it defines a function, in the others never. Not ``--feature union-types``: its heuristics
call Qt flag combinations (``Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop``) and
postponed annotations 3.10 code. vermin misses two 3.10 rules, checked here from the syntax tree:
an unparenthesised ``:=`` in a subscript or a set, and ``X | Y`` where Python 3.9 evaluates it as
a type (an annotation evaluated at definition, or ``| None`` in running code).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.conftest import ROOT

PLUGIN = (ROOT / "mus_qgis").resolve()
OLDEST = (3, 9)
VERMIN_FLAGS = (
    "--no-config-file",
    f"-t={OLDEST[0]}.{OLDEST[1]}-",
    "--violations",
    "--format",
    "parsable",
    "--pessimistic",
    "--no-backport",
    "--no-tips",
    "--processes=1",  # a few dozen files: a pool costs more than it saves
)
# vermin's own entry point, run by this Python: no console script to look for.
VERMIN_MAIN = "import sys, vermin; sys.exit(vermin.main())"
# vermin's parsable line: file:line:column:py2:py3:feature (the feature may hold colons).
VERMIN_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):\d*:[^:]*:(?P<py3>[^:]*):(?P<feature>.*)$")


# ---- which modules QGIS's process imports -------------------------------------------------------


def _loaded_plugin_modules() -> dict[str, Path]:
    """Every module in sys.modules whose file lies in this repository's mus_qgis folder."""
    found = {}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and Path(file).resolve().is_relative_to(PLUGIN):
            found[name] = Path(file).resolve()
    return found


def _plugin_module_file(name: str) -> Path | None:
    """The file of the plugin module ``name`` (``mus_qgis.x.y``); None for anything else, such as
    a function imported from a module."""
    if name != "mus_qgis" and not name.startswith("mus_qgis."):
        return None
    base = PLUGIN.parent.joinpath(*name.split("."))
    for file in (base.with_suffix(".py"), base / "__init__.py"):
        if file.is_file():
            return file
    return None


def _plugin_imports(name: str, file: Path) -> set[str]:
    """The plugin modules that ``file`` (module ``name``) imports, at its top or inside its
    functions: what QGIS imports once it runs the code, not only loads it."""
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    modules = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), str(file))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = "." * node.level + (node.module or "")
            resolved = importlib.util.resolve_name(target, package) if node.level else target
            candidates = [resolved] + [f"{resolved}.{alias.name}" for alias in node.names]
        else:
            continue
        modules.update(c for c in candidates if _plugin_module_file(c) is not None)
    return modules


def _load_the_plugin_as_qgis_does(provider) -> dict[str, Path]:
    """Load what QGIS loads, then the plugin modules its own code imports when it runs; return
    every plugin module then in sys.modules, by name."""
    for algorithm in provider.algorithms():
        instance = algorithm.createInstance()
        instance.initAlgorithm({})
        instance.shortHelpString()
        with warnings.catch_warnings():  # deprecated in newer QGIS, still shown by older ones
            warnings.simplefilter("ignore", DeprecationWarning)
            instance.helpString()
    importlib.import_module("mus_qgis.plugin")
    from mus_qgis import classFactory

    classFactory(None)  # qgis_process's way in: no iface
    # The plugin shell (plugin, processing, inspector) imports inside its functions what it needs
    # when an algorithm runs or the inspector opens; all of that runs in QGIS. The engine's own
    # function-level imports are not followed: most run only in the engine's process.
    followed: set[str] = set()
    while True:
        shell = {
            name: file
            for name, file in _loaded_plugin_modules().items()
            if name not in followed and not name.startswith("mus_qgis.engine")
        }
        if not shell:
            return _loaded_plugin_modules()
        for name, file in shell.items():
            followed.add(name)
            for module in sorted(_plugin_imports(name, file)):
                importlib.import_module(module)


# In a QGIS process of its own: in this one, other tests import engine modules QGIS never would.
COLLECT = """
import json, os, sys
from qgis.core import QgsApplication
app = QgsApplication([], False)
app.initQgis()
sys.path.append(os.path.join(QgsApplication.pkgDataPath(), "python", "plugins"))
from mus_qgis.processing.provider import MusProvider
provider = MusProvider()
QgsApplication.processingRegistry().addProvider(provider)
from tests.qgis.test_minimum_python import _load_the_plugin_as_qgis_does
found = _load_the_plugin_as_qgis_does(provider)
print("MODULES " + json.dumps({name: str(path) for name, path in found.items()}), flush=True)
os._exit(0)  # the modules are what this process was for; QGIS's teardown adds nothing
"""


@pytest.fixture(scope="module")
def qgis_side_modules() -> dict[str, Path]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", COLLECT],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"},
        timeout=300,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("MODULES ")), "")
    assert line, f"loading the plugin in QGIS failed:\n{done.stdout}\n{done.stderr}"
    modules = {name: Path(path) for name, path in json.loads(line[len("MODULES ") :]).items()}
    print(f"found {len(modules)} modules in {time.perf_counter() - started:.2f} s")
    return modules


# ---- what needs a Python newer than 3.9 ---------------------------------------------------------


def _shown(file: Path) -> str:
    file = Path(file).resolve()
    return str(file.relative_to(ROOT)) if file.is_relative_to(ROOT) else str(file)


def _vermin(files: list[Path], *extra: str) -> list[str]:
    if not files:
        return []
    done = subprocess.run(
        [sys.executable, "-c", VERMIN_MAIN, *VERMIN_FLAGS, *extra, *map(str, files)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
    )
    found = []
    for line in done.stdout.splitlines():
        match = VERMIN_LINE.match(line)
        if match:
            feature = match["feature"].strip()
            needs = match["py3"] or "?"
            found.append(
                f"{_shown(Path(match['file']))}:{match['line']}: {feature} (needs {needs})"
            )
    # 1 is vermin's answer when a file misses the target; anything else, or 1 with nothing
    # named, is vermin failing (not installed, a bad flag), which must not pass for a clean bill.
    assert done.returncode == 0 or (done.returncode == 1 and found), (
        f"vermin failed (exit {done.returncode}; `pip install -r requirements-dev.txt` installs "
        f"it):\n{done.stdout}\n{done.stderr}"
    )
    return found


def _postpones_annotations(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(alias.name == "annotations" for alias in node.names)
        for node in tree.body
    )


def _is_union(node: ast.AST) -> bool:  # in an annotation, | means nothing else
    return any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr) for n in ast.walk(node))


def _annotations(tree: ast.AST, evaluated_only: bool) -> Iterable[ast.expr]:
    """Every annotation, or only those Python evaluates when it runs the definitions: function
    signatures, module and class variables (a function's local annotations never are)."""

    def within(node: ast.AST, in_function: bool) -> Iterable[ast.expr]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.AnnAssign) and not (evaluated_only and in_function):
                yield child.annotation
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                arguments = child.args
                every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
                every += [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
                yield from (a.annotation for a in every if a.annotation is not None)
                if child.returns is not None:
                    yield child.returns
            in_body = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            yield from within(
                child, in_body or (in_function and not isinstance(child, ast.ClassDef))
            )

    return within(tree, False)


def _syntax_violations(file: Path) -> list[str]:
    """The 3.10 rules vermin does not check (see the module's docstring)."""
    source = file.read_text(encoding="utf-8")
    tree = ast.parse(source, str(file))
    lines = source.splitlines(keepends=True)
    found = []

    def text_before(node: ast.AST) -> str:
        line = lines[node.lineno - 1].encode("utf-8")[: node.col_offset].decode("utf-8")
        return ("".join(lines[: node.lineno - 1]) + line).rstrip()

    for node in ast.walk(tree):
        # A bare := directly inside [ ] or { } (not in parentheses) is new in 3.10.
        if isinstance(node, ast.Subscript):
            slice_ = node.slice
            inner = slice_.elts if isinstance(slice_, ast.Tuple) else [slice_]
        elif isinstance(node, ast.Set):
            inner = node.elts
        elif isinstance(node, ast.SetComp):
            inner = [node.elt]
        else:
            inner = []
        for item in inner:
            if isinstance(item, ast.NamedExpr) and text_before(item)[-1:] in ("[", "{", ","):
                found.append(f"{_shown(file)}:{item.lineno}: unparenthesised := in [ ] or {{ }}")
    if not _postpones_annotations(tree):
        for annotation in _annotations(tree, evaluated_only=True):
            if _is_union(annotation):
                found.append(
                    f"{_shown(file)}:{annotation.lineno}: X | Y in an evaluated annotation"
                )
    # Outside annotations, | is also bitwise or and Qt's flags: only | None is surely a type.
    in_annotations = {id(n) for a in _annotations(tree, evaluated_only=False) for n in ast.walk(a)}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.BitOr)
            and id(node) not in in_annotations
            and any(
                isinstance(s, ast.Constant) and s.value is None for s in (node.left, node.right)
            )
        ):
            found.append(f"{_shown(file)}:{node.lineno}: X | None evaluated as a type")
    return found


def python39_violations(files: Iterable[Path]) -> list[str]:
    """Everything in ``files`` that Python 3.9 lacks, as ``file:line: feature`` lines."""
    files = sorted({Path(f).resolve() for f in files})
    postponed = [f for f in files if _postpones_annotations(ast.parse(f.read_bytes()))]
    evaluated = [f for f in files if f not in postponed]
    found = _vermin(postponed) + _vermin(evaluated, "--eval-annotations")
    for file in files:
        found += _syntax_violations(file)
    return sorted(set(found))


# ---- the tests ----------------------------------------------------------------------------------


def test_qgis_side_needs_nothing_newer_than_python_3_9(qgis_side_modules, mus_provider):
    names = set(qgis_side_modules)
    algorithm_modules = {type(a).__module__ for a in mus_provider.algorithms()} - {"qgis._core"}
    expected = {
        "mus_qgis",
        "mus_qgis.plugin",
        "mus_qgis.processing.provider",
        "mus_qgis.processing.figures",  # imported only when Export figures runs
        "mus_qgis.inspector.dock",  # imported only when the inspector opens
        "mus_qgis.bridge.client",
        "mus_qgis.bridge.environment",
        "mus_qgis.shared.protocol",
        "mus_qgis.shared.labels",
        "mus_qgis.shared.sequences",
    }
    assert expected | algorithm_modules <= names, sorted(expected | algorithm_modules - names)
    started = time.perf_counter()
    violations = python39_violations(qgis_side_modules.values())
    print(f"checked {len(names)} files in {time.perf_counter() - started:.2f} s")
    assert not violations, (
        "QGIS runs these modules on Python 3.9 and 3.10 too (QGIS 3.22/3.28 on Windows, the "
        "macOS LTR installers, Ubuntu 22.04), where these lines fail:\n" + "\n".join(violations)
    )


def test_the_checker_names_what_python_3_9_lacks(tmp_path):
    """labels.py as it was: tomllib, zip(strict=True) and a bare := in a subscript put back."""
    source = (PLUGIN / "shared" / "labels.py").read_text(encoding="utf-8")
    copy = (tmp_path / "labels.py").resolve()
    copy.write_text(source, encoding="utf-8")
    assert python39_violations([copy]) == []  # its parenthesised := included

    assert "\nimport json\n" in source
    broken = source.replace("\nimport json\n", "\nimport json\nimport tomllib\n", 1) + (
        "\n\ndef _pairs(a, b):\n"
        "    return list(zip(a, b, strict=True))\n\n\n"
        "def _repeated(counts, words):\n"
        "    return [word for word in words if counts[key := word.casefold()] > 1 and key]\n"
    )
    copy.write_text(broken, encoding="utf-8")
    lines = broken.splitlines()
    shown = _shown(copy)  # relative to the checkout where the temporary folder lies inside it
    assert python39_violations([copy]) == sorted(
        [
            f"{shown}:{lines.index('import tomllib') + 1}: 'tomllib' module (needs 3.11)",
            f"{shown}:{len(lines) - 4}: 'zip(strict)' (needs 3.10)",
            f"{shown}:{len(lines)}: unparenthesised := in [ ] or {{ }}",
        ]
    )


def test_the_checker_leaves_postponed_annotations_and_qt_flags_alone(tmp_path):
    """What 3.9 runs passes (Qt flags, annotations it never evaluates); the same unions
    evaluated when the function is defined, or as a value, do not."""
    body = (
        "from qgis.PyQt.QtCore import Qt\n\n"
        "ALIGNMENT = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop\n\n\n"
        "def first(values: list[int] | None) -> int | None:\n"
        "    return values[0] if values else None\n"
    )
    postponed = (tmp_path / "postponed.py").resolve()
    postponed.write_text("from __future__ import annotations\n\n" + body, encoding="utf-8")
    assert python39_violations([postponed]) == []
    evaluated = (tmp_path / "evaluated.py").resolve()
    evaluated.write_text(body + "\n\nMAYBE = int | None\n", encoding="utf-8")
    shown = _shown(evaluated)
    assert python39_violations([evaluated]) == [
        f"{shown}:10: X | None evaluated as a type",
        f"{shown}:6: X | Y in an evaluated annotation",
    ]


# ---- on a real Python 3.9 and 3.10, where the machine has them ----------------------------------


def _old_python(version: str) -> str | None:
    """A Python ``version`` on this machine (on PATH, or pyenv's newest), or None."""
    candidates = [shutil.which(f"python{version}")]
    pyenv = Path.home() / ".pyenv" / "versions"
    candidates += [
        str(p)
        for p in sorted(
            pyenv.glob(f"{version}.*/bin/python"),
            key=lambda p: [int(part) for part in re.findall(r"\d+", p.parent.parent.name)],
            reverse=True,
        )
    ]
    for candidate in filter(None, candidates):
        done = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=60,
        )
        if done.returncode == 0 and done.stdout.strip() == version:
            return candidate
    return None


# Run by the old Python: compile every file, import every module, read the label registry.
OLD_PYTHON_SCRIPT = r"""
import importlib, json, py_compile, sys, traceback
request = json.load(sys.stdin)
sys.path.insert(0, request["root"])
report = {"not_compiled": [], "not_imported": [], "imported": [], "needs": {}}
for index, file in enumerate(request["files"]):
    try:
        py_compile.compile(file, cfile=f"{request['scratch']}/{index}.pyc", doraise=True)
    except py_compile.PyCompileError as error:
        report["not_compiled"].append(error.msg)
for name in request["modules"]:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as error:
        top = (error.name or "").partition(".")[0]
        if top in request["stdlib"] or top == "mus_qgis":
            report["not_imported"].append(f"{name}: {error!r}")
        else:  # a package QGIS's Python has (qgis, PyQt, numpy), not this one
            report["needs"][name] = top
    except Exception:
        report["not_imported"].append(f"{name}: {traceback.format_exc(limit=-3)}")
    else:
        report["imported"].append(name)
if "mus_qgis.shared.labels" in sys.modules:
    labels = sys.modules["mus_qgis.shared.labels"]
    report["label_sets"] = [entry.name for entry in labels.builtin_label_sets()]
json.dump(report, sys.stdout)
"""


@pytest.mark.parametrize("version", ["3.9", "3.10"])
def test_qgis_side_compiles_and_imports_on_old_python(version, qgis_side_modules, tmp_path):
    python = _old_python(version)
    if python is None:
        pytest.skip(
            f"no Python {version} on this machine (python{version} on PATH or pyenv's "
            f"~/.pyenv/versions/{version}.*): the vermin check above still ran"
        )
    request = {
        "root": str(ROOT),
        "files": sorted(str(f) for f in set(qgis_side_modules.values())),
        "modules": sorted(qgis_side_modules),
        "stdlib": sorted(sys.stdlib_module_names),
        "scratch": str(tmp_path),
    }
    started = time.perf_counter()
    done = subprocess.run(
        [python, "-I", "-B", "-c", OLD_PYTHON_SCRIPT],  # isolated, and no __pycache__ left
        input=json.dumps(request),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    print(f"Python {version} ({python}): {time.perf_counter() - started:.2f} s")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["not_compiled"] == [], "\n".join(report["not_compiled"])
    assert report["not_imported"] == [], "\n".join(report["not_imported"])
    # The engine, shared and bridge modules QGIS imports need only the standard library (README,
    # "For developers"), so every one of them is imported here; the plugin's own need QGIS (and
    # so do the bridge's run_job, layer settings and enums).
    qgis_bridge = {"mus_qgis.bridge.engine", "mus_qgis.bridge.layer_settings"}
    qgis_bridge.add("mus_qgis.bridge.qgis_enums")
    standalone = ("mus_qgis.engine", "mus_qgis.shared", "mus_qgis.bridge")
    engine = {
        name
        for name in qgis_side_modules
        if name.startswith(standalone) and name not in qgis_bridge
    }
    assert engine <= set(report["imported"]), {n: report["needs"].get(n) for n in engine}
    from mus_qgis.shared.labels import builtin_label_sets

    assert report["label_sets"] == [entry.name for entry in builtin_label_sets()]
    print(f"imported {len(report['imported'])} of {len(qgis_side_modules)}")
