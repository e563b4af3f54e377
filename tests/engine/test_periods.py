"""Expected periods from label probabilities, and their correlation with reference years."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from mus_qgis.engine.readings.periods import correlate_with_reference, expected_periods
from mus_qgis.shared.errors import LabelSetError, MusError
from mus_qgis.shared.labels import Label, LabelSet, builtin_label_set, label_years


def test_the_architects_carry_years_and_the_middle_of_the_life_is_the_label_year():
    architects = builtin_label_set("italian_architects")
    years = label_years(architects)
    by_name = dict(zip(architects.texts, years, strict=True))
    assert by_name["Nicola Pisano"] == (1220 + 1284) / 2
    assert by_name["Vitruvius"] == (-80 + -15) / 2
    assert by_name["Renzo Piano"] == 1937 + 40  # living: the middle of an 80-year life
    assert math.isnan(by_name["Buscheto"])  # no dates: left out of the weighting
    assert sum(not math.isnan(y) for y in years) == len(years) - 1
    with pytest.raises(LabelSetError, match="no dates"):
        label_years(builtin_label_set("urban_atlas_2018"))
    own = LabelSet("own", (Label("a", extra={"year": "1900"}), Label("b")), ("{label}",))
    assert label_years(own)[0] == 1900


def test_expected_year_and_spread_by_hand():
    years = [1500, 1600, math.nan]
    p = np.array([[0.5, 0.5, 0.0], [0.2, 0.2, 0.6], [0.0, 0.0, 1.0]])
    mean, spread, dated = expected_periods(p, years)
    assert mean[:2] == pytest.approx([1550, 1550])
    assert spread[:2] == pytest.approx([50, 50])
    assert dated[:2] == pytest.approx([1.0, 0.4])
    assert math.isnan(mean[2]) and math.isnan(spread[2])


def test_spearman_with_nearest_reference_and_permutation_p():
    rng = np.random.default_rng(3)
    x, y = rng.uniform(0, 1000, 60), rng.uniform(0, 1000, 60)
    reference_years = 1500 + x / 2  # older to the west
    expected = reference_years + rng.normal(0, 40, 60)
    result = correlate_with_reference(
        expected, x + 1, y, x, y, reference_years, max_distance_m=10, permutations=199
    )
    assert result.rho == pytest.approx(spearmanr(expected, reference_years).statistic)
    assert result.rho > 0.8 and result.p_value == pytest.approx(1 / 200)
    unrelated = correlate_with_reference(
        rng.permutation(expected), x, y, x, y, reference_years, permutations=199
    )
    assert unrelated.p_value > 0.05
    with pytest.raises(MusError, match="at least 3"):
        correlate_with_reference(expected, x + 500, y, x, y, reference_years, max_distance_m=1)
    with pytest.raises(MusError, match="No reference feature has a year"):
        correlate_with_reference(expected, x, y, x, y, np.full(60, np.nan))
