"""Find code that works on Linux but not on Windows (or macOS): text opened in the locale's
encoding, and POSIX-only calls that no platform test guards.

    python scripts/check_portability.py [FILE_OR_FOLDER ...]    (default: the whole repository)

Prints ``file:line: [rule] what is wrong. Fix: what to do`` for each finding and exits 1 when
there is any. The rules are the tables below; the code after them only applies the tables.

Why these rules: QGIS on Windows runs Python with the ANSI code page (cp1252 and the like) as the
locale encoding, so text opened without ``encoding=`` reads UTF-8 files wrongly and fails to write
any character outside that page; and the POSIX-only names below raise AttributeError or
ImportError there (or, for a few subprocess options, ValueError or silently do nothing).

A POSIX-only use is accepted when it is guarded, that is:
- inside an ``if``/``elif``/``else`` (or a conditional expression) whose test mentions
  ``sys.platform``, ``os.name``, ``platform.system()``, ``hasattr(<module>, ...)``, or a name
  assigned from one of those: in this file, or in another module of the repository and imported
  (``from .client import POSIX``) or read through its module (``client.POSIX``);
- after such a test in the same ``and``/``or`` (``os.name == "posix" and os.geteuid() == 0``);
- after an ``if <platform test>:`` whose body leaves the block (``return``, ``raise``,
  ``continue``, ``break``, ``sys.exit()``, ``pytest.skip()``), in the statements that follow it;
- inside the ``try`` of a ``try``/``except`` that catches ImportError, ModuleNotFoundError or
  AttributeError;
- in a function or class marked ``@pytest.mark.skipif(<platform test>)``, or in a test module
  whose ``pytestmark`` holds such a mark.
Reading ``getattr(signal, "SIGKILL", default)`` is portable already and is not flagged. The
encoding rules apply everywhere, guarded or not: Windows is not the only platform whose locale
may not be UTF-8.

Standard library only; runs on Python 3.9+.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Folders never scanned: environments, build outputs and tool caches (every hidden folder is
# skipped too: .venv, .engine, .git, .pytest-tmp ...).
SKIPPED_FOLDERS = {"build", "dist", "demo_output", "__pycache__", "node_modules"}

# ----------------------------------------------------------------------------------------------
# Rule table 1: text I/O. Each entry: (module or None for a builtin / a method, function name) ->
# (index of the `mode` argument or None, index of the `encoding` argument or None, default mode,
# the character that makes a mode text). A call opens text when its mode, a literal, holds no "b"
# (or holds the text character, for the compressed-file modules whose default is binary); it is
# a finding when no `encoding` is passed. A mode computed at run time is not judged, nor is a
# call that passes **kwargs (the encoding may be among them).
TEXT_OPENERS = {
    (None, "open"): (1, 3, "r", ""),
    ("io", "open"): (1, 3, "r", ""),
    ("codecs", "open"): (1, 2, "r", ""),
    ("os", "fdopen"): (1, 3, "r", ""),
    ("io", "TextIOWrapper"): (None, 1, "t", ""),
    ("tempfile", "NamedTemporaryFile"): (0, 2, "w+b", ""),
    ("tempfile", "TemporaryFile"): (0, 2, "w+b", ""),
    ("tempfile", "SpooledTemporaryFile"): (1, 3, "w+b", ""),
    ("gzip", "open"): (1, 3, "rb", "t"),
    ("bz2", "open"): (1, 3, "rb", "t"),
    ("lzma", "open"): (1, None, "rb", "t"),
    ("logging", "FileHandler"): (1, 2, "a", ""),
    ("logging.handlers", "RotatingFileHandler"): (1, 4, "a", ""),
    ("logging.handlers", "TimedRotatingFileHandler"): (None, 4, "t", ""),
    ("logging.handlers", "WatchedFileHandler"): (1, 2, "a", ""),
}
# Methods known by their name alone (pathlib.Path, zipfile.Path, importlib's Traversable all take
# `encoding` at these positions): method name -> (index of `mode`, index of `encoding`).
TEXT_METHODS = {
    "read_text": (None, 0),
    "write_text": (None, 1),
}
# Path.open(mode="r", buffering=-1, encoding=None, ...). Many other objects have an .open() (an
# image, a zip member, a Qt dialog), so a call counts as Path.open only when its first argument
# is a literal mode ("w", "r+", ...), its keywords are only Path.open's, or its receiver is built
# as a path (``Path(...)``, ``folder / "name"``).
PATH_OPEN_KEYWORDS = {"mode", "buffering", "encoding", "errors", "newline"}
PATH_CONSTRUCTORS = {"Path", "PurePath", "PosixPath", "WindowsPath"}
# subprocess calls that decode the child's output when text=True or universal_newlines=True.
SUBPROCESS_TEXT_CALLS = {"run", "Popen", "check_output", "call", "check_call"}
# subprocess calls that always decode in the locale's encoding, with no way to pass another.
SUBPROCESS_LOCALE_ONLY = {
    "getoutput": "use subprocess.run(..., capture_output=True, encoding=...)",
    "getstatusoutput": "use subprocess.run(..., capture_output=True, encoding=...)",
}
ENCODING_FIX = 'pass encoding="utf-8" (Windows\' locale encoding is not UTF-8), or open in binary'
SUBPROCESS_FIX = (
    'pass encoding="utf-8" (and errors="replace" for output that may not be UTF-8) with text=True'
)

# ----------------------------------------------------------------------------------------------
# Rule table 2: POSIX-only names. module -> {attribute: what to do instead}.
PROCESS_FIX = "use Popen.terminate()/kill() on Windows, or guard it with a platform test"
POSIX_ONLY_ATTRIBUTES = {
    "os": {
        "killpg": PROCESS_FIX + " (Windows has no process groups)",
        "getpgid": "guard it with a platform test (Windows has no process groups)",
        "getpgrp": "guard it with a platform test (Windows has no process groups)",
        "setpgid": "guard it; on Windows use creationflags=CREATE_NEW_PROCESS_GROUP",
        "setpgrp": "guard it; on Windows use creationflags=CREATE_NEW_PROCESS_GROUP",
        "setsid": "guard it; on Windows use creationflags=CREATE_NEW_PROCESS_GROUP",
        "getsid": "guard it with a platform test",
        "fork": "use subprocess or multiprocessing (spawn), or guard it",
        "forkpty": "use subprocess, or guard it",
        "wait": "use Popen.wait(), or guard it",
        "wait3": "use Popen.wait(), or guard it",
        "wait4": "use Popen.wait(), or guard it",
        "WNOHANG": "use Popen.poll(), or guard it",
        "getuid": 'guard it (e.g. os.name == "posix" and os.getuid() == 0)',
        "geteuid": 'guard it (e.g. os.name == "posix" and os.geteuid() == 0)',
        "getgid": "guard it with a platform test",
        "getegid": "guard it with a platform test",
        "getgroups": "guard it with a platform test",
        "setuid": "guard it with a platform test",
        "setgid": "guard it with a platform test",
        "chown": "guard it with a platform test",
        "lchown": "guard it with a platform test",
        "fchown": "guard it with a platform test",
        "nice": "guard it, or use psutil's priority classes on Windows",
        "mkfifo": "guard it with a platform test",
        "uname": "use platform.uname()",
        "getloadavg": "guard it with a platform test",
        "sysconf": "guard it with a platform test",
        "sched_getaffinity": "use os.cpu_count(), or guard it (Linux only)",
        # Exists on Windows but needs an administrator or Developer Mode: treated as POSIX-only.
        "symlink": "guard it and copy (or write a path file) on Windows: symlinks need a privilege",
    },
    "signal": {
        **dict.fromkeys(
            (
                "SIGKILL",
                "SIGHUP",
                "SIGUSR1",
                "SIGUSR2",
                "SIGALRM",
                "SIGCHLD",
                "SIGQUIT",
                "SIGPIPE",
                "SIGSTOP",
                "SIGCONT",
                "SIGTSTP",
                "SIGWINCH",
            ),
            "Windows has only SIGTERM, SIGINT, SIGABRT, SIGBREAK...: use Popen.kill(), "
            'getattr(signal, "NAME", signal.SIGTERM), or guard it',
        ),
        **dict.fromkeys(
            ("alarm", "setitimer", "getitimer", "pause", "siginterrupt", "sigwait"),
            "use a timer thread or a timeout argument, or guard it",
        ),
        **dict.fromkeys(("pthread_kill", "pthread_sigmask"), "guard it with a platform test"),
    },
}
# Modules that do not exist on Windows: module -> what to do instead.
POSIX_ONLY_MODULES = {
    "fcntl": "import it under a platform test (msvcrt.locking is Windows' file lock)",
    "pwd": "use getpass.getuser() or Path.home(), or import it under a platform test",
    "grp": "import it under a platform test",
    "resource": "import it under a platform test (or in try/except ImportError)",
    "termios": "import it under a platform test",
    "tty": "import it under a platform test",
    "pty": "import it under a platform test",
    "posix": "use os",
}
# subprocess keywords that raise on Windows (preexec_fn, pass_fds, user, group, extra_groups,
# umask, process_group) or are silently ignored there (start_new_session).
POSIX_ONLY_SUBPROCESS_KEYWORDS = {
    "preexec_fn": "guard it; it raises ValueError on Windows",
    "pass_fds": "guard it; Windows cannot pass descriptors this way",
    "start_new_session": "guard it; Windows ignores it: use "
    "creationflags=subprocess.CREATE_NEW_PROCESS_GROUP there",
    "process_group": "guard it; on Windows use creationflags=CREATE_NEW_PROCESS_GROUP",
    "user": "guard it with a platform test",
    "group": "guard it with a platform test",
    "extra_groups": "guard it with a platform test",
    "umask": "guard it with a platform test",
}

# ----------------------------------------------------------------------------------------------
# What makes a test a platform test, and what ends a block.
PLATFORM_ATTRIBUTES = {("sys", "platform"), ("os", "name")}
PLATFORM_FUNCTIONS = {("platform", "system"), ("platform", "platform"), ("platform", "uname")}
GUARD_EXCEPTIONS = {"ImportError", "ModuleNotFoundError", "AttributeError"}
LEAVING_CALLS = {("sys", "exit"), ("os", "_exit"), ("pytest", "skip"), ("pytest", "exit")}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: [{self.rule}] {self.message}"


def module_name(path: Path, root: Path) -> str:
    """The dotted module name of a file under ``root`` (``pkg/sub/__init__.py`` -> pkg.sub)."""
    try:
        parts = list(path.resolve().relative_to(root.resolve()).with_suffix("").parts)
    except ValueError:
        parts = [path.stem]
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imported_module(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    """The absolute module a ``from ... import`` reads from, inside ``module``."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if module else []
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join([*base, *([node.module] if node.module else [])])


