"""Is a label clustered, and where? Join counts and Moran's I from PySAL, with FDR control.

For each label, the global join count statistic (esda.Join_Counts) says whether features of that
label neighbour each other more often than a random relabelling of the same features would (BB
joins: clustered) or less (BW joins: dispersed); the local join count (esda.Join_Counts_Local)
says which features sit in such a cluster. For a numeric field (CLIP scores), global and local
Moran's I (esda.Moran, esda.Moran_Local) give the hot and cold spots. Local p-values are many
tests at once: a feature counts as significant only under the false discovery rate cut-off
(Benjamini-Hochberg) of its label's (or the score's) tests. A feature with no neighbour (an
island of a distance band) has no local test.

Neighbours (libpysal.weights): the k nearest features, or every feature within a distance band.
Coordinates are metres in a projected CRS; the caller projects.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

from ...shared.errors import MusError

WEIGHT_KINDS = ("knn", "distance")
HOTSPOT_NAMES = {
    1: "hot spot (high among high)",
    2: "low among high",
    3: "cold spot (low among low)",
    4: "high among low",
}
NOT_SIGNIFICANT = "not significant"


@dataclass
class LabelTest:
    """The global join count test of one label."""

    label: int
    count: int
    bb: float = math.nan  # joins between two features of the label
    expected_bb: float = math.nan  # mean over the permutations
    p_clustered: float = math.nan  # pseudo p-value, BB at least as high
    bw: float = math.nan  # joins between the label and any other
    expected_bw: float = math.nan
    p_dispersed: float = math.nan  # pseudo p-value, BW at least as high
    local_significant: int = 0  # features in a cluster of the label, after FDR
    verdict: str = ""


@dataclass
class ScoreTest:
    """Global Moran's I of a numeric field."""

    count: int
    moran_i: float = math.nan
    expected_i: float = math.nan
    z_sim: float = math.nan
    # Two-sided pseudo p-value: twice PySAL's folded one (which takes the tail the observed I
    # lies in, so rejecting it at alpha would reject a random pattern at about 2 alpha).
    p_value: float = math.nan
    local_significant: int = 0
    verdict: str = ""


@dataclass
class ClusterResult:
    labels: list[LabelTest]
    # Per feature (input order): the local join count of its own label, its pseudo p-value (NaN
    # where the count is 0 or the feature has no label), and whether it passes the FDR cut-off.
    local_count: object
    local_p: object
    in_cluster: object
    scores: ScoreTest | None = None
    # Per feature: local Moran's I (PySAL's: (n - 1) z_i sum_j w_ij z_j / sum z^2, row-standardised
    # w; Anselin's m2 = sum z^2 / n would give n / (n - 1) times it), two-sided pseudo p-value
    # (NaN for an island), quadrant (1 HH, 2 LH, 3 LL, 4 HL; 0 none or an island), significant
    # after FDR.
    local_i: object = None
    local_i_p: object = None
    quadrant: object = None
    hotspot: object = None
    neighbours: str = ""
    notes: list[str] = field(default_factory=list)


def spatial_weights(x, y, kind: str = "knn", k: int = 8, distance_m: float = 0.0):
    """libpysal weights over points in metres: the ``k`` nearest, or all within ``distance_m``."""
    import libpysal
    import numpy as np

    coordinates = np.column_stack([np.asarray(x, float), np.asarray(y, float)])
    if kind == "knn":
        if not 1 <= k < len(coordinates):
            raise MusError(
                f"Nearest neighbours (k) is {k}, but there are {len(coordinates)} features: give "
                f"1 to {len(coordinates) - 1}."
            )
        return libpysal.weights.KNN.from_array(coordinates, k=k)
    if kind == "distance":
        if not (distance_m > 0 and math.isfinite(distance_m)):
            raise MusError(
                f"The distance band must be a positive number of metres, not {distance_m}."
            )
        return libpysal.weights.DistanceBand(
            coordinates, threshold=distance_m, binary=True, silence_warnings=True
        )
    raise MusError(f"Neighbours are one of {', '.join(WEIGHT_KINDS)}, not {kind!r}.")


def describe_weights(kind: str, k: int, distance_m: float) -> str:
    if kind == "knn":
        return f"the {k} nearest features"
    return f"every feature within {distance_m:g} m"


