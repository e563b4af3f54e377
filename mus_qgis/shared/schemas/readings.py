"""The readings' schemas: rank, grid, agreement, clusters, boundaries, periods.

JSON has no NaN: a statistic that could not be computed travels as None (``Optional[float]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Optional

from . import Schema
from .clip import LabelSetChoice, ModelChoice, ViewChoice


@dataclass(frozen=True)
class RankLayer(Schema):
    """A classified layer to rank: each point's first label and, where known, its
    probabilities."""

    set_name: str
    labels: list  # the label set's texts (then any other label the layer holds)
    # A NumPy .npz: first (N, each point's first label as an index into labels; negative: not
    # classified), probabilities (N×L, a label's probability where among the point's top k).
    arrays: str
    has_probabilities: bool = False  # False: the layer has no probabilities, means are unknown


@dataclass(frozen=True)
class StoredRanking(Schema):
    """Label sets to rank over every stored image embedding, with the model and views that
    embedded the images."""

    model: ModelChoice
    view: ViewChoice
    cache_dir: str  # the embedding store
    label_sets: list = field(default_factory=list)  # LabelSetChoice each; none: nothing to rank

    parts: ClassVar[dict] = {"label_sets": LabelSetChoice, "model": ModelChoice, "view": ViewChoice}


@dataclass(frozen=True)
class RankParams(Schema):
    """Classified layers and stored label sets to rank, and what to highlight."""

    layers: list = field(default_factory=list)  # RankLayer each
    targets: list = field(default_factory=list)  # labels or group names to highlight
    groups: list = field(default_factory=list)  # lines 'name = label; label', summed into one
    # A target or group found in no set ranked: an error when none is found (False: a warning).
    strict_targets: bool = True
    stored: Optional[StoredRanking] = None

    parts: ClassVar[dict] = {"layers": RankLayer, "stored": StoredRanking}


@dataclass(frozen=True)
class RankEntry(Schema):
    """One label (or group) of a ranking."""

    rank: int  # 1 first
    label: str  # the label, or the group's name
    first_places: int  # points where it comes first
    share: float  # of first places among classified points, 0–1
    mean_probability: Optional[float]  # None: unknown (a layer without probabilities)
    target: bool
    members: list = field(default_factory=list)  # for a group: the labels summed


@dataclass(frozen=True)
class RankSection(Schema):
    """The ranking of one label set: a classified layer's, or a set's over the store."""

    set_name: str
    entries: list  # RankEntry each, in rank order
    title: str = ""  # a stored set's title; empty: from the set's name

    parts: ClassVar[dict] = {"entries": RankEntry}


@dataclass(frozen=True)
class RankResult(Schema):
    sections: list  # RankSection each: the layers' first, then the stored sets'
    untrained_warning: str  # the warning to show when the model had random weights; else empty
    model: dict  # the model that ranked the stored sets, as run settings; empty: none did

    parts: ClassVar[dict] = {"sections": RankSection}


@dataclass(frozen=True)
class GridParams(Schema):
    """Labelled points to resample to a void-free grid of squares or hexagons."""

    # A NumPy .npz: x, y (metres, in the grid's CRS), label (index), weight (the point's score;
    # NaN for none: weighs 0, and counts 1 in a tie).
    points: str
    n_labels: int
    cell_size: float  # metres
    shape: str  # "square" or "hexagon"
    output: str  # the .npz the cells go to
    weighted: bool = False  # each point counts its score, not 1
    area_wkt: str = ""  # the study area, WKT in the grid's CRS; empty: the points' extent


@dataclass(frozen=True)
class GridResult(Schema):
    output: str  # .npz: index, label, points, share, entropy, filled, fill_distance, rings
    cells: int


@dataclass(frozen=True)
class AgreementParams(Schema):
    pairs: str  # a JSON file: {"reference": [codes], "predicted": [codes], "classes": optional}


@dataclass(frozen=True)
class AgreementResult(Schema):
    """Agreement of predicted with reference classes."""

    classes: list  # class codes, in the order of the rows and columns
    matrix: list  # C×C counts: rows reference, columns predicted
    overall_accuracy: float
    kappa: float  # Cohen's
    precision: list  # per class; NaN where a class was never predicted
    recall: list  # per class; NaN where a class never occurs in the reference
    f1: list  # per class: 2·TP / (2·TP + FP + FN), 0 where a class is never right
    support: list  # reference count per class

    @property
    def total(self) -> int:
        return sum(sum(row) for row in self.matrix)


@dataclass(frozen=True)
class ClustersParams(Schema):
    """Features to test for clusters of labels (join counts) and of a score (Moran's I)."""

    # A NumPy .npz: x, y (metres), label (index; negative: none), and optionally score (NaN:
    # none).
    features: str
    n_labels: int
    kind: str  # neighbours: "knn" (the k nearest) or "distance" (all within distance_m)
    permutations: int
    alpha: float  # significance level
    output: str  # the .npz the per-feature results go to
    k: int = 8
    distance_m: float = 0.0
    seed: int = 0


@dataclass(frozen=True)
class LabelJoinTest(Schema):
    """One label's join count test (None: not computed, see the verdict)."""

    label: int  # index into the labels
    count: int  # features of the label
    bb: Optional[float]  # joins between two features of the label
    expected_bb: Optional[float]  # mean over the permutations
    p_clustered: Optional[float]  # pseudo p-value, BB at least as high
    bw: Optional[float]  # joins between the label and any other
    expected_bw: Optional[float]
    p_dispersed: Optional[float]  # pseudo p-value, BW at least as high
    local_significant: int  # features in a local cluster of the label, after FDR
    verdict: str  # "clustered", "dispersed", "neither (…)" or "not tested: why"


@dataclass(frozen=True)
class ScoreMoranTest(Schema):
    """Moran's I of the score (None: not computed, see the verdict)."""

    count: int  # features with a score
    moran_i: Optional[float]
    expected_i: Optional[float]  # under randomness
    z_sim: Optional[float]
    p_value: Optional[float]  # two-sided, from permutations
    local_significant: int  # hot and cold spots and outliers, after FDR
    verdict: str


@dataclass(frozen=True)
class ClustersResult(Schema):
    # .npz per feature: local_count, local_p, in_cluster, local_i, local_i_p, quadrant, hotspot,
    # hotspot_name
    output: str
    neighbours: str  # the neighbours, in words
    notes: list  # what a reader should know (also sent as warnings)
    labels: list  # LabelJoinTest each
    scores: Optional[ScoreMoranTest]  # None: no score given

    parts: ClassVar[dict] = {"labels": LabelJoinTest, "scores": ScoreMoranTest}


@dataclass(frozen=True)
class BoundariesParams(Schema):
    """A label grid whose discontinuities to find and, with reference boundaries, to test."""

    # A NumPy .npz: rings (N×V×2, metres), label (index; negative: none), share (majority
    # share), and optionally the points point_x, point_y, point_label to count shares from.
    cells: str
    n_labels: int
    buffer_m: float  # how near a reference boundary counts as aligned
    permutations: int
    output: str  # the JSON file the lines go to: wkt, labels, length_m, strength, edges
    reference_wkt: list = field(default_factory=list)  # WKT in the grid's CRS; none: no test
    seed: int = 0


@dataclass(frozen=True)
class BoundaryAlignment(Schema):
    """How much of the discontinuity lies near the reference boundaries, against chance."""

    observed: float  # share of the discontinuity length within the buffer
    expected: float  # mean share with the reference moved at random
    p_value: float
    permutations: int
    buffer_m: float


@dataclass(frozen=True)
class BoundariesResult(Schema):
    output: str
    edges: int  # cell edges between different labels
    neighbour_pairs: int  # all pairs of neighbouring cells
    total_length: float  # metres
    alignment: Optional[BoundaryAlignment]  # None: no reference, or no discontinuity

    parts: ClassVar[dict] = {"alignment": BoundaryAlignment}


@dataclass(frozen=True)
class PeriodsParams(Schema):
    """Locations to date with a label set whose labels carry years, and reference years to
    correlate with."""

    locations: str  # a JSON file: [[image paths], bearing, heading] per location
    label_set: LabelSetChoice
    model: ModelChoice
    view: ViewChoice
    cache_dir: str  # the embedding store
    permutations: int
    output: str  # the .npz the per-location results go to
    full_decode: bool = False
    max_distance_m: float = 0.0  # farthest reference year paired; 0: any distance
    seed: int = 0
    points: str = ""  # with a reference: a .npz of the locations' x, y (metres)
    reference: str = ""  # a .npz of the reference features' x, y (metres) and year; "": none

    parts: ClassVar[dict] = {"label_set": LabelSetChoice, "model": ModelChoice, "view": ViewChoice}


@dataclass(frozen=True)
class PeriodCorrelation(Schema):
    """Spearman's rho of the expected years with the nearest reference years."""

    rho: float
    p_value: float  # from permutations
    pairs: int  # locations paired with a reference year
    permutations: int


@dataclass(frozen=True)
class PeriodsResult(Schema):
    # .npz per location: year, spread, dated, top_index, probability, status, nearest_year,
    # distance
    output: str
    correlation: Optional[PeriodCorrelation]  # None: no reference
    untrained: bool  # the model had random weights
    metadata: dict  # the run settings
    dated_labels: int  # labels with a year
    labels: int

    parts: ClassVar[dict] = {"correlation": PeriodCorrelation}


@dataclass(frozen=True)
class LabelChangeParams(Schema):
    """The same points read at several moments, and the two moments to compare."""

    readings: str  # a JSON file: [[point, moment, label, probability or null, image id], ...]
    output: str  # the JSON file the changes go to
    moment_a: str = ""  # empty: the first moment read
    moment_b: str = ""  # empty: the last moment read
    report: str = ""  # an HTML file; empty: none
    runs: list = field(default_factory=list)  # the classifications' run settings (for report)
    data: list = field(default_factory=list)  # one line per layer read, for the report
    attribution: str = ""  # the imagery's attribution block (HTML), for the report


@dataclass(frozen=True)
class MomentLabelShare(Schema):
    moment: str
    label: str
    points: int
    share: float


@dataclass(frozen=True)
class LabelChangeResult(Schema):
    moment_a: str
    moment_b: str
    moments: list  # every moment read, in time order
    compared: int  # points read at both moments
    changed: int
    same_image: int
    summary: list[MomentLabelShare]

    parts: ClassVar[dict] = {"summary": MomentLabelShare}