class _Imports:
    """Which local names stand for which modules and module attributes in one file."""

    def __init__(self, tree: ast.Module, module: str = "", is_package: bool = False):
        self.modules: dict[str, str] = {}  # local name -> module
        self.names: dict[str, tuple[str, str]] = {}  # local name -> (module, attribute)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self.modules[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        self.modules.setdefault(top, top)
                        self.modules.setdefault(alias.name, alias.name)
            elif isinstance(node, ast.ImportFrom):
                source = _imported_module(module, node, is_package)
                for alias in node.names:
                    if source:
                        self.names[alias.asname or alias.name] = (source, alias.name)

    def dotted(self, node: ast.AST) -> str | None:
        """``os.path.join`` for an expression naming it through this file's imports."""
        if isinstance(node, ast.Name):
            if node.id in self.modules:
                return self.modules[node.id]
            if node.id in self.names:
                return ".".join(self.names[node.id])
            return None
        if isinstance(node, ast.Attribute):
            base = self.dotted(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def split(self, node: ast.AST) -> tuple[str | None, str] | None:
        """(module, function) of a called name: (None, "open") for a builtin."""
        if isinstance(node, ast.Name) and node.id not in self.modules and node.id not in self.names:
            return None, node.id
        dotted = self.dotted(node)
        if not dotted or "." not in dotted:
            return None
        module, _, name = dotted.rpartition(".")
        return module, name


# module -> the names it assigns from a platform test, for the modules checked together.
GuardsOf = dict[str, set[str]]


def _guard_names(tree: ast.Module, imports: _Imports, guards_of: GuardsOf) -> set[str]:
    """Names this file assigns from a platform test (POSIX = os.name == "posix", ...), also
    from one another and from other modules' guards, in any scope."""
    names: set[str] = set()
    changed = True
    while changed:  # a guard may be derived from another guard assigned earlier or later
        changed = False
        for node in ast.walk(tree):
            targets: list[ast.AST] = []
            if isinstance(node, ast.Assign):
                targets, value = node.targets, node.value
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and node.value is not None:
                targets, value = [node.target], node.value
            else:
                continue
            if _mentions_platform(value, imports, names, guards_of):
                for target in targets:
                    if isinstance(target, ast.Name) and target.id not in names:
                        names.add(target.id)
                        changed = True
    return names


def _mentions_platform(
    node: ast.AST, imports: _Imports, guards: set[str], guards_of: GuardsOf
) -> bool:
    """Whether an expression reads the platform: sys.platform, os.name, platform.system(),
    hasattr(module, ...), a guard of this file (``guards``) or one of another module's,
    imported by name (``from .client import POSIX``) or read through it (``client.POSIX``)."""
    for part in ast.walk(node):
        if isinstance(part, ast.Attribute):
            dotted = imports.dotted(part.value)
            if (dotted, part.attr) in PLATFORM_ATTRIBUTES:
                return True
            if dotted and part.attr in guards_of.get(dotted, ()):
                return True
        elif isinstance(part, ast.Name):
            if part.id in guards:
                return True
            source = imports.names.get(part.id)
            if source in PLATFORM_ATTRIBUTES or (
                source and source[1] in guards_of.get(source[0], ())
            ):
                return True  # from sys import platform; from .client import POSIX
        elif isinstance(part, ast.Call):
            called = imports.split(part.func)
            if called in PLATFORM_FUNCTIONS:
                return True
            if called == (None, "hasattr") and part.args and imports.dotted(part.args[0]):
                return True  # hasattr(os, "killpg"): a test of the feature itself
    return False


class _FileChecker:
    def __init__(self, path: str, tree: ast.Module, imports: _Imports, guards_of: GuardsOf):
        self.path = path
        self.imports = imports
        self.guards_of = guards_of
        self.guards = _guard_names(tree, imports, guards_of)
        self.findings: list[Finding] = []

    # -- guards ------------------------------------------------------------------------------
    def is_platform_test(self, node: ast.AST) -> bool:
        return _mentions_platform(node, self.imports, self.guards, self.guards_of)

    def is_skipif_platform(self, node: ast.AST) -> bool:
        """``pytest.mark.skipif(<platform test>, ...)``, alone or in a list of marks."""
        for part in ast.walk(node):
            if (
                isinstance(part, ast.Call)
                and isinstance(part.func, ast.Attribute)
                and part.func.attr == "skipif"
                and any(self.is_platform_test(arg) for arg in part.args)
            ):
                return True
        return False

    def leaves_block(self, body: list[ast.stmt]) -> bool:
        if not body:
            return False
        last = body[-1]
        if isinstance(last, (ast.Return, ast.Raise, ast.Continue, ast.Break)):
            return True
        return isinstance(last, ast.Expr) and (
            isinstance(last.value, ast.Call)
            and self.imports.split(last.value.func) in LEAVING_CALLS
        )

    @staticmethod
    def catches_missing_names(node: ast.Try) -> bool:
        for handler in node.handlers:
            caught = handler.type
            names = caught.elts if isinstance(caught, ast.Tuple) else [caught]
            for name in names:
                if isinstance(name, ast.Name) and name.id in GUARD_EXCEPTIONS:
                    return True
                if isinstance(name, ast.Attribute) and name.attr in GUARD_EXCEPTIONS:
                    return True
        return False

    # -- walking -----------------------------------------------------------------------------
    def check(self, tree: ast.Module) -> list[Finding]:
        module_guarded = any(
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets)
            and self.is_skipif_platform(node.value)
            for node in tree.body
        )
        self.block(tree.body, module_guarded)
        return self.findings

    def block(self, statements: list[ast.stmt], guarded: bool) -> None:
        for statement in statements:
            self.visit(statement, guarded)
            if (
                isinstance(statement, ast.If)
                and not statement.orelse
                and self.is_platform_test(statement.test)
                and self.leaves_block(statement.body)
            ):
                guarded = True  # what follows runs on one platform only

    def visit(self, node: ast.AST, guarded: bool) -> None:
        if isinstance(node, (ast.If, ast.IfExp, ast.While)):
            platform = not isinstance(node, ast.While) and self.is_platform_test(node.test)
            self.visit(node.test, guarded)
            for field in ("body", "orelse"):
                part = getattr(node, field)
                if isinstance(part, list):
                    self.block(part, guarded or platform)
                else:
                    self.visit(part, guarded or platform)
            return
        if isinstance(node, ast.BoolOp):
            for value in node.values:
                self.visit(value, guarded)
                guarded = guarded or self.is_platform_test(value)
            return
        if isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            self.block(node.body, guarded or self.catches_missing_names(node))
            for handler in node.handlers:
                self.visit(handler, guarded)
            self.block(node.orelse, guarded)
            self.block(node.finalbody, guarded)
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for decorator in node.decorator_list:
                self.visit(decorator, guarded)
            marked = any(self.is_skipif_platform(d) for d in node.decorator_list)
            for child in ast.iter_child_nodes(node):
                if child not in node.decorator_list and not isinstance(child, ast.stmt):
                    self.visit(child, guarded)
            self.block(node.body, guarded or marked)
            return
        self.inspect(node, guarded)
        for _, value in ast.iter_fields(node):
            if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                self.block(value, guarded)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.AST):
                        self.visit(item, guarded)
            elif isinstance(value, ast.AST):
                self.visit(value, guarded)

    # -- rules -------------------------------------------------------------------------------
    def report(self, node: ast.AST, rule: str, message: str) -> None:
        self.findings.append(Finding(self.path, getattr(node, "lineno", 0), rule, message))

    def inspect(self, node: ast.AST, guarded: bool) -> None:
        if isinstance(node, ast.Call):
            self.text_io(node)
            if not guarded:
                self.posix_keywords(node)
        if guarded:
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top in POSIX_ONLY_MODULES:
                    self.report(
                        node,
                        "posix-only-module",
                        f"module {top} does not exist on Windows. Fix: {POSIX_ONLY_MODULES[top]}",
                    )
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            top = node.module.split(".")[0]
            if top in POSIX_ONLY_MODULES:
                self.report(
                    node,
                    "posix-only-module",
                    f"module {top} does not exist on Windows. Fix: {POSIX_ONLY_MODULES[top]}",
                )
            for alias in node.names:
                advice = POSIX_ONLY_ATTRIBUTES.get(node.module, {}).get(alias.name)
                if advice:
                    self.report(
                        node,
                        "posix-only-name",
                        f"{node.module}.{alias.name} is POSIX-only. Fix: {advice}",
                    )
        elif isinstance(node, ast.Attribute):
            module = self.imports.dotted(node.value)
            advice = POSIX_ONLY_ATTRIBUTES.get(module or "", {}).get(node.attr)
            if advice:
                self.report(
                    node, "posix-only-name", f"{module}.{node.attr} is POSIX-only. Fix: {advice}"
                )

    def posix_keywords(self, call: ast.Call) -> None:
        called = self.imports.split(call.func)
        if not called or called[0] != "subprocess":
            return
        for keyword in call.keywords:
            advice = POSIX_ONLY_SUBPROCESS_KEYWORDS.get(keyword.arg or "")
            if advice and not _is_false(keyword.value):
                self.report(
                    call,
                    "posix-only-option",
                    f"subprocess.{called[1]}({keyword.arg}=...) is POSIX-only. Fix: {advice}",
                )

    def text_io(self, call: ast.Call) -> None:
        if any(keyword.arg is None for keyword in call.keywords):
            return  # **kwargs: the encoding may be in them
        keywords = {keyword.arg: keyword.value for keyword in call.keywords}
        called = self.imports.split(call.func)
        if called in TEXT_OPENERS:
            mode_at, encoding_at, default, text_char = TEXT_OPENERS[called]
            mode = _argument(call, keywords, mode_at, "mode", default)
            if (
                mode is not None
                and _is_text(mode, text_char)
                and not _passed(call, keywords, encoding_at, "encoding")
            ):
                name = ".".join(part for part in called if part)
                self.report(
                    call,
                    "text-encoding",
                    f"{name}() opens text in mode {mode!r} without encoding=. Fix: {ENCODING_FIX}",
                )
            return
        if called and called[0] == "subprocess":
            self.subprocess_text(call, called[1], keywords)
            return
        if not isinstance(call.func, ast.Attribute):
            return
        method = call.func.attr
        if method in TEXT_METHODS:
            _, encoding_at = TEXT_METHODS[method]
            if not _passed(call, keywords, encoding_at, "encoding"):
                self.report(
                    call, "text-encoding", f".{method}() without encoding=. Fix: {ENCODING_FIX}"
                )
        elif method == "open" and self.is_path_open(call, keywords):
            mode = _argument(call, keywords, 0, "mode", "r")
            if (
                mode is not None
                and _is_text(mode, "")
                and not _passed(call, keywords, 2, "encoding")
            ):
                self.report(
                    call,
                    "text-encoding",
                    f"Path.open() in mode {mode!r} without encoding=. Fix: {ENCODING_FIX}",
                )

    def is_path_open(self, call: ast.Call, keywords: dict) -> bool:
        receiver = call.func.value  # type: ignore[attr-defined]
        if isinstance(receiver, ast.Name) and (
            receiver.id in self.imports.modules
            or (receiver.id in self.imports.names and not receiver.id.isupper())
        ):
            # A module's or a class's open(): webbrowser.open, Image.open ... (an imported
            # UPPER_CASE name is a constant, often a path).
            return False
        if call.args:
            first = call.args[0]
            return isinstance(first, ast.Constant) and _looks_like_mode(first.value)
        if keywords:
            return set(keywords) <= PATH_OPEN_KEYWORDS
        built_as_path = isinstance(receiver, ast.BinOp) and isinstance(receiver.op, ast.Div)
        if isinstance(receiver, ast.Call):
            called = self.imports.split(receiver.func)
            built_as_path = bool(called) and called[1] in PATH_CONSTRUCTORS
        return built_as_path

    def subprocess_text(self, call: ast.Call, function: str, keywords: dict) -> None:
        if function in SUBPROCESS_LOCALE_ONLY:
            self.report(
                call,
                "text-encoding",
                f"subprocess.{function}() decodes in the locale's encoding. "
                f"Fix: {SUBPROCESS_LOCALE_ONLY[function]}",
            )
            return
        if function not in SUBPROCESS_TEXT_CALLS or "encoding" in keywords:
            return
        for flag in ("text", "universal_newlines"):
            if flag in keywords and not _is_false(keywords[flag]):
                self.report(
                    call,
                    "text-encoding",
                    f"subprocess.{function}({flag}=True) without encoding= decodes in the "
                    f"locale's encoding. Fix: {SUBPROCESS_FIX}",
                )


