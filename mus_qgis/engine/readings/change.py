"""Where the city's image changed: the same points read at two moments, and how sure each
change is.

A point is read at several moments (Fetch panoramas with moments, then CLIP-classify). Between
two moments its label changed or did not; a change is as sure as the less sure of its two
readings (the smaller of the two first-label probabilities). A point whose two moments are the
same image (no newer imagery there) cannot show a change, and says so.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass


@dataclass(frozen=True)
class MomentReading:
    """One point's label at one moment."""

    point: str  # the point's identity across moments (an id, or its position)
    moment: str  # "2019" or "2019-06-01"; sorts in time
    label: str
    probability: float | None  # the first label's probability (or score); None: unknown
    image_id: str = ""


@dataclass(frozen=True)
class LabelChange:
    point: str
    label_a: str
    label_b: str
    probability_a: float | None
    probability_b: float | None
    changed: bool
    same_image: bool  # both moments read the same image: no change can show
    certainty: float | None  # the smaller of the two probabilities


def moments_of(readings: list[MomentReading]) -> list[str]:
    """The moments read, in time order (years and ISO dates sort as text)."""
    return sorted({r.moment for r in readings if r.moment})


def label_changes(readings: list[MomentReading], moment_a: str, moment_b: str) -> list[LabelChange]:
    """Each point read at both moments, in the order the points first appear."""
    from ...shared.errors import MusError

    known = moments_of(readings)
    for moment in (moment_a, moment_b):
        if moment not in known:
            raise MusError(
                f"No point was read at the moment {moment!r}; the layer's moments are "
                f"{', '.join(known) or 'none'}: choose two of them."
            )
    if moment_a == moment_b:
        raise MusError(f"Both moments are {moment_a!r}: choose two different moments.")
    at: dict[str, dict[str, MomentReading]] = defaultdict(dict)
    order: list[str] = []
    for reading in readings:
        if reading.point not in at:
            order.append(reading.point)
        if reading.moment in (moment_a, moment_b) and reading.label:
            at[reading.point][reading.moment] = reading
    changes = []
    for point in order:
        pair = at[point]
        if moment_a not in pair or moment_b not in pair:
            continue
        a, b = pair[moment_a], pair[moment_b]
        same_image = bool(a.image_id) and a.image_id == b.image_id
        known_probabilities = [p for p in (a.probability, b.probability) if p is not None]
        changes.append(
            LabelChange(
                point,
                a.label,
                b.label,
                a.probability,
                b.probability,
                a.label != b.label,
                same_image,
                min(known_probabilities) if len(known_probabilities) == 2 else None,
            )
        )
    return changes


@dataclass(frozen=True)
class MomentShare:
    moment: str
    label: str
    points: int
    share: float  # of the points read at that moment


def moment_summary(readings: list[MomentReading]) -> list[MomentShare]:
    """Each moment's labels: how many points, and their share, most common first."""
    by_moment: dict[str, Counter] = defaultdict(Counter)
    for reading in readings:
        if reading.moment and reading.label:
            by_moment[reading.moment][reading.label] += 1
    out = []
    for moment in sorted(by_moment):
        counts = by_moment[moment]
        total = sum(counts.values())
        for label, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
            out.append(MomentShare(moment, label, count, count / total))
    return out


def write_change_report(
    path,
    changes: list[LabelChange],
    summary: list[MomentShare],
    moment_a: str,
    moment_b: str,
    runs: list[dict],
    data: list[str],
    attribution: str = "",
) -> None:
    """The change between two moments and each moment's labels, as a reader sees them."""
    import html
    from pathlib import Path

    from ...shared.reports import report_start

    changed = [c for c in changes if c.changed]
    same = sum(1 for c in changes if c.same_image)
    parts = [
        report_start(
            f"Label change, {moment_a} to {moment_b}",
            runs,
            style="th{text-align:left}td.n{text-align:right}",
            what="changes",
            data=data,
        ),
        attribution,
        f"<p>{len(changes)} points were read at both moments; the label changed at "
        f"{len(changed)} of them"
        + (f" ({len(changed) / len(changes):.0%})" if changes else "")
        + f". {same} points have the same image at both moments (no newer imagery there), so "
        "no change can show at them.</p>",
    ]
    if changed:
        moves = Counter((c.label_a, c.label_b) for c in changed)
        parts.append(
            "<h2>The changes, most common first</h2><table><tr><th>from</th><th>to</th>"
            "<th>points</th></tr>"
            + "".join(
                f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td><td class='n'>{n}</td></tr>"
                for (a, b), n in moves.most_common(20)
            )
            + "</table><p>A change is as sure as the less sure of its two readings "
            "(the layer's certainty field).</p>"
        )
    parts.append(
        "<h2>Labels per moment</h2><table><tr><th>moment</th><th>label</th>"
        "<th>points</th><th>share</th></tr>"
    )
    for row in summary:
        parts.append(
            f"<tr><td>{html.escape(row.moment)}</td><td>{html.escape(row.label)}</td>"
            f"<td class='n'>{row.points}</td><td class='n'>{row.share:.1%}</td></tr>"
        )
    parts.append("</table></body></html>")
    Path(path).write_text("".join(parts), encoding="utf-8")
