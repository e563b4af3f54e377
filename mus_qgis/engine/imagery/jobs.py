"""The imagery's job: look up and download images for points."""

from __future__ import annotations

import json

from ...shared.schemas.imagery import (
    CaptureWindow,
    FetchImageryParams,
    FetchImageryResult,
    ImageryEstimate,
    SourceCredentials,
)
from ..deps import require
from ..jobs import job


@job("fetch_imagery", params=FetchImageryParams, result=FetchImageryResult)
def fetch_imagery_job(params: FetchImageryParams, progress) -> FetchImageryResult:
    """Look up and download imagery for points; the outcomes go to a JSON file."""
    require("PIL", "numpy")
    from datetime import date

    from .fetch import FetchSettings, fetch_imagery
    from .sources.base import Credentials, DateWindow, FetchPoint, ViewPlan

    with open(params.points, encoding="utf-8") as handle:
        points = [FetchPoint(*row) for row in json.load(handle)]
    window = params.window or CaptureWindow()
    settings = FetchSettings(
        params.source,
        radius_m=float(params.radius_m),
        plan=ViewPlan(**params.plan.to_dict()),
        window=DateWindow(
            *(date.fromisoformat(day) if day else None for day in (window.start, window.end))
        ),
        concurrency=int(params.concurrency),
        url=params.url,
        location=params.location,
        estimate_only=bool(params.estimate_only),
        price_per_1000=params.price_per_1000,
    )
    credentials = Credentials(**(params.credentials or SourceCredentials()).to_dict())
    estimates: list = []
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
    for outcome in outcomes:
        row = dict(vars(outcome))
        row["captured"] = outcome.captured.isoformat() if outcome.captured else None
        rows.append(row)
    with open(params.output, "w", encoding="utf-8") as handle:
        json.dump(rows, handle)
    return FetchImageryResult(
        output=params.output,
        count=len(rows),
        estimate=ImageryEstimate.from_dict(estimates[0].as_dict()) if estimates else None,
    )
