"""The house's rules, read from the source (docs/ARCHITECTURE.md draws the map they keep true).

Every import statement of the plugin and the scripts is read with ``ast``, at any depth (an import
inside a function is still an edge: it runs when the function does). Then:

- no import cycle, inside ``mus_qgis`` or ``scripts``;
- three sides, one border: the engine (``mus_qgis/engine``) never imports QGIS, Qt, the bridge
  or the QGIS side; ``mus_qgis/shared`` imports nothing but the standard library and itself;
  the bridge (``mus_qgis/bridge``: the worker client, the set-up, ``run_job``) never imports the
  engine, and no QGIS-side module imports an engine module (what both sides need is in
  ``shared``);
- what QGIS's process imports when the plugin loads (module-level imports, followed from the
  plugin's entry points) holds no heavy package;
- the inspector and the processing algorithms do not borrow from each other;
- every job the QGIS side asks for by name is declared by a domain, and only the domains'
  ``jobs.py`` modules (and ``status``) declare jobs; each declares its parameters and result as
  ``shared.schemas`` classes, and every ``run_job`` call names the result class it reads.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from mus_qgis.engine.jobs import JOB_MODULES, registered

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "mus_qgis"
HEAVY = {"torch", "open_clip", "osmnx", "geopandas", "shapely", "pyproj", "networkx", "osmium"}
HEAVY |= {"diffusers", "transformers", "numpy", "pandas", "scipy", "sklearn", "esda", "libpysal"}
HEAVY |= {"PIL", "pyarrow", "ray", "requests"}
QT = {"qgis", "PyQt5", "PyQt6", "sip"}
QGIS_SIDE = (
    "mus_qgis.plugin",
    "mus_qgis.gui",
    "mus_qgis.processing",
    "mus_qgis.inspector",
    "mus_qgis.bridge",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def source_files() -> dict[str, Path]:
    files = [*PLUGIN.rglob("*.py"), *(ROOT / "scripts").glob("*.py")]
    return {module_name(path): path for path in files if "qt6_smoke" not in path.parts}


MODULES = source_files()


def imports_of(name: str, top_level_only: bool = False) -> set[str]:
    """The absolute names ``name`` imports: our modules where they are ours, else the top-level
    package (``torch``, ``qgis``)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    nodes = tree.body if top_level_only else ast.walk(tree)
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], node.module or ""])
            else:
                base = node.module or ""
            base = base.strip(".")
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for imported in names:
            if imported in MODULES:
                found.add(imported)
            elif imported.split(".")[0] not in ("mus_qgis", "scripts"):
                found.add(imported.split(".")[0])
            else:  # a name from one of our modules: the module
                while imported and imported not in MODULES:
                    imported = imported.rpartition(".")[0]
                if imported:
                    found.add(imported)
    found.discard(name)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def our_graph() -> dict[str, set[str]]:
    return {name: {i for i in imports_of(name) if i in MODULES} for name in MODULES}


