"""Street-level imagery sources, one module each; a new source is one new module here.

A module defines a subclass of :class:`~.base.ImagerySource` with a unique ``name``; the registry
finds it by scanning this package, so nothing else needs to change.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from .base import ImagerySource


@lru_cache(maxsize=1)
def imagery_sources() -> dict[str, type[ImagerySource]]:
    """Every source class by name, in the order of ``ORDER`` then alphabetical."""
    found: dict[str, type[ImagerySource]] = {}
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base":
            importlib.import_module(f"{__name__}.{module.name}")
    for cls in ImagerySource.__subclasses__():
        found[cls.name] = cls
    return dict(sorted(found.items(), key=lambda kv: (kv[1].order, kv[0])))
