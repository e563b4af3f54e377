"""The imagery's job: look up and download images for points."""

from __future__ import annotations

import json

from ..deps import require
from ..jobs import job


@job("fetch_imagery")
def fetch_imagery_job(params: dict, progress) -> dict:
    """Look up and download imagery for points; the outcomes go to a JSON file."""
    require("PIL", "numpy")
    from datetime import date

    from .fetch import FetchSettings, fetch_imagery
    from .sources.base import Credentials, DateWindow, FetchPoint, ViewPlan

    with open(params["points"], encoding="utf-8") as handle:
        points = [FetchPoint(*row) for row in json.load(handle)]
    window = params.get("window") or {}
    settings = FetchSettings(
        params["source"],
        radius_m=float(params["radius_m"]),
        plan=ViewPlan(**params["plan"]),
        window=DateWindow(
            *(date.fromisoformat(window[k]) if window.get(k) else None for k in ("start", "end"))
        ),
        concurrency=int(params["concurrency"]),
        url=params.get("url", ""),
        location=params.get("location", ""),
        estimate_only=bool(params.get("estimate_only")),
        price_per_1000=params.get("price_per_1000"),
    )
    credentials = Credentials(**(params.get("credentials") or {}))
    estimates: list = []
    outcomes = fetch_imagery(
        points,
        settings,
        params["cache_dir"],
        credentials,
        progress,
        params.get("proxies"),
        on_estimate=estimates.append,
    )
    rows = []
    for outcome in outcomes:
        row = dict(vars(outcome))
        row["captured"] = outcome.captured.isoformat() if outcome.captured else None
        rows.append(row)
    with open(params["output"], "w", encoding="utf-8") as handle:
        json.dump(rows, handle)
    estimate = estimates[0].as_dict() if estimates else None
    return {"output": params["output"], "count": len(rows), "estimate": estimate}
