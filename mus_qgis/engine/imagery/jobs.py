"""The imagery's job: look up and download images for points."""

from __future__ import annotations

import json

from ...shared.schemas.imagery import (
    CaptureWindow,
    FetchImageryParams,
    FetchImageryResult,
    ImageryEstimate,
    SourceAccessChoice,
    SourceCoverageSummary,
    SourceCredentials,
    SurveyImageryParams,
    SurveyImageryResult,
)
from ..deps import require
from ..jobs import job


@job("fetch_imagery", params=FetchImageryParams, result=FetchImageryResult)
def fetch_imagery_job(params: FetchImageryParams, progress) -> FetchImageryResult:
    """Look up and download imagery for points; the outcomes go to a JSON file."""
    require("PIL", "numpy")
    from datetime import date

    from .fetch import FetchSettings, fetch_imagery
    from .sources.base import Credentials, FetchPoint, ViewPlan

    with open(params.points, encoding="utf-8") as handle:
        points = [FetchPoint(*row) for row in json.load(handle)]
    settings = FetchSettings(
        params.source,
        radius_m=float(params.radius_m),
        plan=ViewPlan(**params.plan.to_dict()),
        window=_window(params.window),
        concurrency=int(params.concurrency),
        url=params.url,
        location=params.location,
        estimate_only=bool(params.estimate_only),
        price_per_1000=params.price_per_1000,
    )
    credentials = Credentials(**(params.credentials or SourceCredentials()).to_dict())
    estimates: list = []
    moments = None
    if params.moments:
        from .by_date import fetch_moments

        moments = fetch_moments(
            points,
            _accesses(params.sources) or _accesses([_first_source(params)]),
            settings,
            list(params.moments),
            params.cache_dir,
            progress,
            params.proxies,
            on_estimate=estimates.append,
        )
        outcomes = [row.outcome for row in moments]
    elif len(params.sources) > 1 or params.target_date:
        from .by_date import fetch_by_date

        outcomes = fetch_by_date(
            points,
            _accesses(params.sources) or _accesses([_first_source(params)]),
            settings,
            date.fromisoformat(params.target_date) if params.target_date else None,
            params.cache_dir,
            progress,
            params.proxies,
            on_estimate=estimates.append,
        )
    else:
        outcomes = fetch_imagery(
            points,
            settings,
            params.cache_dir,
            credentials,
            progress,
            params.proxies,
            on_estimate=estimates.append,
        )
    rows = []
    for index, outcome in enumerate(outcomes):
        row = dict(vars(outcome))
        row["captured"] = outcome.captured.isoformat() if outcome.captured else None
        if moments is not None:
            row["moment"] = moments[index].moment
        rows.append(row)
    with open(params.output, "w", encoding="utf-8") as handle:
        json.dump(rows, handle)
    return FetchImageryResult(
        output=params.output,
        count=len(rows),
        estimate=_one_estimate(estimates),
    )


@job("survey_imagery", params=SurveyImageryParams, result=SurveyImageryResult)
def survey_imagery_job(params: SurveyImageryParams, progress) -> SurveyImageryResult:
    """List every source's imagery near each point (metadata only); the rows go to a JSON file."""
    import time
    from dataclasses import asdict

    from .sources import imagery_sources
    from .sources.base import FetchPoint
    from .survey import coverage, gaps, list_candidates, survey_rows

    started = time.perf_counter()
    with open(params.points, encoding="utf-8") as handle:
        points = [FetchPoint(*row) for row in json.load(handle)]
    listings = list_candidates(
        points,
        _accesses(params.sources),
        float(params.radius_m),
        _window(params.window),
        params.cache_dir,
        progress,
        params.proxies,
        int(params.concurrency),
    )
    rows = survey_rows(points, listings)
    with open(params.output, "w", encoding="utf-8") as handle:
        json.dump([asdict(row) for row in rows], handle)
    requests = {name: cls.lookup_requests for name, cls in imagery_sources().items()}
    covered = coverage(rows, requests)
    summaries = [
        SourceCoverageSummary(
            **{**asdict(c), "per_year": {str(y): n for y, n in c.per_year.items()}}
        )
        for c in covered
    ]
    gap_keys = gaps(points, rows)
    seconds = round(time.perf_counter() - started, 2)
    if params.report:
        from .survey_report import write_survey_report

        write_survey_report(
            params.report, points, rows, covered, gap_keys, float(params.radius_m), seconds
        )
    return SurveyImageryResult(
        output=params.output,
        points=len(points),
        gaps=gap_keys,
        coverage=summaries,
        seconds=seconds,
    )


def _window(window: CaptureWindow | None):
    from datetime import date

    from .sources.base import DateWindow

    window = window or CaptureWindow()
    return DateWindow(
        *(date.fromisoformat(day) if day else None for day in (window.start, window.end))
    )


def _accesses(choices: list[SourceAccessChoice]) -> list:
    from .sources.base import Credentials
    from .survey import SourceAccess

    return [
        SourceAccess(
            choice.name,
            Credentials(**(choice.credentials or SourceCredentials()).to_dict()),
            choice.url,
            choice.location,
        )
        for choice in choices
    ]


def _first_source(params: FetchImageryParams) -> SourceAccessChoice:
    """The one source of a fetch by date that names a single source the old way."""
    return SourceAccessChoice(
        params.source, params.url, params.location, params.credentials or SourceCredentials()
    )


def _one_estimate(estimates: list) -> ImageryEstimate | None:
    """The fetch's estimate; a fetch across sources adds up each source's (its message lists
    them one by one)."""
    if not estimates:
        return None
    if len(estimates) == 1:
        return ImageryEstimate.from_dict(estimates[0].as_dict())
    parts = [estimate.as_dict() for estimate in estimates]
    summed = {
        name: sum(part[name] for part in parts)
        for name in parts[0]
        if isinstance(parts[0][name], int | float) and name != "price_per_1000"
    }
    return ImageryEstimate(
        **summed,
        source=", ".join(part["source"] for part in parts),
        price_per_1000=max(part["price_per_1000"] for part in parts),
        message=" ".join(part["message"] for part in parts),
    )
