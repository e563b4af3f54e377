"""Stand-in for QGIS 4's ``qgis.core`` (no QGIS 4 build is installable here).

Three classes behave as far as the smoke run needs, on real PyQt6 bases:

- ``QgsApplication``: a real ``QApplication`` (as QGIS's is), with the plugin's three static
  entry points: ``processingRegistry()`` (adds a provider and loads its algorithms, as QGIS
  does), ``taskManager()`` (keeps the tasks it is given; it does not run them) and
  ``qgisSettingsDirPath()`` (a folder the harness chooses).
- ``QgsTask``: a real ``QObject`` (``sip.isdeleted`` takes it), with ``fromFunction``,
  ``cancel``, ``isCanceled``, ``waitForFinished``.
- ``QgsProcessingProvider``: keeps the algorithms ``loadAlgorithms`` adds.

Every other ``Qgs…`` name and ``Qgis`` is an *accepting* stand-in (``Accepting``), made when a
module imports it: any call, argument, attribute or subclass is accepted and gives another
accepting stand-in. It stands for QGIS's own API, which this run cannot check: whether a QGIS
enum is scoped is the static check's job (test_qt6_readiness.py), whether QGIS 4 keeps a class or
signature is not proved anywhere here. Qt values passed to these stand-ins are still made by real
PyQt6, so an unscoped Qt enum fails before it reaches them. ``STOOD_IN`` lists the names handed
out, for the report.
"""

from __future__ import annotations

from qgis.PyQt.QtCore import NULL, QObject
from qgis.PyQt.QtWidgets import QApplication

__all__ = ["NULL", "QgsApplication", "QgsProcessingProvider", "QgsTask"]

STOOD_IN: list[str] = []


class _AcceptingType(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        made = _accepting(f"{cls.__qualname__}.{name}")
        setattr(cls, name, made)
        return made


class Accepting(metaclass=_AcceptingType):
    """Takes any arguments; every attribute is another ``Accepting`` class (call it: an
    instance)."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(type(self), name)

    def __or__(self, other):  # flags
        return self

    __ror__ = __and__ = __rand__ = __or__

    def __getitem__(self, key):  # a map QGIS returns (parameter metadata)
        return type(self)()

    def __iter__(self):  # a list QGIS returns (a project's layers): empty; without this,
        return iter(())  # iterating would go through __getitem__ for ever

    def __setitem__(self, key, value) -> None:
        pass


def _accepting(name: str) -> type:
    made = _AcceptingType(name.rpartition(".")[2], (Accepting,), {"__qualname__": name})
    return made


class Qgis(Accepting):
    """QGIS 4.0's version numbers; any other attribute is accepted."""

    QGIS_VERSION_INT = 40000
    QGIS_VERSION = "4.0.0 (stand-in)"


class QgsProcessingProvider(Accepting):
    """Keeps what ``loadAlgorithms`` adds; ``load`` loads them, as QGIS's does."""

    def __init__(self, *args, **kwargs) -> None:
        self._algorithms: list = []

    def load(self) -> bool:
        self._algorithms = []
        self.loadAlgorithms()
        return True

    def unload(self) -> None:
        pass

    def addAlgorithm(self, algorithm) -> bool:
        self._algorithms.append(algorithm)
        return True

    def algorithms(self) -> list:
        return list(self._algorithms)


class _Registry:
    def __init__(self) -> None:
        self.providers: list = []

    def addProvider(self, provider) -> bool:
        if any(p.id() == provider.id() for p in self.providers):
            return False
        self.providers.append(provider)
        return bool(provider.load())

    def removeProvider(self, provider) -> bool:
        if provider not in self.providers:
            return False
        provider.unload()
        self.providers.remove(provider)
        return True

    def providerById(self, provider_id: str):
        return next((p for p in self.providers if p.id() == provider_id), None)


class _TaskManager:
    def __init__(self) -> None:
        self.tasks: list = []

    def addTask(self, task) -> int:
        self.tasks.append(task)
        return len(self.tasks)


class QgsTask(QObject):
    """A task that is never run (the smoke run builds widgets; it does no work)."""

    def __init__(self, description: str = "", flags=None) -> None:
        super().__init__()
        self._description, self._canceled = description, False

    @classmethod
    def fromFunction(cls, description, function, *args, on_finished=None, flags=None, **kwargs):
        task = cls(description)
        task.function, task.on_finished = function, on_finished
        return task

    def description(self) -> str:
        return self._description

    def cancel(self) -> None:
        self._canceled = True

    def isCanceled(self) -> bool:
        return self._canceled

    def waitForFinished(self, timeout: int = 30000) -> bool:
        return True


class QgsApplication(QApplication):
    """A real QApplication; the three static entry points the plugin calls."""

    settings_dir = ""  # the harness sets it
    _registry = _Registry()
    _tasks = _TaskManager()

    @staticmethod
    def processingRegistry() -> _Registry:
        return QgsApplication._registry

    @staticmethod
    def taskManager() -> _TaskManager:
        return QgsApplication._tasks

    @staticmethod
    def qgisSettingsDirPath() -> str:
        return QgsApplication.settings_dir


def __getattr__(name: str):
    if name != "Qgis" and not name.startswith("Qgs"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    made = _accepting(name)
    globals()[name] = made
    STOOD_IN.append(name)
    return made
