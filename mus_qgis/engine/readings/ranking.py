"""Rankings of labels across classified points: how often each label comes first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...shared.errors import LabelSetError


@dataclass
class RankedLabel:
    label: str
    first_places: int
    share: float  # of first places among classified points
    mean_probability: float
    rank: int
    target: bool = False
    members: tuple[str, ...] = ()  # for a group: the labels summed


def rank_labels(
    labels: Sequence[str],
    first: Sequence[int],
    probabilities=None,
    targets: Sequence[str] = (),
    groups: dict[str, Sequence[str]] | None = None,
    mean_probability=None,
) -> list[RankedLabel]:
    """Every label ranked by its share of first places (then mean probability).

    ``first``: each point's first label index (negative: not classified); ``probabilities``:
    optional N×L softmax probabilities; ``groups``: labels summed into one entry (e.g. Rome and
    Vatican City), ranked among the labels they replace. ``targets``: labels (or group names)
    marked as targets; a group is a target when its name or one of its labels is. A target or
    group member that is not in the label set is refused (:class:`LabelSetError`, naming it and
    the labels there are). ``mean_probability``: per label, already averaged (a store ranked in
    chunks keeps no N×L matrix), in place of ``probabilities``.
    """
    import numpy as np

    first = np.asarray(first, dtype=np.int64)
    classified = first[first >= 0]
    total = max(len(classified), 1)
    counts = np.bincount(classified, minlength=len(labels))
    if mean_probability is not None:
        mean_probability = np.asarray(mean_probability, dtype=np.float64)
    elif probabilities is not None:
        probabilities = np.asarray(probabilities, dtype=np.float64)[first >= 0]
        mean_probability = (
            np.nanmean(probabilities, axis=0)
            if len(probabilities)
            else (np.full(len(labels), np.nan))
        )
    else:
        mean_probability = np.full(len(labels), np.nan)
    position = {label: i for i, label in enumerate(labels)}
    group_names = set(groups or {})
    unknown = [
        name
        for name in [
            *(t for t in targets if t not in group_names),
            *(m for g in (groups or {}).values() for m in g),
        ]
        if name not in position
    ]
    if unknown:
        raise LabelSetError(
            f"Not in the label set: {', '.join(repr(n) for n in sorted(set(unknown)))}. "
            f"{available_labels(labels, groups)} Check the spelling (labels are case-sensitive)."
        )
    entries = []
    grouped = set()
    for name, members in (groups or {}).items():
        indices = [position[m] for m in members]
        grouped.update(members)
        # The members' mean probabilities summed; unknown (NaN) when none of them is known (a
        # layer without probabilities), as the members' own are, rather than a 0 it does not
        # have, which would also rank the group above a label it ties with.
        member_means = mean_probability[indices]
        group_mean = np.nansum(member_means) if np.isfinite(member_means).any() else np.nan
        entries.append(
            RankedLabel(
                name,
                int(counts[indices].sum()),
                float(counts[indices].sum() / total),
                float(group_mean),
                0,
                name in targets or any(member in targets for member in members),
                tuple(members),
            )
        )
    for index, label in enumerate(labels):
        if label not in grouped:
            entries.append(
                RankedLabel(
                    label,
                    int(counts[index]),
                    float(counts[index] / total),
                    float(mean_probability[index]),
                    0,
                    label in targets,
                )
            )
    entries.sort(
        key=lambda e: (-e.first_places, -np.nan_to_num(e.mean_probability, nan=-1.0), e.label)
    )
    for rank, entry in enumerate(entries, start=1):
        entry.rank = rank
    return entries


def available_labels(labels: Sequence[str], groups: dict | None = None, shown: int = 30) -> str:
    """The labels (and groups) one may name, as a sentence; long sets are cut after ``shown``."""
    names = list(labels)
    text = ", ".join(names[:shown]) + (f", … ({len(names)} in all)" if len(names) > shown else "")
    sentence = f"The labels are: {text}."
    if groups:
        sentence += f" The groups are: {', '.join(groups)}."
    return sentence
