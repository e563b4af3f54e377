"""zip_same_length: zip(strict=True) on Python 3.9 too, where QGIS builds still run the plugin.

This Python (3.11+) has the built-in, so the stand-in QGIS 3.9 uses is compared with it here;
tests/qgis/test_minimum_python.py runs it on a real 3.9 where the machine has one.
"""

from __future__ import annotations

import pytest

from mus_qgis.shared.sequences import _zip_same_length_before_3_10, zip_same_length

CASES = [
    ([1, 2], "ab"),
    ([], []),
    ([1], [2, 3]),
    ([1, 2], [3]),
    ([1, 2], [3, 4], [5]),
    ([1], [2, 3], [4, 5]),
    ([1, 2], [3, 4], [5, 6], [7]),
    ([], [], [1]),
]


def _outcome(pairs) -> tuple[str, object]:
    try:
        return "pairs", list(pairs())
    except ValueError as error:
        return "ValueError", str(error)


@pytest.mark.parametrize("iterables", CASES, ids=repr)
def test_the_stand_in_pairs_and_fails_as_the_built_in_does(iterables):
    built_in = _outcome(lambda: zip(*iterables, strict=True))
    assert _outcome(lambda: _zip_same_length_before_3_10(tuple(iterables))) == built_in
    assert _outcome(lambda: zip_same_length(*iterables)) == built_in


def test_the_stand_in_is_lazy_and_stops_at_the_first_mismatch():
    consumed = []

    def counted(n):
        for i in range(n):
            consumed.append(i)
            yield i

    pairs = _zip_same_length_before_3_10((counted(5), iter("ab")))
    assert next(pairs) == (0, "a") and consumed == [0]
    assert next(pairs) == (1, "b")
    with pytest.raises(ValueError, match=r"^zip\(\) argument 2 is shorter than argument 1$"):
        next(pairs)
    assert consumed == [0, 1, 2]
