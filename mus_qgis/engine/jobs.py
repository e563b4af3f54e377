"""The engine's jobs, collected from the domains that own them.

Each domain declares its jobs in its own ``jobs.py`` (``streets``, ``imagery``, ``clip``,
``readings``, ``dreams``) with ``@job(name)``: a function of the job message's ``params`` (plain
JSON) and a progress channel that returns a small JSON result. The worker's server only looks a
name up in ``registered()``. Heavy packages are imported inside the jobs, so a worker answers
"ready" at once and a job pays only for what it uses. Adding an algorithm touches its domain's
``jobs.py`` and its processing file, nothing here.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable

JOBS: dict[str, Callable[[dict, object], dict]] = {}

# The modules that declare jobs, imported by name when the jobs are first asked for (so that this
# module imports none of them, and none of them imports the worker).
JOB_MODULES = (
    "status",
    "streets.jobs",
    "imagery.jobs",
    "clip.jobs",
    "readings.jobs",
    "dreams.jobs",
)


def job(name: str, params: type | None = None, result: type | None = None):
    """Register a function as the job ``name``. With ``params`` and ``result`` (``shared.schemas``
    classes) the function takes the parameters as that dataclass and returns that dataclass; the
    worker still sends and receives plain JSON."""

    def register(function):
        known = JOBS.get(name)
        if known is not None and known.__qualname__ != function.__qualname__:
            raise RuntimeError(f"Two jobs are named {name!r}: {known} and {function}")
        run = function
        if params is not None or result is not None:

            @functools.wraps(function)
            def run(raw: dict, progress) -> dict:
                answer = function(params.from_dict(raw) if params else raw, progress)
                return answer.to_dict() if result is not None else answer

        run.params, run.result = params, result
        JOBS[name] = run
        return function

    return register


def registered() -> dict[str, Callable[[dict, object], dict]]:
    """Every job, by name (the declaring modules are imported on the first call)."""
    for module in JOB_MODULES:
        importlib.import_module(f"{__package__}.{module}")
    return JOBS
