"""The moments a study reads the same streets at, as a user writes them: "every year", or dates
and years ("2016 2022-05-01"). Plain Python: the fetch dialog checks them before the engine."""

from __future__ import annotations

import re
from datetime import date

from .errors import MusError

EVERY_YEAR = "every year"


def parse_moments(text: str) -> list[str]:
    """The moments as the engine takes them: ``[]`` (one image per point), ``["every year"]``,
    or ISO dates in time order (a year alone stands for its 1 July)."""
    text = (text or "").strip()
    if not text:
        return []
    if text.lower() in (EVERY_YEAR, "each year", "years", "yearly"):
        return [EVERY_YEAR]
    moments = []
    for token in (t for t in re.split(r"[\s,;]+", text) if t):
        try:
            day = date(int(token), 7, 1) if re.fullmatch(r"\d{4}", token) else None
            day = day or date.fromisoformat(token)
        except ValueError:
            raise MusError(
                f"The moment {token!r} is not a date: write 'every year', or dates and years "
                "separated by spaces (e.g. '2016 2022' or '2016-06-01 2022-06-01')."
            ) from None
        moments.append(day.isoformat())
    if len(set(moments)) < 2:
        raise MusError(
            f"Moments name {len(set(moments))} date ({', '.join(moments)}): give two or more to "
            "read the same streets at several moments, or use 'Nearest to the date' for one."
        )
    return sorted(set(moments))