def _argument(call: ast.Call, keywords: dict, position, name: str, default: str):
    """The literal value of an argument, its default when not passed, None when computed."""
    if name in keywords:
        value = keywords[name]
    elif position is not None and len(call.args) > position:
        value = call.args[position]
    else:
        return default
    if isinstance(value, ast.Starred):
        return None
    return value.value if isinstance(value, ast.Constant) and isinstance(value.value, str) else None


def _passed(call: ast.Call, keywords: dict, position, name: str) -> bool:
    if name in keywords:
        return True
    if any(isinstance(arg, ast.Starred) for arg in call.args):
        return True
    return position is not None and len(call.args) > position


def _is_text(mode: str, text_char: str) -> bool:
    return text_char in mode if text_char else "b" not in mode


def _looks_like_mode(value) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= 3
        and set(value) <= set("rwxabt+")
        and bool(set(value) & set("rwxa"))
    )


def _is_false(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value in (False, None, 0)


# ----------------------------------------------------------------------------------------------
def python_files(paths: list[Path]) -> list[Path]:
    files = []
    for path in paths:
        if path.is_file():
            files.append(path)
            continue
        for folder, subfolders, names in os.walk(path):
            # Pruned in place, so that os.walk never enters an environment or a cache.
            subfolders[:] = sorted(
                name
                for name in subfolders
                if not name.startswith(".") and name not in SKIPPED_FOLDERS
            )
            files += [Path(folder) / name for name in sorted(names) if name.endswith(".py")]
    return files


def _shown(file: Path, root: Path) -> str:
    try:
        return file.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(file)


def check_source(source: str, path: str = "<source>") -> list[Finding]:
    """The findings in one file's source, read alone."""
    tree = ast.parse(source, filename=path)
    return _FileChecker(path, tree, _Imports(tree), {}).check(tree)


def check_paths(paths: list[Path], root: Path = ROOT) -> list[Finding]:
    """The findings in every .py file under ``paths``. Guard names a file imports from another
    scanned module (``from .platforms import WINDOWS``) count as guards there too."""
    trees = {}
    unparsed: list[Finding] = []
    for file in python_files(paths):
        try:
            trees[file] = ast.parse(file.read_bytes(), filename=str(file))
        except SyntaxError as error:  # not checked, so not passed either
            unparsed.append(Finding(_shown(file, root), error.lineno or 0, "syntax", error.msg))
    modules = {file: module_name(file, root) for file in trees}
    imports = {
        file: _Imports(tree, modules[file], file.name == "__init__.py")
        for file, tree in trees.items()
    }
    guards_of: GuardsOf = {}
    changed = True
    while changed:  # until every guard derived from another module's guard is known
        changed = False
        for file, tree in trees.items():
            found = _guard_names(tree, imports[file], guards_of)
            if found != guards_of.get(modules[file], set()):
                guards_of[modules[file]] = found
                changed = True
    findings = unparsed
    for file, tree in trees.items():
        findings += _FileChecker(_shown(file, root), tree, imports[file], guards_of).check(tree)
    return findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="files or folders (default: all)")
    args = parser.parse_args(argv)
    findings = check_paths(args.paths or [ROOT])
    for finding in findings:
        print(finding)
    if findings:
        print(f"{len(findings)} portability finding(s): see the Fix: of each.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