def label_clusters(
    x,
    y,
    labels,
    n_labels: int,
    scores=None,
    *,
    kind: str = "knn",
    k: int = 8,
    distance_m: float = 0.0,
    permutations: int = 999,
    alpha: float = 0.05,
    seed: int = 0,
    progress=None,
) -> ClusterResult:
    """Global and local join counts for each label, Moran's I for ``scores``.

    ``labels``: each feature's label index (negative: no label, left out of the join counts);
    ``scores``: optional numbers (NaN: left out of Moran's I). Permutation tests use ``seed``,
    so a run can be repeated exactly. A label held by fewer than two features, or by all, is not
    tested (a relabelling could not change it).
    """
    import numpy as np

    from ...shared.progress import check_canceled

    if not 0 < alpha < 1:
        raise MusError(f"The significance level must be between 0 and 1, not {alpha}.")
    if permutations < 9:
        raise MusError(f"Give at least 9 permutations (99 or 999 are usual), not {permutations}.")
    x, y = np.asarray(x, float), np.asarray(y, float)
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    local_count = np.zeros(n)
    local_p = np.full(n, np.nan)
    in_cluster = np.zeros(n, dtype=bool)
    tests: list[LabelTest] = []
    labelled = np.flatnonzero((labels >= 0) & (labels < n_labels))
    result = ClusterResult(tests, local_count, local_p, in_cluster)
    result.neighbours = describe_weights(kind, k, distance_m)
    if len(labelled) >= 3:
        w = spatial_weights(x[labelled], y[labelled], kind, k, distance_m)
        _note_islands(w, result)
        for label in range(n_labels) if w.s0 > 0 else ():
            if progress is not None:
                check_canceled(progress)
            members = labels[labelled] == label
            count = int(members.sum())
            if count == 0:
                continue
            test = LabelTest(label, count)
            tests.append(test)
            if count < 2 or count == len(labelled):
                test.verdict = "not tested: " + (
                    "a single feature" if count < 2 else "every feature has it"
                )
                continue
            try:
                _join_counts(test, members.astype(int), w, permutations, alpha, seed + label)
                count_i, p_i = _local_join_counts(
                    members.astype(int), w, permutations, seed + label
                )
            except ValueError as exc:  # e.g. every feature of the label is an island
                test.verdict = f"not tested: PySAL could not compute it ({exc})"
                continue
            rows = labelled[members]
            local_count[rows] = count_i[members]
            local_p[rows] = p_i[members]
            significant = _fdr_significant(p_i[members], alpha)
            in_cluster[rows] = significant
            test.local_significant = int(significant.sum())
    elif len(labelled):
        result.notes.append("Fewer than 3 labelled features: no join count test.")
    if scores is not None:
        _moran(
            result, x, y, np.asarray(scores, float), kind, k, distance_m, permutations, alpha, seed
        )
    return result


def _note_islands(w, result: ClusterResult) -> None:
    if w.s0 == 0:
        result.notes.append(
            "No feature has a neighbour within the band: nothing can be tested; widen the band "
            "or use nearest neighbours."
        )
    elif w.islands:
        result.notes.append(
            f"{len(w.islands)} features have no neighbour within the band: they take part in no "
            "join and are never significant; widen the band or use nearest neighbours."
        )


def _join_counts(test: LabelTest, y, w, permutations: int, alpha: float, seed: int) -> None:
    import esda
    import numpy as np

    # Join_Counts draws its permutations from NumPy's global generator.
    np.random.seed(seed)
    jc = esda.Join_Counts(y, w, permutations=permutations)
    test.bb, test.bw = float(jc.bb), float(jc.bw)
    test.expected_bb, test.expected_bw = float(jc.mean_bb), float(jc.mean_bw)
    test.p_clustered, test.p_dispersed = float(jc.p_sim_bb), float(jc.p_sim_bw)
    if test.p_clustered <= alpha and test.bb > test.expected_bb:
        test.verdict = "clustered"
    elif test.p_dispersed <= alpha and test.bw > test.expected_bw:
        test.verdict = "dispersed"
    else:
        test.verdict = "neither (random at this level)"


