"""Pairing sequences that must be equally long, on every Python QGIS ships (3.9 and later).

``zip(..., strict=True)`` came with Python 3.10, and QGIS builds with Python 3.9 still run the
plugin, so the modules QGIS imports (the plugin's, and the engine's that those import) pair
through :func:`zip_same_length` where a length mismatch would silently drop or misplace data (an
answer against what was asked, a caller's names against its colours), and through plain ``zip``
where both sides are built together.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from itertools import zip_longest

_MISSING = object()


def zip_same_length(*iterables: Iterable) -> Iterator[tuple]:
    """``zip(*iterables, strict=True)``: the same tuples, and the same ValueError (with the same
    message) as soon as one iterable ends before the others."""
    if sys.version_info >= (3, 10):
        # The built-in, at full speed, on every Python that has it (the engine's included).
        return zip(*iterables, strict=True)  # novm: this line runs on Python 3.10+ only
    return _zip_same_length_before_3_10(iterables)


def _zip_same_length_before_3_10(iterables: tuple[Iterable, ...]) -> Iterator[tuple]:
    for items in zip_longest(*iterables, fillvalue=_MISSING):
        ended = [item is _MISSING for item in items]
        if any(ended):
            raise ValueError(_mismatch(ended))
        yield items


def _mismatch(ended: list[bool]) -> str:
    """Python's own wording: the first argument that ended when those before it did not, or the
    other way round."""
    first_differing = ended.index(not ended[0])
    before = "argument 1" if first_differing == 1 else f"arguments 1-{first_differing}"
    which = "longer" if ended[0] else "shorter"
    return f"zip() argument {first_differing + 1} is {which} than {before}"