def test_no_import_cycles_in_the_plugin_or_the_scripts():
    assert cycles(our_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def side(prefix) -> list[str]:
    return [name for name in MODULES if name == prefix or name.startswith(f"{prefix}.")]


def offenders(names, forbidden) -> dict[str, set[str]]:
    found = {name: {i for i in imports_of(name) if forbidden(i)} for name in names}
    return {name: imported for name, imported in found.items() if imported}


def test_the_engine_never_imports_qgis_qt_the_bridge_or_the_qgis_side():
    assert offenders(side("mus_qgis.engine"), lambda i: i in QT or i.startswith(QGIS_SIDE)) == {}


def test_shared_imports_only_the_standard_library_and_itself():
    ours = ("mus_qgis.engine", *QGIS_SIDE)
    assert offenders(side("mus_qgis.shared"), lambda i: i in QT | HEAVY or i.startswith(ours)) == {}


def test_the_bridge_never_imports_the_engine():
    assert offenders(side("mus_qgis.bridge"), lambda i: i.startswith("mus_qgis.engine")) == {}


def test_the_qgis_side_reads_no_engine_module():
    """What both sides need (label sets, schemas, the imagery sources' list) is in ``shared``;
    the QGIS side reaches the engine only through the bridge's worker."""
    reached = {
        (name, i)
        for prefix in QGIS_SIDE
        for name in side(prefix)
        for i in imports_of(name)
        if i.startswith("mus_qgis.engine")
    }
    assert reached == set()


def loaded_with_the_plugin() -> set[str]:
    """Our modules QGIS's process imports when it loads the plugin and its algorithms: the
    module-level imports, followed from the entry points."""
    sides = ("mus_qgis.processing", "mus_qgis.inspector")
    entry = [name for name in MODULES if name.startswith(sides)] + ["mus_qgis", "mus_qgis.plugin"]
    seen: set[str] = set()
    todo = list(entry)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        for depth in range(1, len(parts)):  # importing a.b.c runs a and a.b first
            parent = ".".join(parts[:depth])
            if parent in MODULES:
                todo.append(parent)
        todo.extend(i for i in imports_of(name, top_level_only=True) if i in MODULES)
    return seen


def test_what_qgis_loads_imports_nothing_heavy_at_import_time():
    loaded = loaded_with_the_plugin()
    assert "mus_qgis.processing.provider" in loaded
    heavy = {name: imports_of(name, top_level_only=True) & HEAVY for name in loaded}
    assert {name: found for name, found in heavy.items() if found} == {}


def test_the_inspector_and_the_algorithms_do_not_borrow_from_each_other():
    inspector = [name for name in MODULES if name.startswith("mus_qgis.inspector")]
    processing = [name for name in MODULES if name.startswith("mus_qgis.processing")]
    borrowed = {
        name: {i for i in imports_of(name) if i.startswith("mus_qgis.processing")}
        for name in inspector
    }
    lent = {
        name: {i for i in imports_of(name) if i.startswith("mus_qgis.inspector")}
        for name in processing
    }
    assert {name: found for name, found in {**borrowed, **lent}.items() if found} == {}


def test_every_job_the_qgis_side_asks_for_is_declared_by_a_domain():
    asked: set[str] = set()
    for name, path in MODULES.items():
        if name.startswith(("mus_qgis.processing", "mus_qgis.inspector", "mus_qgis.plugin")):
            text = path.read_text(encoding="utf-8")
            asked |= set(re.findall(r"run_job\(\s*\"(\w+)\"", text))
            asked |= set(re.findall(r"\bjob=\"(\w+)\"", text))
    assert len(asked) >= 10  # the scan found the calls
    assert asked - set(registered()) == set()


def test_only_the_domains_declare_jobs():
    declaring = {f"mus_qgis.engine.{module}" for module in JOB_MODULES}
    declares = {
        name
        for name, path in MODULES.items()
        if re.search(r"^@job\(", path.read_text("utf-8"), re.MULTILINE)
    }
    assert declares == declaring


def test_every_job_declares_its_parameters_and_result_as_shared_schemas():
    """What crosses the border is a contract both sides read: each job names a params and a
    result class from ``shared.schemas`` (a job that took a bare dict would be unchecked)."""
    from mus_qgis.shared.schemas import Schema

    for name, run in registered().items():
        for part in (run.params, run.result):
            assert isinstance(part, type) and issubclass(part, Schema), (name, part)
            assert part.__module__.startswith("mus_qgis.shared.schemas."), (name, part)


def test_the_qgis_side_reads_every_answer_as_its_schema():
    """Every ``run_job`` call names the result class it reads the answer as."""
    calls = []
    for name, path in MODULES.items():
        if name.startswith(QGIS_SIDE) and name != "mus_qgis.bridge.engine":
            for node in ast.walk(ast.parse(path.read_text("utf-8"))):
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "run_job":
                    named = len(node.args) == 4 or any(k.arg == "result" for k in node.keywords)
                    calls.append((name, node.lineno, named))
    assert len(calls) >= 14  # every algorithm that runs a job, and the inspector
    assert [(name, line) for name, line, named in calls if not named] == []


def test_the_worker_imports_the_same_plugin_as_qgis():
    """The worker is started with the folder above ``mus_qgis`` on its path (moving the client
    to another depth once pointed it one folder too high, and every worker failed to start)."""
    from mus_qgis.bridge import client

    assert (client.PLUGIN_PARENT / "mus_qgis" / "__init__.py").resolve() == (PLUGIN / "__init__.py")