def _local_join_counts(y, w, permutations: int, seed: int):
    """Each feature's local join count and its one-sided pseudo p-value: how often a random
    relabelling of the others gives it at least as many same-label neighbours (the alternative
    is "clustered": more same-label neighbours than chance).

    esda's own p_sim takes whichever tail the observed count lies in (its "directed" default),
    so a feature with fewer same-label neighbours than chance got a small p-value too, and a
    dispersed label came out as clustered; the p-value is taken here from the simulations.
    """
    import esda
    import numpy as np

    # Join_Counts_Local ignores its seed argument and draws a seed from NumPy's global generator.
    np.random.seed(seed)
    with warnings.catch_warnings():
        # esda announces a change of its default alternative; only its simulations are used.
        warnings.simplefilter("ignore", DeprecationWarning)
        # Islands kept (drop_islands=False): dropped, they shorten esda's counts, which then no
        # longer align with the features (an IndexError in its simulations).
        local = esda.Join_Counts_Local(
            connectivity=w,
            permutations=permutations,
            seed=seed,
            keep_simulations=True,
            drop_islands=False,
        ).fit(y, permutations=permutations)
    observed = np.asarray(local.LJC, float)
    # Kept, an island is its own neighbour of weight 0, which esda counts as a join of the label
    # with itself: it has none.
    observed[_islands(w)] = 0
    simulated = np.asarray(local.rjoins, float)
    at_least = (simulated >= observed[:, None]).sum(axis=1)
    p_greater = (at_least + 1.0) / (permutations + 1.0)
    # No same-label neighbour (or not the label): no cluster to test.
    p_greater[(observed == 0) | (np.asarray(y) != 1)] = np.nan
    return observed, p_greater


def _islands(w):
    """Per feature (the weights' order), whether it has no neighbour."""
    import numpy as np

    return np.array([w.cardinalities[i] == 0 for i in w.id_order], dtype=bool)


def _fdr_significant(p, alpha: float):
    """Which p-values pass the Benjamini-Hochberg cut-off at ``alpha`` (NaN never does): the
    smallest k, where k is the largest rank whose p-value is at most k alpha / m.

    Not esda.fdr: it asks for p strictly below k alpha / m, and permutation p-values, (j + 1) /
    (R + 1), fall on that bound exactly (two of 50 tests at 0.001 and 0.002, alpha 0.05: both
    pass Benjamini-Hochberg; esda.fdr let one through).
    """
    import numpy as np

    p = np.asarray(p, float)
    finite = np.isfinite(p)
    ordered = np.sort(p[finite])
    m = len(ordered)
    # A relative 1e-9 so that a p-value on the bound is not lost to rounding.
    passing = np.flatnonzero(ordered <= alpha * np.arange(1, m + 1) / m * (1 + 1e-9))
    if not len(passing):
        return np.zeros(len(p), dtype=bool)
    return finite & (np.nan_to_num(p, nan=2.0) <= ordered[passing[-1]])


def _moran(result, x, y, scores, kind, k, distance_m, permutations, alpha, seed) -> None:
    import esda
    import numpy as np

    n = len(scores)
    result.local_i = np.full(n, np.nan)
    result.local_i_p = np.full(n, np.nan)
    result.quadrant = np.zeros(n, dtype=np.int64)
    result.hotspot = np.zeros(n, dtype=bool)
    rows = np.flatnonzero(np.isfinite(scores) & np.isfinite(x) & np.isfinite(y))
    test = ScoreTest(len(rows))
    result.scores = test
    if len(rows) < 3 or np.ptp(scores[rows]) == 0:
        test.verdict = "not tested: " + (
            "fewer than 3 features with a value" if len(rows) < 3 else "every value is the same"
        )
        return
    w = spatial_weights(x[rows], y[rows], kind, k, distance_m)
    if w.s0 == 0:
        test.verdict = "not tested: no feature has a neighbour"
        return
    w.transform = "r"
    values = scores[rows]
    np.random.seed(seed)
    global_i = esda.Moran(values, w, permutations=permutations)
    test.moran_i, test.expected_i = float(global_i.I), float(global_i.EI_sim)
    test.z_sim, test.p_value = float(global_i.z_sim), min(1.0, 2 * float(global_i.p_sim))
    if test.p_value <= alpha:
        test.verdict = "clustered" if test.moran_i > test.expected_i else "dispersed"
    else:
        test.verdict = "neither (random at this level)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        local = esda.Moran_Local(values, w, permutations=permutations, seed=seed)
    result.local_i[rows] = local.Is
    # Folded like the global one: two-sided is twice it.
    local_p = np.minimum(1.0, 2 * np.asarray(local.p_sim, float))
    quadrant = np.asarray(local.q)
    # An island's I and every simulation of it are 0; esda's folding then reports the smallest
    # p-value there is. It has no neighbour: no test, no quadrant.
    island = _islands(w)
    local_p[island], quadrant[island] = np.nan, 0
    result.local_i_p[rows] = local_p
    result.quadrant[rows] = quadrant
    result.hotspot[rows] = _fdr_significant(result.local_i_p[rows], alpha)
    test.local_significant = int(result.hotspot.sum())


def hotspot_name(quadrant: int, significant: bool) -> str:
    return HOTSPOT_NAMES.get(int(quadrant), NOT_SIGNIFICANT) if significant else NOT_SIGNIFICANT
