"""Time from labels: the probability-weighted period of each location, and its correlation with
a reference layer's years.

A label set may carry dates: a ``year`` column, or ``born`` and ``died`` (the architects; the
label's year is the middle of the life; born + 40 for the living), or ``start`` and ``end``.
For each location the full probability vector over the set (every label, not the top k) gives
the expected year Σ p·year / Σ p over the dated labels, and the spread (the probability-weighted
standard deviation of the years). ``dated`` is the probability on dated labels: where it is
low, the location's period rests on few labels.

Against a reference layer with years (e.g. buildings with a construction year), each location
takes the year of its nearest reference feature (within a distance, if given); Spearman's rank
correlation between expected and reference years is tested by permutation: the expected years
are shuffled among the locations. Nearby locations are not independent, so that p-value is
optimistic where both layers are spatially clustered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...shared.errors import MusError


@dataclass
class Correlation:
    rho: float
    p_value: float
    pairs: int
    permutations: int
    nearest_year: object  # float N, NaN where no reference within reach
    distance_m: object  # float N


def expected_periods(probabilities, years):
    """Per row: expected year, spread (years), probability on dated labels."""
    import numpy as np

    p = np.asarray(probabilities, dtype=float)
    years = np.asarray(years, dtype=float)
    dated = np.isfinite(years)
    p_dated = np.where(np.isfinite(p), p, 0.0)[:, dated]
    mass = p_dated.sum(axis=1)
    safe = np.where(mass > 0, mass, 1.0)
    mean = (p_dated * years[dated]).sum(axis=1) / safe
    variance = (p_dated * (years[dated][None, :] - mean[:, None]) ** 2).sum(axis=1) / safe
    empty = (mass <= 0) | ~np.isfinite(p).all(axis=1)
    mean[empty] = np.nan
    spread = np.sqrt(variance)
    spread[empty] = np.nan
    # The probability on dated labels is known wherever the row is: 0 where it all lies on
    # undated labels (then no period), unknown only for a location without scores.
    return mean, spread, np.where(np.isfinite(p).all(axis=1), mass, np.nan)


def correlate_with_reference(
    expected,
    x,
    y,
    reference_x,
    reference_y,
    reference_years,
    max_distance_m: float = 0.0,
    permutations: int = 999,
    seed: int = 0,
) -> Correlation:
    """Spearman's rho between ``expected`` years and the nearest reference feature's year, with a
    two-sided permutation p-value; ``max_distance_m`` 0: any distance."""
    import numpy as np
    from scipy.spatial import cKDTree
    from scipy.stats import rankdata, spearmanr

    if permutations < 9:
        raise MusError(f"Give at least 9 permutations (999 is usual), not {permutations}.")
    reference_years = np.asarray(reference_years, dtype=float)
    usable = (
        np.isfinite(reference_years)
        & np.isfinite(np.asarray(reference_x, float))
        & np.isfinite(np.asarray(reference_y, float))
    )
    if not usable.any():
        raise MusError("No reference feature has a year: choose the field that holds the years.")
    tree = cKDTree(np.column_stack([reference_x, reference_y])[usable])
    points = np.column_stack([x, y]).astype(float)
    distance, nearest = tree.query(points)
    nearest_year = reference_years[usable][nearest]
    if max_distance_m > 0:
        nearest_year = np.where(distance <= max_distance_m, nearest_year, np.nan)
    expected = np.asarray(expected, dtype=float)
    both = np.isfinite(expected) & np.isfinite(nearest_year)
    if both.sum() < 3:
        raise MusError(
            f"Only {int(both.sum())} locations have both an expected year and a reference year "
            "within reach: at least 3 are needed (widen the distance, or check both layers' CRS)."
        )
    a, b = expected[both], nearest_year[both]
    rho = float(spearmanr(a, b).statistic)
    if not math.isfinite(rho):
        raise MusError("Spearman's rho is undefined: the years are all the same on one side.")
    # Pearson on ranks is Spearman: the permutations shuffle one rank vector.
    ranks_a = rankdata(a) - (len(a) + 1) / 2
    ranks_b = rankdata(b) - (len(b) + 1) / 2
    norm = math.sqrt((ranks_a**2).sum() * (ranks_b**2).sum())
    rng = np.random.default_rng(seed)
    shuffled = np.array([rng.permutation(ranks_a) for _ in range(permutations)])
    null = shuffled @ ranks_b / norm
    p_value = (1 + int((np.abs(null) >= abs(rho) - 1e-12).sum())) / (permutations + 1)
    return Correlation(rho, p_value, int(both.sum()), permutations, nearest_year, distance)
