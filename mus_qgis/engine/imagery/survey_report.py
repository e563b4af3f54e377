"""The survey's report: coverage per source and per year, and a map of the gaps."""

from __future__ import annotations

import html
from pathlib import Path

from ...shared.imagery_sources import imagery_source_infos
from ...shared.reports import report_start
from .fetch import STATUS_NONE, STATUS_OK
from .sources.base import FetchPoint
from .survey import SourceCoverage, SurveyRow

MAP_SIZE = 420  # pixels, the longer side of the map of gaps


def write_survey_report(
    path: str | Path,
    points: list[FetchPoint],
    rows: list[SurveyRow],
    summary: list[SourceCoverage],
    gap_keys: list[int],
    radius_m: float,
    seconds: float,
) -> Path:
    """An HTML page a reader can act on: which source covers how much, from which years, how
    near, what could not be asked (and why), and where no source has anything."""
    count = len(points)
    parts = [
        report_start(
            "Imagery survey",
            [],
            style="th{text-align:left}td.n{text-align:right}svg{border:1px solid #ccc}",
        ),
        f"<p>{count} points, each asked of {len(summary)} source"
        f"{'s' if len(summary) != 1 else ''} for the images within {radius_m:g} m (metadata "
        f"only: no image was downloaded). {len(gap_keys)} points have imagery from none "
        f"({_share(len(gap_keys), count)}). Took {seconds:.1f} s.</p>",
        "<h2>Coverage per source</h2><table><tr><th>source</th><th>points with imagery</th>"
        "<th>share</th><th>picked image is 360°</th><th>median distance</th>"
        "<th>not asked</th><th>requests</th></tr>",
    ]
    for c in summary:
        distance = "" if c.median_distance_m is None else f"{c.median_distance_m:.1f} m"
        parts.append(
            f"<tr><td>{html.escape(c.title)}</td><td class='n'>{c.covered}</td>"
            f"<td class='n'>{_share(c.covered, c.points)}</td>"
            f"<td class='n'>{c.panorama_points}</td><td class='n'>{distance}</td>"
            f"<td class='n'>{c.not_asked}</td><td class='n'>{c.requests}</td></tr>"
        )
    parts.append("</table>")
    problems = _problems(rows)
    if problems:
        parts.append(
            "<p class='note'>Not asked or failed: "
            + "; ".join(f"{html.escape(text)} ({n} points)" for text, n in problems)
            + ". Run the survey again to ask for these; what was answered is remembered.</p>"
        )
    years = sorted({year for c in summary for year in c.per_year})
    if years:
        parts.append(
            "<h2>Points with imagery, per year of capture</h2><table><tr><th>year</th>"
            + "".join(f"<th>{html.escape(c.title)}</th>" for c in summary)
            + "</tr>"
        )
        for year in years:
            parts.append(
                f"<tr><td>{year}</td>"
                + "".join(f"<td class='n'>{c.per_year.get(year, '')}</td>" for c in summary)
                + "</tr>"
            )
        parts.append(
            "</table><p>A point with images of several years counts in each. Fetch panoramas "
            "with 'Nearest to the date' takes each point's image nearest one moment.</p>"
        )
    parts.append("<h2>Where no source has imagery</h2>")
    parts.append(_gap_map(points, set(gap_keys)))
    parts.append("</body></html>")
    path = Path(path)
    path.write_text("".join(parts), encoding="utf-8")
    return path


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else ""


def _problems(rows: list[SurveyRow]) -> list[tuple[str, int]]:
    """Each source's reasons for rows it could not answer, counted (the first words only)."""
    counts: dict[str, int] = {}
    titles = {name: info.title for name, info in imagery_source_infos().items()}
    for row in rows:
        if row.status in (STATUS_OK, STATUS_NONE):
            continue
        text = f"{titles.get(row.source, row.source)}: {row.status[:160]}"
        counts[text] = counts.get(text, 0) + 1
    return sorted(counts.items(), key=lambda item: -item[1])[:8]


def _gap_map(points: list[FetchPoint], gaps: set[int]) -> str:
    """The points as dots on a plain map (longitude scaled by the latitude's cosine): grey
    where some source has imagery, red where none has."""
    import math

    if not points:
        return "<p>No points.</p>"
    lat0 = sum(p.lat for p in points) / len(points)
    scale = math.cos(math.radians(lat0))
    xs = [p.lon * scale for p in points]
    ys = [p.lat for p in points]
    span = max(max(xs) - min(xs), max(ys) - min(ys)) or 1e-6
    width = max(80, round(MAP_SIZE * (max(xs) - min(xs)) / span)) + 20
    height = max(80, round(MAP_SIZE * (max(ys) - min(ys)) / span)) + 20
    dots = []
    for point, x, y in zip(points, xs, ys):
        cx = 10 + (x - min(xs)) / span * MAP_SIZE
        cy = height - 10 - (y - min(ys)) / span * MAP_SIZE
        colour, size = ("#d7191c", 3.5) if point.key in gaps else ("#9e9e9e", 2.0)
        dots.append(f"<circle cx='{cx:.1f}' cy='{cy:.1f}' r='{size}' fill='{colour}'/>")
    # The gaps last, so they are drawn above the covered points.
    dots.sort(key=lambda dot: "#d7191c" in dot)
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}'>"
        + "".join(dots)
        + "</svg><p>Red: no imagery from any source asked; grey: imagery from at least one. "
        "North is up. The layer 'Points without imagery' holds the red points.</p>"
    )
