"""The change reading: the same points at two moments, against cases worked by hand and a
recomputation that shares none of its code."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mus_qgis.engine.readings.change import (
    MomentReading,
    label_changes,
    moment_summary,
    moments_of,
)
from mus_qgis.shared.errors import MusError


def test_a_case_worked_by_hand():
    readings = [
        MomentReading("a", "2016", "church", 0.9, "i1"),
        MomentReading("a", "2022", "shop", 0.6, "i2"),
        MomentReading("b", "2016", "park", 0.7, "i3"),
        MomentReading("b", "2022", "park", 0.8, "i4"),
        MomentReading("c", "2016", "road", 0.5, "i5"),
        MomentReading("c", "2022", "road", 0.5, "i5"),  # no newer image
        MomentReading("d", "2022", "shop", 0.4, "i6"),  # read once: not compared
    ]
    changes = label_changes(readings, "2016", "2022")
    assert [(c.point, c.changed, c.same_image, c.certainty) for c in changes] == [
        ("a", True, False, 0.6),
        ("b", False, False, 0.7),
        ("c", False, True, 0.5),
    ]
    assert (changes[0].label_a, changes[0].label_b) == ("church", "shop")
    summary = [(r.moment, r.label, r.points, round(r.share, 4)) for r in moment_summary(readings)]
    assert summary == [
        ("2016", "church", 1, 0.3333),
        ("2016", "park", 1, 0.3333),
        ("2016", "road", 1, 0.3333),
        ("2022", "shop", 2, 0.5),
        ("2022", "park", 1, 0.25),
        ("2022", "road", 1, 0.25),
    ]


def test_moments_sort_in_time_and_unknown_ones_are_named():
    readings = [
        MomentReading("a", "2022-06-01", "x", None),
        MomentReading("a", "2016-06-01", "y", None),
    ]
    assert moments_of(readings) == ["2016-06-01", "2022-06-01"]
    with pytest.raises(MusError, match="the layer's moments are 2016-06-01, 2022-06-01"):
        label_changes(readings, "2016", "2022-06-01")
    with pytest.raises(MusError, match="choose two different moments"):
        label_changes(readings, "2016-06-01", "2016-06-01")
    # Without probabilities a change has no certainty, but is still found.
    (change,) = label_changes(readings, "2016-06-01", "2022-06-01")
    assert change.changed and change.certainty is None


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 6),  # point
            st.sampled_from(["2016", "2019", "2022"]),
            st.sampled_from(["church", "shop", "park"]),
            st.floats(0.0, 1.0),
            st.integers(0, 3),  # image
        ),
        max_size=40,
        unique_by=lambda row: (row[0], row[1]),  # one reading per point and moment
    )
)
def test_changes_and_shares_match_a_recomputation(rows):
    readings = [MomentReading(str(p), m, label, prob, f"img{i}") for p, m, label, prob, i in rows]
    moments = sorted({m for _, m, _, _, _ in rows})
    if len(moments) < 2:
        return
    a, b = moments[0], moments[-1]
    table = {(p, m): (label, prob, i) for p, m, label, prob, i in rows}
    expected = {}
    for p in {p for p, _, _, _, _ in rows}:
        if (p, a) in table and (p, b) in table:
            (la, pa, ia), (lb, pb, ib) = table[(p, a)], table[(p, b)]
            expected[str(p)] = (la != lb, ia == ib, min(pa, pb))
    found = {c.point: (c.changed, c.same_image, c.certainty) for c in label_changes(readings, a, b)}
    assert found == expected
    # Each moment's shares, from NumPy's counting of the labels.
    for moment in moments:
        labels = np.array([label for _, m, label, _, _ in rows if m == moment])
        values, counts = np.unique(labels, return_counts=True)
        shares = {
            r.label: (r.points, r.share) for r in moment_summary(readings) if r.moment == moment
        }
        assert shares == {
            str(v): (int(n), pytest.approx(n / len(labels))) for v, n in zip(values, counts)
        }
